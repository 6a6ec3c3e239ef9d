"""An experiment: one :class:`~nnet.training.settings.Settings` turned into data, network,
update and trainer.

A model file or a checkpoint records the settings, and :func:`build` rebuilds exactly the
same run from them. Every random choice comes from ``settings.seed`` through three
independent streams: the initial weights, the validation split, and the training order
(shuffling and dropout masks; for the gradient-free trainers, the population and every
genetic or evolutionary random draw).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnet.core.engines.matrix import DEFAULT_MEMORY_BUDGET
from nnet.core.network import Network
from nnet.data.datasets import DATASETS, load, one_hot, split_validation, to_inputs
from nnet.errors import NnetError
from nnet.files.checkpoint import Checkpoint, read_checkpoint
from nnet.files.checkpoint import save_checkpoint as write_checkpoint
from nnet.training.evolution import EvolutionUpdate, GeneticUpdate
from nnet.training.loop import GradientUpdate, Split, Trainer, Update
from nnet.training.optim import Optimizer, make_optimizer, make_schedule
from nnet.training.presets import TRAINER_DEFAULTS
from nnet.training.settings import Settings


def input_description(side: int) -> dict[str, Any]:
    """How a model's inputs are made from a picture (recorded in the model file)."""
    return {"shape": [side, side], "scaling": "pixel / 255", "polarity": "white on black"}


@dataclass
class Experiment:
    settings: Settings
    net: Network
    trainer: Trainer
    train: Split
    evals: dict[str, Split]

    @property
    def optimizer(self) -> Optimizer | None:
        return self.trainer.update.optimizer


def load_splits(
    settings: Settings,
    rng: np.random.Generator,
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> tuple[Split, dict[str, Split]]:
    """The training split and the evaluation splits (``val`` if asked, ``test``)."""
    dataset = load(settings.dataset, data, download=download, progress=progress)
    x_train, y_train = dataset.x_train, dataset.y_train
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if settings.val:
        x_train, y_train, x_val, y_val = split_validation(x_train, y_train, settings.val, rng)
        raw["val"] = (x_val, y_val)
    raw["test"] = (dataset.x_test, dataset.y_test)
    n = settings.train_samples or len(x_train)
    task, dtype = settings.task, settings.dtype
    classes = DATASETS[settings.dataset].n_classes
    train = to_split(x_train[:n], y_train[:n], task, dtype, classes)
    return train, {name: to_split(x, y, task, dtype, classes) for name, (x, y) in raw.items()}


def to_split(
    images: np.ndarray, labels: np.ndarray, task: str, dtype: Any, n_classes: int
) -> Split:
    """uint8 images (N, 784) and labels as network inputs and targets for ``task``:
    one-hot labels for a classifier, the inputs themselves for an autoencoder."""
    x = to_inputs(images, dtype, with_bias=True)
    if task == "autoencoder":
        return Split(x, x, None)
    return Split(x, one_hot(labels, n_classes, dtype), labels)


def make_update(settings: Settings, net: Network, rng: np.random.Generator) -> Update:
    """The update ``settings.trainer`` names: gradient (default), genetic or evolution.

    A gradient-free trainer's settings left None get that trainer's defaults
    (:data:`nnet.training.presets.TRAINER_DEFAULTS`).
    """
    kind = settings.trainer

    def get(key: str) -> Any:
        value = getattr(settings, key)
        return TRAINER_DEFAULTS[kind][key] if value is None else value

    if kind == "genetic":
        keys = ("population", "mutation_rate", "mutation_scale", "crossover_rate", "elite")
        return GeneticUpdate(net, rng=rng, **{k: get(k) for k in keys})
    optimizer = make_optimizer(
        settings.optimizer,
        momentum=settings.momentum,
        nesterov=settings.nesterov,
        weight_decay=settings.weight_decay,
    )
    lr = make_schedule(
        settings.schedule, settings.lr, epochs=settings.epochs, warmup=settings.warmup
    )
    if kind == "evolution":
        return EvolutionUpdate(
            net, optimizer, rng=rng, lr=lr, population=get("population"), sigma=get("sigma")
        )
    return GradientUpdate(
        net,
        optimizer,
        lr=lr,
        rng=rng,
        engine=settings.engine or "backprop",
        dropout=settings.dropout_rates(),
    )


def available_memory() -> int | None:
    """The bytes this run may use: ``$NNET_MEMORY_LIMIT`` (bytes, or with a K, M or G
    suffix) when set, else the memory the system reports available, else None (unknown)."""
    limit = os.environ.get("NNET_MEMORY_LIMIT", "").strip().upper()
    if limit:
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(limit[-1:], 1)
        try:
            return int(float(limit.rstrip("KMG")) * scale)
        except ValueError:
            raise NnetError(f"NNET_MEMORY_LIMIT={limit!r} is not a size like 8G or 512M.") from None
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def memory_needed(settings: Settings) -> int:
    """An estimate of the bytes a run of ``settings`` allocates at its peak: the data as
    inputs and targets, the weights with their gradient, optimizer state, best and saved
    copies (or the population), a batch's forward pass and its engine's arrays, and the
    evaluation of up to 10 000 samples at a time. Generous rather than exact: it is compared
    with the memory available before anything is allocated."""
    s, it = settings.sizes, np.dtype(settings.dtype).itemsize
    P = sum((s[k] + 1) * s[k + 1] for k in range(len(s) - 1))
    n_train, n_test = DATASETS[settings.dataset].images
    data = (n_train + n_test) * s[0]  # the uint8 images
    data += (n_train + n_test) * ((s[0] + 1) + (s[-1] if settings.task == "classifier" else 0)) * it
    per_sample = (sum(n + 1 for n in s) + 3 * sum(s[1:]) + 2 * s[-1]) * it  # a, h, work, masks
    batch = min(settings.batch_size, n_train)
    copies = {"sgd": 4 if settings.momentum else 3, "adam": 5, "adamw": 5}[settings.optimizer]
    params = (copies + bool(settings.val)) * P * it
    engine = 0
    if settings.trainer == "genetic":
        members = settings.population or TRAINER_DEFAULTS["genetic"]["population"]
        params += 3 * members * P * it + members * batch * sum(s[1:]) * it
    elif settings.trainer == "evolution":
        members = (settings.population or TRAINER_DEFAULTS["evolution"]["population"]) + 1
        params += 3 * members * P * it + members * batch * sum(s[1:]) * it
    elif settings.engine == "frontprop":  # the M^l_k, two alive at a time
        engine = 2 * batch * max(s[k + 1] * max(s[k + 1 :]) for k in range(len(s) - 1)) * it
    elif settings.engine == "matrix":
        engine = DEFAULT_MEMORY_BUDGET
    return data + params + engine + (batch + min(10000, n_test)) * per_sample


def check_memory(settings: Settings) -> None:
    """NnetError, before anything is allocated, if the run would need more memory than is
    available (see :func:`memory_needed` and :func:`available_memory`)."""
    need, have = memory_needed(settings), available_memory()
    if have is not None and need > have:
        sizes = "-".join(map(str, settings.sizes))
        raise NnetError(
            f"this run needs about {need / 2**30:.1f} GiB of memory (network {sizes}, "
            f"batches of {settings.batch_size}) but {have / 2**30:.1f} GiB is available; use "
            "smaller --sizes or --batch-size, or set NNET_MEMORY_LIMIT to allow more."
        )


def build(
    settings: Settings,
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Experiment:
    """Everything a training run needs, from ``settings`` alone (plus where the data is);
    NnetError first if it would not fit in memory."""
    check_memory(settings)
    init_rng, split_rng, train_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(3)
    )
    net = Network(
        settings.sizes,
        settings.one_or_list("activation"),
        loss=settings.loss,
        init=settings.one_or_list("init"),
        seed=init_rng,
        dtype=settings.dtype,
    )
    trainer = Trainer(
        net,
        make_update(settings, net, train_rng),
        batch_size=settings.batch_size,
        epochs=settings.epochs,
        rng=train_rng,
        patience=settings.patience,
    )
    train, evals = load_splits(settings, split_rng, data=data, download=download, progress=progress)
    return Experiment(settings, net, trainer, train, evals)


def resume(
    path: str | os.PathLike[str] | Checkpoint,
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Experiment:
    """The run saved in the checkpoint ``path`` (or already read), rebuilt from its settings
    with its state put back, ready to continue training."""
    checkpoint = path if isinstance(path, Checkpoint) else read_checkpoint(path)
    exp = build(checkpoint.settings, data=data, download=download, progress=progress)
    checkpoint.restore(exp.trainer)
    return exp


def save_checkpoint(exp: Experiment, path: str | os.PathLike[str]) -> None:
    """Write the state of ``exp`` to the checkpoint ``path`` (atomically)."""
    write_checkpoint(exp.settings, exp.trainer, path)


def model_meta(exp: Experiment, seconds: float) -> dict[str, Any]:
    """What the model file records beside the weights."""
    settings = exp.settings.to_dict()
    optimizer = exp.optimizer.settings() if exp.optimizer is not None else {}
    spec = DATASETS[exp.settings.dataset]
    return {
        "task": exp.settings.task,
        "dataset": exp.settings.dataset,
        "classes": list(spec.classes),
        "input": input_description(spec.side),
        "training": {**{k: v for k, v in settings.items() if k != "task"}, **optimizer},
        "history": exp.trainer.history,
        "best_epoch": exp.trainer.best[1] if exp.trainer.best is not None else None,
        "seconds": seconds,
    }
