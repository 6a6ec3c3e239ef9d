"""Optimizers: update the weights in place from a gradient, keeping their own state.

Every optimizer has ``step(weights, grads, lr)`` and a ``state`` dict of arrays (momentum or
moment estimates) that checkpoints save and restore, so an interrupted run resumes exactly.

Weight decay (L2) is applied to the weights but never to the bias rows (the last row of each
w^k): shrinking a bias towards 0 does not make the function smoother, it only shifts it.

- ``sgd``: w <- w - lr v with v <- mu v + g (PyTorch's form of momentum; mu = 0 is plain SGD);
  Nesterov: w <- w - lr (g + mu v).
- ``adam``: Kingma & Ba (2015), with L2 decay added to the gradient.
- ``adamw``: Adam with decoupled weight decay (Loshchilov & Hutter 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from nnet.errors import NnetError

Array = np.ndarray


def _decay(w: Array, g: Array, weight_decay: float) -> Array:
    """g + weight_decay * w on every row but the bias row (a new array)."""
    out = g.copy()
    out[:-1] += weight_decay * w[:-1]
    return out


class Optimizer:
    """Base class: subclasses implement ``_update(k, w, g, lr)`` for one weight matrix."""

    name = "base"

    def __init__(self, *, weight_decay: float = 0.0) -> None:
        if not weight_decay >= 0:
            raise NnetError(f"weight decay must be >= 0; got {weight_decay}.")
        self.weight_decay = float(weight_decay)
        self.state: dict[str, Array] = {}
        self.t = 0  # steps taken

    def _buf(self, key: str, like: Array) -> Array:
        buf = self.state.get(key)
        if buf is None:
            buf = self.state[key] = np.zeros_like(like)
        return buf

    def step(self, weights: Sequence[Array], grads: Sequence[Array], lr: float) -> None:
        """One update of every w^k in place, with learning rate ``lr``."""
        self.t += 1
        for k, (w, g) in enumerate(zip(weights, grads, strict=True)):
            self._update(k, w, g, lr)

    def _update(self, k: int, w: Array, g: Array, lr: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def settings(self) -> dict[str, float | bool | str]:
        return {"optimizer": self.name, "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum."""

    name = "sgd"

    def __init__(
        self, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        super().__init__(weight_decay=weight_decay)
        if not 0 <= momentum < 1:
            raise NnetError(f"momentum must be in [0, 1); got {momentum}.")
        if nesterov and momentum == 0:
            raise NnetError("Nesterov momentum needs a momentum > 0.")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def _update(self, k: int, w: Array, g: Array, lr: float) -> None:
        if self.weight_decay:
            g = _decay(w, g, self.weight_decay)
        if self.momentum == 0:
            w -= lr * g
            return
        v = self._buf(f"v{k}", w)
        v *= self.momentum
        v += g
        if self.nesterov:
            w -= lr * (g + self.momentum * v)
        else:
            w -= lr * v

    def settings(self) -> dict[str, float | bool | str]:
        return {**super().settings(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam; ``decoupled=True`` makes it AdamW (decay applied to w directly)."""

    name = "adam"

    def __init__(
        self,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled: bool = False,
    ) -> None:
        super().__init__(weight_decay=weight_decay)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise NnetError(f"Adam betas must be in [0, 1); got {beta1}, {beta2}.")
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.decoupled = bool(decoupled)
        if decoupled:
            self.name = "adamw"

    def _update(self, k: int, w: Array, g: Array, lr: float) -> None:
        if self.weight_decay and not self.decoupled:
            g = _decay(w, g, self.weight_decay)
        m = self._buf(f"m{k}", w)
        v = self._buf(f"v{k}", w)
        tmp = self._scratch(k, w)  # work space: no temporary arrays in the hot loop
        b1, b2 = self.beta1, self.beta2
        bc1, bc2 = 1 - b1**self.t, 1 - b2**self.t  # bias corrections of m and v
        # m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
        m *= b1
        np.multiply(g, 1 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp
        if self.weight_decay and self.decoupled:
            w[:-1] -= (lr * self.weight_decay) * w[:-1]
        # w <- w - (lr / bc1) m / (sqrt(v / bc2) + eps)
        np.multiply(v, 1 / bc2, out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / bc1
        w -= tmp

    def _scratch(self, k: int, like: Array) -> Array:
        """A work array shaped like w^k, not part of the state (never checkpointed)."""
        cache = self.__dict__.setdefault("_work", {})
        buf = cache.get(k)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = cache[k] = np.empty_like(like)
        return buf

    def settings(self) -> dict[str, float | bool | str]:
        return {**super().settings(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


OPTIMIZERS = ("sgd", "adam", "adamw")


def make_optimizer(
    name: str,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> Optimizer:
    """An optimizer by name (sgd, adam, adamw)."""
    if name == "sgd":
        return SGD(momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name in ("adam", "adamw"):
        if momentum or nesterov:
            raise NnetError(f"{name} has no momentum setting; leave --momentum/--nesterov out.")
        return Adam(weight_decay=weight_decay, decoupled=name == "adamw")
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
