"""The settings of a training run: one typed, immutable object with its defaults, its checks
and its JSON form, so that a preset, the command line, a checkpoint and a model file all
describe a run the same way.

Every field has a *check* (:class:`Number`, :class:`Names`, ...) that converts and validates
a value from Python or JSON (``check(value)``) or from a command-line string
(``check.parse(text)``), raising :class:`NnetError` with one sentence. The command line builds
its argument types from these checks, so a flag and a saved setting are validated by the same
code. Checks that involve several fields run in
:meth:`Settings.__post_init__`.

Defaults are the notes' experiment (``--preset seed``); see :mod:`nnet.training.presets` for
the other presets and the defaults of the gradient-free trainers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnet.core.activations import ACTIVATIONS
from nnet.core.engines import ENGINES
from nnet.core.init import INITS
from nnet.core.loss import LOSSES
from nnet.core.network import DTYPES
from nnet.data.datasets import DATASETS
from nnet.errors import NnetError
from nnet.training.optim import OPTIMIZERS, SCHEDULES

TRAINERS = ("gradient", "genetic", "evolution")
TASKS = ("classifier", "autoencoder", "regressor")
# The dataset of a run on the user's own data (arrays, a table, an image folder): its sizes
# are checked against the data when the run is built.
CUSTOM = "custom"

# The settings each gradient-free trainer reads (and no other trainer does).
TRAINER_SETTINGS: dict[str, tuple[str, ...]] = {
    "gradient": (),
    "genetic": ("population", "mutation_rate", "mutation_scale", "crossover_rate", "elite"),
    "evolution": ("population", "sigma"),
}


# ----------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Number:
    """An int or float in a range; ``lo_open``/``hi_open`` exclude the ends."""

    kind: type = float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    what: str = ""  # overrides the generated description, e.g. "a population of >= 2"

    def describe(self) -> str:
        if self.what:
            return self.what
        if self.kind is int:
            if self.lo is None:
                return "an integer"
            least = "a positive integer" if self.lo == 1 else f"an integer >= {self.lo:g}"
            return least if self.hi is None else f"{least} up to {self.hi:g}"
        if self.hi is None:
            return "a positive number" if self.lo_open else f"a number >= {self.lo:g}"
        left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
        return f"a number in {left}{self.lo:g}, {self.hi:g}{right}"

    def __call__(self, value: Any) -> int | float:
        bad = NnetError(f"expected {self.describe()}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if self.kind is int and (isinstance(value, float) and not value.is_integer()):
            raise bad
        v = self.kind(value) if math.isfinite(value) else value
        if not math.isfinite(v) or abs(v) > 2**62:
            raise bad
        lo, hi = self.lo, self.hi
        if lo is not None and (v < lo or (self.lo_open and v == lo)):
            raise bad
        if hi is not None and (v > hi or (self.hi_open and v == hi)):
            raise bad
        return v

    def parse(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise NnetError(f"expected {self.describe()}, got {text!r}") from None
        return self(value)


@dataclass(frozen=True)
class Choice:
    """One name out of ``known``."""

    known: Sequence[str]
    what: str

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.known:
            raise NnetError(
                f"unknown {self.what} {value!r}: expected one of {', '.join(self.known)}"
            )
        return value

    def parse(self, text: str) -> str:
        return self(text)


@dataclass(frozen=True)
class Many:
    """A non-empty tuple of values, each checked by ``item``; from the command line, the
    values separated by commas."""

    item: Callable[[Any], Any]
    what: str = ""

    def __call__(self, value: Any) -> tuple:
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise NnetError(f"expected a list of {self.what}, got {value!r}")
        return tuple(self.item(v) for v in value)

    def parse(self, text: str) -> tuple:
        parse = getattr(self.item, "parse", self.item)
        try:
            return tuple(parse(part) for part in text.split(","))
        except NnetError as exc:
            raise NnetError(f"{self.what}: {exc}" if self.what else str(exc)) from None


@dataclass(frozen=True)
class Optional_:
    """None, or a value ``inner`` accepts."""

    inner: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return None if value is None else self.inner(value)

    def parse(self, text: str) -> Any:
        return getattr(self.inner, "parse", self.inner)(text)


@dataclass(frozen=True)
class Flag:
    """A bool (JSON true/false)."""

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise NnetError(f"expected true or false, got {value!r}")
        return value


class Sizes:
    """Layer sizes: '784,16,16,10' or '784-16-16-10'; at least two layers of width >= 1."""

    def __call__(self, value: Any) -> tuple[int, ...]:
        sizes = Many(Number(int), "layer sizes")(value)
        if len(sizes) < 2:
            raise NnetError(
                f"sizes must list at least two layers (input and output); got {list(sizes)}"
            )
        if min(sizes) < 1:
            raise NnetError(f"every layer needs at least one neuron; got sizes {list(sizes)}")
        return sizes

    def parse(self, text: str) -> tuple[int, ...]:
        try:
            values = [int(p) for p in text.replace("-", ",").split(",")]
        except ValueError:
            raise NnetError(f"not a list of integers like 784,16,16,10: {text!r}") from None
        return self(values)


POSITIVE_INT = Number(int, 1)
COUNT = Number(int, 0)
POSITIVE = Number(float, 0, lo_open=True)
NONNEGATIVE = Number(float, 0)
BELOW_ONE = Number(float, 0, 1, hi_open=True)
PROBABILITY = Number(float, 0, 1)


def _f(default: Any, check: Callable[[Any], Any], help: str = "") -> Any:
    """A settings field: its default, its check, and its command-line help."""
    return field(default=default, metadata={"check": check, "help": help})


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Everything that defines a training run (not where its data and outputs go).

    Immutable: derive a changed copy with :meth:`replace`. ``Settings()`` is the notes'
    experiment; :func:`nnet.training.presets.settings_for` builds the settings of a preset
    with a trainer's defaults and explicit values laid over it.
    """

    preset: str = _f("seed", Choice(("seed", "autoencoder", "best", "distorted"), "preset"))
    task: str = _f("classifier", Choice(TASKS, "task"))
    dataset: str = _f("mnist", Choice((*DATASETS, CUSTOM), "dataset"), "mnist or fashion-mnist")
    sizes: tuple[int, ...] = _f((784, 16, 16, 10), Sizes(), "layer sizes, e.g. 784,16,16,10")
    activation: tuple[str, ...] = _f(
        ("sigmoid",),
        Many(Choice(tuple(ACTIVATIONS), "activation")),
        "one name, or one per layer 1..L separated by commas",
    )
    loss: str = _f("mse", Choice(tuple(LOSSES), "loss"))
    init: tuple[str, ...] | None = _f(
        ("author",),
        Optional_(Many(Choice(tuple(INITS), "initialization"))),
        f"weight initialization, one name or one per layer: {', '.join(INITS)}",
    )
    engine: str | None = _f("backprop", Optional_(Choice(ENGINES, "engine")), "gradient engine")
    optimizer: str = _f("sgd", Choice(OPTIMIZERS, "optimizer"))
    epochs: int = _f(16, POSITIVE_INT)
    batch_size: int = _f(1000, POSITIVE_INT)
    lr: float = _f(10.0, POSITIVE, "learning rate")
    momentum: float = _f(0.5, BELOW_ONE)
    nesterov: bool = _f(False, Flag())
    weight_decay: float = _f(0.0, NONNEGATIVE)
    dropout: tuple[float, ...] | None = _f(
        None,
        Optional_(Many(BELOW_ONE, "dropout rates")),
        "dropout rate for every hidden layer, or one per layer 0..L-1 (input first)",
    )
    schedule: str = _f("constant", Choice(SCHEDULES, "schedule"), "learning-rate schedule")
    warmup: float = _f(0.0, NONNEGATIVE, "epochs of linear warm-up")
    val: int = _f(0, COUNT, "training samples held out for validation")
    patience: int = _f(
        0, COUNT, "stop after this many epochs without a better validation loss (needs --val)"
    )
    train_samples: int | None = _f(
        None,
        Optional_(POSITIVE_INT),
        "train on the first N training samples only (quick experiments); default all",
    )
    seed: int = _f(0, Number(int, 0), "seed of every random choice (default 0)")
    dtype: str = _f("float32", Choice(DTYPES, "dtype"), "float32 (default) or float64")
    trainer: str = _f("gradient", Choice(TRAINERS, "trainer"))
    # gradient-free trainers only (None: unused, or that trainer's default)
    population: int | None = _f(
        None, Optional_(Number(int, 2, what="a population of at least 2 members"))
    )
    mutation_rate: float | None = _f(None, Optional_(Number(float, 0, 1, lo_open=True)))
    mutation_scale: float | None = _f(None, Optional_(POSITIVE))
    crossover_rate: float | None = _f(None, Optional_(PROBABILITY))
    elite: int | None = _f(None, Optional_(COUNT))
    sigma: float | None = _f(None, Optional_(POSITIVE))
    # data augmentation of the training images (nnet.data.augment); the strengths apply
    # with --augment only, and default to those of --preset distorted
    augment: bool = _f(
        False,
        Flag(),
        "distort every training batch of images at random (translation, rotation, zoom, "
        "shear, elastic); validation and test images never",
    )
    translate: float = _f(2.0, NONNEGATIVE, "augment: largest shift along each axis, pixels")
    rotate: float = _f(10.0, Number(float, 0, 180), "augment: largest rotation, degrees")
    zoom: float = _f(
        0.1, Number(float, 0, 1, hi_open=True), "augment: largest scaling of each axis, 0.1 = 10%%"
    )
    shear: float = _f(
        10.0, Number(float, 0, 90, hi_open=True), "augment: largest horizontal shear, degrees"
    )
    elastic_alpha: float = _f(
        20.0, NONNEGATIVE, "augment: scale of the elastic displacement field, pixels (0: off)"
    )
    elastic_sigma: float = _f(
        4.0, POSITIVE, "augment: width of the Gaussian that smooths the elastic field, pixels"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            try:
                value = f.metadata["check"](getattr(self, f.name))
            except NnetError as exc:
                raise NnetError(f"setting {f.name}: {exc}.") from None
            object.__setattr__(self, f.name, value)
        self._check_together()

    def _check_together(self) -> None:
        """The checks that involve several fields."""
        L = len(self.sizes) - 1
        for name in ("activation", "init"):
            names = getattr(self, name)
            if names is not None and len(names) not in (1, L):
                raise NnetError(
                    f"{name} needs one name or one per layer 1..{L}; got {len(names)} names."
                )
        if self.dropout is not None and len(self.dropout) not in (1, L):
            raise NnetError(
                f"--dropout takes one rate (for every hidden layer) or {L} rates (input and "
                f"hidden layers 0..{L - 1}); got {len(self.dropout)}."
            )
        if self.patience and not self.val:
            raise NnetError("--patience (early stopping) needs a validation split: add --val N.")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise NnetError(
                f"{self.optimizer} has no momentum setting; leave --momentum/--nesterov out."
            )
        if self.warmup and self.warmup >= self.epochs:
            raise NnetError(
                f"warm-up must be shorter than the {self.epochs} epochs; got {self.warmup}."
            )
        if self.trainer == "gradient" and self.engine is None:
            raise NnetError("gradient training needs an engine.")
        if self.trainer != "gradient" and self.dropout:
            raise NnetError(
                f"--trainer {self.trainer} has no dropout (it needs gradient training)."
            )
        if self.trainer == "genetic" and None not in (self.elite, self.population):
            if self.elite >= self.population:  # type: ignore[operator]
                raise NnetError(
                    f"the elite must be smaller than the population ({self.population}); "
                    f"got {self.elite}."
                )
        if self.trainer == "evolution" and self.population is not None and self.population % 2:
            raise NnetError(
                "evolution strategies need an even population of at least 2 (antithetic pairs "
                f"theta +- sigma eps); got {self.population}."
            )
        if self.augment and self.task != "classifier":
            raise NnetError(
                f"--augment distorts the training images of a classifier, not of a {self.task}."
            )
        if self.dataset in DATASETS:
            if self.task == "regressor":
                raise NnetError(f"{self.dataset} has classes, not values: train a classifier.")
            DATASETS[self.dataset].check_sizes(self.sizes, self.task)

    # ------------------------------------------------------------------ derived values
    @property
    def L(self) -> int:
        return len(self.sizes) - 1

    def dropout_rates(self) -> list[float] | None:
        """One rate per layer 0 ... L-1, or None: one rate means every hidden layer (not
        the input)."""
        if not self.dropout or not any(self.dropout):
            return None
        if len(self.dropout) == 1:
            return [0.0] + [self.dropout[0]] * (self.L - 1)
        return list(self.dropout)

    def one_or_list(self, name: str) -> str | list[str] | None:
        """``activation`` or ``init`` as the network takes it: one name, or one per layer. One
        activation for a regressor means its hidden layers: the output is the identity, so
        that it can take any value."""
        names = getattr(self, name)
        if names is None:
            return None
        if name == "activation" and self.task == "regressor" and len(names) == 1:
            return [names[0]] * (self.L - 1) + ["identity"]
        return names[0] if len(names) == 1 else list(names)

    # ------------------------------------------------------------------ changes, JSON
    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (checked like a new object)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, values: Any, *, ignore: Sequence[str] = ()) -> Settings:
        """Settings from their JSON form. Unknown keys are refused (except ``ignore``), and
        missing ones take their defaults; NnetError names the first problem."""
        if not isinstance(values, dict):
            raise NnetError(f"settings must be a JSON object; got {type(values).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - set(ignore))
        if unknown:
            raise NnetError(f"unknown setting {unknown[0]!r}.")
        return cls(**{k: v for k, v in values.items() if k in known})


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Settings)}
