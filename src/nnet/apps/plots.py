"""Pictures of training runs and trained models, as PNG files; no display ever needed.

Two jobs:

- **Curves** (:func:`read_metrics`, :func:`read_runs`, :func:`plot_curves`): the per-epoch
  metrics that ``nnet train --metrics FILE`` writes (JSON Lines, one object per epoch) or
  that a model file keeps in its ``history``, drawn as loss and accuracy per epoch, several
  runs overlaid.
- **Model inspection** (:func:`inspect_model`): what a trained network does on the test
  set: confusion matrix, first-layer weights, the most confidently wrong digits, hidden
  activation histograms (a classifier), or reconstructions (an autoencoder).

Everything is drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas, never
through ``pyplot``: no backend is selected, no window opened, no global figure state
touched, so it works on a headless machine with ``DISPLAY`` and ``MPLBACKEND`` unset.
Each file is rendered into memory and written with :func:`nnet.files.fileio.atomic_write`,
so it appears whole or not at all. A PNG has exactly the pixels asked for, never cropped.
"""

from __future__ import annotations

import io
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

from nnet.core.network import Network
from nnet.data.datasets import to_inputs
from nnet.errors import NnetError
from nnet.files.fileio import atomic_write
from nnet.files.model_file import read_npz

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
#: Loss curves get a logarithmic axis when the largest plotted loss is at least this many
#: times the smallest (two decades).
LOG_SCALE_RATIO = 100.0
#: Bins of each hidden-activation histogram.
HISTOGRAM_BINS = 50
#: The horizontal axes :func:`plot_curves` can draw against.
X_AXES = ("epoch", "seconds")

# Line style and legend name of each split of the metrics.
_SPLITS = {"train": ("-", "train"), "val": (":", "validation"), "test": ("--", "test")}
# Histogram ranges of the activations whose range is known (the others are measured).
_FIXED_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}
# The share of activations worth a note, per activation: its activations.json key, which
# values count, and the note's words. Saturated means g' below about 8% of its peak.
_NOTED = {
    "sigmoid": (
        "saturated_fraction",
        lambda a: (a < 0.02) | (a > 0.98),
        "saturated\n(a < 0.02 or a > 0.98)",
    ),
    "tanh": ("saturated_fraction", lambda a: np.abs(a) > 0.96, "saturated\n(|a| > 0.96)"),
    "relu": ("zero_fraction", lambda a: a == 0, "zero"),
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
    if isinstance(content, Figure):
        buffer = io.BytesIO()
        content.canvas.print_png(buffer)
        data = buffer.getvalue()
    else:
        data = (json.dumps(content, indent=1, allow_nan=False) + "\n").encode()
    with atomic_write(path) as f:
        f.write(data)
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


# ============================================================================ nnet plot


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
    if not _is_number(row["epoch"], finite=True):
        raise NnetError(
            f'{where} has "epoch": {_short(row["epoch"])}, not a number; fix that line.'
        )
    for key, value in row.items():
        numeric = key == "lr" or key.endswith(("_loss", "_accuracy"))
        if numeric and value is not None and not _is_number(value):
            raise NnetError(
                f'{where} has "{key}": {_short(value)}, not a number or null; fix that line.'
            )
    return row


def read_metrics(path: PathLike) -> list[dict[str, Any]]:
    """The per-epoch metrics in a JSON Lines file written by ``nnet train --metrics FILE``.

    One JSON object per line, each with at least ``epoch``; blank lines are skipped. A
    missing, unreadable or empty file, or a line that is not valid JSON, not an object,
    without ``epoch`` or with a non-numeric loss/accuracy/lr raises :class:`NnetError`
    naming the file and the line number (counting from 1).
    """
    path = Path(path)
    if path.is_dir():
        raise NnetError(f"{path} is a folder; pass the file that nnet train --metrics wrote.")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NnetError(
            f"{path} does not exist; check the path, or write one with nnet train --metrics."
        ) from None
    except OSError as exc:
        raise NnetError(f"{path} cannot be read ({exc.strerror}); check its permissions.") from None
    rows: list[dict[str, Any]] = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        where = f"{path} line {n}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise NnetError(
                f"{where} is not UTF-8 text; the file is damaged or not a metrics file."
            ) from None
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise NnetError(
                f"{where} is not valid JSON: {exc.msg} at column {exc.colno}; "
                "fix or remove that line."
            ) from None
        rows.append(_check_row(row, where))
    if not rows:
        raise NnetError(
            f"{path} is empty: it holds no epochs; train with --metrics {path} to fill it."
        )
    return rows


def read_runs(paths: Sequence[PathLike]) -> dict[str, list[dict[str, Any]]]:
    """Runs to overlay with :func:`plot_curves`, named after their files.

    Each path is a metrics file (read with :func:`read_metrics`) or a model file ending in
    ``.npz``, whose recorded training ``history`` is used. A run is named by the file name
    without its suffix; when two files share that name, they are named by their paths.
    """
    stems = [Path(p).stem for p in paths]
    runs: dict[str, list[dict[str, Any]]] = {}
    for p, stem in zip(paths, stems, strict=True):
        path = Path(p)
        name = stem if stems.count(stem) == 1 else str(path)
        while name in runs:  # the same path given twice
            name += "'"
        if path.suffix != ".npz":
            runs[name] = read_metrics(path)
            continue
        history = read_npz(path)[1].get("history")
        if not isinstance(history, list) or not history:
            raise NnetError(
                f"{path} records no training history; plot the metrics file of its run."
            )
        runs[name] = [_check_row(r, f"{path} history entry {i}") for i, r in enumerate(history, 1)]
    return runs


def _x_values(rows: list[dict[str, Any]], x: str, name: str) -> Array:
    """The horizontal positions of ``rows``: their epochs, or the cumulative training
    seconds (the running sum of each row's ``seconds``) at the end of each epoch."""
    if x == "epoch":
        return np.array([float(r["epoch"]) for r in rows])
    seconds = [r.get("seconds") for r in rows]
    for i, v in enumerate(seconds, 1):
        if not _is_number(v, finite=True) or v < 0:
            raise NnetError(
                f'run {name!r} entry {i} has no "seconds" (a number >= 0) to plot against '
                "time; plot it per epoch (--x epoch), or use a metrics file of nnet train."
            )
    return np.cumsum(np.array(seconds, dtype=np.float64))


def _values(rows: list[dict[str, Any]], key: str) -> Array | None:
    """The values of ``key``, nulls and non-finite values as NaN (gaps in the curve), or
    None when no row has a value for ``key``."""
    if not any(_is_number(r.get(key)) for r in rows):
        return None
    y = np.array([float(r[key]) if _is_number(r.get(key)) else np.nan for r in rows])
    y[~np.isfinite(y)] = np.nan
    return y


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
    for name, rows in runs.items():
        if not rows:
            raise NnetError(f"run {name!r} has no epochs to plot; its metrics file is empty.")
        for i, row in enumerate(rows, 1):
            _check_row(row, f"run {name!r} entry {i}")
    xs = {name: _x_values(rows, x, name) for name, rows in runs.items()}
    n = len(runs)
    turbo = colormaps["turbo"]
    colors = [f"C{i}" if n <= 10 else turbo(0.05 + 0.9 * i / (n - 1)) for i in range(n)]
    # Every curve, as (panel, colour, split, x, y): each split of each run that has values.
    curves = [
        (panel, color, split, xs[name], y)
        for panel in ("loss", "accuracy")
        for color, (name, rows) in zip(colors, runs.items(), strict=True)
        for split in _SPLITS
        if (y := _values(rows, f"{split}_{panel}")) is not None
    ]
    panels = ["loss"] + (["accuracy"] if any(c[0] == "accuracy" for c in curves) else [])
    fig = _new_figure(pixels, dpi, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for panel, color, split, xs_run, y in curves:
        ax, scale = (axes[1], 100.0) if panel == "accuracy" else (axes[0], 1.0)
        marker = "o" if np.count_nonzero(np.isfinite(y)) == 1 else None
        ax.plot(xs_run, y * scale, linestyle=_SPLITS[split][0], color=color, marker=marker, ms=4)
    for ax, panel in zip(axes, panels, strict=True):
        ax.set_ylabel("accuracy (%)" if panel == "accuracy" else "loss")
        if x == "epoch":
            ax.set(xlabel="epoch", title=f"{panel} per epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.set(xlabel="training seconds (cumulative, evaluation included)", xlim=(0, None))
            ax.set_title(f"{panel} against wall time")
        ax.grid(True, alpha=0.3)
    losses = np.concatenate([c[-1] for c in curves if c[0] == "loss"] or [np.ones(1)])
    losses = losses[np.isfinite(losses)]
    if losses.size and losses.min() > 0 and losses.max() >= LOG_SCALE_RATIO * losses.min():
        axes[0].set_yscale("log")
    handles = [Line2D([], [], color=c, lw=2) for c in colors]
    legend = axes[0].legend(handles, list(runs), fontsize="small", loc="upper right", title="run")
    if len(axes) == 1:  # the split legend goes on the same panel: keep this one too
        axes[0].add_artist(legend)
    seen = [split for split in _SPLITS if any(c[2] == split for c in curves)]
    if seen:
        handles = [Line2D([], [], color="0.2", linestyle=_SPLITS[s][0]) for s in seen]
        labels = [_SPLITS[s][1] for s in seen]
        axes[-1].legend(handles, labels, fontsize="small", loc="center right")
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

    ``x="seconds"`` draws them against the cumulative training seconds instead (the
    running sum of each epoch's ``seconds``, evaluation included; every row must have
    one): runs of different speed are then compared by wall time.

    ``runs`` maps a run name (shown in the legend) to its per-epoch metrics, as
    :func:`read_metrics` returns them. Each run gets one colour; train is solid,
    validation dotted and test dashed, wherever the metrics have them. Nulls (an
    autoencoder's accuracy) and non-finite values are left out as gaps.

    Decisions: runs without accuracy (autoencoders) appear only in the loss panel; if no
    run has any accuracy, the accuracy panel is omitted and the loss panel takes the whole
    width. The loss axis is logarithmic when the largest plotted loss is at least
    :data:`LOG_SCALE_RATIO` times the smallest, linear otherwise. The PNG is exactly
    ``round(size[0] * dpi)`` x ``round(size[1] * dpi)`` pixels.
    """
    _write(Path(out), curves_figure(runs, size=size, dpi=dpi, x=x))


# ============================================================================ nnet inspect


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
        if a.size and (
            not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n_classes
        ):
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
    ax.set_yticks(
        range(n),
        [
            f"{c} ({100 * a:.1f}%)" if np.isfinite(a) else f"{c} (none)"
            for c, a in zip(names, acc, strict=True)
        ],
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    accuracy = 100 * int(np.trace(cm)) / max(total, 1)
    ax.set_title(f"confusion matrix on {total} test images: accuracy {accuracy:.2f}%")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


def _side(n_inputs: int) -> int:
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise NnetError(
            f"inspect draws inputs as square images, but the network takes {n_inputs} inputs; "
            "use a model of 28x28 images (784 inputs)."
        )
    return side


def _weights_figure(net: Network) -> Figure:
    """weights.png: the weights into each neuron of layer 1 as one square image."""
    side, n1 = _side(net.sizes[0]), net.sizes[1]
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
    """Draw a flat square image in gray, black 0 to white ``vmax``."""
    side = _side(image.size)
    ax.imshow(image.reshape(side, side), cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")


def _wrong_figure(
    x: Array, y: Array, pred: Array, conf: Array, idx: Array, names: list[str]
) -> Figure:
    """wrong.png: the misclassified images ``idx``, each titled with true and predicted class."""
    fig = _new_figure(INSPECT_SIZES["wrong.png"])
    margins = dict(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.15, hspace=0.45)
    no_axis = dict(frame_on=False, xticks=[], yticks=[])
    axes = fig.subplots(4, 6, subplot_kw=no_axis, gridspec_kw=margins).ravel()
    n_wrong = int(np.count_nonzero(y != pred))
    if n_wrong == 0:
        fig.suptitle(f"no misclassified test images: all {len(y)} are right")
        return fig
    fig.suptitle(
        f"the {len(idx)} most confidently wrong of {n_wrong} misclassified test images "
        f"(of {len(y)})\ntrue class / predicted class (its probability)"
    )
    for ax, i in zip(axes, idx, strict=False):
        _show(ax, x[i], 255)
        title = f"true {names[y[i]]} / pred {names[pred[i]]} ({conf[i]:.2f})"
        ax.set_title(title.replace(" / ", "\n", 1) if len(title) > 26 else title, fontsize=8)
    return fig


def _reconstructions_figure(x: Array, recon: Array, mse: float, n: int) -> Figure:
    """reconstructions.png: the images ``x`` (uint8) above their reconstructions ``recon``."""
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


def _hidden_activations(net: Network, x: Array, chunk: int) -> Iterator[list[Array]]:
    """[a^1, ..., a^(L-1)] of each chunk of the uint8 images x."""
    for s in range(0, len(x), chunk):
        fp = net.forward_pass(to_inputs(x[s : s + chunk], net.dtype))
        yield [fp.a[l][:, :-1] for l in range(1, net.L)]


def _activations_info(net: Network, x: Array, chunk: int) -> dict[str, Any]:
    """What ``activations.json`` holds (see :func:`inspect_model`): a histogram of each
    hidden layer's a^l over the images x, and the share of values :data:`_NOTED` counts.
    Ranges not in :data:`_FIXED_RANGE` are the observed min..max, found in a first pass."""
    names = net.activations[:-1]
    lo, hi = np.full(len(names), np.inf), np.full(len(names), -np.inf)
    if any(name not in _FIXED_RANGE for name in names):
        for layers in _hidden_activations(net, x, chunk):
            lo = np.minimum(lo, [a.min() for a in layers])
            hi = np.maximum(hi, [a.max() for a in layers])
    edges, counts, noted = [], [np.zeros(HISTOGRAM_BINS, np.int64) for _ in names], [0] * len(names)
    for name, low, high in zip(names, lo, hi, strict=True):
        if name in _FIXED_RANGE:
            low, high = _FIXED_RANGE[name]
        elif high <= low:  # one value only (all relus dead, say): a range around it
            low, high = low - 0.5, high + 0.5
        edges.append(np.linspace(low, high, HISTOGRAM_BINS + 1))
    for layers in _hidden_activations(net, x, chunk):
        for i, (name, a) in enumerate(zip(names, layers, strict=True)):
            counts[i] += np.histogram(a, bins=edges[i])[0]
            noted[i] += int(np.count_nonzero(_NOTED[name][1](a))) if name in _NOTED else 0
    info: dict[str, Any] = {"samples": len(x), "layers": []}
    for l, name in enumerate(names, 1):
        layer = {"layer": l, "activation": name, "neurons": net.sizes[l]}
        layer.update(bin_edges=edges[l - 1].tolist(), counts=counts[l - 1].tolist())
        if name in _NOTED:
            layer[_NOTED[name][0]] = noted[l - 1] / (len(x) * net.sizes[l])
        info["layers"].append(layer)
    return info


def _activations_figure(net: Network, info: dict[str, Any]) -> Figure:
    """activations.png: the histograms of :func:`_activations_info`, one panel per layer."""
    fig = _new_figure(INSPECT_SIZES["activations.png"], layout="constrained")
    layers = info["layers"]
    if not layers:
        ax = fig.subplots()
        ax.set_axis_off()
        sizes = " → ".join(map(str, net.sizes))
        text = f"this network ({sizes}) has no hidden layers: no hidden activations to show"
        ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
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
            key, _, words = _NOTED[name]
            note = f"{100 * layer[key]:.1f}% {words}"
            ax.text(0.5, 0.97, note, transform=ax.transAxes, ha="center", va="top", fontsize=9)
    samples = info["samples"]
    fig.suptitle(f"hidden activations over {samples} test images ({HISTOGRAM_BINS} bins per layer)")
    return fig


def _check_images(net: Network, x: Any) -> Array:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x.reshape(len(x), -1)
    if x.dtype != np.uint8:
        raise NnetError(f"test images must be uint8 pixels 0..255; got {x.dtype}.")
    if x.ndim != 2 or x.shape[1] != net.sizes[0] or len(x) < 1:
        raise NnetError(
            f"test images must have shape (N, {net.sizes[0]}) with N >= 1 to fit the "
            f"network; got shape {x.shape}."
        )
    _side(net.sizes[0])
    return x


def _class_names(net: Network, classes: Sequence[str] | None) -> list[str]:
    n = net.sizes[-1]
    if classes is not None:
        names = [str(c) for c in classes]
        if len(names) != n:
            raise NnetError(f"classes must name all {n} outputs; got {len(names)} names.")
        return names
    meta = net.meta.get("classes")
    return [str(c) for c in (meta if isinstance(meta, list) and len(meta) == n else range(n))]


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

    ``x_test_uint8`` are uint8 images (N, #0) (or (N, 28, 28)), scaled by 1/255 into the
    network's dtype; ``y_test`` their labels (ignored for an autoencoder, may be None);
    ``out_dir`` an existing folder. The forward pass runs ``chunk`` images at a time.
    Nothing is written unless all of them pass their checks. Returns the written files by
    file name; the pictures' sizes are in :data:`INSPECT_SIZES`. Class names come from
    ``classes``, else from ``net.meta["classes"]``, else 0, 1, 2, ...

    A classifier (any model whose ``net.meta["task"]`` is not ``"autoencoder"``) gets:

    - ``confusion.png``: counts in the cells (colour: fraction of the true class), the
      per-class accuracy on the row labels, the accuracy in the title;
    - ``confusion.json``: ``counts`` (rows true, columns predicted), ``per_class_accuracy``
      (null for a class without samples), ``accuracy``, ``samples``, ``classes`` and
      ``most_confident_mistakes`` (index, true, pred, probability of what wrong.png shows);
    - ``wrong.png``: the :data:`N_WRONG` misclassified images with the highest predicted
      probability (``net.loss.probabilities``), titled "true 7 / pred 2 (0.98)", or a note
      that there are none.

    An autoencoder gets ``reconstructions.png``, the first :data:`N_RECONSTRUCTIONS` test
    images above their reconstructions (clipped to [0, 1]), and ``reconstructions.json``:
    ``samples`` and ``mse_per_pixel`` (of the unclipped outputs; also in the title).

    Both get ``weights.png``, the weights into layer 1 as one square image per neuron (at
    most :data:`MAX_WEIGHT_IMAGES`, diverging colours symmetric around 0), and
    ``activations.png`` with ``activations.json``: a histogram of a^l over the test set per
    hidden layer (``layer``, ``activation``, ``neurons``, ``bin_edges``, ``counts``) with
    the share of values saturated (``saturated_fraction``; sigmoid: a < 0.02 or a > 0.98,
    tanh: |a| > 0.96) or zero (``zero_fraction``; relu), and ``samples``. Without hidden
    layers ``layers`` is empty and the picture says so. Histogram ranges: [0, 1] for
    sigmoid, [-1, 1] for tanh, else the observed min..max (found in an extra forward pass).
    """
    out = Path(out_dir)
    if not out.is_dir():
        if out.exists():
            raise NnetError(f"{out} is a file, not a folder; pass a folder for the pictures.")
        raise NnetError(f"the output folder {out} does not exist; create it first.")
    x = _check_images(net, x_test_uint8)
    chunk = int(chunk)
    if chunk < 1:
        raise NnetError(f"chunk must be at least 1; got {chunk}.")
    n = len(x)
    autoencoder = net.meta.get("task") == "autoencoder"
    if autoencoder and net.sizes[-1] != net.sizes[0]:
        raise NnetError(
            f"an autoencoder must output as many values as it takes ({net.sizes[0]}); "
            f"this one has {net.sizes[-1]} outputs."
        )
    if not autoencoder:
        if y_test is None:
            raise NnetError("a classifier needs the test labels to inspect it; pass y_test.")
        y = np.asarray(y_test)
        if y.shape != (n,):
            raise NnetError(f"need one label per test image ({n}); got shape {y.shape}.")
        names = _class_names(net, classes)
        confusion_matrix(y, y, net.sizes[-1])  # labels must be classes of the network

    pred = np.empty(n, dtype=np.int64)
    conf = np.empty(n, dtype=np.float64)
    sq_error = 0.0
    for s in range(0, n, chunk):
        O = net.forward(to_inputs(x[s : s + chunk], net.dtype))
        if autoencoder:
            target = to_inputs(x[s : s + chunk], np.float64)
            sq_error += float(np.sum((O.astype(np.float64) - target) ** 2))
        else:
            pred[s : s + len(O)] = k = np.argmax(O, axis=1)
            conf[s : s + len(O)] = net.loss.probabilities(O)[np.arange(len(O)), k]

    contents: dict[str, Figure | dict[str, Any]] = {}
    if autoencoder:
        mse = sq_error / (n * net.sizes[0])
        contents["reconstructions.json"] = {"samples": n, "mse_per_pixel": mse}
        shown = x[:N_RECONSTRUCTIONS]
        recon = np.clip(net.forward(to_inputs(shown, net.dtype)), 0.0, 1.0)
        contents["reconstructions.png"] = _reconstructions_figure(shown, recon, mse, n)
    else:
        cm = confusion_matrix(y, pred, net.sizes[-1])
        acc = per_class_accuracy(cm)
        idx = most_confident_mistakes(y, pred, conf)
        contents["confusion.json"] = {
            "counts": cm.tolist(),
            "per_class_accuracy": [float(a) if np.isfinite(a) else None for a in acc],
            "accuracy": int(np.trace(cm)) / n,
            "samples": n,
            "classes": names,
            "most_confident_mistakes": [
                {"index": i, "true": int(y[i]), "pred": int(pred[i]), "probability": conf[i]}
                for i in idx.tolist()
            ],
        }
        contents["confusion.png"] = _confusion_figure(cm, acc, names)
        contents["wrong.png"] = _wrong_figure(x, y, pred, conf, idx, names)
    contents["weights.png"] = _weights_figure(net)
    contents["activations.json"] = info = _activations_info(net, x, chunk)
    contents["activations.png"] = _activations_figure(net, info)
    return {name: _write(out / name, content) for name, content in contents.items()}
