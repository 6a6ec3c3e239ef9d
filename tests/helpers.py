"""Small builders shared by the tests (random networks, batches)."""

from __future__ import annotations

import numpy as np

import nnet


def random_net(
    rng: np.random.Generator,
    hidden: int,
    activation: str | list[str],
    *,
    loss: str = "mse",
    max_width: int = 12,
    dtype: str = "float64",
) -> nnet.Network:
    sizes = [int(s) for s in rng.integers(1, max_width + 1, size=hidden + 2)]
    net = nnet.Network(sizes, activation, loss=loss, seed=rng, dtype=dtype)
    # Weights of order 1 so that every layer matters (and sigmoid is not saturated).
    net.weights = [rng.normal(0, 0.8, w.shape).astype(dtype) for w in net.weights]
    return net


def random_batch(
    rng: np.random.Generator, net: nnet.Network, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0, 1, (batch, net.sizes[0]))
    if net.loss.name == "cross_entropy":
        t = rng.dirichlet(np.ones(net.sizes[-1]), size=batch)
    else:
        t = rng.random((batch, net.sizes[-1]))
    return x, t
