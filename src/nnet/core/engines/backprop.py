"""Engine ``backprop``: standard reverse-mode error terms, batched as matrix products.

Define the error term of layer l as delta^l_j = dE/dh^l_j (mean over the batch folded in).
The frontprop engine propagates the Jacobians M^l_k = da^l/dh^(k+1) forward; contracting
them with dE/dO from the left instead gives delta^(k+1) = (dE/dO)^T M^L_k, and the
recursion (6) read from the output end becomes

    delta^L   = dE/dO * g'(h^L)
    delta^l   = (delta^(l+1) (w^l without its bias row)^T) * g'(h^l)
    grad w^k  = (a^k)^T delta^(k+1)            (sum over the batch; a^k includes the bias 1)

Cost per sample: about two matrix-vector products per weight matrix, O(sum_k #k #(k+1)) —
the same order as the forward pass, whatever the depth.
"""

from __future__ import annotations

import numpy as np

from nnet.core.network import ForwardPass, Grads, Network

Array = np.ndarray


def gradients(net: Network, fp: ForwardPass, t: Array, *, out: Grads = None) -> list[Array]:
    """Gradient of the batch mean of E with respect to every w^k, by backpropagation.

    ``fp`` is the forward pass of the batch (:meth:`Network.forward_pass`), ``t`` its
    targets; ``out``: arrays shaped like the weights to write the gradient into (training
    reuses them batch after batch), new arrays when None. delta^l is written into the pass's
    work arrays, which the forward pass no longer needs.
    """
    delta = net.loss.dEdO(fp.O, t)  # a new (B, #L) array
    delta *= 1.0 / fp.B
    fp.times_gprime(net.L, delta)  # delta^L = dE/dO * g'(h^L)
    grads = out if out is not None else [np.empty_like(w) for w in net.weights]
    for k in range(net.L - 1, -1, -1):
        np.matmul(fp.a[k].T, delta, out=grads[k])  # grad w^k = (a^k)^T delta^(k+1)
        if k > 0:  # delta^k = (delta^(k+1) (w^k without its bias row)^T) * g'(h^k)
            delta = fp.times_gprime(k, np.matmul(delta, net.weights[k][:-1].T, out=fp.work[k]))
    return grads
