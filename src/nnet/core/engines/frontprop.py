"""Engine ``frontprop``: the notes' forward recursion, factored (the step the notes did not take).

Every A^{l,q}_k of equations (4)-(6) is an outer product:

    A^{l,q}_k[i, j] = da^l_q / dw^k_ij = a^k_i * M^l_k[q, j],   M^l_k[q, j] := da^l_q / dh^(k+1)_j

because w^k_ij reaches the rest of the network only through h^(k+1)_j = sum_i a^k_i w^k_ij,
and dh^(k+1)_j / dw^k_ij = a^k_i. Substituting into (4), (5), (6) gives the recursion for
the small matrices M (shape #l x #(k+1)) instead of the big A (shape #l x (#k+1) x #(k+1)):

    (4') M^(k+1)_k = diag(g'(h^(k+1)))
    (5') M^(k+2)_k[q, j] = g'(h^(k+2)_q) w^(k+1)_jq g'(h^(k+1)_j)
    (6') M^l_k[q, j] = g'(h^l_q) sum_r w^(l-1)_rq M^(l-1)_k[r, j]
    (3') grad E^k = a^k (x) (sum_q dE/dO_q M^L_k[q, :])

It sweeps in the notes' direction (input -> output), but the i index (up to #k + 1 = 785 for
the first layer) never enters the recursion, only the final outer product.
Cost per sample: O(sum_k sum_(l>k) #l #(l-1) #(k+1)) for the M's plus O(sum_k #k #(k+1))
for the outer products.

Layout: M is stored as (#l, B, #(k+1)) so that the sum over r in (6') is one matrix product
(#l x #(l-1)) @ (#(l-1) x B #(k+1)) for the whole batch.
"""

from __future__ import annotations

import numpy as np

from nnet.core.network import ForwardPass, Grads, Network

Array = np.ndarray


def M_first(gp_next: Array) -> Array:
    """(4') M^(k+1)_k = diag(g'(h^(k+1))) for each sample, layout (#(k+1), B, #(k+1))."""
    B, J = gp_next.shape
    M = np.zeros((J, B, J), dtype=gp_next.dtype)
    idx = np.arange(J)
    M[idx, :, idx] = gp_next.T
    return M


def M_next(M_prev: Array, w_prev: Array, gp_l: Array) -> Array:
    """(6') M^l_k[q, j] = g'(h^l_q) sum_r w^(l-1)_rq M^(l-1)_k[r, j], all samples at once.

    ``w_prev`` is w^(l-1) (its bias row is not used: the bias neuron has no h to depend on).
    """
    R, B, J = M_prev.shape
    Q = w_prev.shape[1]
    M = (w_prev[:-1].T @ M_prev.reshape(R, B * J)).reshape(Q, B, J)
    M *= gp_l.T[:, :, None]
    return M


def M_chain(net: Network, k: int, gp: list[Array]) -> Array:
    """M^L_k = da^L/dh^(k+1) for every sample, layout (#L, B, #(k+1))."""
    M = M_first(gp[k + 1])
    for l in range(k + 2, net.L + 1):
        M = M_next(M, net.weights[l - 1], gp[l])
    return M


def gradients(net: Network, fp: ForwardPass, t: Array, *, out: Grads = None) -> list[Array]:
    """Gradient of the batch mean of E with respect to every w^k, by factored frontprop,
    from the forward pass ``fp`` of the batch and its targets ``t``."""
    e = net.loss.dEdO(fp.O, t) * (1.0 / fp.B)  # dE/dO for the batch mean, (B, #L)
    gp = [np.empty(0)] + [fp.gprime(l) for l in range(1, net.L + 1)]
    grads = out if out is not None else [np.empty_like(w) for w in net.weights]
    for k in range(net.L):
        M = M_chain(net, k, gp)
        e_M = np.einsum("bq,qbj->bj", e, M)  # sum_q dE/dO_q M^L_k[q, j], (B, #(k+1))
        np.matmul(fp.a[k].T, e_M, out=grads[k])  # (3'): a^k (x) e_M, summed over b
    return grads
