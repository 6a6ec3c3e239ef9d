"""Turn an arbitrary picture of a digit into an MNIST-style input, the way MNIST was made.

LeCun et al. describe the recipe: "the images were size normalized to fit in a 20x20 pixel
box while preserving their aspect ratio ... and centered in a 28x28 image by computing the
center of mass of the pixels, and translating the image so as to position this point at the
center of the 28x28 field". :func:`to_mnist` follows it step by step:

1. polarity: the background is the median of the outermost rows and columns; if it is light
   (> 0.5) the picture is inverted, so the digit is white on black like MNIST's;
2. the background level is subtracted (clipped at 0, so a grey background becomes black) and
   ink fainter than ``INK_THRESHOLD`` of the strongest ink counts as background; a picture
   whose strongest ink is below ``MIN_CONTRAST`` has no digit;
3. the picture is cropped to the bounding box of the ink;
4. it is resized (Pillow, on a float ``'F'`` image: area-averaging ``BOX`` when shrinking,
   which is what an anti-aliased rendering of a finer picture amounts to, ``LANCZOS`` when
   enlarging) so that its longer side is ``BOX_SIZE`` = 20 px, keeping the aspect ratio;
5. it is scaled so that its maximum is 1 (MNIST strokes reach full intensity);
6. it is pasted into a black 28x28 field by an integer shift that puts its center of mass
   nearest to ``CENTER`` = (14, 14), the shift clipped so the whole digit stays inside.

Center-of-mass convention: pixel ``[r, c]`` sits at coordinates ``(r, c)`` (row, column;
no half-pixel offset), so the center of mass is ``(sum_r r * mass_r, sum_c c * mass_c) /
mass``. Measured on the 10,000 MNIST test digits this way, the mean center of mass is
(13.99, 14.01) with standard deviation 0.29 in each coordinate: exactly what an integer shift
towards (14, 14) leaves (a uniform rounding error on [-0.5, 0.5] has std 0.289).

:func:`load_image` reads a file (any format Pillow reads, or a ``.npy`` array) and applies
:func:`to_mnist`; every problem with the file raises :class:`nnet.errors.NnetError` naming
the path.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nnet.errors import NnetError

Array = np.ndarray

SIDE = 28  # MNIST images are SIDE x SIDE
BOX_SIZE = 20  # the digit is scaled so its longer side is BOX_SIZE
CENTER = (14.0, 14.0)  # target center of mass (row, column), pixel [r, c] at (r, c)
INK_THRESHOLD = 0.1  # ink below this fraction of the strongest ink is background
MIN_CONTRAST = 0.1  # strongest ink (above the background, on [0, 1]) for there to be a digit
VALUE_SLACK = 1e-6  # rounding error tolerated (and clipped) outside [0, 1] in to_mnist
MAX_PIXELS = 50_000_000  # larger images (or .npy arrays) are refused before decoding
MNIST_SHAPES = ((SIDE, SIDE), (SIDE * SIDE,), (1, SIDE * SIDE))  # .npy taken as-is


def to_mnist(gray: Array) -> Array:
    """An MNIST-style (28, 28) float64 image in [0, 1] (white digit on black, max 1).

    ``gray`` is a 2-D grayscale picture with values in [0, 1], of either polarity (a dark
    digit on a light background is inverted). Raises NnetError if it is not such an array
    or shows no digit. See the module docstring for the recipe and its conventions.
    """
    return _to_mnist(gray, "the image")


def load_image(path: str | os.PathLike[str]) -> Array:
    """The picture at ``path`` as a (28, 28) float64 MNIST input in [0, 1], white on black.

    Any format Pillow reads: EXIF orientation applied, transparency composited over white,
    converted to grayscale, then :func:`to_mnist`. A ``.npy`` file of shape (28, 28), (784,)
    or (1, 784) is taken as already MNIST-formatted (white on black); any other 2-D array is
    a grayscale picture and goes through :func:`to_mnist`. Arrays of uint8, or with values
    above 1, are read as 0..255. Raises NnetError naming the path for every problem.
    """
    p = Path(path)
    shown = str(path)
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except (OSError, ValueError) as exc:  # e.g. a NUL byte or a name too long
        raise NnetError(f"cannot read {shown}: {_one_line(exc)}; check the path.") from None
    if not exists:
        raise NnetError(f"cannot read {shown}: no such file; check the path.")
    if is_dir:
        raise NnetError(f"cannot read {shown}: it is a folder; give the path of an image file.")
    if p.suffix.lower() == ".npy":
        return _load_npy(p, shown)
    return _to_mnist(_read_picture(p, shown), shown)


# ----------------------------------------------------------------- reading files
def _read_picture(p: Path, shown: str) -> Array:
    """The image file at ``p`` as a 2-D float64 grayscale array in [0, 1]."""
    try:
        with warnings.catch_warnings():
            # Pillow warns about (and refuses) huge images itself; MAX_PIXELS is stricter.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size  # read from the header; nothing is decoded yet
                if width * height > MAX_PIXELS:
                    raise NnetError(
                        f"cannot read {shown}: the image is {width}x{height} pixels, more "
                        f"than the {MAX_PIXELS // 1_000_000} megapixels allowed; scale it "
                        f"down first."
                    )
                im.load()
                upright = ImageOps.exif_transpose(im)
                return _grayscale(upright, shown)
    except NnetError:
        raise
    except PermissionError:
        raise NnetError(
            f"cannot read {shown}: permission denied; check the file's permissions."
        ) from None
    except UnidentifiedImageError:
        raise NnetError(
            f"cannot read {shown}: it is not an image in a format nnet can read; "
            f"save it as PNG or JPEG."
        ) from None
    except Image.DecompressionBombError:
        raise NnetError(
            f"cannot read {shown}: the image is too large to decode safely; scale it down first."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise NnetError(
            f"cannot read {shown}: the image is damaged or unsupported ({_one_line(exc)}); "
            f"save it again as PNG or JPEG."
        ) from None


def _grayscale(im: Image.Image, shown: str) -> Array:
    """A decoded Pillow image as float64 grayscale in [0, 1], transparency over white."""
    if im.mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float64) / 65535.0
    if im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if not np.isfinite(a).all():
            raise NnetError(f"cannot use {shown}: it has NaN or infinite pixel values.")
        top = a.max(initial=0.0)
        full = 1.0 if im.mode == "F" and top <= 1 else 255.0 if top <= 255 else 65535.0
        return np.clip(a / full, 0.0, 1.0)
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.asarray(im.convert("L"), dtype=np.float64) / 255.0


def _load_npy(p: Path, shown: str) -> Array:
    """A ``.npy`` file as a (28, 28) MNIST input (see :func:`load_image`)."""
    try:
        too_big = p.stat().st_size > 8 * MAX_PIXELS + 4096  # float64 values plus a header
    except OSError as exc:
        raise NnetError(f"cannot read {shown}: {_one_line(exc)}; check the file.") from None
    if too_big:
        raise NnetError(
            f"cannot read {shown}: the file is larger than an array of "
            f"{MAX_PIXELS // 1_000_000} megapixels; scale the picture down first."
        )
    try:
        loaded = np.load(p, allow_pickle=False)
    except PermissionError:
        raise NnetError(
            f"cannot read {shown}: permission denied; check the file's permissions."
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        raise NnetError(
            f"cannot read {shown}: it is not a plain NumPy .npy array ({_one_line(exc)}); "
            f"save it with numpy.save."
        ) from None
    if not isinstance(loaded, np.ndarray):  # an .npz archive under a .npy name
        loaded.close()
        raise NnetError(
            f"cannot read {shown}: it is an .npz archive, not a single array; "
            f"save one array with numpy.save."
        )
    arr = loaded
    if arr.dtype.kind not in "buif":
        raise NnetError(
            f"cannot use {shown}: its values are of type {arr.dtype}, not numbers; "
            f"save an array of integers or floats."
        )
    mnist = arr.shape in MNIST_SHAPES
    if not mnist and arr.ndim != 2:
        raise NnetError(
            f"cannot use {shown}: it has shape {arr.shape}; expected a 28x28 or 784-element "
            f"MNIST image or a 2-D grayscale picture."
        )
    a = arr.astype(np.float64)
    if not np.isfinite(a).all():
        raise NnetError(f"cannot use {shown}: it contains NaN or infinite values; fix the array.")
    if a.size and a.min() < 0:
        raise NnetError(
            f"cannot use {shown}: it has negative values; pixels must be in 0..1 or 0..255."
        )
    if arr.dtype == np.uint8 or (a.size and a.max() > 1):
        a = a / 255.0
    if a.size and a.max() > 1:
        raise NnetError(
            f"cannot use {shown}: it has values above 255; pixels must be in 0..1 or 0..255."
        )
    if not mnist:
        return _to_mnist(a, shown)
    a = a.reshape(SIDE, SIDE)
    if a.max() == 0:
        raise NnetError(f"cannot use {shown}: the image is all black and has no digit.")
    return a


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without a trailing period."""
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__


# ----------------------------------------------------------------- the MNIST recipe
def _to_mnist(gray: Array, shown: str) -> Array:
    """:func:`to_mnist`, naming ``shown`` in its errors."""
    g = np.asarray(gray)
    if g.ndim != 2 or g.size == 0:
        raise NnetError(
            f"cannot use {shown}: a grayscale picture must be a non-empty 2-D array; "
            f"got shape {g.shape}."
        )
    if g.dtype.kind not in "buif":
        raise NnetError(f"cannot use {shown}: pixel values must be numbers; got {g.dtype}.")
    g = g.astype(np.float64)
    if not np.isfinite(g).all():
        raise NnetError(f"cannot use {shown}: it contains NaN or infinite pixel values.")
    if g.min() < -VALUE_SLACK or g.max() > 1 + VALUE_SLACK:
        raise NnetError(
            f"cannot use {shown}: grayscale values must lie in [0, 1]; "
            f"got [{g.min():g}, {g.max():g}] (divide 0..255 values by 255)."
        )
    g = np.clip(g, 0.0, 1.0)

    # 1. polarity, from the background level on the border.
    border = np.concatenate([g[0, :], g[-1, :], g[1:-1, 0], g[1:-1, -1]])
    background = float(np.median(border))
    if background > 0.5:
        g, background = 1.0 - g, 1.0 - background

    # 2. ink = what rises above the background; faint ink is background.
    ink = np.clip(g - background, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise NnetError(
            f"cannot use {shown}: the image has no digit (it is blank or nearly uniform); "
            f"draw a digit that contrasts with the background."
        )
    ink[ink < INK_THRESHOLD * peak] = 0.0

    # 3. crop to the bounding box of the ink.
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    # 4. resize so the longer side is BOX_SIZE, keeping the aspect ratio.
    h, w = ink.shape
    scale = BOX_SIZE / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        method = Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS
        small = Image.fromarray(ink.astype(np.float32)).resize((new_w, new_h), method)
        ink = np.clip(np.asarray(small, dtype=np.float64), 0.0, None)

    # 5. full-intensity strokes.
    top = float(ink.max())
    if top <= 0:  # cannot happen for non-negative ink with a positive peak; be safe
        raise NnetError(f"cannot use {shown}: the image has no digit after resizing.")
    ink = ink / top

    # 6. center of mass to CENTER by an integer shift, the digit kept inside the field.
    mass = ink.sum()
    cy = float(np.arange(new_h) @ ink.sum(axis=1)) / mass
    cx = float(np.arange(new_w) @ ink.sum(axis=0)) / mass
    top_row = int(np.clip(np.floor(CENTER[0] - cy + 0.5), 0, SIDE - new_h))
    left_col = int(np.clip(np.floor(CENTER[1] - cx + 0.5), 0, SIDE - new_w))
    out = np.zeros((SIDE, SIDE), dtype=np.float64)
    out[top_row : top_row + new_h, left_col : left_col + new_w] = ink
    return out
