"""Engine ``recursive``: equations (1) and (2) of the notes, literally, in pure Python.

This is the readable reference: one scalar derivative da^l_q/dw^k_ij at a time, by cases,
exactly as (2) is written (with the index slips corrected, see docs/derivation.md):

    da^l_q/dw^k_ij = 0                                          if l = 0, q = #l or k >= l
                   = g'(h^l_q) a^k_i [j = q]                    if k = l - 1
                   = g'(h^l_q) w^(l-1)_jq g'(h^(l-1)_j) a^k_i    if k = l - 2   (the shortcut)
                   = g'(h^l_q) sum_r w^(l-1)_rq da^(l-1)_r/dw^k_ij   otherwise

and (1): grad E^k_ij = sum_q dE/dO_q da^L_q/dw^k_ij, with dE/dO_q = (2/#L)(O_q - t_q) for the
notes' error. The forward pass (h, a, g'(h)) comes from `Network.forward_pass`; only the recursion
is pure Python, on Python floats.

Memoization: each sample gets its own ``dadw`` closure with its own cache, so a cached value
can never be read for another sample (the notes' code keyed its memo without the sample and
was only right at batch size 1). The cache stores one float per distinct (l, q, k, i, j)
reached: sum_k #(k+1) (#k+1) sum_(l>k) #l entries at most (784-16-16-10: about 3.3e5 per
sample, some 40 MB of dict entries), freed when the sample is done. Without it the
recursion would recompute da^(l-1)_r/dw^k_ij for every q, multiplying the time by #l at each
level below the shortcut.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from nnet.core.network import ForwardPass, Grads, Network

Array = np.ndarray


class UsageError(AssertionError):
    """``dadw`` was asked for a derivative that backpropagation never needs."""


def make_dadw(
    sizes: Sequence[int],
    w: Sequence[Sequence[Sequence[float]]],
    a: Sequence[Sequence[float]],
    gp: Sequence[Sequence[float] | None],
    *,
    strict: bool = True,
) -> Callable[[int, int, int, int, int], float]:
    """``dadw(l, q, k, i, j)`` = da^l_q / dw^k_ij for ONE sample: equation (2).

    ``w[k][i][j]`` = w^k_ij, ``a[k][i]`` = a^k_i (bias extension a^k_{#k} = 1 included),
    ``gp[l][q]`` = g'(h^l_q) (``gp[0]`` unused). With ``strict`` (the default, as the notes
    ask), asking for a bias neuron (q = #l) or for k >= l raises :class:`UsageError`; with
    ``strict=False`` those cases return the 0 that (2) gives them.
    Indices out of range raise IndexError (the notes' range checks).
    """
    L = len(sizes) - 1

    @functools.cache
    def dadw(l: int, q: int, k: int, i: int, j: int) -> float:
        # Range checks: (2) only holds for l in 0..L and weights w^k that exist.
        if not 0 <= l <= L:
            raise IndexError(f"layer l={l} is out of range 0..{L}")
        if not 0 <= k < L:
            raise IndexError(f"weight layer k={k} is out of range 0..{L - 1}")
        if not 0 <= q <= sizes[l]:
            raise IndexError(f"neuron q={q} is out of range 0..{sizes[l]} of layer {l}")
        if not 0 <= i <= sizes[k]:
            raise IndexError(f"i={i} is out of range 0..{sizes[k]} (rows of w^{k})")
        if not 0 <= j < sizes[k + 1]:
            raise IndexError(f"j={j} is out of range 0..{sizes[k + 1] - 1} (columns of w^{k})")
        # Usage assertions: backpropagating E never needs these cases.
        if strict and q == sizes[l]:
            raise UsageError(f"dadw asked for the bias neuron q=#l={q} of layer {l}")
        if strict and k >= l:
            raise UsageError(f"dadw asked for k={k} >= l={l}: w^k does not precede a^l")
        if l == 0:
            return 0.0  # a^0 = x does not depend on any weight
        if q == sizes[l]:
            return 0.0  # the bias neuron a^l_{#l} = 1 is constant
        if k >= l:
            return 0.0  # w^k only reaches layers k+1 and after
        if k == l - 1:
            return gp[l][q] * a[k][i] if j == q else 0.0
        if k == l - 2:  # the shortcut: the recursion below, with only r = j surviving
            return gp[l][q] * w[l - 1][j][q] * gp[l - 1][j] * a[k][i]
        w_prev = w[l - 1]
        return gp[l][q] * sum(w_prev[r][q] * dadw(l - 1, r, k, i, j) for r in range(sizes[l - 1]))

    return dadw


def eq1_gradient(
    sizes: Sequence[int], dadw: Callable[[int, int, int, int, int], float], dEdO: Sequence[float]
) -> list[list[list[float]]]:
    """(1) grad E^k_ij = sum_q dE/dO_q da^L_q/dw^k_ij for every k, i, j (one sample)."""
    L = len(sizes) - 1
    grads = []
    for k in range(L):
        grads.append(
            [
                [
                    sum(dEdO[q] * dadw(L, q, k, i, j) for q in range(sizes[L]))
                    for j in range(sizes[k + 1])
                ]
                for i in range(sizes[k] + 1)
            ]
        )
    return grads


def gradients(net: Network, fp: ForwardPass, t: Array, *, out: Grads = None) -> list[Array]:
    """Gradient of the batch mean of E: equation (1) per sample, averaged over the batch,
    from the forward pass ``fp`` of the batch and its targets ``t``."""
    B = fp.B
    dEdO = net.loss.dEdO(fp.O, t).astype(np.float64)
    gp = [np.empty((B, 0))] + [fp.gprime(l).astype(np.float64) for l in range(1, net.L + 1)]
    w = [wk.astype(np.float64).tolist() for wk in net.weights]
    total = [np.zeros(wk.shape) for wk in net.weights]
    for b in range(B):
        a_b = [a_l[b].astype(np.float64).tolist() for a_l in fp.a]
        gp_b = [g_l[b].tolist() for g_l in gp]
        dadw = make_dadw(net.sizes, w, a_b, gp_b)
        for k, g_k in enumerate(eq1_gradient(net.sizes, dadw, dEdO[b].tolist())):
            total[k] += g_k
    grads = out if out is not None else [np.empty_like(w) for w in net.weights]
    for g, tot in zip(grads, total, strict=True):
        g[...] = tot / B
    return grads
