"""``nnet augment``: a picture of what ``--augment`` does to the training images, so that the
strengths can be judged by eye.

One row per image: the image as it is, then several random distortions of it, drawn by the
same :class:`~nnet.data.augment.Augmenter` a training run uses (the settings' strengths).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nnet.data.augment import Augmenter
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.training.settings import Settings

Array = np.ndarray

#: Screen pixels per image pixel in the picture, and image pixels between two images.
ZOOM = 4
GAP = 2


def pick_examples(labels: Array, count: int) -> Array:
    """The indices of ``count`` images: the first of each class in turn (0, 1, 2, ...,
    then again from the first class), so that a row of digits shows every class."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    firsts = [np.flatnonzero(labels == c) for c in classes]
    picked: list[int] = []
    rank = 0
    while len(picked) < count:
        added = False
        for where in firsts:
            if rank < len(where) and len(picked) < count:
                picked.append(int(where[rank]))
                added = True
        if not added:
            break
        rank += 1
    return np.array(picked, dtype=np.intp)


def mosaic(images: Array, gap: int = GAP) -> Array:
    """``images`` (rows, columns, H, W[, C]) laid out in one array with ``gap`` pixels of
    background (value 1, white) between them."""
    rows, cols, H, W = images.shape[:4]
    channels = images.shape[4:]
    out = np.ones((rows * (H + gap) - gap, cols * (W + gap) - gap, *channels), images.dtype)
    for r in range(rows):
        for c in range(cols):
            y, x = r * (H + gap), c * (W + gap)
            out[y : y + H, x : x + W] = images[r, c]
    return out


def draw_augmented(
    inputs: Array,
    augmenter: Augmenter,
    path: str | os.PathLike[str],
    *,
    versions: int = 8,
    title: str = "",
) -> Path:
    """Write to ``path`` (PNG) a grid of the images ``inputs`` (n, H*W*C; pixels / 255) and
    ``versions`` distortions of each by ``augmenter`` (one batch of n * versions images)."""
    if versions < 1 or len(inputs) < 1:
        raise NnetError("the picture needs at least one image and one distorted version.")
    H, W, C = augmenter.shape
    n = len(inputs)
    rows = np.repeat(np.asarray(inputs, augmenter.dtype), versions, axis=0)
    augmenter(rows)
    grid = np.concatenate(
        [inputs.reshape(n, 1, H, W, C), rows.reshape(n, versions, H, W, C)], axis=1
    )
    picture = mosaic(np.clip(1.0 - grid, 0.0, 1.0))  # dark digits on white
    if C == 1:
        picture = picture[..., 0]
    height, width = picture.shape[:2]
    top = 16 * (title.count("\n") + 1) + 12 if title else 0
    dpi = 100
    fig = Figure(figsize=(width * ZOOM / dpi, (height * ZOOM + top) / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, height * ZOOM / (height * ZOOM + top)))
    ax.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 4 / (height * ZOOM + top), va="top", wrap=True)
    with atomic_write(path) as f:
        fig.canvas.print_png(f)
    return Path(path)


def describe(settings: Settings) -> str:
    """The strengths of ``settings`` in one line (the picture's title)."""
    s = settings
    parts = [
        f"shift ≤ {s.translate:g} px",
        f"rotation ≤ {s.rotate:g}°",
        f"zoom ≤ {100 * s.zoom:g} %",
        f"shear ≤ {s.shear:g}°",
        f"elastic α {s.elastic_alpha:g} px, σ {s.elastic_sigma:g} px"
        if s.elastic_alpha
        else "no elastic distortion",
    ]
    return "left: as stored; then random distortions\n" + ", ".join(parts)
