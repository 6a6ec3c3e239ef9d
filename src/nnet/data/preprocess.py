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
mass``. Measured this way, MNIST's own digits sit around (14, 14), spread as whole-pixel
shifts leave them (tests/test_preprocess.py re-measures it).

:func:`load_image` does the same to an image file or a ``.npy`` array, and
:func:`load_images` to an ``.npy`` file of several MNIST-formatted images. Both read only
regular files (never a device, FIFO or socket) of at most ``MAX_FILE_BYTES``; an image's
size is read from its header and refused above ``MAX_PIXELS`` before it is decoded, and an
``.npy`` file's header is checked (shape, type, and that the file holds exactly the bytes it
declares) before its data is read.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nnet.data.datasets import MNIST
from nnet.data.idx import SpecialFileError, open_regular, read_exactly, read_npy_header
from nnet.data.idx import shown as shown_path
from nnet.errors import NnetError

SIDE = MNIST.side  # MNIST images are SIDE x SIDE
BOX_SIZE = 20  # the digit is scaled so its longer side is BOX_SIZE
CENTER = SIDE / 2  # target center of mass, in rows and in columns; pixel [r, c] at (r, c)
INK_THRESHOLD = 0.1  # ink below this fraction of the strongest ink is background
MIN_CONTRAST = 0.1  # strongest ink (above the background, on [0, 1]) for there to be a digit
VALUE_SLACK = 1e-6  # rounding error tolerated (and clipped) outside [0, 1] in to_mnist
# Larger pictures (image files or 2-D .npy arrays) are refused before decoding: 16
# megapixels (a 12-megapixel photo fits) keep the float64 working copies under 1 GiB.
MAX_PIXELS = 16_000_000
# Images in one .npy file of MNIST-formatted images, (N, 28, 28) or (N, 784): MNIST's test set.
MAX_NPY_IMAGES = 10_000
# Bytes of an image or .npy file read at all (a float64 picture of MAX_PIXELS and a header).
MAX_FILE_BYTES = 8 * MAX_PIXELS + 4096


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The picture at ``path`` as a (28, 28) float64 MNIST input in [0, 1], white on black.

    Any format Pillow reads: EXIF orientation applied, transparency composited over white,
    converted to grayscale, then :func:`to_mnist`. A ``.npy`` file of shape (28, 28), (784,)
    or (1, 784) (or (1, 28, 28)) is taken as already MNIST-formatted (white on black); any
    other 2-D array of at most ``MAX_PIXELS`` is a grayscale picture and goes through
    :func:`to_mnist`. Arrays of uint8, or with values above 1, are read as 0..255. Raises
    NnetError naming the path for every problem.
    """
    images = _load(path, one=True)
    return images[0]


def load_images(path: str | os.PathLike[str]) -> np.ndarray:
    """The images at ``path`` as an (N, 28, 28) float64 array: a picture as :func:`load_image`
    reads it (N = 1), or an ``.npy`` file of N MNIST-formatted images, (N, 28, 28) or
    (N, 784) with 1 <= N <= ``MAX_NPY_IMAGES``, each checked as :func:`load_image` checks
    one."""
    return _load(path, one=False)


def _load(path: str | os.PathLike[str], one: bool) -> np.ndarray:
    p, shown = Path(path), shown_path(path)
    npy = p.suffix.lower() == ".npy"
    try:
        with open_regular(p) as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise NnetError(
                    f"cannot read {shown}: the file is larger than {MAX_FILE_BYTES} bytes (a "
                    f"picture of {MAX_PIXELS // 1_000_000} megapixels); scale it down first."
                )
            if npy:
                return _from_npy(_read_npy(f, shown, one), shown)
            return to_mnist(_read_picture(f, shown), shown)[None]
    except NnetError:
        raise
    except FileNotFoundError:
        raise NnetError(f"cannot read {shown}: no such file; check the path.") from None
    except IsADirectoryError:
        raise NnetError(
            f"cannot read {shown}: it is a folder; give the path of an image file."
        ) from None
    except SpecialFileError:
        raise NnetError(
            f"cannot read {shown}: it is not a regular file (a device, FIFO or socket); give "
            "the path of an image file."
        ) from None
    except MemoryError:
        raise NnetError(
            f"cannot read {shown}: the picture is too large for the memory available; scale "
            "it down first."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise NnetError(f"cannot read {shown}: {_why(exc, npy)}.") from None


# ----------------------------------------------------------------- reading files
def _read_picture(f: BinaryIO, shown: str) -> np.ndarray:
    """The image file ``f`` as a 2-D float64 grayscale array in [0, 1], upright."""
    with warnings.catch_warnings():
        # Pillow warns about huge images (MAX_PIXELS is stricter) and damaged metadata (a
        # corrupt EXIF block): the picture is read, or refused in one line, never with a
        # warning on the way
        warnings.simplefilter("ignore")
        with Image.open(f) as im:
            width, height = im.size  # read from the header; nothing is decoded yet
            if width * height > MAX_PIXELS:
                raise NnetError(
                    f"cannot read {shown}: the image is {width}x{height} pixels, more "
                    f"than the {MAX_PIXELS // 1_000_000} megapixels allowed; scale it "
                    f"down first."
                )
            try:
                im.load()
                im = ImageOps.exif_transpose(im)
            except (NnetError, MemoryError, Image.DecompressionBombError):
                raise
            except Exception as exc:  # a decoder's own error on a damaged file, whatever
                raise ValueError(_one_line(exc)) from None  # its type: one message
            if im.mode.startswith("I") or im.mode == "F":  # 16- or 32-bit integers, or floats
                a = _numbers(np.asarray(im), shown)
                top = 65535.0 if im.mode.startswith("I;16") else a.max(initial=0.0)
                full = 1.0 if im.mode == "F" and top <= 1 else 255.0 if top <= 255 else 65535.0
                a /= full
                return np.clip(a, 0.0, 1.0, out=a)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                white = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(white, im.convert("RGBA"))
            gray = np.asarray(im.convert("L"), dtype=np.float64)
            gray /= 255.0
            return gray


# MNIST-formatted shapes of a .npy file: one image, or N of them (N = -1)
_ONE = ((SIDE, SIDE), (MNIST.n_inputs,))
_MANY = ((-1, SIDE, SIDE), (-1, MNIST.n_inputs))


def _npy_kind(shape: tuple[int, ...]) -> tuple[str, int]:
    """("images", N) for MNIST-formatted shapes, ("picture", 1) for another 2-D array;
    ValueError otherwise."""
    if shape in _ONE:
        return "images", 1
    if len(shape) in (2, 3) and shape[1:] in (s[1:] for s in _MANY):
        return "images", shape[0]
    if len(shape) == 2:
        return "picture", 1
    raise ValueError(shape)


def _read_npy(f: BinaryIO, shown: str, one: bool) -> np.ndarray:
    """The array in the ``.npy`` file ``f``: its header checked (shape, type, size) before
    any data is read."""
    size = os.fstat(f.fileno()).st_size
    if f.read(4) == b"PK\x03\x04":
        raise NnetError(
            f"cannot read {shown}: it is an .npz archive, not a single array; "
            f"save one array with numpy.save."
        )
    f.seek(0)
    try:
        shape, fortran, dtype, header = read_npy_header(f)
    except ValueError as exc:
        raise NnetError(
            f"cannot read {shown}: it is not a plain NumPy .npy array ({exc}); save it with "
            "numpy.save."
        ) from None
    if dtype.hasobject:
        raise NnetError(
            f"cannot read {shown}: it is not a plain NumPy .npy array (it holds Python "
            "objects, which nnet never unpickles); save numbers with numpy.save."
        )
    if dtype.kind not in "buif" or dtype.fields is not None or dtype.subdtype is not None:
        raise NnetError(
            f"cannot use {shown}: its values are of type {dtype}, not numbers; "
            f"give integers or floats."
        )
    expected = (
        "a 28x28 or 784-element MNIST image, (N, 28, 28) or (N, 784) MNIST images, or a "
        "2-D grayscale picture"
    )
    try:
        kind, n = _npy_kind(shape)
    except ValueError:
        raise NnetError(f"cannot use {shown}: it has shape {shape}; expected {expected}.") from None
    if kind == "images" and not 1 <= n <= MAX_NPY_IMAGES:
        raise NnetError(
            f"cannot use {shown}: it has shape {shape}, {n} images; nnet reads 1 to "
            f"{MAX_NPY_IMAGES} images from one file."
        )
    if kind == "images" and one and n > 1:
        raise NnetError(
            f"cannot use {shown}: it holds {n} images (shape {shape}); give one image per file."
        )
    if kind == "picture" and math.prod(shape) > MAX_PIXELS:
        raise NnetError(
            f"cannot read {shown}: it has shape {shape}, more than the "
            f"{MAX_PIXELS // 1_000_000} megapixels allowed; scale the picture down first."
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if size != header + nbytes:
        raise NnetError(
            f"cannot read {shown}: its header declares shape {shape} of {dtype} ({nbytes} "
            f"bytes) but the file holds {size - header}; the file is truncated or damaged."
        )
    data, got = read_exactly(f, nbytes)
    if got < nbytes:
        raise NnetError(f"cannot read {shown}: the file is truncated (it changed while read).")
    a = data.view(dtype).reshape(shape, order="F" if fortran else "C")
    return a if kind == "picture" else a.reshape(n, -1)[:, None] if False else a


def _from_npy(a: np.ndarray, shown: str) -> np.ndarray:
    """A checked ``.npy`` array as (N, 28, 28) MNIST inputs: MNIST-formatted images as they
    are (scaled from 0..255 if need be), a 2-D picture through :func:`to_mnist`."""
    x = _numbers(a, shown)
    if x.size and x.min() < 0:
        raise NnetError(
            f"cannot use {shown}: it has negative values; pixels must be in 0..1 or 0..255."
        )
    if a.dtype == np.uint8 or (x.size and x.max() > 1):
        x /= 255.0
    if x.size and x.max() > 1:
        raise NnetError(
            f"cannot use {shown}: it has values above 255; pixels must be in 0..1 or 0..255."
        )
    if _npy_kind(a.shape)[0] == "picture":
        return to_mnist(x, shown)[None]
    x = x.reshape(-1, SIDE, SIDE)
    black = np.flatnonzero(x.reshape(len(x), -1).max(axis=1) == 0)
    if black.size:
        which = "the image is" if len(x) == 1 else f"image {black[0]} (from 0) is"
        raise NnetError(f"cannot use {shown}: {which} all black and has no digit.")
    return x


def _numbers(a: np.ndarray, shown: str) -> np.ndarray:
    """``a`` as finite float64 numbers, always a new array; NnetError naming ``shown``
    otherwise."""
    if a.dtype.kind not in "buif":
        raise NnetError(
            f"cannot use {shown}: its values are of type {a.dtype}, not numbers; "
            f"give integers or floats."
        )
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise NnetError(f"cannot use {shown}: it contains NaN or infinite values.")
    return a


def _why(exc: BaseException, npy: bool) -> str:
    """Why a file could not be read, and what to do, for ``exc`` raised reading it."""
    if isinstance(exc, PermissionError):
        return "permission denied; check the file's permissions"
    if isinstance(exc, UnidentifiedImageError):
        return "it is not an image in a format nnet can read; save it as PNG or JPEG"
    if isinstance(exc, Image.DecompressionBombError):
        return "the image is too large to decode safely; scale it down first"
    detail = _one_line(exc)
    if npy:
        return f"it is not a plain NumPy .npy array ({detail}); save it with numpy.save"
    return f"the image is damaged or unsupported ({detail}); save it again as PNG or JPEG"


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without a trailing period."""
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


# ----------------------------------------------------------------- the MNIST recipe
def to_mnist(gray: np.ndarray, name: str = "the image") -> np.ndarray:
    """An MNIST-style (28, 28) float64 image in [0, 1] (white digit on black, max 1).

    ``gray`` is a 2-D grayscale picture with values in [0, 1], of either polarity (a dark
    digit on a light background is inverted). Raises NnetError, calling the picture
    ``name``, if it is not such an array or shows no digit. See the module docstring for
    the recipe and its conventions.
    """
    g = np.asarray(gray)
    if g.ndim != 2 or g.size == 0:
        raise NnetError(
            f"cannot use {name}: a grayscale picture must be a non-empty 2-D array; "
            f"got shape {g.shape}."
        )
    g = _numbers(g, name)  # a copy of its own: changed in place below (one copy in memory)
    if g.min() < -VALUE_SLACK or g.max() > 1 + VALUE_SLACK:
        raise NnetError(
            f"cannot use {name}: grayscale values must lie in [0, 1]; "
            f"got [{g.min():g}, {g.max():g}] (divide 0..255 values by 255)."
        )
    np.clip(g, 0.0, 1.0, out=g)

    # 1. polarity, from the background level on the border.
    border = np.concatenate([g[0, :], g[-1, :], g[1:-1, 0], g[1:-1, -1]])
    background = float(np.median(border))
    if background > 0.5:
        np.subtract(1.0, g, out=g)
        background = 1.0 - background

    # 2. ink = what rises above the background; faint ink is background.
    ink = g
    ink -= background
    np.clip(ink, 0.0, None, out=ink)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise NnetError(
            f"cannot use {name}: the image has no digit (it is blank or nearly uniform); "
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
    if top <= 0:  # not seen for non-negative ink with a positive peak; kept against NaN
        raise NnetError(f"cannot use {name}: the image has no digit after resizing.")
    ink = ink / top

    # 6. center of mass to CENTER by an integer shift, the digit kept inside the field.
    mass = ink.sum()
    cy = float(np.arange(new_h) @ ink.sum(axis=1)) / mass
    cx = float(np.arange(new_w) @ ink.sum(axis=0)) / mass
    top_row = int(np.clip(np.floor(CENTER - cy + 0.5), 0, SIDE - new_h))
    left_col = int(np.clip(np.floor(CENTER - cx + 0.5), 0, SIDE - new_w))
    out = np.zeros((SIDE, SIDE), dtype=np.float64)
    out[top_row : top_row + new_h, left_col : left_col + new_w] = ink
    return out
