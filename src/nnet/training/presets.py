"""Named training setups: the notes' experiments, and what works best.

A preset is a dictionary of training settings; a command-line flag given explicitly
overrides the preset's value. Keys match the ``nnet train`` flags.

Trainers without gradients
--------------------------
``"trainer"`` is ``"gradient"`` (backprop and the other engines) in every preset. The
gradient-free trainers (``genetic``, ``evolution``; see :mod:`nnet.training.evolution`) need
settings of their own, and some of the preset's make no sense for them (the notes' SGD
with learning rate 10 would blow up on the rank-normalized estimates of evolution
strategies). So the rule is: ``--trainer X`` lays :data:`TRAINER_DEFAULTS` ``[X]`` over
the preset, and the flags given explicitly are laid over that, so they still win
(:func:`settings_for`). The population settings are None (unused) for ``gradient``.
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
    "trainer": "gradient",
    # gradient-free trainers only (None: unused, or that trainer's default below)
    "population": None,
    "mutation_rate": None,
    "mutation_scale": None,
    "crossover_rate": None,
    "elite": None,
    "sigma": None,
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

# What ``--trainer genetic`` / ``--trainer evolution`` put over a preset (see the module
# docstring). Chosen on the notes' network (``--preset seed``, seed 0) so that a run ends
# in about 2 minutes on a 2-core machine, well within 5 (the record of what was tried is in
# benchmarks/gradient_free.py):
# - genetic: ~88 % test accuracy. More generations matter more than exact fitness: batches
#   of 500 (120 generations per epoch) beat 1000; crossover helps (81 % without it at equal
#   time); a mutation of 2 % of the weights by N(0, 0.1^2) beats 5 % by N(0, 0.05^2).
# - evolution: ~91 %. The preset's batch of 1000, 100 antithetic pairs with sigma 0.02,
#   and Adam with lr 0.02 on the rank-normalized estimate (the notes' SGD with lr 10 is
#   made for true gradients of MSE, not for estimates of unit scale).
TRAINER_DEFAULTS: dict[str, dict[str, Any]] = {
    "gradient": {},
    "genetic": {
        "population": 100,
        "mutation_rate": 0.02,
        "mutation_scale": 0.1,
        "crossover_rate": 0.5,
        "elite": 2,
        "batch_size": 500,
        "epochs": 64,
        "engine": None,  # no gradient, no engine
        "dropout": None,  # needs gradient training
    },
    "evolution": {
        "population": 200,
        "sigma": 0.02,
        "optimizer": "adam",
        "lr": 0.02,
        "momentum": 0.0,
        "nesterov": False,
        "schedule": "constant",
        "batch_size": 1000,
        "epochs": 32,
        "engine": None,
        "dropout": None,
    },
}

# The settings each gradient-free trainer reads (and no other trainer does).
TRAINER_SETTINGS: dict[str, tuple[str, ...]] = {
    "gradient": (),
    "genetic": ("population", "mutation_rate", "mutation_scale", "crossover_rate", "elite"),
    "evolution": ("population", "sigma"),
}


def settings_for(
    preset: str, explicit: dict[str, Any] | None = None, trainer: str | None = None
) -> dict[str, Any]:
    """The settings of a run: ``preset``, then the trainer's defaults, then ``explicit``.

    ``trainer`` (default: the explicit one, else the preset's) selects the defaults of
    :data:`TRAINER_DEFAULTS`; values in ``explicit`` that are None are not given.
    """
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    settings = dict(PRESETS[preset])
    trainer = trainer or explicit.get("trainer") or settings["trainer"]
    settings.update(TRAINER_DEFAULTS[trainer])
    settings["trainer"] = trainer
    settings.update({k: v for k, v in explicit.items() if k in settings})
    return settings
