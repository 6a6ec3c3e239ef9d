"""Engine ``matrix``: equations (3)-(6) of the notes, with the tensors A^{l,q}_k built literally.

A^{l,q}_k is the matrix [da^l_q / dw^k_ij]_ij of shape (#k + 1) x #(k+1); stacking q and the
samples b of the batch gives one array per (k, l). Layout: ``A[q, b, j, i]`` = A^{l,q}_k[i, j]
for sample b, shape (#l, B, #(k+1), #k + 1) — each matrix stored transposed, so that the long
index i (785 values for the first layer) is the contiguous one, and the sum over r in (6) is
a single matrix product for the whole chunk of samples.
Equations, as corrected in docs/derivation.md (slips S9-S11: g' is taken at layer l, the
layer of a^l_q, not at layer k):

    (4) A^{k+1,q}_k[i, j] = g'(h^(k+1)_q) a^k_i [j = q]
    (5) A^{k+2,q}_k[i, j] = g'(h^(k+2)_q) w^(k+1)_jq g'(h^(k+1)_j) a^k_i
    (6) A^{l,q}_k       = g'(h^l_q) sum_r w^(l-1)_rq A^{l-1,r}_k        (l > k + 2)
    (3) grad E^k        = sum_q dE/dO_q A^{L,q}_k          (dE/dO_q = (2/#L)(O_q - t_q) for MSE)

Memory: A^l_k takes #l (#k+1) #(k+1) numbers per sample (784-16-16-10, k = 0: 16*785*16 ~ 201k,
1.6 MB in float64), so the batch is processed in chunks. A chunk's live A tensors never exceed
``memory_budget`` (default 256 MiB), and are kept near ``chunk_bytes`` (default 4 MiB) when
possible, so that the tensors stay in the CPU cache from (5) through (6) to (3); the arrays
they are written into are kept from chunk to chunk (docs/performance.md). Cost per sample:
O(sum_k (#k+1) #(k+1) sum_(l>k) #l #(l-1)) — the factor (#k + 1) is what the frontprop engine
removes.
"""

from __future__ import annotations

import numpy as np

from nnet.core.network import ForwardPass, Grads, Network

Array = np.ndarray

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # most bytes of A tensors alive at once
DEFAULT_CHUNK_BYTES = 4 * 2**20  # preferred bytes of A tensors per chunk (cache-sized)


def eq4_A(a_k: Array, gp_next: Array, out: Array | None = None) -> Array:
    """(4) A^{k+1,q}_k[i, j] = g'(h^(k+1)_q) a^k_i if j = q else 0.

    ``a_k`` is a^k (B, #k + 1), ``gp_next`` is g'(h^(k+1)) (B, #(k+1)).
    Returns A[q, b, j, i], shape (#(k+1), B, #(k+1), #k + 1) (in ``out`` when given).
    """
    B, J = gp_next.shape
    shape = (J, B, J, a_k.shape[1])
    A = np.zeros(shape, dtype=a_k.dtype) if out is None else out
    if out is not None:
        A[...] = 0
    q = np.arange(J)
    A[q, :, q, :] = gp_next.T[:, :, None] * a_k[None, :, :]
    return A


def eq5_A(
    a_k: Array, gp_next: Array, w_next: Array, gp_next2: Array, out: Array | None = None
) -> Array:
    """(5) A^{k+2,q}_k[i, j] = g'(h^(k+2)_q) w^(k+1)_jq g'(h^(k+1)_j) a^k_i.

    ``w_next`` is w^(k+1), ``gp_next`` = g'(h^(k+1)), ``gp_next2`` = g'(h^(k+2)).
    Returns A[q, b, j, i], shape (#(k+2), B, #(k+1), #k + 1) (in ``out`` when given).
    """
    # C[q, b, j] = g'(h^(k+2)_q) w^(k+1)_jq g'(h^(k+1)_j)
    C = gp_next2.T[:, :, None] * w_next[:-1].T[:, None, :] * gp_next[None, :, :]
    return np.multiply(C[:, :, :, None], a_k[None, :, None, :], out=out)


def eq6_A(A_prev: Array, w_prev: Array, gp_l: Array, out: Array | None = None) -> Array:
    """(6) A^{l,q}_k = g'(h^l_q) sum_r w^(l-1)_rq A^{l-1,r}_k, for all q and samples at once.

    ``A_prev`` holds A^{l-1}_k as A[r, b, j, i]; ``w_prev`` is w^(l-1); ``gp_l`` = g'(h^l).
    The result goes to ``out`` when given (it must not be ``A_prev``).
    """
    R = A_prev.shape[0]
    Q = w_prev.shape[1]
    A = np.empty((Q,) + A_prev.shape[1:], dtype=A_prev.dtype) if out is None else out
    np.matmul(w_prev[:-1].T, A_prev.reshape(R, -1), out=A.reshape(Q, -1))
    np.multiply(A, gp_l.T[:, :, None, None], out=A)
    return A


def eq3_gradient(e: Array, A_L: Array) -> Array:
    """(3) grad E^k[i, j] = sum_b sum_q dE/dO_q A^{L,q}_k[i, j] (summed over the chunk).

    ``e`` is dE/dO (B, #L); ``A_L`` holds A^{L}_k as A[q, b, j, i]. Returns (#k + 1, #(k+1)).
    """
    Q, B, J, I = A_L.shape
    return (e.T.reshape(Q * B) @ A_L.reshape(Q * B, J * I)).reshape(J, I).T


def A_chain(net: Network, k: int, a_k: Array, gp: list[Array], work: dict | None = None) -> Array:
    """A^{L,q}_k for all q and all samples of the chunk, by (4), (5) then (6).

    ``work`` (a dict, kept by the caller from one chunk to the next) holds the arrays the
    tensors are written into: allocating ~1 MB per tensor and chunk cost more than the
    arithmetic (docs/performance.md).
    """
    work = {} if work is None else work

    def buf(shape: tuple[int, ...], slot: int) -> Array:
        arr = work.get((shape, slot))
        if arr is None:
            arr = work[(shape, slot)] = np.empty(shape, dtype=a_k.dtype)
        return arr

    L, B, I = net.L, a_k.shape[0], a_k.shape[1]
    J = net.sizes[k + 1]
    if L == k + 1:
        return eq4_A(a_k, gp[k + 1], out=buf((J, B, J, I), 0))
    A = eq5_A(
        a_k, gp[k + 1], net.weights[k + 1], gp[k + 2], out=buf((net.sizes[k + 2], B, J, I), 0)
    )
    for slot, l in enumerate(range(k + 3, L + 1), start=1):  # two buffers in turn
        A = eq6_A(A, net.weights[l - 1], gp[l], out=buf((net.sizes[l], B, J, I), slot % 2))
    return A


def chunk_size(
    net: Network,
    k: int,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    """Samples per chunk for w^k: two consecutive A^l_k (the live ones in (6)) per sample,
    as many samples as fit ``chunk_bytes`` but never more than fit ``memory_budget``."""
    I, J = net.sizes[k] + 1, net.sizes[k + 1]
    widths = net.sizes[k + 1 :]
    live = max(u + v for u, v in zip(widths, widths[1:], strict=False)) if len(widths) > 1 else J
    per_sample = net.dtype.itemsize * I * J * live
    return max(1, min(chunk_bytes, memory_budget) // per_sample)


def gradients(
    net: Network,
    fp: ForwardPass,
    t: Array,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    out: Grads = None,
) -> list[Array]:
    """Gradient of the batch mean of E with respect to every w^k, by equations (3)-(6),
    from the forward pass ``fp`` of the batch and its targets ``t``."""
    B = fp.B
    e = net.loss.dEdO(fp.O, t) * (1.0 / B)  # dE/dO for the batch mean, (B, #L)
    gp = [np.empty(0)] + [fp.gprime(l) for l in range(1, net.L + 1)]
    grads = out if out is not None else [np.empty_like(w) for w in net.weights]
    for k in range(net.L):
        n = chunk_size(net, k, memory_budget, chunk_bytes)
        g = grads[k]
        g[...] = 0
        work: dict = {}  # the A tensors' arrays, reused chunk after chunk
        for s in range(0, B, n):
            c = slice(s, s + n)
            A_L = A_chain(net, k, fp.a[k][c], [p[c] for p in gp], work)
            g += eq3_gradient(e[c], A_L)
    return grads
