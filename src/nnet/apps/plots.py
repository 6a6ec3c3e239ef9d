"""Pictures of training runs and trained models, as PNG files; no display ever needed.

:func:`plot_curves` draws the per-epoch metrics of runs, :func:`inspect_model` what a trained
network does on the test set. Figures use the Agg canvas, never ``pyplot`` (no backend is
selected, no window opened: it works headless); each file is written whole or not at all.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from nnet.core.network import ForwardPass, Network
from nnet.data.datasets import class_names, to_inputs
from nnet.data.idx import SpecialFileError, open_regular, shown
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files import schema
from nnet.files.model_file import read_meta
from nnet.files.schema import FieldError

Array = np.ndarray
PathLike = str | os.PathLike[str]

#: Pixel sizes (width, height) of the pictures :func:`inspect_model` writes, all at 100 dpi.
INSPECT_SIZES: dict[str, tuple[int, int]] = {
    "confusion.png": (900, 800),
    "weights.png": (800, 800),
    "wrong.png": (1000, 750),
    "activations.png": (1000, 500),
    "reconstructions.png": (1200, 260),
}
#: At most this many first-layer neurons are drawn in ``weights.png``.
MAX_WEIGHT_IMAGES = 100
#: How many of the most confidently wrong test images ``wrong.png`` shows (4 rows of 6).
N_WRONG = 24
#: How many test images ``reconstructions.png`` shows (beside their reconstructions).
N_RECONSTRUCTIONS = 12
#: The loss axis is logarithmic when the largest loss is this many times the smallest.
LOG_SCALE_RATIO = 100.0
#: Bins of each hidden-activation histogram.
HISTOGRAM_BINS = 50
#: The horizontal axes :func:`plot_curves` can draw against: the label and title of each.
X_AXES = {
    "epoch": ("epoch", "{} per epoch"),
    "seconds": ("training seconds (cumulative, evaluation included)", "{} against wall time"),
}

# Line style and legend name of each split of the metrics.
_SPLITS = {"train": ("-", "train"), "val": (":", "validation"), "test": ("--", "test")}
# The y label of each panel of the curves, and the factor its values are drawn with.
_PANELS = {"loss": ("loss", 1.0), "accuracy": ("accuracy (%)", 100.0)}
# Histogram ranges of the activations whose range is known (the others are measured).
_FIXED_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
# The share of activations worth a note, per activation: its activations.json key, which
# values count, and that condition in words. Saturated means g' below about 8% of its peak.
_NOTED = {
    "sigmoid": ("saturated_fraction", lambda a: (a < 0.02) | (a > 0.98), "a < 0.02 or a > 0.98"),
    "tanh": ("saturated_fraction", lambda a: np.abs(a) > 0.96, "|a| > 0.96"),
    "relu": ("zero_fraction", lambda a: a == 0, ""),
}


def _new_figure(pixels: tuple[int, int], dpi: float = 100, **kwargs: Any) -> Figure:
    """A Figure with an Agg canvas that renders to exactly ``pixels`` (width, height).

    Agg truncates width * dpi to an int, and 2.3 * 100 is 229.999... in floating point; a
    thousandth of a pixel more makes the truncation land on the intended integer.
    """
    w, h = pixels
    fig = Figure(figsize=((w + 1e-3) / dpi, (h + 1e-3) / dpi), dpi=dpi, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _write(path: Path, content: Figure | dict[str, Any]) -> Path:
    """Write a figure as PNG (its own size and dpi, never cropped), anything else as JSON."""
    with atomic_write(path) as f:  # a failure leaves no file behind
        if isinstance(content, Figure):
            content.canvas.print_png(f)
        else:
            f.write((json.dumps(content, indent=1, allow_nan=False) + "\n").encode())
    return path


def _pixels(size: Sequence[float], dpi: float) -> tuple[int, int]:
    try:
        w, h = (float(s) for s in size)
        dpi = float(dpi)
    except (TypeError, ValueError):
        raise NnetError(
            f"size must be (width, height) in inches and dpi a number; got {size!r}, {dpi!r}."
        ) from None
    if not (dpi > 0 and w > 0 and h > 0 and math.isfinite(w * h * dpi)):
        raise NnetError(f"size and dpi must be positive; got size {size!r} and dpi {dpi!r}.")
    pixels = (round(w * dpi), round(h * dpi))
    if min(pixels) < 50 or max(pixels) > 10000:
        raise NnetError(
            f"a picture of {pixels[0]}x{pixels[1]} pixels is too small or too large; "
            "choose size and dpi for 50 to 10000 pixels a side."
        )
    return pixels


def _is_number(v: Any, finite: bool = False) -> bool:
    """A JSON number that fits a float (true/false and 10**400 are not); a finite one."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v)) or not finite
    except OverflowError:
        return False


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_row(row: Any, where: str) -> dict[str, Any]:
    """One epoch's metrics, checked: an object with a numeric ``epoch`` and numeric (or
    null) losses, accuracies and learning rate. ``where`` names the line for errors."""
    if not isinstance(row, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
        raise NnetError(
            f"{where} is {kind.get(type(row), 'a number')}, not a JSON object of one epoch's "
            "metrics; fix or remove that line."
        )
    if "epoch" not in row:
        raise NnetError(
            f'{where} has no "epoch"; every line of a metrics file is one epoch, so fix or '
            "remove that line."
        )
    if not _is_number(epoch := row["epoch"], finite=True):
        raise NnetError(f'{where} has "epoch": {_short(epoch)}, not a number; fix that line.')
    for key, value in row.items():
        numeric = key == "lr" or key.endswith(("_loss", "_accuracy"))
        if numeric and value is not None and not _is_number(value):
            raise NnetError(
                f'{where} has "{key}": {_short(value)}, not a number or null; fix that line.'
            )
    return row


def read_metrics(path: PathLike) -> list[dict[str, Any]]:
    """The per-epoch metrics in a JSON Lines file written by ``nnet train --metrics FILE``.

    One JSON object per line, each with at least ``epoch``; blank lines are skipped. Only a
    regular file of at most ``MAX_METRICS_BYTES`` is read; each line is JSON within the
    limits of :func:`nnet.files.schema.parse_json`, and each row must pass
    :data:`nnet.files.schema.STRICT_ROW` (finite numbers of at most ``MAX_METRIC``). Any
    problem raises :class:`NnetError` naming the file and the line number (from 1).
    """
    where_file = shown(path)
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size  # read no more than is there, within the limit
            data = f.read(size + 1) if size <= schema.MAX_METRICS_BYTES else None
    except FileNotFoundError:
        raise NnetError(
            f"{where_file} does not exist; check the path, or write one with nnet train --metrics."
        ) from None
    except IsADirectoryError:
        raise NnetError(
            f"{where_file} is a folder; pass the file that nnet train --metrics wrote."
        ) from None
    except SpecialFileError:
        raise NnetError(
            f"{where_file} is not a regular file (a device, FIFO or socket); pass the file "
            "that nnet train --metrics wrote."
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NnetError(f"{where_file} cannot be read ({reason}); check its permissions.") from None
    if data is None or len(data) > schema.MAX_METRICS_BYTES:
        raise NnetError(
            f"{where_file} is larger than {schema.MAX_METRICS_BYTES} bytes; a metrics file of "
            "nnet train is far smaller."
        )
    rows: list[dict[str, Any]] = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{where_file} line {n}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise NnetError(
                f"{where} is not UTF-8 text; the file is damaged or not a metrics file."
            ) from None
        if not line:
            continue
        if len(rows) == schema.MAX_ITEMS:
            raise NnetError(f"{where}: more than {schema.MAX_ITEMS} epochs; refusing the file.")
        try:
            row = schema.parse_json(line, "")
        except FieldError as exc:
            if exc.reason.startswith("not valid JSON"):  # the wording nnet has always used
                reason = exc.reason.removeprefix("not valid JSON (").removesuffix(")")
                raise NnetError(
                    f"{where} is not valid JSON: {reason}; fix or remove that line."
                ) from None
            raise NnetError(f"{where}: {exc}; fix or remove that line.") from None
        rows.append(_checked_row(row, where))
    if not rows:
        raise NnetError(
            f"{where_file} is empty: it holds no epochs; fill it with nnet train --metrics."
        )
    return rows


def _checked_row(row: Any, where: str) -> dict[str, Any]:
    """``row`` checked as one epoch of a metrics file: first as plots always checked rows,
    then against :data:`nnet.files.schema.STRICT_ROW`."""
    _check_row(row, where)
    try:
        return schema.check_field(schema.STRICT_ROW, row)
    except FieldError as exc:
        raise NnetError(f"{where}: {exc}; fix or remove that line.") from None


def read_runs(paths: Sequence[PathLike]) -> dict[str, list[dict[str, Any]]]:
    """Runs to overlay with :func:`plot_curves`: metrics files (:func:`read_metrics`) or the
    training ``history`` of model files (``.npz``, read without their arrays), named after
    their files without suffix (by their paths where two share a name)."""
    stems = [Path(p).stem for p in paths]
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in map(Path, paths):
        name = path.stem if stems.count(path.stem) == 1 else str(path)
        while name in runs:  # the same path given twice
            name += "'"
        if path.suffix != ".npz":
            runs[name] = read_metrics(path)
            continue
        history = read_meta(path).get("history")
        if not isinstance(history, list) or not history:
            raise NnetError(
                f"{shown(path)} records no training history; plot its run's metrics file."
            )
        runs[name] = [
            _checked_row(r, f"{shown(path)} history entry {i}") for i, r in enumerate(history, 1)
        ]
    return runs


def curves_figure(
    runs: Mapping[str, list[dict[str, Any]]],
    *,
    size: Sequence[float] = (10, 4),
    dpi: float = 100,
    x: str = "epoch",
) -> Figure:
    """The figure :func:`plot_curves` writes (see there), for callers who want to adjust it."""
    pixels = _pixels(size, dpi)
    if x not in X_AXES:
        raise NnetError(f"x must be one of {', '.join(X_AXES)}; got {x!r}.")
    if not isinstance(runs, Mapping) or not runs:
        raise NnetError("no runs to plot; pass one or more metrics files.")
    n = len(runs)
    turbo = colormaps["turbo"]
    colors = [f"C{i}" if n <= 10 else turbo(0.05 + 0.9 * i / (n - 1)) for i in range(n)]
    curves = []  # (panel, colour, split, x, y): each split of each run that has values
    for color, (name, rows) in zip(colors, runs.items(), strict=True):
        if not rows:
            raise NnetError(f"run {name!r} has no epochs to plot; its metrics file is empty.")
        for i, row in enumerate(rows, 1):
            where = f"run {name!r} entry {i}"
            _check_row(row, where)
            seconds = row.get("seconds")
            if x == "seconds" and not (_is_number(seconds, finite=True) and seconds >= 0):
                raise NnetError(
                    f'{where} has no "seconds" (a number >= 0) to plot against time; plot it '
                    "per epoch (--x epoch), or use a metrics file of nnet train."
                )
        # the epochs, or the training time at the end of each: the running sum of "seconds"
        xs = np.array([float(row[x]) for row in rows])
        xs = np.cumsum(xs) if x == "seconds" else xs
        for panel, split in itertools.product(_PANELS, _SPLITS):
            values = [row.get(f"{split}_{panel}") for row in rows]
            if any(map(_is_number, values)):  # nulls and non-finite values are gaps (NaN)
                y = np.array([float(v) if _is_number(v, finite=True) else np.nan for v in values])
                curves.append((panel, color, split, xs, y))
    panels = ["loss"] + (["accuracy"] if any(c[0] == "accuracy" for c in curves) else [])
    fig = _new_figure(pixels, dpi, layout="constrained")
    axes = dict(zip(panels, fig.subplots(1, len(panels), squeeze=False)[0], strict=True))
    for panel, color, split, xs_run, y in curves:
        marker = "o" if np.count_nonzero(np.isfinite(y)) == 1 else None
        ax, scale = axes[panel], _PANELS[panel][1]
        ax.plot(xs_run, y * scale, linestyle=_SPLITS[split][0], color=color, marker=marker, ms=4)
    xlabel, title = X_AXES[x]
    for panel, ax in axes.items():
        ax.set(xlabel=xlabel, ylabel=_PANELS[panel][0], title=title.format(panel))
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.set_xlim(0, None)
        ax.grid(True, alpha=0.3)
    losses = np.concatenate([np.empty(0)] + [c[-1] for c in curves if c[0] == "loss"])
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() >= LOG_SCALE_RATIO * losses.min():
        axes["loss"].set_yscale("log")
    lines = [Line2D([], [], color=c, lw=2) for c in colors]
    legend = axes["loss"].legend(lines, [*runs], fontsize="small", loc="upper right", title="run")
    if len(axes) == 1:  # the split legend goes on the same panel: keep this one too
        axes["loss"].add_artist(legend)
    if seen := [split for split in _SPLITS if any(c[2] == split for c in curves)]:
        lines = [Line2D([], [], color="0.2", linestyle=_SPLITS[s][0]) for s in seen]
        labels = [_SPLITS[s][1] for s in seen]
        axes[panels[-1]].legend(lines, labels, fontsize="small", loc="center right")
    return fig


def plot_curves(
    runs: Mapping[str, list[dict[str, Any]]],
    out: PathLike,
    *,
    size: Sequence[float] = (10, 4),
    dpi: float = 100,
    x: str = "epoch",
) -> None:
    """Write a PNG of loss (left) and accuracy in % (right) per epoch of several runs.

    ``runs`` maps a run name (shown in the legend) to its per-epoch metrics, as
    :func:`read_metrics` returns them. Each run gets one colour; train is solid, validation
    dotted and test dashed. Nulls (an autoencoder's accuracy) and non-finite values are
    gaps. With ``x="seconds"`` the curves are drawn against the cumulative training seconds
    (every row needs its ``seconds``, evaluation included), to compare runs by wall time.

    Runs without accuracy (autoencoders) appear only in the loss panel, and without any the
    loss panel takes the whole width. The loss axis is logarithmic when the largest loss is
    at least :data:`LOG_SCALE_RATIO` times the smallest. The PNG is exactly
    ``round(size[0] * dpi)`` x ``round(size[1] * dpi)`` pixels.
    """
    _write(Path(out), curves_figure(runs, size=size, dpi=dpi, x=x))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int = 10) -> Array:
    """Counts (n_classes, n_classes), int64: ``cm[i, j]`` = samples of true class i that
    were predicted as class j (rows true, columns predicted)."""
    n_classes = int(n_classes)
    if n_classes < 1:
        raise NnetError(f"n_classes must be at least 1; got {n_classes}.")
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.shape != t.shape:
        raise NnetError(
            f"labels and predictions must be two 1-D arrays of one length; got shapes "
            f"{t.shape} and {p.shape}."
        )
    for name, a in (("labels", t), ("predictions", p)):
        if a.size and not (a.dtype.kind in "iu" and 0 <= a.min() <= a.max() < n_classes):
            raise NnetError(f"{name} must be integers 0..{n_classes - 1}; got {a.dtype} values.")
    flat = t.astype(np.int64) * n_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(cm: Any) -> Array:
    """The fraction of each true class predicted right: diagonal / row sums, float64.

    A class with no samples (an empty row) gets NaN, not 0: "never seen" is not "always
    wrong" (``confusion.json`` writes it as null).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise NnetError(f"a confusion matrix must be square; got shape {cm.shape}.")
    rows = cm.sum(axis=1).astype(np.float64)
    return np.divide(np.diag(cm), rows, out=np.full(rows.shape, np.nan), where=rows > 0)


def most_confident_mistakes(y_true: Any, y_pred: Any, confidence: Any, k: int = N_WRONG) -> Array:
    """Indices of at most ``k`` misclassified samples, highest ``confidence`` (the predicted
    class's probability) first; ties keep the order of the samples."""
    wrong = np.flatnonzero(np.asarray(y_true) != np.asarray(y_pred))
    order = np.argsort(-np.asarray(confidence, dtype=np.float64)[wrong], kind="stable")
    return wrong[order[:k]]


def _confusion_figure(cm: Array, acc: Array, names: list[str]) -> Figure:
    n, total = cm.shape[0], int(cm.sum())
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = _new_figure(INSPECT_SIZES["confusion.png"], layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    if n <= 20:
        for (i, j), count in np.ndenumerate(cm):
            color = "white" if frac[i, j] > 0.5 else "black"
            size = 9 if n <= 10 else 6
            ax.text(j, i, str(count), ha="center", va="center", fontsize=size, color=color)
    short = max(map(len, names)) <= 2
    ax.set_xticks(range(n), names, rotation=0 if short else 45, ha="center" if short else "right")
    rates = [f"{100 * a:.1f}%" if np.isfinite(a) else "none" for a in acc]
    ax.set_yticks(range(n), [f"{c} ({r})" for c, r in zip(names, rates, strict=True)])
    ax.set(xlabel="predicted class", ylabel="true class (per-class accuracy)")
    accuracy = 100 * int(np.trace(cm)) / max(total, 1)
    ax.set_title(f"confusion matrix on {total} test images: accuracy {accuracy:.2f}%")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def _weights_figure(net: Network) -> Figure:
    """weights.png: the weights into each neuron of layer 1 as one square image."""
    side, n1 = math.isqrt(net.sizes[0]), net.sizes[1]
    k = min(n1, MAX_WEIGHT_IMAGES)
    w = np.asarray(net.weights[0][:-1, :k], dtype=np.float64)  # (#0, k), no bias row
    cols = math.ceil(math.sqrt(k))
    rows, cell = math.ceil(k / cols), side + 1
    # k images of side x side in a grid of rows x cols cells, one gray (NaN) pixel apart
    tiles = np.full((rows * cols, cell, cell), np.nan)
    tiles[:k, :side, :side] = w.T.reshape(k, side, side)
    mosaic = tiles.reshape(rows, cols, cell, cell).transpose(0, 2, 1, 3)
    mosaic = mosaic.reshape(rows * cell, cols * cell)[:-1, :-1]
    m = float(np.max(np.abs(w)))
    m = m if m > 0 else 1.0
    fig = _new_figure(INSPECT_SIZES["weights.png"], layout="constrained")
    ax = fig.subplots()
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.8")
    im = ax.imshow(mosaic, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
    ax.set_axis_off()
    kind = "hidden neurons" if net.L > 1 else "output neurons"
    shown = f"the first {k} of {n1} {kind}" if k < n1 else f"all {n1} {kind}"
    ax.set_title(
        f"weights into layer 1, one {side}x{side} image per neuron: {shown}\n"
        "(row by row; red positive, blue negative, scale symmetric around 0)"
    )
    fig.colorbar(im, ax=ax, shrink=0.8, label="weight")
    return fig


def _show(ax: Any, image: Array, vmax: float) -> None:
    side = math.isqrt(image.size)
    ax.imshow(image.reshape(side, side), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")


def _wrong_figure(x: Array, mistakes: list[dict], n_wrong: int, names: list[str]) -> Figure:
    """wrong.png: the ``mistakes`` of confusion.json, titled with true and predicted class."""
    fig = _new_figure(INSPECT_SIZES["wrong.png"])
    margins = dict(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.15, hspace=0.45)
    no_axis = dict(frame_on=False, xticks=[], yticks=[])
    axes = fig.subplots(4, 6, subplot_kw=no_axis, gridspec_kw=margins).ravel()
    fig.suptitle(
        f"the {len(mistakes)} most confidently wrong of {n_wrong} misclassified test images "
        f"(of {len(x)})\ntrue class / predicted class (its probability)"
        if n_wrong
        else f"no misclassified test images: all {len(x)} are right"
    )
    for ax, m in zip(axes, mistakes, strict=False):
        _show(ax, x[m["index"]], 255)
        title = f"true {names[m['true']]} / pred {names[m['pred']]} ({m['probability']:.2f})"
        ax.set_title(title.replace(" / ", "\n", 1) if len(title) > 26 else title, fontsize=8)
    return fig


def _reconstructions_figure(net: Network, x: Array, mse: float, n: int) -> Figure:
    """reconstructions.png: the images ``x`` (uint8) above their reconstructions by ``net``."""
    recon = np.clip(net.forward(to_inputs(x, net.dtype)), 0.0, 1.0)
    fig = _new_figure(INSPECT_SIZES["reconstructions.png"])
    margins = dict(left=0.06, right=0.99, bottom=0.02, top=0.82, wspace=0.08, hspace=0.08)
    no_ticks = dict(xticks=[], yticks=[])
    axes = fig.subplots(2, N_RECONSTRUCTIONS, subplot_kw=no_ticks, gridspec_kw=margins)
    for ax in axes[:, len(x) :].flat:
        ax.set_axis_off()
    for row, images, vmax, label in ((0, x, 255, "original"), (1, recon, 1, "reconstructed")):
        for ax, image in zip(axes[row], images, strict=False):
            _show(ax, image, vmax)
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(
        f"the first {len(x)} test images and their reconstructions: "
        f"mean squared error per pixel {mse:.4g} over {n} test images"
    )
    return fig


def _passes(net: Network, x: Array, chunk: int) -> Iterator[tuple[Array, ForwardPass]]:
    """(images, their forward pass) of each ``chunk`` of the uint8 images x."""
    for s in range(0, len(x), chunk):
        yield x[s : s + chunk], net.forward_pass(to_inputs(x[s : s + chunk], net.dtype))


def _activations_info(net: Network, x: Array, chunk: int) -> dict[str, Any]:
    """What ``activations.json`` holds (see :func:`inspect_model`): a histogram of each
    hidden layer's a^l over the images x, and the share of values :data:`_NOTED` counts.
    Ranges not in :data:`_FIXED_RANGE` are the observed min..max, found in a first pass."""
    names = net.activations[:-1]  # fp.a[1:-1] below: a^1 ... a^(L-1), bias column last
    lo, hi = np.full(len(names), np.inf), np.full(len(names), -np.inf)
    if any(name not in _FIXED_RANGE for name in names):
        for _, fp in _passes(net, x, chunk):
            lo = np.minimum(lo, [a[:, :-1].min() for a in fp.a[1:-1]])
            hi = np.maximum(hi, [a[:, :-1].max() for a in fp.a[1:-1]])
    edges = []
    for name, low, high in zip(names, lo, hi, strict=True):
        if name in _FIXED_RANGE:
            low, high = _FIXED_RANGE[name]
        elif high <= low:  # one value only (all relus dead, say): a range around it
            low, high = low - 0.5, high + 0.5
        edges.append(np.linspace(low, high, HISTOGRAM_BINS + 1))
    counts = np.zeros((len(names), HISTOGRAM_BINS), np.int64)
    noted = np.zeros(len(names), np.int64)
    for _, fp in _passes(net, x, chunk):
        for i, (name, a) in enumerate(zip(names, fp.a[1:-1], strict=True)):
            counts[i] += np.histogram(a[:, :-1], bins=edges[i])[0]
            noted[i] += np.count_nonzero(_NOTED[name][1](a[:, :-1])) if name in _NOTED else 0
    info: dict[str, Any] = {"samples": len(x), "layers": []}
    for l, name in enumerate(names, 1):
        layer = {"layer": l, "activation": name, "neurons": net.sizes[l]}
        layer.update(bin_edges=edges[l - 1].tolist(), counts=counts[l - 1].tolist())
        if name in _NOTED:
            layer[_NOTED[name][0]] = int(noted[l - 1]) / (len(x) * net.sizes[l])
        info["layers"].append(layer)
    return info


def _activations_figure(net: Network, info: dict[str, Any]) -> Figure:
    """activations.png: the histograms of :func:`_activations_info`, one panel per layer."""
    fig = _new_figure(INSPECT_SIZES["activations.png"], layout="constrained")
    layers = info["layers"]
    if not layers:
        sizes = " → ".join(map(str, net.sizes))
        text = f"this network ({sizes}) has no hidden layers: no hidden activations to show"
        fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
        return fig
    cols = min(len(layers), 3)
    axes = fig.subplots(math.ceil(len(layers) / cols), cols, squeeze=False).ravel()
    for ax in axes[len(layers) :]:
        ax.set_axis_off()
    for ax, layer in zip(axes, layers, strict=False):
        l, name, counts = layer["layer"], layer["activation"], np.array(layer["counts"])
        share = counts / max(int(counts.sum()), 1)
        ax.stairs(share, layer["bin_edges"], fill=True, color="C0", alpha=0.8)
        ax.set_title(f"layer {l}: {name}, {layer['neurons']} neurons", fontsize=10)
        ax.set(xlabel=f"activation $a^{{{l}}}$", ylabel="fraction of values")
        if name in _NOTED:
            key, _, condition = _NOTED[name]
            words = f"saturated\n({condition})" if condition else "zero"
            note = f"{100 * layer[key]:.1f}% {words}"
            ax.text(0.5, 0.97, note, transform=ax.transAxes, ha="center", va="top", fontsize=9)
    samples = info["samples"]
    fig.suptitle(f"hidden activations over {samples} test images ({HISTOGRAM_BINS} bins per layer)")
    return fig


def inspect_model(
    net: Network,
    x_test_uint8: Any,
    y_test: Any,
    out_dir: PathLike,
    *,
    classes: Sequence[str] | None = None,
    chunk: int = 10000,
) -> dict[str, Path]:
    """Write pictures (and numbers) of what ``net`` does on a test set into ``out_dir``.

    ``x_test_uint8``: uint8 images (N, #0) or (N, 28, 28), scaled by 1/255 into the network's
    dtype and run ``chunk`` at a time; ``y_test``: their labels (None for an autoencoder);
    ``out_dir``: an existing folder, where nothing is written unless every check passes.
    Returns the written files by name (picture sizes: :data:`INSPECT_SIZES`). Class names
    come from ``classes``, else :func:`nnet.data.datasets.class_names` of ``net.meta``.

    A classifier (``net.meta["task"]`` is not ``"autoencoder"``) gets ``confusion.png``
    (counts in the cells, coloured by fraction of the true class; per-class accuracy on the
    row labels), ``confusion.json`` (``counts``, rows true; ``per_class_accuracy``, null for
    a class without samples; ``accuracy``, ``samples``, ``classes``, and the
    ``most_confident_mistakes``: index, true, pred, probability) and ``wrong.png``: those
    :data:`N_WRONG` misclassified images with the highest ``net.loss.probabilities``,
    titled "true 7 / pred 2 (0.98)".

    An autoencoder gets ``reconstructions.png``, the first :data:`N_RECONSTRUCTIONS` test
    images above their reconstructions (clipped to [0, 1]), and ``reconstructions.json``:
    ``samples`` and ``mse_per_pixel`` (of the unclipped outputs).

    Both get ``weights.png`` (the weights into each of the first :data:`MAX_WEIGHT_IMAGES`
    neurons of layer 1 as a square image, colours symmetric around 0) and ``activations.png``
    with ``activations.json``: ``samples`` and, per hidden layer (none: ``layers`` is empty),
    ``layer``, ``activation``, ``neurons`` and a histogram of a^l (``bin_edges``, ``counts``;
    over [0, 1] for sigmoid, [-1, 1] for tanh, else the observed range, an extra forward
    pass) with the share of values saturated (``saturated_fraction``; sigmoid: a < 0.02 or
    a > 0.98, tanh: |a| > 0.96) or zero (``zero_fraction``; relu).
    """
    out = Path(out_dir)
    if not out.is_dir():
        if out.exists():
            raise NnetError(f"{out} is a file, not a folder; pass a folder for the pictures.")
        raise NnetError(f"the output folder {out} does not exist; create it first.")
    x = np.asarray(x_test_uint8)
    x = x.reshape(len(x), -1) if x.ndim == 3 else x
    if x.dtype != np.uint8:
        raise NnetError(f"test images must be uint8 pixels 0..255; got {x.dtype}.")
    n, n_out = len(x), net.sizes[-1]
    if x.ndim != 2 or x.shape[1] != net.sizes[0] or n < 1:
        raise NnetError(
            f"test images must have shape (N, {net.sizes[0]}) with N >= 1 to fit the "
            f"network; got shape {x.shape}."
        )
    if math.isqrt(net.sizes[0]) ** 2 != net.sizes[0]:
        raise NnetError(
            f"inspect draws inputs as square images, but the network takes {net.sizes[0]} "
            "inputs; use a model of 28x28 images (784 inputs)."
        )
    chunk = int(chunk)
    if chunk < 1:
        raise NnetError(f"chunk must be at least 1; got {chunk}.")
    autoencoder = net.meta.get("task") == "autoencoder"
    if autoencoder and n_out != net.sizes[0]:
        raise NnetError(
            f"an autoencoder must output as many values as it takes ({net.sizes[0]}); "
            f"this one has {n_out} outputs."
        )
    if not autoencoder:
        if y_test is None:
            raise NnetError("a classifier needs the test labels to inspect it; pass y_test.")
        y = np.asarray(y_test)
        if y.shape != (n,):
            raise NnetError(f"need one label per test image ({n}); got shape {y.shape}.")
        names = class_names(net.meta, n_out) if classes is None else [str(c) for c in classes]
        if len(names) != n_out:
            raise NnetError(f"classes must name all {n_out} outputs; got {len(names)} names.")
        confusion_matrix(y, y, n_out)  # labels must be classes of the network

    contents: dict[str, Figure | dict[str, Any]] = {}
    if autoencoder:
        sq_error = 0.0
        for xs, fp in _passes(net, x, chunk):
            sq_error += float(np.sum((fp.O.astype(np.float64) - to_inputs(xs, np.float64)) ** 2))
        mse = sq_error / (n * net.sizes[0])
        contents["reconstructions.json"] = {"samples": n, "mse_per_pixel": mse}
        shown = x[:N_RECONSTRUCTIONS]
        contents["reconstructions.png"] = _reconstructions_figure(net, shown, mse, n)
    else:
        O = np.concatenate([fp.O for _, fp in _passes(net, x, chunk)])
        pred = np.argmax(O, axis=1)
        conf = net.loss.probabilities(O)[np.arange(n), pred].astype(np.float64)
        cm = confusion_matrix(y, pred, n_out)
        acc, right = per_class_accuracy(cm), int(np.trace(cm))
        mistakes = [
            {"index": i, "true": int(y[i]), "pred": int(pred[i]), "probability": conf[i]}
            for i in most_confident_mistakes(y, pred, conf).tolist()
        ]
        contents["confusion.json"] = {
            "counts": cm.tolist(),
            "per_class_accuracy": [float(a) if np.isfinite(a) else None for a in acc],
            "accuracy": right / n,
            "samples": n,
            "classes": names,
            "most_confident_mistakes": mistakes,
        }
        contents["confusion.png"] = _confusion_figure(cm, acc, names)
        contents["wrong.png"] = _wrong_figure(x, mistakes, n - right, names)
    contents["weights.png"] = _weights_figure(net)
    contents["activations.json"] = info = _activations_info(net, x, chunk)
    contents["activations.png"] = _activations_figure(net, info)
    return {name: _write(out / name, content) for name, content in contents.items()}
