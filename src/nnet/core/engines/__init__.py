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

# Every engine is gradients(net, fp, t, *, out=None): the gradient from a forward pass.
Engine = Callable[..., list[Array]]

ENGINE_FUNCTIONS: dict[str, Engine] = {
    "recursive": recursive.gradients,
    "matrix": matrix.gradients,
    "frontprop": frontprop.gradients,
    "backprop": backprop.gradients,
}

ENGINES: tuple[str, ...] = tuple(ENGINE_FUNCTIONS)


def get_engine(engine: str) -> Engine:
    """The engine function named ``engine``; NnetError listing the known ones otherwise."""
    if engine not in ENGINE_FUNCTIONS:
        raise NnetError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}.")
    return ENGINE_FUNCTIONS[engine]


def gradients(
    net: Network, x: Any, t: Any, *, engine: str = "backprop", masks: Masks = None
) -> list[Array]:
    """The gradient of the mean over the batch of E(x, t), one array per w^k.

    ``x`` has shape (B, #0), ``t`` shape (B, #L); the result is a list shaped like
    ``net.weights`` (same shapes, the network's dtype). ``masks`` are dropout masks for
    layers 0 ... L-1 (see `Network.propagate`); every engine differentiates the same
    dropped network.
    """
    fn = get_engine(engine)
    fp = net.forward_pass(x, masks=masks)
    return fn(net, fp, net.check_t(t, fp.B))
