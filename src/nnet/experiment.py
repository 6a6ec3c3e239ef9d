"""An experiment: one settings dictionary turned into data, network, optimizer and trainer.

The settings are plain JSON values (a preset with the user's flags laid over it; see
:mod:`nnet.training.presets` for the keys), so a model file or a checkpoint can record them and
:func:`build` can rebuild exactly the same run from them. Every random choice comes from
``settings["seed"]`` through three independent streams: the initial weights, the
validation split, and the training order (shuffling and dropout masks; for the
gradient-free trainers, the population and every genetic or evolutionary random draw).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnet.core.network import Network
from nnet.data.datasets import DATASETS, load, one_hot, split_validation, to_inputs
from nnet.errors import NnetError
from nnet.training.evolution import TRAINERS, EvolutionTrainer, GeneticTrainer
from nnet.training.loop import LearningRate, Split, Trainer
from nnet.training.optim import Optimizer, make_optimizer, make_schedule
from nnet.training.presets import TRAINER_DEFAULTS

INPUT = {"shape": [28, 28], "scaling": "pixel / 255", "polarity": "white on black"}


@dataclass
class Experiment:
    settings: dict[str, Any]
    net: Network
    optimizer: Optimizer
    trainer: Trainer
    train: Split
    evals: dict[str, Split]


def one_or_list(names: list[str] | str | None) -> str | list[str] | None:
    if names is None or isinstance(names, str):
        return names
    return names[0] if len(names) == 1 else list(names)


def dropout_rates(value: list[float] | None, L: int) -> list[float] | None:
    """One rate: every hidden layer (not the input); L rates: layers 0 ... L-1."""
    if not value:
        return None
    if len(value) == 1:
        return [0.0] + [value[0]] * (L - 1)
    if len(value) != L:
        raise NnetError(
            f"--dropout takes one rate (for every hidden layer) or {L} rates (input and "
            f"hidden layers 0..{L - 1}); got {len(value)}."
        )
    return list(value)


def check(settings: dict[str, Any]) -> None:
    """The settings make sense for the dataset and task; NnetError naming the problem."""
    sizes = settings["sizes"]
    if sizes[0] != 784:
        raise NnetError(
            f"MNIST inputs have 784 pixels; --sizes must start with 784, not {sizes[0]}."
        )
    want = 784 if settings["task"] == "autoencoder" else 10
    if sizes[-1] != want:
        raise NnetError(
            f"the {settings['task']} needs {want} outputs; --sizes must end with {want}, "
            f"not {sizes[-1]}."
        )
    if settings["patience"] and not settings["val"]:
        raise NnetError("--patience (early stopping) needs a validation split: add --val N.")


def load_splits(
    settings: dict[str, Any],
    rng: np.random.Generator,
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> tuple[Split, dict[str, Split]]:
    """The training split and the evaluation splits (``val`` if asked, ``test``)."""
    dataset = load(settings["dataset"], data, download=download, progress=progress)
    x_train, y_train = dataset.x_train, dataset.y_train
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if settings["val"]:
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, settings["val"], rng)
        raw["val"] = (x_val, y_val)
    raw["test"] = (dataset.x_test, dataset.y_test)
    n = settings.get("train_samples") or len(x_train)
    task, dtype = settings["task"], settings["dtype"]
    train = to_split(x_train[:n], y_train[:n], task, dtype)
    return train, {name: to_split(x, y, task, dtype) for name, (x, y) in raw.items()}


def to_split(images: np.ndarray, labels: np.ndarray, task: str, dtype: Any) -> Split:
    """uint8 images (N, 784) and labels as network inputs and targets for ``task``:
    one-hot labels for a classifier, the inputs themselves for an autoencoder."""
    x = to_inputs(images, dtype, with_bias=True)
    if task == "autoencoder":
        return Split(x, x, None)
    return Split(x, one_hot(labels, 10, dtype), labels)


def make_trainer(
    settings: dict[str, Any],
    net: Network,
    optimizer: Optimizer,
    lr: LearningRate,
    rng: np.random.Generator,
) -> Trainer:
    """The trainer ``settings["trainer"]`` names: gradient (default), genetic or evolution.

    A gradient-free trainer's settings left None get that trainer's defaults
    (:data:`nnet.training.presets.TRAINER_DEFAULTS`); dropout needs gradient training.
    """
    kind = settings.get("trainer") or "gradient"
    if kind not in TRAINERS:
        raise NnetError(f"unknown trainer {kind!r}: expected one of {', '.join(TRAINERS)}.")
    common = {
        "batch_size": settings["batch_size"],
        "epochs": settings["epochs"],
        "rng": rng,
        "patience": settings["patience"],
    }
    if kind == "gradient":
        return Trainer(
            net,
            optimizer,
            lr=lr,
            engine=settings["engine"],
            dropout=dropout_rates(settings["dropout"], net.L),
            **common,
        )
    if settings.get("dropout"):
        raise NnetError(f"--trainer {kind} has no dropout (it needs gradient training).")

    def get(key: str) -> Any:
        value = settings.get(key)
        return TRAINER_DEFAULTS[kind][key] if value is None else value

    if kind == "genetic":
        return GeneticTrainer(
            net,
            optimizer,
            population=get("population"),
            mutation_rate=get("mutation_rate"),
            mutation_scale=get("mutation_scale"),
            crossover_rate=get("crossover_rate"),
            elite=get("elite"),
            **common,
        )
    return EvolutionTrainer(
        net, optimizer, lr=lr, population=get("population"), sigma=get("sigma"), **common
    )


def build(
    settings: dict[str, Any],
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Experiment:
    """Everything a training run needs, from ``settings`` alone (plus where the data is)."""
    check(settings)
    init_rng, split_rng, train_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings["seed"]).spawn(3)
    )
    net = Network(
        settings["sizes"],
        one_or_list(settings["activation"]),
        loss=settings["loss"],
        init=one_or_list(settings["init"]),
        seed=init_rng,
        dtype=settings["dtype"],
    )
    optimizer = make_optimizer(
        settings["optimizer"],
        momentum=settings["momentum"],
        nesterov=settings["nesterov"],
        weight_decay=settings["weight_decay"],
    )
    lr = make_schedule(
        settings["schedule"], settings["lr"], epochs=settings["epochs"], warmup=settings["warmup"]
    )
    trainer = make_trainer(settings, net, optimizer, lr, train_rng)
    train, evals = load_splits(settings, split_rng, data=data, download=download, progress=progress)
    return Experiment(settings, net, optimizer, trainer, train, evals)


def model_meta(exp: Experiment, seconds: float) -> dict[str, Any]:
    """What the model file records beside the weights."""
    settings = exp.settings
    return {
        "task": settings["task"],
        "dataset": settings["dataset"],
        "classes": list(DATASETS[settings["dataset"]].classes),
        "input": INPUT,
        "training": {
            **{k: v for k, v in settings.items() if k != "task"},
            **exp.optimizer.settings(),
        },
        "history": exp.trainer.history,
        "best_epoch": exp.trainer.best[1] if exp.trainer.best is not None else None,
        "seconds": seconds,
    }
