"""The four gradient engines, from the notes' recursion to backpropagation.

All four compute the same thing — the gradient of the batch mean of E with respect to every
w^k — and are tested equal to each other and to finite differences:

========== ================================================================= =============
engine     what it is                                                        module
========== ================================================================= =============
recursive  equation (2) literally, one scalar derivative at a time (Python)  ``recursive``
matrix     equations (3)-(6): the tensors A^{l,q}_k, batched with NumPy      ``matrix``
frontprop  (3)-(6) factored: A^{l,q}_k[i, j] = a^k_i M^l_k[q, j]             ``frontprop``
backprop   reverse-mode error terms delta^l                                  ``backprop``
========== ================================================================= =============
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnet.core.engines import backprop, frontprop, matrix, recursive
from nnet.core.network import Masks, Network
from nnet.errors import NnetError

Array = np.ndarray

_ENGINES: dict[str, Callable[..., list[Array]]] = {
    "recursive": recursive.gradients,
    "matrix": matrix.gradients,
    "frontprop": frontprop.gradients,
    "backprop": backprop.gradients,
}

ENGINES: tuple[str, ...] = tuple(_ENGINES)


def check_engine(engine: str) -> str:
    if engine not in _ENGINES:
        raise NnetError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}.")
    return engine


def gradients(
    net: Network, x: Any, t: Any, *, engine: str = "backprop", masks: Masks = None
) -> list[Array]:
    """The gradient of the mean over the batch of E(x, t), one array per w^k.

    ``x`` has shape (B, #0), ``t`` shape (B, #L); the result is a list shaped like
    ``net.weights`` (same shapes, the network's dtype). After the call, ``net.h`` and
    ``net.a`` hold the forward pass of this batch. ``masks`` are dropout masks for layers
    0 ... L-1 (see `Network.forward`); every engine differentiates the same dropped network.
    """
    fn = _ENGINES[check_engine(engine)]
    x = net.check_x(x)
    t = net.check_t(t, x.shape[0])
    return fn(net, x, t, masks=masks)
