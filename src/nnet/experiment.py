"""An experiment: one :class:`~nnet.training.settings.Settings` turned into data, network,
update and trainer.

A model file or a checkpoint records the settings, and :func:`build` rebuilds exactly the
same run from them. Every random choice comes from ``settings.seed`` through four
independent streams: the initial weights, the validation split, the training order
(shuffling and dropout masks; for the gradient-free trainers, the population and every
genetic or evolutionary random draw), and the distortions of ``--augment``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnet.core.engines.matrix import DEFAULT_MEMORY_BUDGET
from nnet.core.network import Network
from nnet.data.augment import Augmenter, Strengths
from nnet.data.datasets import DATASETS, load, one_hot, split_validation, to_inputs
from nnet.data.folders import read_image_folder
from nnet.data.tables import Standardizer, Table, read_arrays, read_table
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files.checkpoint import Checkpoint, read_checkpoint
from nnet.files.checkpoint import save_checkpoint as write_checkpoint
from nnet.training.evolution import EvolutionUpdate, GeneticUpdate
from nnet.training.loop import GradientUpdate, Split, StopFlag, Trainer, Update
from nnet.training.optim import Optimizer, make_optimizer, make_schedule
from nnet.training.presets import AUGMENT_STRENGTHS, PRESETS, TRAINER_DEFAULTS, settings_for
from nnet.training.settings import CUSTOM, Settings


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


def splits_from_arrays(
    settings: Settings,
    x: Any,
    y: Any,
    rng: np.random.Generator,
    *,
    n_classes: int | None = None,
    test: tuple[Any, Any] | None = None,
) -> tuple[Split, dict[str, Split]]:
    """The training split and the evaluation splits (``val`` if ``settings.val``, ``test`` if
    given) of the user's own data: features ``x`` (N, #0) and, for a classifier, labels ``y``
    (N,) in 0 .. ``n_classes`` - 1, for a regressor values ``y`` (N,) or (N, #L). NnetError
    unless they fit ``settings.sizes``."""
    dtype = np.dtype(settings.dtype)

    def split(x: Any, y: Any, what: str) -> Split:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != settings.sizes[0] or len(x) < 1:
            raise NnetError(
                f"{what} features must have shape (N, {settings.sizes[0]}) for --sizes "
                f"{'-'.join(map(str, settings.sizes))}; got {x.shape}."
            )
        if len(y) != len(x):
            raise NnetError(f"{what} has {len(x)} samples but {len(y)} targets.")
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise NnetError(f"{what} features must be finite numbers.")
        x1 = np.empty((len(x), x.shape[1] + 1), dtype)
        x1[:, -1] = 1.0
        x1[:, :-1] = x
        if settings.task == "regressor":
            t = np.asarray(y, dtype).reshape(len(y), -1)
            if t.shape[1] != settings.sizes[-1] or not np.isfinite(t).all():
                raise NnetError(
                    f"{what} targets must be finite values, {settings.sizes[-1]} per sample "
                    f"(the output layer); got shape {np.shape(y)}."
                )
            return Split(x1[:, :-1], t, None)
        if n_classes != settings.sizes[-1]:
            raise NnetError(
                f"the data has {n_classes} classes; --sizes must end with {n_classes}, not "
                f"{settings.sizes[-1]}."
            )
        return Split(x1[:, :-1], one_hot(y, n_classes, dtype), y)

    evals = {}
    if settings.val:
        x, y, x_val, y_val = split_validation(np.asarray(x), np.asarray(y), settings.val, rng)
        evals["val"] = split(x_val, y_val, "the validation split")
    if test is not None:
        evals["test"] = split(*test, "the test data")
    n = settings.train_samples or len(x)
    return split(np.asarray(x)[:n], np.asarray(y)[:n], "the training data"), evals


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


def make_augmenter(
    settings: Settings, shape: tuple[int, ...] | None, rng: np.random.Generator
) -> Augmenter | None:
    """The augmenter of a run with ``--augment`` (None without), distorting images of
    ``shape`` (H, W[, C]; None: the data are not images) with the settings' strengths."""
    if not settings.augment:
        return None
    if shape is None:
        raise NnetError(
            "--augment distorts images: train on mnist, fashion-mnist or a folder of images "
            "(--data-file DIR), not on a table."
        )
    strengths = Strengths(**{k: getattr(settings, k) for k in AUGMENT_STRENGTHS})
    augmenter = Augmenter(strengths, shape, rng, settings.dtype)
    if augmenter.n_inputs != settings.sizes[0]:
        raise NnetError(
            f"--augment: images of {'x'.join(map(str, shape))} have {augmenter.n_inputs} "
            f"values, but the network takes {settings.sizes[0]} inputs."
        )
    return augmenter


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


def memory_needed(settings: Settings, n_samples: int | None = None) -> int:
    """An estimate of the bytes a run of ``settings`` allocates at its peak: the data as
    inputs and targets, the weights with their gradient, optimizer state, best and saved
    copies (or the population), a batch's forward pass and its engine's arrays, and the
    evaluation of up to 10 000 samples at a time. Generous rather than exact: it is compared
    with the memory available before anything is allocated. ``n_samples``: the size of the
    user's own data (the dataset's images otherwise)."""
    s, it = settings.sizes, np.dtype(settings.dtype).itemsize
    P = sum((s[k] + 1) * s[k + 1] for k in range(len(s) - 1))
    spec = DATASETS.get(settings.dataset)
    n_train, n_test = spec.images if spec is not None else (n_samples or 0, n_samples or 0)
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


def check_memory(settings: Settings, arrays: dict[str, Any] | None = None) -> None:
    """NnetError, before anything is allocated, if the run would need more memory than is
    available (see :func:`memory_needed` and :func:`available_memory`)."""
    n = len(arrays["x"]) if arrays is not None else None
    need, have = memory_needed(settings, n), available_memory()
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
    arrays: dict[str, Any] | None = None,
) -> Experiment:
    """Everything a training run needs, from ``settings`` alone plus where the data is: a
    dataset's folder (``data``), or the user's own ``arrays`` (the arguments of
    :func:`splits_from_arrays` after ``settings``: ``x``, ``y``, ``n_classes``, ``test``;
    and ``image_shape`` (H, W[, C]) when the rows are images, for ``--augment``).
    NnetError first if it would not fit in memory."""
    if (arrays is None) != (settings.dataset in DATASETS):
        raise NnetError(
            f"a run on {settings.dataset!r} needs "
            + ("arrays of the user's own data." if arrays is None else "no arrays.")
        )
    arrays = None if arrays is None else dict(arrays)
    image_shape = arrays.pop("image_shape", None) if arrays is not None else None
    if settings.dataset in DATASETS:
        image_shape = (DATASETS[settings.dataset].side,) * 2
    check_memory(settings, arrays)
    init_rng, split_rng, train_rng, augment_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(4)
    )  # the first three as before the fourth stream existed: the same runs
    augmenter = make_augmenter(settings, image_shape, augment_rng)
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
        augment=augmenter,
    )
    if arrays is None:
        where = {"data": data, "download": download, "progress": progress}
        train, evals = load_splits(settings, split_rng, **where)
    else:
        train, evals = splits_from_arrays(settings, rng=split_rng, **arrays)
    return Experiment(settings, net, trainer, train, evals)


def run(
    exp: Experiment,
    *,
    stop: StopFlag | None = None,
    metrics: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    on_batch: Callable[[int, float], None] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> float:
    """Train ``exp`` until done, stopped (``stop``: Ctrl-C or SIGTERM) or early-stopped. After
    every epoch: ``on_epoch(row)``, the ``metrics`` file (one JSON object per epoch) and the
    ``checkpoint`` are written; a run stopped mid-epoch saves its checkpoint too. Returns the
    seconds it took. This is what ``nnet train`` does between the settings and the model."""
    trainer = exp.trainer

    def after_epoch(row: dict[str, Any]) -> None:
        if on_epoch is not None:
            on_epoch(row)
        if metrics is not None:
            with atomic_write(metrics, "w") as f:
                f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in trainer.history)
        if checkpoint is not None:
            save_checkpoint(exp, checkpoint)

    start = time.perf_counter()
    trainer.fit(
        exp.train,
        exp.evals,
        stop=stop,
        on_batch=on_batch,
        on_epoch_start=on_epoch_start,
        on_epoch=after_epoch,
    )
    if trainer.stopped_by and checkpoint is not None:
        save_checkpoint(exp, checkpoint)  # mid-epoch: the pass under way is saved too
    return time.perf_counter() - start


def fit(
    x: Any,
    y: Any,
    settings: Settings,
    *,
    n_classes: int | None = None,
    test: tuple[Any, Any] | None = None,
    image_shape: tuple[int, ...] | None = None,
    **options: Any,
) -> Experiment:
    """Train a network on the user's own data, as ``nnet train`` would: features ``x``
    (N, #0), and labels ``y`` in 0 .. ``n_classes`` - 1 for a classifier or values for a
    regressor (``settings.task``); ``test`` = (x_test, y_test) is evaluated after every
    epoch; ``settings.val`` samples are held out for validation and early stopping.
    ``image_shape`` (H, W[, C]): the rows of ``x`` are such images (for ``settings.augment``).
    ``options`` are those of :func:`run` (callbacks, metrics file, checkpoint, stop flag).
    Returns the trained experiment: ``exp.net`` (the best epoch's weights when there is a
    validation split), ``exp.trainer.history``."""
    if settings.dataset != CUSTOM:
        settings = settings.replace(dataset=CUSTOM)
    arrays = {"x": x, "y": y, "n_classes": n_classes, "test": test, "image_shape": image_shape}
    exp = build(settings, arrays=arrays)
    run(exp, **options)
    return exp


def resume(
    path: str | os.PathLike[str] | Checkpoint,
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
    arrays: dict[str, Any] | None = None,
) -> Experiment:
    """The run saved in the checkpoint ``path`` (or already read), rebuilt from its settings
    (and the same ``arrays`` for a run on the user's own data) with its state put back,
    ready to continue training."""
    checkpoint = path if isinstance(path, Checkpoint) else read_checkpoint(path)
    where = {"data": data, "download": download, "progress": progress, "arrays": arrays}
    exp = build(checkpoint.settings, **where)
    checkpoint.restore(exp.trainer)
    return exp


# ----------------------------------------------------------------------------- own data


@dataclass
class UserData:
    """The user's own data read from a file: the table, how to read such data again (the
    ``input`` a model file records) and the feature scaling fitted on it (None for images,
    already pixels / 255)."""

    table: Table
    input: dict[str, Any]
    scaling: Standardizer | None

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """(H, W, C) of every row when the data are images, else None."""
        if self.input.get("kind") != "images":
            return None
        width, height = self.input["size"]
        return (height, width, 3 if self.input["color"] == "rgb" else 1)

    @property
    def x(self) -> np.ndarray:
        """The features, scaled."""
        return self.table.X if self.scaling is None else self.scaling.transform(self.table.X)


def read_user_data(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    task: str | None = None,
    image_size: int = 28,
    color: str = "gray",
    like: dict[str, Any] | None = None,
) -> UserData:
    """The data at ``path``: a folder of class folders of images, a ``.npz`` holding ``X``
    and ``y``, or a CSV table whose column ``target`` is learned (None: features only, to
    predict). ``like``: the model file's metadata, for data a trained model reads — the
    same kind of input, its image size and colour, its scaling, its target column."""
    path = Path(path)
    source = (like or {}).get("input") or {}
    if path.is_dir():
        size = tuple(source.get("size") or (image_size, image_size))
        color = source.get("color", color)
        table = read_image_folder(path, size=size, color=color)  # type: ignore[arg-type]
        info = {"kind": "images", "size": list(size), "color": color}
        return UserData(table, info, None)
    if path.suffix.lower() == ".npz":
        table = read_arrays(path, task=task)
        info: dict[str, Any] = {"kind": "arrays", "features": table.X.shape[1]}
    else:
        if like is not None and target is None and source.get("target"):
            with open(path, encoding="utf-8", errors="replace") as f:  # the header alone
                header = next(csv.reader([f.readline(2**20)]), [])
            target = source["target"] if source["target"] in header else None
        table = read_table(path, target=target, task=task)
        info = {"kind": "table", "features": list(table.feature_names), "target": target}
        expected = source.get("features") if like is not None else None
        if expected is not None and list(table.feature_names) != expected:
            raise NnetError(
                f"{path} has the columns {list(table.feature_names)[:8]}, but the model was "
                f"trained on {expected[:8]} (in that order)."
            )
    scaling = like.get("scaling") if like else None
    scaler = Standardizer.from_meta(scaling) if scaling else Standardizer.fit(table.X)
    return UserData(table, info, scaler)


def user_settings(data: UserData, preset: str, explicit: dict[str, Any]) -> Settings:
    """The settings of a run on ``data``: the preset's, the explicit ones, the task the data
    says, and, unless ``--sizes`` is given, the preset's hidden layers between the data's
    features and its classes (or values)."""
    table = data.table
    task = "regressor" if table.task == "regression" else "classifier"
    outputs = len(table.classes) if task == "classifier" else 1
    hidden = PRESETS[preset].sizes[1:-1]
    sizes = explicit.get("sizes") or (table.X.shape[1], *hidden, outputs)
    return settings_for(preset, {**explicit, "task": task, "dataset": CUSTOM, "sizes": sizes})


def save_checkpoint(exp: Experiment, path: str | os.PathLike[str]) -> None:
    """Write the state of ``exp`` to the checkpoint ``path`` (atomically)."""
    write_checkpoint(exp.settings, exp.trainer, path)


def model_meta(
    exp: Experiment, seconds: float, *, classes: list[Any] | None = None
) -> dict[str, Any]:
    """What the model file records beside the weights (``classes``: the names of the user's
    own data's classes)."""
    settings = exp.settings.to_dict()
    optimizer = exp.optimizer.settings() if exp.optimizer is not None else {}
    spec = DATASETS.get(exp.settings.dataset)
    described = {"input": input_description(spec.side)} if spec is not None else {}
    return {
        "task": exp.settings.task,
        "dataset": exp.settings.dataset,
        "classes": list(spec.classes) if spec is not None else classes,
        **described,
        "training": {**{k: v for k, v in settings.items() if k != "task"}, **optimizer},
        "history": exp.trainer.history,
        "best_epoch": exp.trainer.best[1] if exp.trainer.best is not None else None,
        "seconds": seconds,
    }
