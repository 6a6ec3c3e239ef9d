"""What the files nnet reads may declare: every field of a model file's metadata, of a
checkpoint's (the run's settings, the trainer's and the optimizer's state) and of a metrics
row, with its type, range and whether it is required, and the hard limits every reader
applies before it allocates anything.

The checks are those of :mod:`nnet.training.settings` (:class:`Number`, :class:`Choice`,
:class:`Many`, :class:`Optional_`, :class:`Flag`, and :meth:`Settings.from_dict` for the
settings a file records), composed by a few more defined here: :class:`Record` (a JSON object
of known fields), :class:`ListOf`, :class:`OneOrList`, :class:`Text`, :class:`Whole`
(integers of any size, for generator states), :class:`LayerSizes` and :class:`MetricsRow`.

A problem is one :class:`FieldError` line, ``field X: expected ..., got ...``, that the
reader prefixes with the file: ``FILE: field trainer.progress.seen: expected an integer >= 0,
got -5``. Values are shown shortened (a list as its length, a long integer as its digit
count), so a message stays one short line whatever the file holds.

JSON is parsed by :func:`parse_json`: at most ``MAX_META_CHARS`` characters, nested at most
``MAX_JSON_DEPTH`` deep (checked before parsing), no key twice in an object, integers of at
most 4300 digits (Python's own limit).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnet.core.activations import ACTIVATIONS
from nnet.core.loss import LOSSES
from nnet.core.network import DTYPES
from nnet.errors import NnetError
from nnet.training.optim import OPTIMIZERS, make_optimizer
from nnet.training.settings import (
    COUNT,
    FIELDS,
    NONNEGATIVE,
    POSITIVE_INT,
    TASKS,
    Choice,
    Flag,
    Many,
    Number,
    Optional_,
    Settings,
    Sizes,
)

# ----------------------------------------------------------------------------- limits
# Each bounds what a file can make nnet allocate or compute before the file is refused.

# Weight matrices in a network (layers after the input): far above any MLP nnet trains.
MAX_LAYERS = 100
# Weights of a network, biases included: 400 MB as float32, 800 MB as float64. Bounds every
# array of a model file or checkpoint (each is one copy of the weights).
MAX_PARAMETERS = 100_000_000
# Characters of a file's JSON metadata (about 25 000 epochs of history), and of one line of
# a metrics file.
MAX_META_CHARS = 8_000_000
# Nesting of JSON arrays and objects; nnet writes at most 5 (a checkpoint's generator state).
MAX_JSON_DEPTH = 32
# Arrays in a model or checkpoint archive: per layer the weights, two optimizer states and
# the best weights, plus the metadata.
MAX_MEMBERS = 4 * MAX_LAYERS + 1
# Bytes of a zip's central directory: MAX_MEMBERS entries of at most 1 KiB (46 bytes of
# fields, a short name, a zip64 extra field), checked before the zip module parses it.
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 1024
# Characters of a name in metadata: a version, a dataset, a class, a metrics key.
MAX_TEXT = 1000
# Entries of a list in metadata (classes, history) and rows of a metrics file.
MAX_ITEMS = 1_000_000
# Fields of one metrics row (nnet writes about 12).
MAX_ROW_FIELDS = 100
# Magnitude of a number in a metrics file: larger ones overflow the plot's logarithmic axis.
MAX_METRIC = 1e100
# An epoch number (a metrics row's, a checkpoint's epochs done).
MAX_EPOCH = 10**9
# Bytes of a metrics file given to nnet plot.
MAX_METRICS_BYTES = 1 << 26  # 64 MiB

MODEL = "nnet-model"
CHECKPOINT = "nnet-checkpoint"
# Keys the optimizer adds to a model file's ``training`` beside the settings (Adam's).
OPTIMIZER_EXTRAS = ("beta1", "beta2", "eps")

Check = Callable[[Any], Any]


class FieldError(NnetError):
    """One field of a file is wrong: ``field <path>: <reason>``; the reader adds the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"field {path}: {reason}" if path else reason)
        self.path, self.reason = path, reason


# ----------------------------------------------------------------------------- showing values
def short(value: Any) -> str:
    """``value`` in a few words: JSON scalars as written, containers by their length."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        digits = len(str(abs(value)))
        return str(value) if digits <= 24 else f"an integer of {digits} digits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value[:40])
        return text if len(value) <= 40 else f'{text[:-1]}..." ({len(value)} characters)'
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} fields"
    return type(value).__name__


def _key(key: Any) -> str:
    """A JSON key as part of a field path."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", text) else short(text)


def _join(key: str, sub: str) -> str:
    if not sub or not key:
        return key or sub
    return f"{key}{sub}" if sub.startswith("[") else f"{key}.{sub}"


def describe(check: Any) -> str:
    """What ``check`` accepts, in words."""
    if hasattr(check, "describe"):
        return check.describe()
    if isinstance(check, Choice):
        return f"a {check.what}: one of {', '.join(check.known)}"
    if isinstance(check, Flag):
        return "true or false"
    if isinstance(check, Optional_):
        return f"null or {describe(check.inner)}"
    if isinstance(check, Many):
        return f"a list of {check.what or describe(check.item)}"
    return "a valid value"


def clip(message: str, most: int = 300) -> str:
    """A check's message on one line of at most ``most`` characters, without its period
    (the settings' checks quote the value they refuse, whatever its length)."""
    text = " ".join(message.split()).rstrip(".")
    return text if len(text) <= most else text[: most - 3] + "..."


_SCALAR_CHECKS = (Number, Choice, Flag)


def check_field(check: Check, value: Any, key: str = "") -> Any:
    """``check(value)``, every failure a :class:`FieldError` naming ``key`` (joined to the
    path of a nested failure) and no other exception."""
    scalar = check.inner if isinstance(check, Optional_) else check
    huge = isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**62
    if isinstance(scalar, _SCALAR_CHECKS) and (isinstance(value, list | dict) or huge):
        # settings' checks put repr(value) in their messages (not a million items of it)
        # and turn integers into floats (which overflows beyond 1e308)
        raise FieldError(key, f"expected {describe(check)}, got {short(value)}")
    try:
        return check(value)
    except FieldError as exc:
        raise FieldError(_join(key, exc.path), exc.reason) from None
    except NnetError as exc:
        raise FieldError(key, clip(str(exc))) from None
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise FieldError(key, f"expected {describe(check)}, got {short(value)}") from None


# ----------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Record:
    """A JSON object: ``fields`` checked where present, ``required`` ones present; unknown
    keys refused when ``strict``, else kept unchecked. Returns a checked copy."""

    fields: Mapping[str, Check]
    required: Sequence[str] = ()
    strict: bool = False
    what: str = "a JSON object"

    def describe(self) -> str:
        return self.what

    def __call__(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise NnetError(f"expected {self.what}, got {short(value)}")
        for key in self.required:
            if key not in value:
                raise FieldError(key, "missing")
        if self.strict:
            unknown = [k for k in value if k not in self.fields]
            if unknown:
                known = ", ".join(self.fields)
                raise FieldError(_key(unknown[0]), f"unexpected (the fields are {known})")
        out = dict(value)
        for key, check in self.fields.items():
            if key in value:
                out[key] = check_field(check, value[key], key)
        return out


@dataclass(frozen=True)
class ListOf:
    """A JSON array of at most ``max_items`` values, each checked by ``item``."""

    item: Check
    max_items: int = MAX_ITEMS
    what: str = ""
    min_items: int = 0

    def describe(self) -> str:
        return self.what or f"a list of {describe(self.item)}"

    def __call__(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise NnetError(f"expected {self.describe()}, got {short(value)}")
        if not self.min_items <= len(value) <= self.max_items:
            counts = f"{self.min_items} to {self.max_items}"
            if self.min_items in (0, self.max_items):
                counts = f"{'at most ' if not self.min_items else ''}{self.max_items}"
            raise NnetError(f"expected {counts} items, got {len(value)}")
        return [check_field(self.item, v, f"[{i}]") for i, v in enumerate(value)]


@dataclass(frozen=True)
class OneOrList:
    """One value ``item`` accepts, or a list of at most ``max_items`` of them."""

    item: Check
    max_items: int
    what: str

    def describe(self) -> str:
        return self.what

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return ListOf(self.item, self.max_items, self.what)(value)
        if isinstance(value, dict):
            raise NnetError(f"expected {self.what}, got {short(value)}")
        return self.item(value)


@dataclass(frozen=True)
class Text:
    """A string of at most ``max_chars`` characters."""

    max_chars: int = MAX_TEXT
    what: str = "a name"

    def describe(self) -> str:
        return f"{self.what} of at most {self.max_chars} characters"

    def __call__(self, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_chars:
            raise NnetError(f"expected {self.describe()}, got {short(value)}")
        return value


@dataclass(frozen=True)
class Whole:
    """An integer (never a bool or a float) in [lo, hi], of any size: a generator's state."""

    lo: int
    hi: int

    def describe(self) -> str:
        return f"an integer in [{self.lo}, {self.hi}]"

    def __call__(self, value: Any) -> int:
        if type(value) is not int or not self.lo <= value <= self.hi:
            raise NnetError(f"expected {self.describe()}, got {short(value)}")
        return value


@dataclass(frozen=True)
class AnyNumber:
    """A JSON number, NaN and infinities included (a model's history may hold them)."""

    def describe(self) -> str:
        return "a number"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise NnetError(f"expected a number, got {short(value)}")
        if isinstance(value, int) and abs(value) > 2**62:
            raise NnetError(f"expected a number, got {short(value)}")
        return value


@dataclass(frozen=True)
class Scalar:
    """null, true/false, a short string or a number (``number`` checks it)."""

    number: Check

    def describe(self) -> str:
        return f"null, true, false, a name or {describe(self.number)}"

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return Text()(value)
        if isinstance(value, int | float):
            return self.number(value)
        raise NnetError(f"expected {self.describe()}, got {short(value)}")


class LayerSizes:
    """A network's layer sizes: 2 to ``MAX_LAYERS`` + 1 positive integers whose network has
    at most ``MAX_PARAMETERS`` weights."""

    def describe(self) -> str:
        return f"a list of 2 to {MAX_LAYERS + 1} layer sizes (positive integers)"

    def __call__(self, value: Any) -> list[int]:
        if not isinstance(value, list) or not 2 <= len(value) <= MAX_LAYERS + 1:
            raise NnetError(f"expected {self.describe()}, got {short(value)}")
        ListOf(POSITIVE_INT)(value)  # each named by its index
        sizes = list(Sizes()(value))
        n = parameters(sizes)
        if n > MAX_PARAMETERS:
            raise NnetError(
                f"sizes {short(sizes) if len(sizes) > 8 else sizes} make a network of {n} "
                f"weights; nnet reads networks of at most {MAX_PARAMETERS}"
            )
        return sizes


def parameters(sizes: Sequence[int]) -> int:
    """The number of weights (biases included) of a network of layer ``sizes``."""
    return sum((sizes[k] + 1) * sizes[k + 1] for k in range(len(sizes) - 1))


def weight_shapes(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """The shape of each w^k: (#k + 1, #(k+1)), the bias row last."""
    return [(sizes[k] + 1, sizes[k + 1]) for k in range(len(sizes) - 1)]


@dataclass(frozen=True)
class MetricsRow:
    """One epoch's metrics: a required ``epoch``; ``lr`` and every ``*_loss`` and
    ``*_accuracy`` a number or null; ``samples`` a count; the ``*seconds`` non-negative;
    ``early_stop`` true or false; any other key a scalar. ``strict`` (a metrics file given
    to nnet plot): numbers finite and at most ``MAX_METRIC`` in magnitude; otherwise (a
    model's or checkpoint's history) NaN and infinities are kept."""

    strict: bool = True
    fields: dict[str, Check] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        number = Number(float, -MAX_METRIC, MAX_METRIC) if self.strict else AnyNumber()
        seconds = Number(float, 0, MAX_METRIC) if self.strict else AnyNumber()
        fields = {
            "epoch": Number(float, 0, MAX_EPOCH),
            "lr": Optional_(number),
            "samples": Optional_(COUNT),
            "seconds": Optional_(seconds),
            "train_seconds": Optional_(seconds),
            "engine_seconds": Optional_(seconds),
            "early_stop": Flag(),
            "*measure": Optional_(number),
            "*other": Scalar(number),
        }
        object.__setattr__(self, "fields", fields)

    def describe(self) -> str:
        return "an object of one epoch's metrics"

    def __call__(self, row: Any) -> dict[str, Any]:
        if not isinstance(row, dict):
            raise NnetError(f"expected {self.describe()}, got {short(row)}")
        if len(row) > MAX_ROW_FIELDS:
            raise NnetError(f"expected at most {MAX_ROW_FIELDS} fields, got {len(row)}")
        if "epoch" not in row:
            raise FieldError("epoch", "missing")
        for key, value in row.items():
            check = self.fields.get(key)
            if check is None:
                Text(what="a metrics key")(key)
                measure = key.endswith(("_loss", "_accuracy"))
                check = self.fields["*measure" if measure else "*other"]
            check_field(check, value, _key(key))
        return row


# ----------------------------------------------------------------------------- JSON
# A JSON string, written so that the regex engine repeats a character class, not a group: a
# group repeated per character keeps state per repetition (a MemoryError on long strings).
_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of the JSON ``text`` nest (strings skipped)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text)).encode("ascii")
    codes = np.frombuffer(brackets, np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class _Twice(Exception):
    """A key that appears twice in one JSON object."""


def _no_twice(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key appears twice (json would keep the last silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Twice(key)
            seen.add(key)
    return out


def parse_json(text: str, key: str = "meta", max_chars: int = MAX_META_CHARS) -> Any:
    """The JSON value in ``text``, within the limits above; FieldError naming ``key``."""
    if len(text) > max_chars:
        raise FieldError(key, f"{len(text)} characters of JSON; nnet reads at most {max_chars}")
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise FieldError(
            key, f"JSON nested {depth} levels deep; nnet reads at most {MAX_JSON_DEPTH}"
        )
    try:
        return json.loads(text, object_pairs_hook=_no_twice)
    except _Twice as exc:
        raise FieldError(key, f"the key {short(exc.args[0])} appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise FieldError(
            key, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise FieldError(key, f"not valid JSON ({' '.join(str(exc).split())[:120]})") from None


# ----------------------------------------------------------------------------- files' fields
ACTIVATION = Choice(tuple(ACTIVATIONS), "activation")
STRICT_ROW = MetricsRow(strict=True)
HISTORY_ROW = MetricsRow(strict=False)
HISTORY = ListOf(HISTORY_ROW, what="a list of epochs' metrics")

# What every nnet file records about its network (model_file.network_meta).
NETWORK_FIELDS: dict[str, Check] = {
    "format": Choice((MODEL, CHECKPOINT), "file format"),
    "format_version": Number(int, what="an integer format version"),
    "nnet_version": Text(what="a version"),
    "sizes": LayerSizes(),
    "activations": OneOrList(ACTIVATION, MAX_LAYERS, "an activation or one per layer"),
    "loss": Choice(tuple(LOSSES), "loss"),
    "dtype": Choice(DTYPES, "dtype"),
}
NETWORK_REQUIRED = tuple(k for k in NETWORK_FIELDS if k != "nnet_version")

# A model file's metadata: the network, and what the trainer (or the user) recorded. Other
# keys (a library user's own) are kept unchecked, within the JSON limits.
MODEL_META = Record(
    {
        **NETWORK_FIELDS,
        "task": Choice(TASKS, "task"),
        "dataset": Text(what="a dataset name"),
        "classes": Optional_(
            ListOf(Scalar(AnyNumber()), what="a list of class names", max_items=MAX_ITEMS)
        ),
        "input": Optional_(Record({})),
        "training": Record({}),  # the settings: checked by Settings.from_dict below
        "history": HISTORY,
        "best_epoch": Optional_(Number(int, 0, MAX_EPOCH)),
        "seconds": Optional_(NONNEGATIVE),
        "scaling": Optional_(Record({})),  # checked by nnet.files.export when used
    },
    required=NETWORK_REQUIRED,
    what="a JSON object of metadata",
)

# A generator's state, as numpy's PCG64 writes it (Trainer.rng.bit_generator.state).
GENERATOR_STATE = Record(
    {
        "bit_generator": Choice(("PCG64",), "bit generator"),
        "state": Record(
            {"state": Whole(0, 2**128 - 1), "inc": Whole(0, 2**128 - 1)},
            required=("state", "inc"),
            strict=True,
        ),
        "has_uint32": Whole(0, 1),
        "uinteger": Whole(0, 2**32 - 1),
    },
    required=("bit_generator", "state", "has_uint32", "uinteger"),
    strict=True,
    what="a generator state",
)

# The pass over the data under way when the checkpoint was written (Trainer.progress).
PROGRESS = Record(
    {
        "batch": COUNT,
        "loss_sum": NONNEGATIVE,
        "correct": COUNT,
        "seen": COUNT,
        "seconds": NONNEGATIVE,
        "engine_seconds": NONNEGATIVE,
        "rng_start": GENERATOR_STATE,
    },
    required=("batch", "loss_sum", "correct", "seen", "seconds", "engine_seconds", "rng_start"),
    strict=True,
    what="the pass under way",
)

# The trainer's state (checkpoint.save_checkpoint).
TRAINER_STATE = Record(
    {
        "epoch": Number(int, 0, MAX_EPOCH),
        "history": HISTORY,
        "best": Optional_(ListOf(NONNEGATIVE, 2, "[validation loss, epoch]", min_items=2)),
        "early_stopped": Flag(),
        "train_seconds": NONNEGATIVE,
        "progress": Optional_(PROGRESS),
        "rng": GENERATOR_STATE,
        "augment_rng": Optional_(GENERATOR_STATE),  # --augment's generator (none before it)
        "threads": Optional_(Number(int, 1, 4096)),  # the BLAS threads (none before 0.2)
    },
    required=("epoch", "history", "best", "early_stopped", "train_seconds", "progress", "rng"),
    strict=True,
    what="the trainer's state",
)

OPTIMIZER_STATE = Record(
    {"name": Choice(OPTIMIZERS, "optimizer"), "t": Number(int, 0)},
    required=("name", "t"),
    strict=True,
    what="the optimizer's state",
)

CHECKPOINT_META = Record(
    {
        **NETWORK_FIELDS,
        "settings": Record({}),  # checked by Settings.from_dict below
        "optimizer": OPTIMIZER_STATE,
        "trainer": TRAINER_STATE,
    },
    required=(*NETWORK_REQUIRED, "settings", "optimizer", "trainer"),
    what="a JSON object of metadata",
)


# ----------------------------------------------------------------------------- whole files
def settings_from(values: dict[str, Any], key: str, *, lenient: bool = False) -> Settings:
    """The :class:`Settings` a file records under ``key``; FieldError naming the setting.
    ``lenient`` ignores settings this nnet does not know (a model file's record of them)."""
    ignore = OPTIMIZER_EXTRAS
    if lenient:
        ignore += tuple(k for k in values if k not in FIELDS)
    try:
        return Settings.from_dict(values, ignore=ignore)
    except NnetError as exc:
        text = " ".join(str(exc).split())
        match = re.match(r"setting (\w+): (.*)", text)
        if match:
            raise FieldError(f"{key}.{match[1]}", clip(match[2])) from None
        raise FieldError(key, clip(text)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise FieldError(key, f"unusable settings ({type(exc).__name__})") from None


def _activations(meta: dict[str, Any]) -> None:
    names, L = meta["activations"], len(meta["sizes"]) - 1
    if isinstance(names, list) and len(names) != L:
        raise FieldError(
            "activations", f"expected one name or {L} (one per layer), got {len(names)}"
        )


def check_model_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A model file's metadata checked (a checked copy); FieldError for the first problem."""
    checked = check_field(MODEL_META, meta)
    _activations(checked)
    if "training" in checked:
        training = {"task": checked.get("task", "classifier"), **checked["training"]}
        settings_from(training, "training", lenient=True)
    return checked


def check_generator(state: dict[str, Any], key: str) -> None:
    """FieldError unless numpy accepts ``state`` as a PCG64 generator's."""
    try:
        np.random.PCG64().state = state
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise FieldError(key, f"not a usable generator state ({type(exc).__name__})") from None


def check_checkpoint_meta(meta: dict[str, Any]) -> tuple[Settings, dict[str, Any]]:
    """A checkpoint's settings and its checked metadata (a checked copy, counts as ints);
    FieldError for the first problem, including the fields that contradict each other."""
    checked = check_field(CHECKPOINT_META, meta)
    _activations(checked)
    settings = settings_from(checked["settings"], "settings")
    trainer, opt = checked["trainer"], checked["optimizer"]
    for key in ("sizes", "dtype"):
        ours = list(settings.sizes) if key == "sizes" else settings.dtype
        if checked[key] != ours:
            raise FieldError(key, f"expected the settings' {ours}, got {short(checked[key])}")
    if opt["name"] != settings.optimizer:
        raise FieldError(
            "optimizer.name", f"expected the settings' {settings.optimizer}, got {opt['name']}"
        )
    epoch = trainer["epoch"]
    if epoch > settings.epochs:
        raise FieldError("trainer.epoch", f"{epoch} epochs done of {settings.epochs}")
    if len(trainer["history"]) != epoch:
        got = len(trainer["history"])
        raise FieldError("trainer.history", f"expected {epoch} epochs (trainer.epoch), got {got}")
    best = trainer["best"]
    if best is not None:
        if not (float(best[1]).is_integer() and 1 <= best[1] <= epoch):
            raise FieldError(
                "trainer.best", f"expected [validation loss, epoch 1..{epoch}], got {best}"
            )
        trainer["best"] = [best[0], int(best[1])]
    check_generator(trainer["rng"], "trainer.rng")
    augment_rng = trainer.get("augment_rng")
    if settings.augment and augment_rng is None:
        raise FieldError("trainer.augment_rng", "missing (the settings have augment on)")
    if augment_rng is not None:
        check_generator(augment_rng, "trainer.augment_rng")
    progress = trainer["progress"]
    if progress is not None:
        check_generator(progress["rng_start"], "trainer.progress.rng_start")
        batch, seen = progress["batch"], progress["seen"]
        if seen != batch * settings.batch_size:
            raise FieldError(
                "trainer.progress.seen",
                f"expected {batch} batches of {settings.batch_size} samples, got {seen}",
            )
        if progress["correct"] > seen:
            raise FieldError(
                "trainer.progress.correct",
                f"expected at most the {seen} samples seen, got {progress['correct']}",
            )
    return settings, checked


# ----------------------------------------------------------------------------- arrays
def model_arrays(meta: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays a model file with (checked) ``meta`` holds: name -> (shape, dtype)."""
    dtype = np.dtype(meta["dtype"])
    return {f"w{k}": (shape, dtype) for k, shape in enumerate(weight_shapes(meta["sizes"]))}


def checkpoint_arrays(
    settings: Settings, checked: dict[str, Any]
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays a checkpoint holds: the weights, the optimizer's state (once it has taken a
    step) and the best epoch's weights (when there is one), all shaped like the weights."""
    arrays = model_arrays(checked)
    shapes = list(arrays.values())
    if checked["optimizer"]["t"]:
        names = make_optimizer(
            settings.optimizer,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=settings.weight_decay,
            kernels="numpy",  # only its state's names are wanted: no compiled kernels
        ).state_names
        arrays.update({f"opt_{n}{k}": s for k, s in enumerate(shapes) for n in names})
    if checked["trainer"]["best"] is not None:
        arrays.update({f"best_w{k}": s for k, s in enumerate(shapes)})
    return arrays
