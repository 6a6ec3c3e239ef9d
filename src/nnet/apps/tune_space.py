"""The search space of ``nnet tune``: a small TOML file, checked line by line, and how one
Optuna trial draws a run's settings from it.

A space file has two tables::

    [base]                 # settings every trial shares (nnet train's settings, with _)
    preset = "best"

    [params.lr]            # one table per searched parameter
    float = [1e-4, 1e-2]   # or int = [low, high], or choice = [...]
    log = true             # optional: log scale (float and int)
    step = 64              # optional: the grid of an int (or float) range
    setting = "lr"         # optional: the setting it sets (default: the table's name)
    when = { optimizer = ["adam", "adamw"] }   # optional: only if earlier draws match

Besides the settings of :class:`~nnet.training.settings.Settings`, four names describe the
architecture and dropout: ``hidden_layers`` and ``width`` (the hidden layers between the
dataset's inputs and outputs; ``per_layer = true`` on ``width`` draws one width per layer),
``dropout_input`` and ``dropout_hidden`` (the rate of the input layer and of every hidden
layer). Parameters are drawn in the order of the file, so a ``when`` may only name
parameters above it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnet.data.datasets import DATASETS
from nnet.errors import NnetError
from nnet.training.presets import PRESETS, settings_for
from nnet.training.settings import FIELDS, Many, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The names of a space that are not settings: the network's shape and its dropout.
DERIVED = ("hidden_layers", "width", "dropout_input", "dropout_hidden")
#: Settings a space may not set: ``nnet tune`` sets them (the seed derives from --seed and
#: the trial's number; --val and --train-samples are flags of the study).
RESERVED = ("seed", "task")
#: The keys a parameter's table may hold.
PARAM_KEYS = ("int", "float", "choice", "log", "step", "setting", "when", "per_layer")

#: The built-in space (``nnet tune --print-space`` prints it, to start a file of your own).
#: Sized for MNIST on a 2-core machine: a trial trains for 5 to 30 epochs, networks of up to
#: three hidden layers of up to 1024 neurons, so that an hour runs a few dozen trials.
DEFAULT_SPACE = """\
# nnet tune search space (TOML). [base]: settings every trial shares; [params.NAME]: one
# searched parameter each: int = [low, high], float = [low, high] or choice = [...], with
# optional log = true, step = N, when = { earlier_param = value or [values] }.
[base]
preset = "best"          # cross-entropy, He initialization, float32 (see nnet train --help)

[params.hidden_layers]
int = [1, 3]

[params.width]           # every hidden layer's width (per_layer = true: one each)
int = [256, 1024]
step = 64

[params.activation]
choice = ["relu", "leaky_relu", "elu"]

[params.optimizer]
choice = ["adam", "adamw", "sgd"]

[params.lr]              # Adam's and AdamW's learning rate
float = [1e-4, 1e-2]
log = true
when = { optimizer = ["adam", "adamw"] }

[params.lr_sgd]          # SGD's (benchmarks/choose_best.py's Nesterov runs: 0.1 and 0.2)
setting = "lr"
float = [0.01, 0.3]
log = true
when = { optimizer = "sgd" }

[params.momentum]
float = [0.8, 0.95]
when = { optimizer = "sgd" }

[params.nesterov]
choice = [true, false]
when = { optimizer = "sgd" }

[params.schedule]
choice = ["cosine", "step", "constant"]

[params.batch_size]
choice = [128, 256, 512]

[params.dropout_input]
float = [0.0, 0.3]

[params.dropout_hidden]
float = [0.0, 0.5]

[params.weight_decay]
float = [1e-7, 1e-3]
log = true

[params.epochs]
int = [5, 30]
"""


@dataclass(frozen=True)
class Param:
    """One searched parameter: how it is drawn (``kind`` int, float or choice; ``low``,
    ``high``, ``log``, ``step``, or ``choices``), which setting it sets, and when."""

    name: str
    kind: str
    setting: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    per_layer: bool = False

    def applies(self, drawn: dict[str, Any]) -> bool:
        """Whether this parameter is drawn, given the parameters ``drawn`` before it."""
        return all(name in drawn and drawn[name] in values for name, values in self.when)

    def suggest(self, trial: Any, name: str | None = None) -> Any:
        """Draw it from ``trial`` (an ``optuna.Trial``) as ``name`` (default its own)."""
        name = name or self.name
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        """The range in a few words (for ``nnet tune``'s first line)."""
        if self.kind == "choice":
            return "|".join(map(str, self.choices))
        shown = f"{self.low:g}..{self.high:g}"
        return shown + (" log" if self.log else "") + (f" step {self.step:g}" if self.step else "")


@dataclass(frozen=True)
class Space:
    """A checked search space: the shared settings (``base``, with its ``preset``) and the
    parameters in the order they are drawn."""

    preset: str
    base: dict[str, Any]
    params: tuple[Param, ...]
    source: str

    def draw(self, trial: Any) -> dict[str, Any]:
        """The settings one trial sets (its explicit values over the preset): every
        parameter that applies, drawn from ``trial``, and the network's shape and dropout
        made from the derived names."""
        drawn: dict[str, Any] = {}
        values: dict[str, Any] = dict(self.base)
        for p in self.params:
            if not p.applies(drawn):
                continue
            if p.per_layer:
                layers = drawn.get("hidden_layers", len(self.preset_sizes()) - 2)
                drawn[p.name] = [p.suggest(trial, f"{p.name}_{k + 1}") for k in range(layers)]
            else:
                drawn[p.name] = p.suggest(trial, p.name)
            if p.setting not in DERIVED:
                values[p.setting] = as_setting(p.setting, drawn[p.name])
        return self._shape(values, drawn)

    def preset_sizes(self) -> tuple[int, ...]:
        return tuple(self.base.get("sizes") or PRESETS[self.preset].sizes)

    def _shape(self, values: dict[str, Any], drawn: dict[str, Any]) -> dict[str, Any]:
        """``sizes`` and ``dropout`` from the derived parameters drawn."""
        sizes = list(values.get("sizes") or self.preset_sizes())
        if "hidden_layers" in drawn or "width" in drawn:
            layers = drawn.get("hidden_layers", len(sizes) - 2)
            width = drawn.get("width", sizes[1:-1] or [sizes[0]])
            widths = width if isinstance(width, list) else [width] * layers
            dataset = values.get("dataset", PRESETS[self.preset].dataset)
            task = values.get("task", PRESETS[self.preset].task)
            if dataset in DATASETS:
                spec = DATASETS[dataset]
                sizes = [spec.n_inputs, spec.n_outputs(task)]
            sizes = [sizes[0], *widths[:layers], sizes[-1]]
            values["sizes"] = sizes
        rates = values.get("dropout")
        if rates is None and self.preset_sizes() != tuple(sizes):
            rates = PRESETS[self.preset].dropout  # the preset's, fitted to the new shape below
        if "dropout_input" in drawn or "dropout_hidden" in drawn or rates is not None:
            rates = list(rates or [0.0])
            first = rates[0] if len(rates) > 1 else 0.0
            hidden = drawn.get("dropout_hidden", rates[-1])
            values["dropout"] = [drawn.get("dropout_input", first), *[hidden] * (len(sizes) - 2)]
        return values

    def settings(self, explicit: dict[str, Any]) -> Settings:
        """The settings of a trial whose drawn values are ``explicit``."""
        return settings_for(self.preset, explicit)


def _fail(where: str, message: str) -> NnetError:
    return NnetError(f"{where}: {message}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, f"expected a number, got {value!r}.")
    return value


def _param(name: str, table: Any, earlier: dict[str, Param], where: str) -> Param:
    """One ``[params.NAME]`` table, checked."""
    if not isinstance(table, dict):
        raise _fail(where, "expected a table like { float = [0.0, 0.5] }.")
    unknown = [k for k in table if k not in PARAM_KEYS]
    if unknown:
        raise _fail(
            f"{where}.{unknown[0]}", f"unknown key; expected one of {', '.join(PARAM_KEYS)}."
        )
    kinds = [k for k in ("int", "float", "choice") if k in table]
    if len(kinds) != 1:
        raise _fail(
            where, "give exactly one of int = [low, high], float = [low, high], choice = [...]."
        )
    kind = kinds[0]
    setting = table.get("setting", name)
    if not isinstance(setting, str) or (setting not in FIELDS and setting not in DERIVED):
        derived = ", ".join(DERIVED)
        raise _fail(
            f"{where}.setting" if "setting" in table else where,
            f"{setting!r} is not a setting of nnet train nor one of {derived}.",
        )
    if setting in RESERVED or setting == "preset":
        raise _fail(where, f"{setting} cannot be searched (nnet tune sets it).")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise _fail(f"{where}.log", f"expected true or false, got {log!r}.")
    per_layer = table.get("per_layer", False)
    if not isinstance(per_layer, bool) or (per_layer and setting != "width"):
        raise _fail(f"{where}.per_layer", "only width takes per_layer = true or false.")
    when = table.get("when", {})
    if not isinstance(when, dict):
        raise _fail(f"{where}.when", 'expected a table like { optimizer = "sgd" }.')
    conditions = []
    for other, values in when.items():
        if other not in earlier:
            raise _fail(f"{where}.when.{other}", "names no parameter above this one.")
        values = tuple(values) if isinstance(values, list) else (values,)
        conditions.append((other, values))
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "setting": setting,
        "log": log,
        "when": tuple(conditions),
        "per_layer": per_layer,
    }
    if kind == "choice":
        choices = table["choice"]
        if not isinstance(choices, list) or not choices:
            raise _fail(f"{where}.choice", "expected a non-empty list of values.")
        if log or "step" in table:
            raise _fail(where, "a choice takes no log or step.")
        checked = _check_values(setting, choices, f"{where}.choice")
        return Param(**fields, choices=tuple(checked))
    bounds = table[kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise _fail(f"{where}.{kind}", "expected [low, high].")
    low, high = (_number(v, f"{where}.{kind}") for v in bounds)
    if kind == "int" and not all(float(v).is_integer() for v in (low, high)):
        raise _fail(f"{where}.int", f"expected whole numbers, got {bounds!r}.")
    if not low <= high:
        raise _fail(f"{where}.{kind}", f"low must not be above high; got {bounds!r}.")
    if log and low <= 0:
        raise _fail(f"{where}.log", f"a log scale needs low > 0; got {low!r}.")
    step = table.get("step")
    if step is not None:
        step = _number(step, f"{where}.step")
        if step <= 0 or (kind == "int" and not float(step).is_integer()):
            raise _fail(f"{where}.step", f"expected a positive {kind} step, got {step!r}.")
        if log:
            raise _fail(where, "give log or step, not both.")
    _check_values(setting, [low, high], f"{where}.{kind}")
    return Param(**fields, low=low, high=high, step=step)


def as_setting(setting: str, value: Any) -> Any:
    """A drawn value as the setting takes it: one name or number where the setting is a list
    (activation, init, dropout) becomes a list of one."""
    check = FIELDS[setting].metadata["check"]
    many = isinstance(getattr(check, "inner", check), Many)
    return [value] if many and not isinstance(value, list) else value


def _check_values(setting: str, values: list[Any], where: str) -> list[Any]:
    """Each value checked by its setting's own check (the derived names by theirs)."""
    if setting in ("hidden_layers", "width"):
        for v in values:
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or v < (0 if setting == "hidden_layers" else 1)
            ):
                what = (
                    "a whole number >= 0"
                    if setting == "hidden_layers"
                    else "a positive whole number"
                )
                raise _fail(where, f"expected {what}, got {v!r}.")
        return values
    if setting in ("dropout_input", "dropout_hidden"):
        for v in values:
            if _number(v, where) < 0 or v >= 1:
                raise _fail(where, f"a dropout rate must be in [0, 1); got {v!r}.")
        return values
    check = FIELDS[setting].metadata["check"]
    out = []
    for v in values:
        try:
            checked = check(as_setting(setting, v))
        except NnetError as exc:
            raise _fail(where, str(exc).rstrip(".") + ".") from None
        out.append(v if isinstance(checked, tuple) else checked)
    return out


def parse_space(text: str, where: str = "the search space") -> Space:
    """A space from the TOML ``text``; NnetError naming the key of the first problem."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NnetError(f"{where} is not valid TOML: {exc}.") from None
    unknown = [k for k in doc if k not in ("base", "params")]
    if unknown:
        raise NnetError(
            f"{where}: unknown table [{unknown[0]}]; expected [base] and [params.NAME]."
        )
    base = doc.get("base", {})
    if not isinstance(base, dict):
        raise NnetError(f"{where}: base must be a table of settings.")
    preset = base.get("preset", "best")
    if preset not in PRESETS:
        raise NnetError(
            f"{where}: base.preset: unknown preset {preset!r}; expected one of "
            + ", ".join(PRESETS)
            + "."
        )
    shared: dict[str, Any] = {}
    for key, value in base.items():
        if key == "preset":
            continue
        if key not in FIELDS:
            raise NnetError(f"{where}: base.{key}: not a setting of nnet train.")
        if key in RESERVED:
            raise NnetError(
                f"{where}: base.{key}: nnet tune sets it (--seed derives each trial's)."
            )
        try:
            FIELDS[key].metadata["check"](value)
        except NnetError as exc:
            raise NnetError(f"{where}: base.{key}: {str(exc).rstrip('.')}.") from None
        shared[key] = value
    params_table = doc.get("params", {})
    if not isinstance(params_table, dict) or not params_table:
        raise NnetError(f"{where}: no parameters to search; add tables like [params.lr].")
    params: dict[str, Param] = {}
    for name, table in params_table.items():
        params[name] = _param(name, table, params, f"{where}: params.{name}")
    if "width" in params and params["width"].per_layer and "hidden_layers" in params:
        if params["hidden_layers"].kind == "choice":
            raise NnetError(
                f"{where}: params.hidden_layers: give int = [low, high] with a per-layer width."
            )
    space = Space(preset, shared, tuple(params.values()), where)
    try:
        settings_for(preset, shared)
    except NnetError as exc:
        raise NnetError(f"{where}: base: {str(exc).rstrip('.')}.") from None
    return space


def read_space(path: str | Path | None) -> Space:
    """The space in the TOML file ``path``, or the built-in one (None)."""
    if path is None:
        return parse_space(DEFAULT_SPACE, "the built-in search space")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NnetError(f"{path} is not a UTF-8 text file (a TOML search space).") from None
    except OSError as exc:
        raise NnetError(f"cannot read {path}: {exc.strerror or exc}.") from None
    return parse_space(text, str(path))
