"""Finite-difference checks of the engines' gradients.

Two checks, both by central differences (E(w + eps) - E(w - eps)) / (2 eps) of the batch mean
of E, always computed in float64 on a float64 copy of the network:

- ``numerical_gradients``: every weight, one pair of forward passes each (exact reference,
  cost 2 x #weights forward passes);
- ``directional_error``: the derivative along random unit directions v, compared with
  <grad, v> (after HIPS/autograd: a few forward passes at any size).

The relative error of a gradient against a reference is, per weight matrix w^k,
max |g - r| / max(max |g|, max |r|), and the largest over k; a matrix whose gradient is
exactly zero in both counts as error 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nnet.core.engines import ENGINES, gradients
from nnet.core.network import Masks, Network

Array = np.ndarray


def relative_error(grads: Sequence[Array], reference: Sequence[Array]) -> float:
    """max over k of max|g - r| / max(|g|, |r|) for the weight matrices w^k."""
    worst = 0.0
    for g, r in zip(grads, reference, strict=True):
        g = np.asarray(g, dtype=np.float64)
        r = np.asarray(r, dtype=np.float64)
        scale = max(np.abs(g).max(), np.abs(r).max())
        if scale > 0:
            worst = max(worst, float(np.abs(g - r).max() / scale))
    return worst


def numerical_gradients(
    net: Network, x: Any, t: Any, *, eps: float = 1e-6, masks: Masks = None
) -> list[Array]:
    """Central differences of the batch mean of E for every weight (float64).

    ``masks`` (dropout) are held fixed, so the function differentiated is the dropped
    network's, as in the engines.
    """
    n64 = net.copy("float64")
    x = n64.check_x(x)
    t = n64.check_t(t, x.shape[0])
    ws = n64.workspace(x.shape[0])

    def E() -> float:
        return np.mean(n64.loss.value(n64.forward_pass(x, masks=masks, ws=ws).O, t))

    out = []
    for w in n64.weights:
        g = np.zeros_like(w)
        flat, gflat = w.reshape(-1), g.reshape(-1)
        for idx in range(flat.size):
            old = flat[idx]
            flat[idx] = old + eps
            e_plus = E()
            flat[idx] = old - eps
            e_minus = E()
            flat[idx] = old
            gflat[idx] = (e_plus - e_minus) / (2 * eps)
        out.append(g)
    return out


def directional_error(
    net: Network,
    x: Any,
    t: Any,
    grads: Sequence[Array],
    *,
    rng: np.random.Generator,
    directions: int = 8,
    eps: float = 1e-6,
) -> float:
    """Largest relative error of <grads, v> against the central difference along v.

    Each v is a random unit vector over all weights; the error is normalized by the
    gradient's norm (so a direction nearly orthogonal to it cannot inflate the ratio).
    """
    n64 = net.copy("float64")
    x = n64.check_x(x)
    t = n64.check_t(t, x.shape[0])
    base = [w.copy() for w in n64.weights]
    gnorm = np.sqrt(sum(float(np.sum(np.asarray(g, np.float64) ** 2)) for g in grads))
    worst = 0.0
    for _ in range(directions):
        v = [rng.standard_normal(w.shape) for w in base]
        norm = np.sqrt(sum(float(np.sum(vk * vk)) for vk in v))
        v = [vk / norm for vk in v]
        values = []
        for sign in (1.0, -1.0):
            n64.weights = [w + sign * eps * vk for w, vk in zip(base, v, strict=True)]
            values.append(np.mean(n64.loss.value(n64.forward(x), t)))
        fd = (values[0] - values[1]) / (2 * eps)
        analytic = sum(
            float(np.sum(np.asarray(g, np.float64) * vk)) for g, vk in zip(grads, v, strict=True)
        )
        scale = max(gnorm, abs(fd))
        if scale > 0:
            worst = max(worst, abs(analytic - fd) / scale)
    return worst


def check_engines(
    net: Network,
    x: Any,
    t: Any,
    *,
    engines: Sequence[str] = ENGINES,
    full: bool = True,
    rng: np.random.Generator | None = None,
    directions: int = 8,
) -> dict[str, Any]:
    """Each engine's relative error against finite differences, and their agreement.

    Returns ``{"fd": {engine: error}, "agreement": {engine: error vs the first engine},
    "method": "full" | "directional"}``.
    """
    grads = {e: gradients(net, x, t, engine=e) for e in engines}
    if full:
        ref = numerical_gradients(net, x, t)
        fd = {e: relative_error(g, ref) for e, g in grads.items()}
    else:
        rng = rng if rng is not None else np.random.default_rng(0)
        state = rng.bit_generator.state
        fd = {}
        for e, g in grads.items():
            rng.bit_generator.state = state  # the same directions for every engine
            fd[e] = directional_error(net, x, t, g, rng=rng, directions=directions)
    first = engines[0]
    agreement = {e: relative_error(g, grads[first]) for e, g in grads.items()}
    return {"fd": fd, "agreement": agreement, "method": "full" if full else "directional"}
