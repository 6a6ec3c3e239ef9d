"""Fused optimizer kernels compiled with Numba: the optional extra ``nnet[fast]``.

The NumPy updates of :mod:`nnet.training.optim` are the reference, and what runs without
Numba. They make about ten element-wise passes over arrays as large as the weights (blocked
so that the passes stay in the cache); the kernels here make one: each number of w, g and
the optimizer's state is read once and written once, every operation of the NumPy update
applied to it in the same order, in the array's own precision (the scalars are rounded to
the array's dtype exactly as NumPy rounds them). Compiled without ``fastmath`` (no FMA
contraction, no reassociation, subnormals kept) and with NumPy's error model (a division by
0 gives inf or NaN, as in NumPy), each result is therefore bit for bit the NumPy one;
``tests/test_kernels.py`` checks that for every optimizer.

Each update is written once for one number (``_sgd_one``, ``_adam_one``) and works on the
flattened (C-contiguous) matrix; the bias row is its last ``ncols`` numbers,
``i >= bias_start``, which weight decay spares. Each comes in two loops: a serial one, and
a parallel one (``prange``) whose range Numba shares out between its threads. (A ``prange``
over chunks with an inner loop per chunk was 8 times slower: Numba did not vectorize it.)
The parallel one runs for matrices of at least ``PARALLEL_MIN`` numbers when more than one
thread is set. Below that it does not pay on this project's 2-core machine: waking the
second thread costs 65-90 µs, and the serial loop already runs at the speed of the cache
(about 0.1 ms per 2^18 numbers of Adam in float32); below 2^19 numbers two threads always
lost, from 2^20 on they mostly won, by up to 1.3-1.7x (docs/performance.md). The matrices
of 784-800-800-10 (at most 0.64 M numbers) take the serial loop.

Threads: the parallel loops use ``numba.get_num_threads()`` of the calling thread, so
``numba.set_num_threads(n)`` is honoured. Where nobody has set it, the first kernel call in
a thread sets it to ``$NNET_THREADS`` when that is set, else to the number of cores this
process may run on (``os.sched_getaffinity``), never more than Numba's pool
(``NUMBA_NUM_THREADS``). Unless ``NUMBA_THREADING_LAYER`` chooses another, Numba's
threading layer is its own ``workqueue`` (see below why); it must not be entered by two
threads at once, so one lock guards the parallel kernels: a thread that finds it taken runs
the serial kernel instead.

Compiled code is cached on disk (``cache=True``): in ``__pycache__`` beside this file, or
under ``$NUMBA_CACHE_DIR``; only the first run on a machine pays for the compilation.
"""

from __future__ import annotations

import math
import os
import threading

import numba
import numpy as np
from numba import njit, prange

from nnet.errors import NnetError

Array = np.ndarray

PARALLEL_MIN = 2**20  # numbers in a matrix below which the serial loop runs (see above)

# Numba's threading layer, unless the user chose one (NUMBA_THREADING_LAYER): the built-in
# workqueue. Its idle threads sleep where GNU OpenMP's spin, taking a core from OpenBLAS and
# from other processes (on this project's shared 2-core machine one parallel Adam step took
# 11-24 ms with omp against 5 ms with workqueue when the cores were busy); it survives
# fork(), which libgomp does not. It must not be entered by two threads at once: the lock.
if numba.config.THREADING_LAYER == "default" and not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "workqueue"

_JIT = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}

# ----------------------------------------------------------------------------- SGD
# Each update is written once, for one number i (inlined into both loops by Numba before
# it compiles them), with the NumPy lines of optim.py that it fuses in the comments.


# The decay is written out in each update on purpose: factored into an inlined helper called
# in a conditional expression (commit bf57f2e), it stopped Numba from vectorizing the serial
# loops, and one Adam step of mlp800 went from 0.30 to 1.6 ms (benchmarks/epoch_profile.py).


@njit(inline="always", **_JIT)
def _sgd_one(i, w, g, v, bias_start, lr, wd, mu, zero, decay, momentum, nesterov):
    gi = g[i]
    if decay:  # tmp = w * wd; tmp[bias] = 0; tmp += g
        d = w[i] * wd
        if i >= bias_start:
            d = zero
        gi = d + gi
    if momentum:
        vi = v[i] * mu  # v *= mu
        vi = vi + gi  # v += g
        v[i] = vi
        if nesterov:
            s = vi * mu  # tmp = v * mu
            s = s + gi  # tmp += g
        else:
            s = vi  # tmp = v
    else:
        s = gi  # tmp = g (times lr below)
    w[i] = w[i] - s * lr  # tmp *= lr; w -= tmp


@njit(**_JIT)
def sgd_serial(w, g, v, bias_start, lr, wd, mu, zero, decay, momentum, nesterov):
    for i in range(w.size):
        _sgd_one(i, w, g, v, bias_start, lr, wd, mu, zero, decay, momentum, nesterov)


@njit(parallel=True, **_JIT)
def sgd_parallel(w, g, v, bias_start, lr, wd, mu, zero, decay, momentum, nesterov):
    for i in prange(w.size):
        _sgd_one(i, w, g, v, bias_start, lr, wd, mu, zero, decay, momentum, nesterov)


# ----------------------------------------------------------------------------- Adam


@njit(inline="always", **_JIT)
def _adam_one(i, w, g, M, V, bias_start, wd, b1, b2, tiny, lr_wd, e, c, zero, l2, decoupled, flush):
    gi = g[i]
    if l2:  # tmp = w * wd; tmp[bias] = 0; tmp += g
        d = w[i] * wd
        if i >= bias_start:
            d = zero
        gi = d + gi
    m = M[i] * b1  # M *= b1
    m = m + gi  # M += g
    if flush:  # M += FLUSH; M -= FLUSH (every FLUSH_EVERY steps)
        m = m + tiny
        m = m - tiny
    M[i] = m
    q = gi * gi  # tmp = g^2
    s = V[i] * b2  # V *= b2
    s = s + q  # V += tmp
    V[i] = s
    wi = w[i]
    if decoupled:  # AdamW: tmp = w * (lr wd); tmp[bias] = 0; w -= tmp
        d = wi * lr_wd
        if i >= bias_start:
            d = zero
        wi = wi - d
    s = math.sqrt(s)  # tmp = sqrt(V)
    s = s + e  # tmp += eps root
    s = m / s  # tmp = M / tmp
    s = s * c  # tmp *= lr (1 - b1) root / bc1
    w[i] = wi - s  # w -= tmp


@njit(**_JIT)
def adam_serial(w, g, M, V, bias_start, wd, b1, b2, tiny, lr_wd, e, c, zero, l2, decoupled, flush):
    for i in range(w.size):
        _adam_one(
            i, w, g, M, V, bias_start, wd, b1, b2, tiny, lr_wd, e, c, zero, l2, decoupled, flush
        )


@njit(parallel=True, **_JIT)
def adam_parallel(
    w, g, M, V, bias_start, wd, b1, b2, tiny, lr_wd, e, c, zero, l2, decoupled, flush
):
    for i in prange(w.size):
        _adam_one(
            i, w, g, M, V, bias_start, wd, b1, b2, tiny, lr_wd, e, c, zero, l2, decoupled, flush
        )


# ----------------------------------------------------------------------------- calling them

_lock = threading.Lock()  # the parallel kernels: one thread at a time (see the docstring)
_local = threading.local()  # per thread: whether the default thread count was applied


def default_threads() -> int:
    """The kernels' thread count where nobody set one: $NNET_THREADS, else the cores this
    process may use; at most Numba's pool size (NUMBA_NUM_THREADS)."""
    pool = numba.config.NUMBA_NUM_THREADS
    text = os.environ.get("NNET_THREADS", "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise NnetError(f"NNET_THREADS must be a whole number >= 1; got {text!r}.")
        return min(n, pool)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, pool))


def threads() -> int:
    """The thread count the parallel kernels use in this thread (see the module docstring)."""
    if not getattr(_local, "ready", False):
        _local.ready = True
        # Untouched (Numba starts every thread at its pool size): apply nnet's default.
        if numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS:
            numba.set_num_threads(default_threads())
    return numba.get_num_threads()


def _launch(parallel, serial, n: int, args: tuple) -> None:
    if threads() > 1 and n >= PARALLEL_MIN and _lock.acquire(blocking=False):
        try:
            parallel(*args)
        finally:
            _lock.release()
    else:
        serial(*args)


def fits(*arrays: Array) -> bool:
    """Whether the kernels can update these arrays (w, g, state): one float dtype, one 2-D
    shape, C-contiguous, writable (w and state). Others take the NumPy path."""
    w = arrays[0]
    return (
        w.ndim == 2
        and w.dtype in (np.float32, np.float64)
        and all(a.dtype == w.dtype and a.shape == w.shape and a.flags.c_contiguous for a in arrays)
        and w.flags.writeable
    )


def sgd(
    w: Array,
    g: Array,
    v: Array | None,
    lr: float,
    *,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
) -> None:
    """One SGD update of w (and its momentum v, None when momentum is 0) in place: exactly
    :meth:`nnet.training.optim.SGD._update` on the whole matrix."""
    dt = w.dtype.type
    vf = np.empty(0, w.dtype) if v is None else v.reshape(-1)
    args = (
        w.reshape(-1), g.reshape(-1), vf, w.size - w.shape[1], dt(lr), dt(weight_decay),
        dt(momentum), dt(0), bool(weight_decay), bool(momentum), bool(nesterov),
    )  # fmt: skip
    _launch(sgd_parallel, sgd_serial, w.size, args)


def adam(
    w: Array,
    g: Array,
    M: Array,
    V: Array,
    *,
    beta1: float,
    beta2: float,
    weight_decay: float,
    decoupled: bool,
    flush: float | None,
    lr_wd: float,
    eps_root: float,
    coef: float,
) -> None:
    """One Adam/AdamW update of w and its sums M, V in place: exactly
    :meth:`nnet.training.optim.Adam._update` on the whole matrix, with the scalars it computes
    (``lr_wd`` = lr wd, ``eps_root`` = eps root, ``coef`` = lr (1 - b1) root / bc1) and
    ``flush`` = FLUSH on the steps that flush subnormals, None on the others."""
    dt = w.dtype.type
    args = (
        w.reshape(-1), g.reshape(-1), M.reshape(-1), V.reshape(-1), w.size - w.shape[1],
        dt(weight_decay), dt(beta1), dt(beta2), dt(0 if flush is None else flush), dt(lr_wd),
        dt(eps_root), dt(coef), dt(0), bool(weight_decay) and not decoupled,
        bool(weight_decay) and decoupled, flush is not None,
    )  # fmt: skip
    _launch(adam_parallel, adam_serial, w.size, args)
