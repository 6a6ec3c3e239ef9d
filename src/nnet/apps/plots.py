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
Each PNG is rendered into memory and written with :func:`nnet.files.fileio.atomic_write`, so a
file appears whole or not at all.

Pixel sizes: a figure of ``size`` inches at ``dpi`` is exactly
``round(size[0] * dpi)`` x ``round(size[1] * dpi)`` pixels (the PNG is never cropped). The
fixed sizes of :func:`inspect_model`'s pictures are in :data:`INSPECT_SIZES`.
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

_DPI = 100
_SPLITS = (("train", "-"), ("val", ":"), ("test", "--"))
_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
# Activations with a known range, and what counts as saturated (g' below ~8% of its peak).
_FIXED_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


# ============================================================================ figures


def _new_figure(pixels: tuple[int, int], dpi: float = _DPI, **kwargs: Any) -> Figure:
    """A Figure with an Agg canvas that renders to exactly ``pixels`` (width, height).

    Agg truncates width * dpi to an int, so 2.3 in at 100 dpi would give 229 pixels; a
    thousandth of a pixel more makes the truncation land on the intended integer.
    """
    w, h = pixels
    fig = Figure(figsize=((w + 1e-3) / dpi, (h + 1e-3) / dpi), dpi=dpi, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, at the figure's own size and dpi (never cropped)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _write_png(fig: Figure, path: Path) -> Path:
    data = _png_bytes(fig)
    with atomic_write(path) as f:
        f.write(data)
    return path


def _write_json(obj: Any, path: Path) -> Path:
    text = json.dumps(obj, indent=1, allow_nan=False)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
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


# ============================================================================ metrics


def _is_number(v: Any) -> bool:
    """A JSON number that fits a float (true/false and 10**400 are not)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_row(row: Any, where: str) -> dict[str, Any]:
    """One epoch's metrics, checked: an object with a numeric ``epoch`` and numeric (or
    null) losses, accuracies and learning rate. ``where`` names the line for errors."""
    if not isinstance(row, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(row), "a number"
        )
        raise NnetError(
            f"{where} is {kind}, not a JSON object of one epoch's metrics; fix or remove that line."
        )
    if "epoch" not in row:
        raise NnetError(
            f'{where} has no "epoch"; every line of a metrics file is one epoch, so fix or '
            "remove that line."
        )
    if not _is_number(row["epoch"]) or not math.isfinite(float(row["epoch"])):
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
    if not paths:
        raise NnetError("no runs to plot; pass one or more metrics files.")
    stems = [Path(p).stem for p in paths]
    runs: dict[str, list[dict[str, Any]]] = {}
    for p, stem in zip(paths, stems, strict=True):
        path = Path(p)
        name = stem if stems.count(stem) == 1 else str(path)
        while name in runs:  # the same path given twice
            name += "'"
        if path.suffix == ".npz":
            _, meta = read_npz(path)
            history = meta.get("history")
            if not isinstance(history, list) or not history:
                raise NnetError(
                    f"{path} records no training history; plot the metrics file of its run."
                )
            runs[name] = [
                _check_row(row, f"{path} history entry {i}") for i, row in enumerate(history, 1)
            ]
        else:
            runs[name] = read_metrics(path)
    return runs


# ============================================================================ curves


X_AXES = ("epoch", "seconds")


def _x_values(rows: list[dict[str, Any]], x: str, name: str) -> Array:
    """The horizontal positions of ``rows``: their epochs, or the cumulative training
    seconds (the running sum of each row's ``seconds``) at the end of each epoch."""
    if x == "epoch":
        return np.array([float(r["epoch"]) for r in rows])
    seconds = [r.get("seconds") for r in rows]
    for i, v in enumerate(seconds, 1):
        if not _is_number(v) or not math.isfinite(float(v)) or float(v) < 0:
            raise NnetError(
                f'run {name!r} entry {i} has no "seconds" (a number >= 0) to plot against '
                "time; plot it per epoch (--x epoch), or use a metrics file of nnet train."
            )
    return np.cumsum(np.array(seconds, dtype=np.float64))


def _series(
    rows: list[dict[str, Any]], key: str, xs: Array | None = None
) -> tuple[Array, Array] | None:
    """(x positions, values) of ``key`` with nulls and non-finite values as NaN (gaps), or
    None when no row has a value for ``key``; the positions are the epochs unless ``xs``."""
    if not any(_is_number(r.get(key)) for r in rows):
        return None
    x = np.array([float(r["epoch"]) for r in rows]) if xs is None else xs
    y = np.array([float(r[key]) if _is_number(r.get(key)) else np.nan for r in rows])
    y[~np.isfinite(y)] = np.nan
    return x, y


def _run_colors(n: int) -> list[Any]:
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    cmap = colormaps["turbo"]
    return [cmap(0.05 + 0.9 * i / (n - 1)) for i in range(n)]


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
    colors = _run_colors(len(runs))
    xs = {n: _x_values(r, x, n) for n, r in runs.items()}
    losses = {n: {s: _series(r, f"{s}_loss", xs[n]) for s, _ in _SPLITS} for n, r in runs.items()}
    accs = {n: {s: _series(r, f"{s}_accuracy", xs[n]) for s, _ in _SPLITS} for n, r in runs.items()}
    has_acc = any(v is not None for d in accs.values() for v in d.values())

    fig = _new_figure(pixels, dpi, layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    panels = [(axes[0], losses, 1.0, "loss")]
    if has_acc:
        panels.append((axes[1], accs, 100.0, "accuracy (%)"))
    splits_seen: set[str] = set()
    for ax, table, scale, label in panels:
        for color, by_split in zip(colors, table.values(), strict=True):
            for split, style in _SPLITS:
                s = by_split[split]
                if s is None:
                    continue
                splits_seen.add(split)
                marker = "o" if np.count_nonzero(np.isfinite(s[1])) == 1 else None
                ax.plot(s[0], s[1] * scale, linestyle=style, color=color, marker=marker, ms=4)
        ax.set_ylabel(label)
        if x == "epoch":
            ax.set_xlabel("epoch")
            ax.set_title(label.split(" ")[0] + " per epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        else:
            ax.set_xlabel("training seconds (cumulative, evaluation included)")
            ax.set_title(label.split(" ")[0] + " against wall time")
            ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
    values = np.concatenate(
        [s[1] for d in losses.values() for s in d.values() if s is not None] or [np.ones(1)]
    )
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() >= LOG_SCALE_RATIO * values.min():
        axes[0].set_yscale("log")
    run_handles = [Line2D([], [], color=c, lw=2) for c in colors]
    run_legend = axes[0].legend(
        run_handles, list(runs), fontsize="small", loc="upper right", title="run"
    )
    if len(axes) == 1:  # the split legend goes on the same panel: keep this one too
        axes[0].add_artist(run_legend)
    split_handles = [
        Line2D([], [], color="0.2", linestyle=style)
        for split, style in _SPLITS
        if split in splits_seen
    ]
    split_labels = [_SPLIT_NAMES[s] for s, _ in _SPLITS if s in splits_seen]
    if split_handles:
        axes[-1].legend(split_handles, split_labels, fontsize="small", loc="center right")
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
    :data:`LOG_SCALE_RATIO` (100) times the smallest, linear otherwise. The PNG is exactly
    ``round(size[0] * dpi)`` x ``round(size[1] * dpi)`` pixels (1000 x 400 by default).
    """
    _write_png(curves_figure(runs, size=size, dpi=dpi, x=x), Path(out))


# ============================================================================ confusion


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
    diag = np.diag(cm).astype(np.float64)
    out = np.full(rows.shape, np.nan)
    np.divide(diag, rows, out=out, where=rows > 0)
    return out


def most_confident_mistakes(y_true: Any, y_pred: Any, confidence: Any, k: int = N_WRONG) -> Array:
    """Indices of at most ``k`` misclassified samples, highest ``confidence`` (the predicted
    class's probability) first; ties keep the order of the samples."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    confidence = np.asarray(confidence, dtype=np.float64)
    wrong = np.flatnonzero(y_true != y_pred)
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order[:k]]


def _confusion_figure(cm: Array, acc: Array, names: list[str]) -> Figure:
    n = cm.shape[0]
    total = int(cm.sum())
    correct = int(np.trace(cm))
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    fig = _new_figure(INSPECT_SIZES["confusion.png"], layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    if n <= 20:
        fontsize = 9 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if frac[i, j] > 0.5 else "black",
                )
    if max(map(len, names)) <= 2:
        ax.set_xticks(range(n), names)
    else:
        ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(
        range(n),
        [
            f"{c} ({100 * a:.1f}%)" if np.isfinite(a) else f"{c} (none)"
            for c, a in zip(names, acc, strict=True)
        ],
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (per-class accuracy)")
    ax.set_title(
        f"confusion matrix on {total} test images: accuracy {100 * correct / max(total, 1):.2f}%"
    )
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    return fig


# ============================================================================ images


def _side(n_inputs: int) -> int:
    side = math.isqrt(n_inputs)
    if side * side != n_inputs:
        raise NnetError(
            f"inspect draws inputs as square images, but the network takes {n_inputs} inputs; "
            "use a model of 28x28 images (784 inputs)."
        )
    return side


def _weights_figure(net: Network) -> Figure:
    side = _side(net.sizes[0])
    n1 = net.sizes[1]
    k = min(n1, MAX_WEIGHT_IMAGES)
    w = np.asarray(net.weights[0][:-1, :k], dtype=np.float64)  # (#0, k), no bias row
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    cell = side + 1
    mosaic = np.full((rows * cell - 1, cols * cell - 1), np.nan)
    for j in range(k):
        r, c = divmod(j, cols)
        mosaic[r * cell : r * cell + side, c * cell : c * cell + side] = w[:, j].reshape(side, side)
    m = float(np.max(np.abs(w))) if w.size else 0.0
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


def _label(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


def _wrong_figure(
    x: Array, y: Array, pred: Array, conf: Array, idx: Array, names: list[str]
) -> Figure:
    side = _side(x.shape[1])
    n_wrong = int(np.count_nonzero(y != pred))
    fig = _new_figure(INSPECT_SIZES["wrong.png"])
    rows, cols = 4, 6
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.15, hspace=0.45)
    for ax in axes:
        ax.set_axis_off()
    if n_wrong == 0:
        fig.suptitle(f"no misclassified test images: all {len(y)} are right")
        return fig
    fig.suptitle(
        f"the {len(idx)} most confidently wrong of {n_wrong} misclassified test images "
        f"(of {len(y)})\ntrue class / predicted class (its probability)"
    )
    for ax, i in zip(axes[: len(idx)], idx, strict=True):
        ax.imshow(x[i].reshape(side, side), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        title = f"true {_label(names, int(y[i]))} / pred {_label(names, int(pred[i]))} "
        title += f"({conf[i]:.2f})"
        if len(title) > 26:
            title = title.replace(" / ", "\n", 1)
        ax.set_title(title, fontsize=8)
    return fig


def _reconstructions_figure(x: Array, recon: Array, mse: float, n: int) -> Figure:
    side = _side(x.shape[1])
    fig = _new_figure(INSPECT_SIZES["reconstructions.png"])
    axes = fig.subplots(2, N_RECONSTRUCTIONS, squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.02, top=0.82, wspace=0.08, hspace=0.08)
    for r, (images, scale, label) in enumerate(
        ((x, 255.0, "original"), (recon, 1.0, "reconstructed"))
    ):
        for c in range(N_RECONSTRUCTIONS):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(
                    np.asarray(images[c], dtype=np.float64).reshape(side, side) / scale,
                    cmap="gray",
                    vmin=0.0,
                    vmax=1.0,
                    interpolation="nearest",
                )
            else:
                ax.set_axis_off()
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(
        f"the first {min(len(x), N_RECONSTRUCTIONS)} test images and their reconstructions: "
        f"mean squared error per pixel {mse:.4g} over {n} test images"
    )
    return fig


# ============================================================================ activations


class _Histograms:
    """Histograms of the hidden activations a^l, l = 1 ... L-1, accumulated chunk by chunk."""

    def __init__(self, net: Network, ranges: dict[int, tuple[float, float]]) -> None:
        self.net = net
        self.edges = {l: np.linspace(lo, hi, HISTOGRAM_BINS + 1) for l, (lo, hi) in ranges.items()}
        self.counts = {l: np.zeros(HISTOGRAM_BINS, dtype=np.int64) for l in ranges}
        self.special = dict.fromkeys(ranges, 0)  # saturated (sigmoid/tanh) or zero (relu)

    def add(self) -> None:
        for l, edges in self.edges.items():
            a = self.net.a[l][:, :-1]
            counts, _ = np.histogram(a, bins=edges)
            self.counts[l] += counts
            name = self.net.activations[l - 1]
            if name == "sigmoid":
                self.special[l] += int(np.count_nonzero((a < 0.02) | (a > 0.98)))
            elif name == "tanh":
                self.special[l] += int(np.count_nonzero(np.abs(a) > 0.96))
            elif name == "relu":
                self.special[l] += int(np.count_nonzero(a == 0))


_SPECIAL_KEY = {
    "sigmoid": "saturated_fraction",
    "tanh": "saturated_fraction",
    "relu": "zero_fraction",
}


def _activations_info(net: Network, hist: _Histograms, n: int) -> dict[str, Any]:
    """The numbers behind activations.png (what ``activations.json`` holds)."""
    layers = []
    for l in sorted(hist.counts):
        name = net.activations[l - 1]
        layer: dict[str, Any] = {
            "layer": l,
            "activation": name,
            "neurons": net.sizes[l],
            "bin_edges": [float(e) for e in hist.edges[l]],
            "counts": [int(c) for c in hist.counts[l]],
        }
        if name in _SPECIAL_KEY:
            layer[_SPECIAL_KEY[name]] = hist.special[l] / (n * net.sizes[l])
        layers.append(layer)
    return {"samples": n, "layers": layers}


def _special_text(name: str, share: float) -> str:
    if name == "sigmoid":
        return f"{100 * share:.1f}% saturated\n(a < 0.02 or a > 0.98)"
    if name == "tanh":
        return f"{100 * share:.1f}% saturated\n(|a| > 0.96)"
    if name == "relu":
        return f"{100 * share:.1f}% zero"
    return ""


def _activations_figure(net: Network, hist: _Histograms | None, n: int) -> Figure:
    fig = _new_figure(INSPECT_SIZES["activations.png"], layout="constrained")
    hidden = list(range(1, net.L))
    if not hidden or hist is None:
        ax = fig.subplots()
        ax.set_axis_off()
        sizes = " → ".join(map(str, net.sizes))
        ax.text(
            0.5,
            0.5,
            f"this network ({sizes}) has no hidden layers: no hidden activations to show",
            ha="center",
            va="center",
            fontsize=12,
        )
        return fig
    cols = min(len(hidden), 3)
    rows = math.ceil(len(hidden) / cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(hidden) :]:
        ax.set_axis_off()
    for ax, l in zip(axes[: len(hidden)], hidden, strict=True):
        name = net.activations[l - 1]
        counts, edges = hist.counts[l], hist.edges[l]
        total = max(int(counts.sum()), 1)
        ax.stairs(counts / total, edges, fill=True, color="C0", alpha=0.8)
        ax.set_title(f"layer {l}: {name}, {net.sizes[l]} neurons", fontsize=10)
        ax.set_xlabel(f"activation $a^{{{l}}}$")
        ax.set_ylabel("fraction of values")
        text = _special_text(name, hist.special[l] / (n * net.sizes[l]))
        if text:
            ax.text(0.5, 0.97, text, transform=ax.transAxes, ha="center", va="top", fontsize=9)
    fig.suptitle(f"hidden activations over {n} test images ({HISTOGRAM_BINS} bins per layer)")
    return fig


# ============================================================================ inspect


def _forward_chunks(net: Network, x: Array, chunk: int) -> Iterator[tuple[int, Array]]:
    """(start, outputs) of each chunk of uint8 images; ``net.a`` holds that chunk's
    activations until the next step."""
    for s in range(0, len(x), chunk):
        yield s, net.forward(to_inputs(x[s : s + chunk], net.dtype))


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
    if isinstance(meta, list) and len(meta) == n:
        return [str(c) for c in meta]
    return [str(i) for i in range(n)]


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
    network's dtype; ``y_test`` their labels (ignored for an autoencoder, may be None).
    ``out_dir`` must be an existing folder. The forward pass runs ``chunk`` images at a
    time. Returns the written files by file name. Sizes in pixels: :data:`INSPECT_SIZES`.

    A classifier (any model whose ``net.meta["task"]`` is not ``"autoencoder"``) gets:

    - ``confusion.png``: counts in the cells (colour: fraction of the true class), the
      per-class accuracy on the row labels, the accuracy in the title;
    - ``confusion.json``: ``counts`` (rows true, columns predicted), ``per_class_accuracy``
      (null for a class without samples), ``accuracy``, ``samples``, ``classes`` and
      ``most_confident_mistakes`` (index, true, pred, probability of what wrong.png shows);
    - ``wrong.png``: the :data:`N_WRONG` (24) misclassified images with the highest
      predicted probability (``net.loss.probabilities``), titled "true 7 / pred 2 (0.98)";
      with no mistakes it says so.

    An autoencoder gets ``reconstructions.png``: the first 12 test images above their
    reconstructions (clipped to [0, 1]), with the mean squared error per pixel in the title,
    and ``reconstructions.json``: ``samples`` and ``mse_per_pixel`` (unclipped outputs).

    Both get ``weights.png`` (the weights into layer 1, one square image per neuron, the
    first :data:`MAX_WEIGHT_IMAGES` (100) at most, diverging colours symmetric around 0)
    and ``activations.png`` (a histogram of a^l over the test set for each hidden layer,
    with the saturated share for sigmoid (a < 0.02 or a > 0.98) and tanh (|a| > 0.96) and
    the zero share for relu; a network without hidden layers gets a picture that says so),
    with ``activations.json``: ``samples`` and per hidden layer ``layer``, ``activation``,
    ``neurons``, ``bin_edges``, ``counts`` and ``saturated_fraction`` or ``zero_fraction``
    (``layers`` is empty without hidden layers). Histogram ranges: [0, 1] for sigmoid,
    [-1, 1] for tanh, else the observed min..max (found in an extra forward pass).

    Class names come from ``classes``, else from ``net.meta["classes"]``, else 0, 1, 2, ...
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
    y: Array | None = None
    names: list[str] = []
    if not autoencoder:
        if y_test is None:
            raise NnetError("a classifier needs the test labels to inspect it; pass y_test.")
        y = np.asarray(y_test)
        if y.shape != (n,):
            raise NnetError(f"need one label per test image ({n}); got shape {y.shape}.")
        names = _class_names(net, classes)
        confusion_matrix(y, y, net.sizes[-1])  # labels must be classes of the network

    # Ranges of the hidden-activation histograms: known for sigmoid/tanh, else measured.
    hidden = list(range(1, net.L))
    ranges = {
        l: _FIXED_RANGE[net.activations[l - 1]]
        for l in hidden
        if net.activations[l - 1] in _FIXED_RANGE
    }
    measure = [l for l in hidden if l not in ranges]
    lo = dict.fromkeys(measure, np.inf)
    hi = dict.fromkeys(measure, -np.inf)
    hist = _Histograms(net, ranges)

    pred = np.empty(n, dtype=np.int64)
    conf = np.empty(n, dtype=np.float64)
    recon: list[Array] = []
    sq_error = 0.0
    for s, O in _forward_chunks(net, x, chunk):
        hist.add()
        for l in measure:
            a = net.a[l][:, :-1]
            lo[l], hi[l] = min(lo[l], float(a.min())), max(hi[l], float(a.max()))
        if autoencoder:
            target = to_inputs(x[s : s + len(O)], np.float64)
            sq_error += float(np.sum((O.astype(np.float64) - target) ** 2))
            if s < N_RECONSTRUCTIONS:
                recon.extend(np.clip(O[: N_RECONSTRUCTIONS - s], 0.0, 1.0))
        else:
            p = net.loss.probabilities(O)
            k = np.argmax(O, axis=1)
            pred[s : s + len(O)] = k
            conf[s : s + len(O)] = p[np.arange(len(O)), k]
    if measure:  # a second pass for the histograms whose range is known only now
        second = _Histograms(
            net,
            {l: (lo[l], hi[l]) if hi[l] > lo[l] else (lo[l] - 0.5, hi[l] + 0.5) for l in measure},
        )
        for _ in _forward_chunks(net, x, chunk):
            second.add()
        for attr in ("edges", "counts", "special"):
            getattr(hist, attr).update(getattr(second, attr))

    files: dict[str, Path] = {}
    if autoencoder:
        mse = sq_error / (n * net.sizes[0])
        info = {"samples": n, "mse_per_pixel": mse}
        files["reconstructions.json"] = _write_json(info, out / "reconstructions.json")
        fig = _reconstructions_figure(x[:N_RECONSTRUCTIONS], np.array(recon), mse, n)
        files["reconstructions.png"] = _write_png(fig, out / "reconstructions.png")
    else:
        assert y is not None
        cm = confusion_matrix(y, pred, net.sizes[-1])
        acc = per_class_accuracy(cm)
        idx = most_confident_mistakes(y, pred, conf)
        info = {
            "counts": cm.tolist(),
            "per_class_accuracy": [float(a) if np.isfinite(a) else None for a in acc],
            "accuracy": int(np.trace(cm)) / n,
            "samples": n,
            "classes": names,
            "most_confident_mistakes": [
                {
                    "index": int(i),
                    "true": int(y[i]),
                    "pred": int(pred[i]),
                    "probability": float(conf[i]),
                }
                for i in idx
            ],
        }
        files["confusion.json"] = _write_json(info, out / "confusion.json")
        files["confusion.png"] = _write_png(
            _confusion_figure(cm, acc, names), out / "confusion.png"
        )
        fig = _wrong_figure(x, y, pred, conf, idx, names)
        files["wrong.png"] = _write_png(fig, out / "wrong.png")
    files["weights.png"] = _write_png(_weights_figure(net), out / "weights.png")
    path = out / "activations.json"
    files["activations.json"] = _write_json(_activations_info(net, hist, n), path)
    fig = _activations_figure(net, hist if hidden else None, n)
    files["activations.png"] = _write_png(fig, out / "activations.png")
    return files
