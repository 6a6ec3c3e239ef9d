"""Fused element-wise kernels compiled with Numba: the optional extra ``nnet[fast]``.

Two kinds, each beside the NumPy code it replaces, which stays the reference and what runs
without Numba (:mod:`nnet.kernel_choice` chooses, without importing this module):

- the optimizers' updates (below), called from :mod:`nnet.training.optim`;
- the layers' element-wise work (section "layers"): a^l = g(h^l) times the dropout mask and
  delta *= g'(h^l) for ReLU and the sigmoid, called from :mod:`nnet.core.network`; the
  dropout mask from its uniform draws and the batch gather, called from
  :mod:`nnet.training.loop`. Each makes NumPy's operations in the same order, so the
  numbers are the same bit for bit.

This module sits outside the layers of the package (it imports only NumPy, Numba and
:mod:`nnet.errors`), so that the network at the bottom and the training loop above it can
both call it.

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


# ----------------------------------------------------------------------------- layers
# The forward pass's a^l = g(h^l) (times the dropout mask), backpropagation's step
# delta *= g'(h^l) (times the mask), the drawing of a dropout mask and the batch gather,
# each one loop over the (B, n) numbers. ``a`` is the whole a^l with its bias column
# (C-contiguous, shape (B, n + 1)): the loops write its first n columns, which NumPy can
# only reach through a strided view.


@njit(**_JIT)
def relu_forward(h, a, m, masked, zero):
    """a = np.maximum(h, 0) (NaN stays NaN, -0 becomes +0, as NumPy's); a *= m."""
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            v = h[b, j]
            if not (v > zero or v != v):
                v = zero
            if masked:
                v = v * m[b, j]
            a[b, j] = v


@njit(**_JIT)
def relu_backward(delta, h, m, masked, zero, one):
    """delta *= (h > 0) (unmasked), or delta *= (h > 0) * m (g'(h) times the mask)."""
    for b in range(h.shape[0]):
        for j in range(h.shape[1]):
            if masked:
                f = m[b, j] if h[b, j] > zero else zero
            else:
                f = one if h[b, j] > zero else zero
            delta[b, j] = delta[b, j] * f


@njit(**_JIT)
def sigmoid_finish(t, a, m, masked, one, half):
    """From t = tanh(h / 2) (NumPy's tanh, computed before): a = (t + 1) / 2, a *= m."""
    for b in range(t.shape[0]):
        for j in range(t.shape[1]):
            v = t[b, j] + one
            v = v * half
            if masked:
                v = v * m[b, j]
            a[b, j] = v


@njit(**_JIT)
def sigmoid_backward(delta, a, one):
    """delta *= a (1 - a), a = sigmoid(h) (no mask: a^l is g(h^l) itself)."""
    for b in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            s = a[b, j]
            f = one - s
            f = s * f
            delta[b, j] = delta[b, j] * f


@njit(**_JIT)
def dropout_mask(m, p, scale, zero):
    """From uniform draws m in [0, 1): m = (m >= p) * scale, the inverted-dropout mask."""
    for b in range(m.shape[0]):
        for j in range(m.shape[1]):
            m[b, j] = scale if m[b, j] >= p else zero


@njit(**_JIT)
def gather_serial(x, idx, out):
    """out[i] = x[idx[i]] (np.take along rows)."""
    for i in range(idx.size):
        r = idx[i]
        for j in range(x.shape[1]):
            out[i, j] = x[r, j]


@njit(parallel=True, **_JIT)
def gather_parallel(x, idx, out):
    for i in prange(idx.size):
        r = idx[i]
        for j in range(x.shape[1]):
            out[i, j] = x[r, j]


# ----------------------------------------------------------------------------- calling them

_lock = threading.Lock()  # the parallel kernels: one thread at a time (see the docstring)
_local = threading.local()  # per thread: whether the default thread count was applied


def default_threads() -> int:
    """The kernels' thread count where nobody set one: $NNET_THREADS, else (or for auto) the
    cores this process may use; at most Numba's pool size (NUMBA_NUM_THREADS). The commands
    set $NNET_THREADS to the count they chose (nnet.training.threads)."""
    pool = numba.config.NUMBA_NUM_THREADS
    text = os.environ.get("NNET_THREADS", "").strip()
    if text and text.lower() != "auto":
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


def _launch(parallel, serial, n: int, args: tuple, at_least: int = PARALLEL_MIN) -> None:
    if threads() > 1 and n >= at_least and _lock.acquire(blocking=False):
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


def _fits_layer(*arrays: Array) -> bool:
    """Whether the layer kernels can take these arrays: one float dtype, C-contiguous."""
    dt = arrays[0].dtype
    return dt in (np.float32, np.float64) and all(
        a.dtype == dt and a.flags.c_contiguous for a in arrays
    )


def activate(name: str, h: Array, a: Array, mask: Array | None, work: Array) -> bool:
    """a^l = g(h^l) (times ``mask``) written into the first columns of ``a`` = a^l with its
    bias column, for g = relu or sigmoid; ``work`` is scratch space shaped like h. False
    (nothing done) for other activations or arrays: the caller runs the NumPy code.

    Exactly the NumPy code of :meth:`nnet.core.network.Network.propagate`: relu's max in
    one pass; the sigmoid's tanh by NumPy, then the rest of (1 + tanh(h/2))/2 in one pass."""
    arrays = (h, a, work) if mask is None else (h, a, work, mask)
    if name not in ("relu", "sigmoid") or not _fits_layer(*arrays):
        return False
    dt = h.dtype.type
    m = work if mask is None else mask  # any array of the right type where none is used
    if name == "relu":
        relu_forward(h, a, m, mask is not None, dt(0))
    else:
        np.multiply(h, 0.5, out=work)
        np.tanh(work, out=work)
        sigmoid_finish(work, a, m, mask is not None, dt(1), dt(0.5))
    return True


def times_gprime(name: str, delta: Array, h: Array, a: Array, mask: Array | None) -> bool:
    """delta *= g'(h^l) (times ``mask``) in place for relu (masked or not) and sigmoid (not
    masked; ``a`` = a^l with its bias column); False (nothing done) otherwise."""
    if name == "relu" and _fits_layer(delta, h, *(() if mask is None else (mask,))):
        dt = h.dtype.type
        relu_backward(delta, h, h if mask is None else mask, mask is not None, dt(0), dt(1))
        return True
    if name == "sigmoid" and mask is None and _fits_layer(delta, a):
        sigmoid_backward(delta, a, delta.dtype.type(1))
        return True
    return False


def make_dropout_mask(m: Array, p: float) -> bool:
    """From uniform draws m: m = (m >= p) / (1 - p) in place, exactly as NumPy's
    ``np.multiply(m >= p, dtype(1 / (1 - p)), out=m)`` (p compared in m's dtype, as NumPy 2
    compares a Python float); False for arrays the kernel cannot take."""
    if not _fits_layer(m):
        return False
    dt = m.dtype.type
    dropout_mask(m, dt(p), dt(1.0 / (1.0 - p)), dt(0))
    return True


# numbers gathered below which one thread does it: a batch of MNIST rows is at most a few
# 2^20, and two threads gathered 1000 rows slower than one on a busy 2-core machine
GATHER_PARALLEL_MIN = 2**22


def gather(x: Array, idx: Array, out: Array) -> bool:
    """out = x[idx] (whole rows), two or more threads for large batches; False for arrays
    the kernel cannot take (the caller then uses np.take)."""
    if not (
        x.ndim == 2
        and out.shape == (idx.size, x.shape[1])
        and x.dtype == out.dtype
        and x.flags.c_contiguous
        and out.flags.c_contiguous
        and idx.dtype == np.intp
    ):
        return False
    _launch(gather_parallel, gather_serial, out.size, (x, idx, out), GATHER_PARALLEL_MIN)
    return True


def warm_up(dtype: str = "float32") -> None:
    """Compile (or load from the cache) every kernel a training run of ``dtype`` calls, on
    tiny arrays: what ``nnet bench`` times as the one-time cost."""
    dt = np.dtype(dtype).type
    w, g, M, V = (np.full((3, 2), 0.5, dt) for _ in range(4))
    sgd(w, g, M, 0.1, weight_decay=0.0, momentum=0.5, nesterov=False)
    adam(w, g, M, V, beta1=0.9, beta2=0.999, weight_decay=0.0, decoupled=False, flush=None,
         lr_wd=0.0, eps_root=1e-8, coef=1e-3)  # fmt: skip
    h, a, work = np.ones((2, 2), dt), np.ones((2, 3), dt), np.empty((2, 2), dt)
    for name in ("relu", "sigmoid"):
        for mask in (None, np.ones((2, 2), dt)):
            activate(name, h, a, mask, work)
            times_gprime(name, work, h, a, mask)
    make_dropout_mask(np.full((2, 2), 0.5, dt), 0.5)
    gather(np.ones((4, 3), dt), np.arange(2), np.empty((2, 3), dt))
