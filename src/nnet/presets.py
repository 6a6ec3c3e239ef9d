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
    "engine": "backprop",
    "seed": 0,
    "dtype": "float32",
    "train_samples": None,
}

# The author's second experiment: reconstruct the input through a 64-neuron bottleneck.
AUTOENCODER: dict[str, Any] = {**SEED, "task": "autoencoder", "sizes": [784, 64, 784]}

# Beyond the notes: what trains the most accurate MLP on MNIST within two CPU minutes,
# chosen on a validation split among the runs of benchmarks/choose_best.py (see the README).
BEST: dict[str, Any] = {
    **SEED,
    "sizes": [784, 800, 800, 10],
    "activation": ["relu"],
    "loss": "cross_entropy",
    "init": None,  # He normal, the customary one for ReLU layers
    "optimizer": "adam",
    "lr": 0.002,
    "momentum": 0.0,
    "batch_size": 256,
    "epochs": 16,
    "dropout": [0.1, 0.3, 0.3],
    "schedule": "cosine",
}

PRESETS: dict[str, dict[str, Any]] = {
    "seed": SEED,
    "autoencoder": AUTOENCODER,
    "best": BEST,
}
