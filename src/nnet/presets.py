"""Named training setups: the notes' experiments, and what works best.

A preset is a dictionary of training settings; a command-line flag given explicitly
overrides the preset's value. Keys match the ``nnet train`` flags.
"""

from __future__ import annotations

from typing import Any

# The notes' experiment: the author's network, error, optimizer and initialization.
SEED: dict[str, Any] = {
    "task": "classifier",
    "dataset": "mnist",
    "sizes": [784, 16, 16, 10],
    "activation": ["sigmoid"],
    "loss": "mse",
    "init": ["author"],
    "optimizer": "sgd",
    "lr": 10.0,
    "momentum": 0.5,
    "nesterov": False,
    "weight_decay": 0.0,
    "batch_size": 1000,
    "epochs": 16,
    "dropout": None,
    "schedule": "constant",
    "warmup": 0.0,
    "val": 0,
    "patience": 0,
}

# The author's second experiment: reconstruct the input through a 64-neuron bottleneck.
AUTOENCODER: dict[str, Any] = {**SEED, "task": "autoencoder", "sizes": [784, 64, 784]}

PRESETS: dict[str, dict[str, Any]] = {
    "seed": SEED,
    "autoencoder": AUTOENCODER,
}
