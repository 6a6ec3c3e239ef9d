"""Optimizers: update the weights in place from a gradient, keeping their own state.

Every optimizer has ``step(weights, grads, lr)`` and a ``state`` dict of arrays (momentum or
moment estimates) that checkpoints save and restore, so an interrupted run resumes exactly.

Weight decay (L2) is applied to the weights but never to the bias rows (the last row of each
w^k): shrinking a bias towards 0 does not make the function smoother, it only shifts it.

- ``sgd``: w <- w - lr v with v <- mu v + g (PyTorch's form of momentum; mu = 0 is plain SGD);
  Nesterov: w <- w - lr (g + mu v).
- ``adam``: Kingma & Ba (2015), with L2 decay added to the gradient.
- ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter 2019).

Speed: an update is a dozen element-wise passes over arrays as large as the weights
(784-800-800-10: 1.3 M numbers, 5 MB each in float32). Done on whole arrays, every pass goes
to main memory; the updates here run on blocks of rows small enough that all the passes of a
block stay in the CPU cache. Each number sees exactly the same operations in the same
order either way, so the result does not depend on the blocks.

Kernels: with Numba installed (``pip install 'nnet[fast]'``), the update of each matrix runs
instead as one fused, compiled loop (:mod:`nnet.kernels`) that makes the same
operations in the same order, so its results are the NumPy ones bit for bit, in one pass
over memory instead of ten. ``kernels=`` chooses: ``"auto"`` (the fused kernels when Numba
loads, else the NumPy ones, with one notice line on stderr per process), ``"numba"`` (an
NnetError without Numba) or ``"numpy"`` (the reference); None, the default, takes
``$NNET_KERNELS``, else ``"auto"``. The ``state`` is the same arrays under the same names
either way, so a checkpoint written with one resumes with the other.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from nnet.errors import NnetError
from nnet.kernel_choice import check_kernels, fused_kernels

Array = np.ndarray

FLUSH = 2.0**-100  # see Adam._update
FLUSH_EVERY = 8  # steps between two flushes of subnormal numbers (Adam._update)
BLOCK = 65536  # numbers per block: the arrays of one block fit in a core's cache


class Optimizer:
    """Base class: subclasses implement ``_update(k, rows, w, g, lr, tmp)`` for one block,
    the NumPy reference, and ``_fused(kernels, k, w, g, lr)``, the same update of a whole
    matrix by the compiled kernels.

    ``w`` and ``g`` are the rows ``rows`` of w^k and its gradient; the state arrays are
    sliced the same way; ``tmp`` is scratch space shaped like ``w``; ``rows.stop`` equal to
    the number of rows of w^k means the block holds the bias row (its last row).
    """

    name = "base"
    state_names: tuple[str, ...] = ()

    def __init__(self, *, weight_decay: float = 0.0, kernels: str | None = None) -> None:
        if not weight_decay >= 0:
            raise NnetError(f"weight decay must be >= 0; got {weight_decay}.")
        self.weight_decay = float(weight_decay)
        self.kernels = check_kernels(kernels)  # asked for: auto, numba or numpy
        self.state: dict[str, Array] = {}
        self.t = 0  # steps taken
        self._scratch: dict[tuple, Array] = {}  # kept between steps: no allocation

    def step(self, weights: Sequence[Array], grads: Sequence[Array], lr: float) -> None:
        """One update of every w^k in place, with learning rate ``lr``."""
        self.t += 1
        fused = fused_kernels(self.kernels)
        tasks = []
        for k, (w, g) in enumerate(zip(weights, grads, strict=True)):
            for name in self.state_names:
                if self.state.get(f"{name}{k}") is None:
                    self.state[f"{name}{k}"] = np.zeros_like(w)
            state = [self.state[f"{name}{k}"] for name in self.state_names]
            if fused is not None and fused.fits(w, g, *state):
                self._fused(fused, k, w, g, lr)
                continue
            rows = max(1, BLOCK // max(1, w.shape[1]))
            tasks += [(k, w, g, slice(r, r + rows)) for r in range(0, w.shape[0], rows)]
        self._run(tasks, lr)

    def _run(self, tasks: list[tuple[int, Array, Array, slice]], lr: float) -> None:
        scratch = self._scratch
        for k, w, g, rows in tasks:
            wb, gb = w[rows], g[rows]
            tmp = scratch.get((wb.shape, wb.dtype))
            if tmp is None:
                tmp = scratch[(wb.shape, wb.dtype)] = np.empty_like(wb)
            stop = w.shape[0] if rows.stop > w.shape[0] else rows.stop
            self._update(k, slice(rows.start, stop), wb, gb, lr, tmp, stop == w.shape[0])

    def _update(
        self, k: int, rows: slice, w: Array, g: Array, lr: float, tmp: Array, has_bias: bool
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    def _fused(self, kernels: ModuleType, k: int, w: Array, g: Array, lr: float) -> None:
        raise NotImplementedError  # pragma: no cover

    @property
    def backend(self) -> str:
        """The kernels that run: ``"numba"`` (fused) or ``"numpy"`` (the reference)."""
        return "numpy" if fused_kernels(self.kernels) is None else "numba"

    def _decayed(self, w: Array, g: Array, tmp: Array, has_bias: bool) -> Array:
        """g + weight_decay * w, except on the bias row, written into ``tmp``."""
        np.multiply(w, self.weight_decay, out=tmp)
        if has_bias:
            tmp[-1] = 0
        tmp += g
        return tmp

    def settings(self) -> dict[str, float | bool | str]:
        return {"optimizer": self.name, "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    name = "sgd"

    def __init__(
        self,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        kernels: str | None = None,
    ) -> None:
        super().__init__(weight_decay=weight_decay, kernels=kernels)
        if not 0 <= momentum < 1:
            raise NnetError(f"momentum must be in [0, 1); got {momentum}.")
        if nesterov and momentum == 0:
            raise NnetError("Nesterov momentum needs a momentum > 0.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.state_names = ("v",) if self.momentum else ()

    def _update(
        self, k: int, rows: slice, w: Array, g: Array, lr: float, tmp: Array, has_bias: bool
    ) -> None:
        if self.weight_decay:
            g = self._decayed(w, g, tmp, has_bias).copy()
        if self.momentum == 0:
            np.multiply(g, lr, out=tmp)
            w -= tmp
            return
        v = self.state[f"v{k}"][rows]
        v *= self.momentum
        v += g
        if self.nesterov:  # w -= lr (g + mu v)
            np.multiply(v, self.momentum, out=tmp)
            tmp += g
        else:  # w -= lr v
            np.copyto(tmp, v)
        tmp *= lr
        w -= tmp

    def _fused(self, kernels: ModuleType, k: int, w: Array, g: Array, lr: float) -> None:
        v = self.state[f"v{k}"] if self.momentum else None
        kernels.sgd(w, g, v, lr, weight_decay=self.weight_decay, momentum=self.momentum,
                    nesterov=self.nesterov)  # fmt: skip

    def settings(self) -> dict[str, float | bool | str]:
        return {**super().settings(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam; ``decoupled=True`` makes it AdamW (decay applied to w directly).

    Kingma & Ba's moments are m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2. The state
    keeps them as the plain exponential sums M = m / (1 - b1) and V = v / (1 - b2), which
    obey M <- b1 M + g and V <- b2 V + g^2: one element-wise pass fewer each, and the
    constant factors go into the step's coefficient instead (see ``_update``). The state
    arrays are named ``m_sum{k}`` and ``v_sum{k}`` so that nobody mistakes them for m and v.
    """

    name = "adam"
    state_names = ("m_sum", "v_sum")

    def __init__(
        self,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
        kernels: str | None = None,
    ) -> None:
        super().__init__(weight_decay=weight_decay, kernels=kernels)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise NnetError(f"Adam betas must be in [0, 1); got {beta1}, {beta2}.")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.decoupled = bool(decoupled)
        if decoupled:
            self.name = "adamw"

    def _update(
        self, k: int, rows: slice, w: Array, g: Array, lr: float, tmp: Array, has_bias: bool
    ) -> None:
        if self.weight_decay and not self.decoupled:
            g = self._decayed(w, g, tmp, has_bias).copy()  # L2: g + wd w (not the bias row)
        M = self.state[f"m_sum{k}"][rows]
        V = self.state[f"v_sum{k}"][rows]
        b1, b2 = self.beta1, self.beta2
        # M <- b1 M + g, i.e. m <- b1 m + (1 - b1) g with m = (1 - b1) M
        M *= b1
        M += g
        if self.t % FLUSH_EVERY == 0:
            # Flush M's subnormal numbers to 0: the moments of weights whose gradient is
            # almost always 0 (MNIST's border pixels) decay below the smallest normal float,
            # and arithmetic on subnormals is ~100x slower on x86. Adding and removing 2^-100
            # rounds exactly the tiny ones: numbers above 2^-76 (float32) are unchanged,
            # smaller ones move by less than 1e-37. A number that crossed below the normal
            # range since the last flush is subnormal for at most FLUSH_EVERY steps.
            M += FLUSH
            M -= FLUSH
        # V <- b2 V + g^2, i.e. v <- b2 v + (1 - b2) g^2 with v = (1 - b2) V
        np.square(g, out=tmp)
        V *= b2
        V += tmp
        if self.weight_decay and self.decoupled:  # AdamW: w <- w - lr wd w (not the bias)
            np.multiply(w, lr * self.weight_decay, out=tmp)
            if has_bias:
                tmp[-1] = 0
            w -= tmp
        e, c = self._coefficients(lr)
        np.sqrt(V, out=tmp)
        tmp += e
        np.divide(M, tmp, out=tmp)
        tmp *= c
        w -= tmp

    def _coefficients(self, lr: float) -> tuple[float, float]:
        """e and c of the step w <- w - c M / (sqrt(V) + e).

        With bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t:
        w <- w - (lr / bc1) m / (sqrt(v / bc2) + eps)
           = w - c M / (sqrt(V) + e),  c = lr (1 - b1) sqrt(bc2 / (1 - b2)) / bc1,
                                       e = eps sqrt(bc2 / (1 - b2))
        """
        b1, b2 = self.beta1, self.beta2
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t
        root = math.sqrt(bc2 / (1 - b2))
        return self.eps * root, lr * (1 - b1) * root / bc1

    def _fused(self, kernels: ModuleType, k: int, w: Array, g: Array, lr: float) -> None:
        e, c = self._coefficients(lr)
        kernels.adam(
            w, g, self.state[f"m_sum{k}"], self.state[f"v_sum{k}"],
            beta1=self.beta1, beta2=self.beta2, weight_decay=self.weight_decay,
            decoupled=self.decoupled, flush=FLUSH if self.t % FLUSH_EVERY == 0 else None,
            lr_wd=lr * self.weight_decay, eps_root=e, coef=c,
        )  # fmt: skip

    def settings(self) -> dict[str, float | bool | str]:
        return {**super().settings(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(
    name: str,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    kernels: str | None = None,
) -> Optimizer:
    """An optimizer by name (sgd, adam, adamw); ``kernels``: auto, numba or numpy (None:
    ``$NNET_KERNELS``, else auto), see the module docstring."""
    if name == "sgd":
        return SGD(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                   kernels=kernels)  # fmt: skip
    if name in ("adam", "adamw"):
        if momentum or nesterov:
            raise NnetError(f"{name} has no momentum setting; leave --momentum/--nesterov out.")
        return Adam(weight_decay=weight_decay, decoupled=name == "adamw", kernels=kernels)
    raise NnetError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}.")


# ----------------------------------------------------------------------------- schedules

SCHEDULES = ("constant", "step", "cosine")


def make_schedule(
    name: str,
    lr: float,
    *,
    epochs: int,
    warmup: float = 0.0,
    step_every: float = 1.0,
    gamma: float = 0.5,
    min_lr: float = 0.0,
) -> Callable[[float], float]:
    """The learning rate as a function of the fractional epoch p (0 at the start).

    - ``constant``: lr;
    - ``step``: lr * gamma^floor(p / step_every);
    - ``cosine``: from lr down to ``min_lr`` along half a cosine over the epochs after the
      warm-up (Loshchilov & Hutter 2017, without restarts).

    ``warmup`` > 0 ramps the rate linearly from (almost) 0 up to lr over the first ``warmup``
    epochs (Goyal et al. 2017), then the schedule takes over.
    """
    if name not in SCHEDULES:
        raise NnetError(f"unknown schedule {name!r}: expected one of {', '.join(SCHEDULES)}.")
    if not lr > 0:
        raise NnetError(f"the learning rate must be > 0; got {lr}.")
    if warmup < 0 or (epochs > 0 and warmup >= epochs):
        raise NnetError(f"warm-up must be >= 0 and shorter than the {epochs} epochs; got {warmup}.")
    if name == "step" and not (step_every > 0 and 0 < gamma <= 1):
        raise NnetError(
            f"step schedule needs step_every > 0 and 0 < gamma <= 1; got {step_every}, {gamma}."
        )

    def rate(p: float) -> float:
        if p < warmup:
            return lr * max(p, 1e-3) / warmup
        if name == "constant":
            return lr
        if name == "step":
            return lr * gamma ** math.floor(p / step_every)
        span = max(epochs - warmup, 1e-12)
        progress = min(max((p - warmup) / span, 0.0), 1.0)
        return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return rate
