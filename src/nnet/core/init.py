"""Weight initializations, one function per scheme, each filling one w^k.

w^k has shape (#k + 1, #(k+1)); its last row is the bias row. ``author`` is the notes'
author's scheme (every entry, bias row included, uniform in ±sqrt(3/(#k+1))/2);
``author_normal`` is the alternative his article also trained ("Nnet*": every entry
N(0, 1)/sqrt(#k+1)), which he found to do better on these networks. The others
are the standard ones (Glorot & Bengio 2010, He et al. 2015) with a zero bias row. When no
scheme is given, each layer gets the customary one for its activation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnet.errors import NnetError

Array = np.ndarray


def author(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Uniform in ±sqrt(3/(#k+1))/2 for all (#k+1) x #(k+1) entries, bias row included."""
    bound = np.sqrt(3.0 / (fan_in + 1)) / 2
    return rng.uniform(-bound, bound, size=(fan_in + 1, fan_out))


def author_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """N(0, 1)/sqrt(#k+1) for all (#k+1) x #(k+1) entries, bias row included."""
    return rng.standard_normal((fan_in + 1, fan_out)) / np.sqrt(fan_in + 1)


def _with_zero_bias(w: Array) -> Array:
    return np.vstack([w, np.zeros((1, w.shape[1]))])


def glorot_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Uniform in ±sqrt(6/(fan_in + fan_out)); zero bias row."""
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return _with_zero_bias(rng.uniform(-bound, bound, size=(fan_in, fan_out)))


def glorot_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Normal with variance 2/(fan_in + fan_out); zero bias row."""
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return _with_zero_bias(rng.normal(0.0, std, size=(fan_in, fan_out)))


def he_normal(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Normal with variance 2/fan_in (for ReLU-like layers); zero bias row."""
    return _with_zero_bias(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out)))


def he_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> Array:
    """Uniform in ±sqrt(6/fan_in) (variance 2/fan_in); zero bias row."""
    bound = np.sqrt(6.0 / fan_in)
    return _with_zero_bias(rng.uniform(-bound, bound, size=(fan_in, fan_out)))


INITS: dict[str, Callable[[int, int, np.random.Generator], Array]] = {
    "author": author,
    "author_normal": author_normal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
}

# The customary scheme for a layer whose neurons use this activation.
DEFAULT_INIT_FOR_ACTIVATION = {
    "relu": "he_normal",
    "leaky_relu": "he_normal",
    "elu": "he_normal",
    "sigmoid": "glorot_uniform",
    "tanh": "glorot_uniform",
    "identity": "glorot_uniform",
}


def check_init(name: str) -> str:
    if name not in INITS:
        known = ", ".join(INITS)
        raise NnetError(f"unknown initialization {name!r}: expected one of {known}.")
    return name
