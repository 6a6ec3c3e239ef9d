"""Activation functions g and their derivatives g'.

The notes write a^k_j = g(h^k_j) with one g for the whole network; `nnet` allows one per
layer. Each activation is a pair (g, g') that works on NumPy arrays of any shape, so the
engines read like the equations: ``a = g(h)`` and ``g.prime(h, a)`` for g'(h).
``g(h, out=buffer)`` writes into an existing array (the forward pass reuses its buffers).

``prime`` may use ``a = g(h)`` when the caller already has it (sigmoid: g' = a(1 - a)),
which saves recomputing a transcendental function; the result is the same number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnet.errors import NnetError

Array = np.ndarray


@dataclass(frozen=True)
class Activation:
    """A named activation: ``g(h)`` and its derivative ``prime(h, a)`` = g'(h)."""

    name: str
    g: Callable[[Array, Array | None], Array]
    _prime: Callable[[Array, Array | None], Array]
    _times_prime: Callable[[Array, Array, Array | None], None] | None = None

    def __call__(self, h: Array, out: Array | None = None) -> Array:
        """g(h), into ``out`` (same shape as h) when given."""
        return self.g(h, out)

    def prime(self, h: Array, a: Array | None = None) -> Array:
        """g'(h); ``a`` (= g(h), same shape) is used when given to avoid recomputation."""
        return self._prime(h, a)

    def times_prime(self, delta: Array, h: Array, a: Array | None = None) -> Array:
        """delta *= g'(h), in place: backpropagation's step through the activation.

        The same numbers as ``delta * prime(h, a)``, without forming g'(h) where it is
        not needed (identity: nothing to do; ReLU: a mask).
        """
        if self._times_prime is not None:
            self._times_prime(delta, h, a)
        else:
            delta *= self._prime(h, a)
        return delta

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


def _sigmoid(h: Array, out: Array | None = None) -> Array:
    # 1/(1+e^-h) = (1 + tanh(h/2))/2: one transcendental, no overflow for any h.
    if out is None:
        return 0.5 * (1.0 + np.tanh(0.5 * h))
    np.multiply(h, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def _sigmoid_prime(h: Array, a: Array | None) -> Array:
    s = _sigmoid(h) if a is None else a
    return s * (1.0 - s)


def _tanh_prime(h: Array, a: Array | None) -> Array:
    t = np.tanh(h) if a is None else a
    return 1.0 - t * t


def _tanh(h: Array, out: Array | None = None) -> Array:
    return np.tanh(h, out=out)


def _relu(h: Array, out: Array | None = None) -> Array:
    return np.maximum(h, 0, out=out)


def _relu_times_prime(delta: Array, h: Array, a: Array | None) -> None:
    np.multiply(delta, h > 0, out=delta)


def _identity_times_prime(delta: Array, h: Array, a: Array | None) -> None:
    return None


def _relu_prime(h: Array, a: Array | None) -> Array:
    # The derivative at exactly 0 is taken as 0 (the usual subgradient choice).
    return (h > 0).astype(h.dtype)


LEAKY_SLOPE = 0.01  # the customary slope of leaky ReLU for h < 0 (not a setting to edit)


def _leaky_relu(h: Array, out: Array | None = None) -> Array:
    # max(h, slope h) for a slope below 1
    if out is None:
        return np.maximum(h, LEAKY_SLOPE * h)
    np.multiply(h, LEAKY_SLOPE, out=out)
    return np.maximum(h, out, out=out)


def _leaky_relu_prime(h: Array, a: Array | None) -> Array:
    return np.where(h > 0, 1.0, LEAKY_SLOPE).astype(h.dtype)


def _elu(h: Array, out: Array | None = None) -> Array:
    # ELU with alpha = 1: smooth (C^1) everywhere, h for h > 0, e^h - 1 below.
    if out is None:
        return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))
    np.minimum(h, 0, out=out)
    np.expm1(out, out=out)
    np.copyto(out, h, where=h > 0)
    return out


def _elu_prime(h: Array, a: Array | None) -> Array:
    return np.where(h > 0, 1.0, np.exp(np.minimum(h, 0))).astype(h.dtype)


def _identity(h: Array, out: Array | None = None) -> Array:
    if out is None:
        return h.copy()
    np.copyto(out, h)
    return out


def _identity_prime(h: Array, a: Array | None) -> Array:
    return np.ones_like(h)


ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in (
        Activation("sigmoid", _sigmoid, _sigmoid_prime),
        Activation("tanh", _tanh, _tanh_prime),
        Activation("relu", _relu, _relu_prime, _relu_times_prime),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_prime),
        Activation("elu", _elu, _elu_prime),
        Activation("identity", _identity, _identity_prime, _identity_times_prime),
    )
}


def get_activation(name: str) -> Activation:
    """The activation called ``name``; a ValueError lists the known names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(ACTIVATIONS)
        raise NnetError(f"unknown activation {name!r}: expected one of {known}.") from None
