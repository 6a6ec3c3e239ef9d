"""Named training setups: the notes' experiments, and what works best.

A preset is a :class:`~nnet.training.settings.Settings`; a command-line flag given explicitly
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

from nnet.errors import NnetError
from nnet.training.settings import TRAINER_SETTINGS, Settings

# The notes' experiment: the author's network, error, optimizer and initialization (the
# defaults of Settings).
SEED = Settings()

# The author's second experiment: reconstruct the input through a 64-neuron bottleneck.
AUTOENCODER = SEED.replace(preset="autoencoder", task="autoencoder", sizes=(784, 64, 784))

# Beyond the notes: what trains the most accurate MLP on MNIST within two CPU minutes,
# chosen on a validation split among the runs of benchmarks/choose_best.py (see the README).
BEST = SEED.replace(
    preset="best",
    sizes=(784, 800, 800, 10),
    activation=("relu",),
    loss="cross_entropy",
    init=None,  # He normal, the customary one for ReLU layers
    optimizer="adam",
    lr=0.002,
    momentum=0.0,
    batch_size=256,
    epochs=16,
    dropout=(0.1, 0.3, 0.3),
    schedule="cosine",
)

# Past 99 %: the best preset's network shown more digits than there are, every training
# batch distorted at random (nnet.data.augment): shifts of up to 2 pixels, rotations of up
# to 10 degrees, zooms of up to 10 %, shears of up to 10 degrees and an elastic field of
# alpha 20, sigma 4 pixels; with them, less dropout (none on the input, 0.1 on the hidden
# layers). Chosen on a validation split among the runs of benchmarks/choose_augmented.py
# (record: benchmarks/augmented_candidates.md); 60 epochs train in about 6-7 minutes on one
# core (the README's table).
DISTORTED = BEST.replace(
    preset="distorted",
    augment=True,
    epochs=60,
    dropout=(0.0, 0.1, 0.1),
    translate=2.0,
    rotate=10.0,
    zoom=0.1,
    shear=10.0,
    elastic_alpha=20.0,
    elastic_sigma=4.0,
)

PRESETS: dict[str, Settings] = {
    "seed": SEED,
    "autoencoder": AUTOENCODER,
    "best": BEST,
    "distorted": DISTORTED,
}

# The strengths of --augment: given without it, they would do nothing.
AUGMENT_STRENGTHS = ("translate", "rotate", "zoom", "shear", "elastic_alpha", "elastic_sigma")

# What ``--trainer genetic`` / ``--trainer evolution`` put over a preset (see the module
# docstring). Chosen on the notes' network (``--preset seed``, seed 0) so that a run ends
# in about 2 minutes on a 2-core machine (the record of what was tried, and what each
# reaches, is in benchmarks/gradient_free.py):
# - genetic: more generations matter more than exact fitness: batches of 500 beat 1000;
#   crossover helps; a mutation of 2 % of the weights by N(0, 0.1^2) beats 5 % by
#   N(0, 0.05^2).
# - evolution: the preset's batch of 1000, 100 antithetic pairs with sigma 0.02, and Adam
#   with lr 0.02 on the rank-normalized estimate (the notes' SGD with lr 10 is made for
#   true gradients of MSE, not for estimates of unit scale).
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

# Settings a gradient-free trainer refuses when given explicitly: it computes no gradient
# (and the genetic algorithm takes no optimizer step either).
NOT_WITHOUT_GRADIENTS = ("engine", "dropout")
NOT_GENETIC = ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule", "warmup")


def flag(key: str) -> str:
    """The command-line flag of the setting ``key``."""
    return f"--{key.replace('_', '-')}"


def check_explicit(explicit: dict[str, Any], trainer: str) -> None:
    """Refuse explicit settings that ``trainer`` would silently ignore (one clear line)."""
    own = TRAINER_SETTINGS[trainer]
    population_keys = TRAINER_SETTINGS["genetic"] + TRAINER_SETTINGS["evolution"]
    stray = [k for k in dict.fromkeys(population_keys) if k in explicit and k not in own]
    if stray:
        users = [k for k in ("genetic", "evolution") if stray[0] in TRAINER_SETTINGS[k]]
        raise NnetError(
            f"{flag(stray[0])} applies only to --trainer {' or '.join(users)}"
            + (f", not to --trainer {trainer}" if trainer != "gradient" else "")
            + "."
        )
    if trainer == "gradient":
        return
    refused = NOT_WITHOUT_GRADIENTS + (NOT_GENETIC if trainer == "genetic" else ())
    given = [k for k in refused if k in explicit]
    if given:
        why = {
            "engine": "it computes no gradient, so there is no gradient engine",
            "dropout": "dropout needs gradient training",
        }.get(given[0], "the genetic algorithm uses no optimizer or learning rate")
        raise NnetError(f"--trainer {trainer} does not take {flag(given[0])}: {why}.")


def settings_for(
    preset: str = "seed", explicit: dict[str, Any] | None = None, trainer: str | None = None
) -> Settings:
    """The settings of a run: ``preset``, then the trainer's defaults, then ``explicit``.

    ``trainer`` (default: the explicit one, else the preset's) selects the defaults of
    :data:`TRAINER_DEFAULTS`; values in ``explicit`` that are None are not given. An
    optimizer other than SGD given over a preset with SGD momentum drops that momentum
    (Adam has none), unless momentum is given explicitly too.
    """
    if preset not in PRESETS:
        raise NnetError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}.")
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    base = PRESETS[preset]
    trainer = trainer or explicit.get("trainer") or base.trainer
    if trainer not in TRAINER_SETTINGS:
        known = ", ".join(TRAINER_SETTINGS)
        raise NnetError(f"unknown trainer {trainer!r}: expected one of {known}.")
    check_explicit(explicit, trainer)
    values = {**base.to_dict(), **TRAINER_DEFAULTS.get(trainer, {}), "trainer": trainer}
    values.update(explicit)
    strengths = [k for k in AUGMENT_STRENGTHS if k in explicit]
    if strengths and not values.get("augment"):
        raise NnetError(f"{flag(strengths[0])} is a strength of --augment: add --augment.")
    if values["optimizer"] != "sgd" and "momentum" not in explicit and "nesterov" not in explicit:
        values.update(momentum=0.0, nesterov=False)  # the preset's SGD momentum does not apply
    return Settings.from_dict(values)
