"""Your own pictures in: a folder of class folders, the torchvision / Keras convention.

::

    DIR/cat/001.png
    DIR/cat/002.jpg
    DIR/dog/a.png
    ...

:func:`read_image_folder` reads every image under each class folder (sub-folders included,
as torchvision's ``ImageFolder`` does) into a :class:`~nnet.data.tables.Table`: ``X`` holds
the pixels / 255 (float64, one row per image, row-major; for ``"rgb"`` the three values of
each pixel side by side), ``y`` the class indices, ``classes`` the folder names, sorted.
:func:`read_image` is the same conversion of one file, for predicting on a picture with a
model trained on a folder: Pillow's ``Image.open(path).convert("L" or "RGB")``, then
``resize(size)`` (Pillow's default filter) when the size differs. 16-bit grayscale images
keep their top 8 bits.

Read: files with the extensions in ``IMAGE_EXTENSIONS`` (any letter case) that are regular
files (or links to one). Skipped: other files, and names starting with ``.`` (``.DS_Store``,
``._x.png``, ``.ipynb_checkpoints``). Every problem raises
:class:`~nnet.data.tables.DataFileError` naming the folder or file: no class folders, a
class folder without images, one class only, an image Pillow cannot read, more than
``MAX_IMAGES`` images.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from nnet.data.tables import MAX_CLASSES, MAX_VALUES, DataFileError, Table

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
COLORS = {"gray": "L", "rgb": "RGB"}  # color= -> Pillow mode
MAX_IMAGES = 1_000_000
MAX_SIDE = 1024  # of size=


def _check_options(size: tuple[int, int], color: str) -> tuple[tuple[int, int], str]:
    if color not in COLORS:
        raise DataFileError(f"color must be 'gray' or 'rgb', not {color!r}.")
    try:
        w, h = (int(s) for s in size)
        ok = (w, h) == tuple(size) and 1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataFileError(
            f"size must be (width, height), two whole numbers from 1 to {MAX_SIDE}, not {size!r}."
        )
    return (w, h), COLORS[color]


def _pixels(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    """The image at ``path`` as uint8 (height, width[, 3]); DataFileError if unreadable."""
    try:
        with Image.open(path) as im:
            if im.mode.startswith("I;16"):  # 16-bit gray: convert("L") would clip, not scale
                im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
            im = im.convert(mode)
            if im.size != size:
                im = im.resize(size)
            return np.asarray(im, dtype=np.uint8)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise DataFileError(f"{path} does not exist; check the path.") from None
        reason = str(e)
    except Exception as e:  # noqa: BLE001  any decoder failure: Pillow raises many kinds
        reason = f"{type(e).__name__}: {e}"
    raise DataFileError(f"{path} cannot be read as an image ({reason}); remove or replace it.")


def read_image(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (28, 28), color: str = "gray"
) -> np.ndarray:
    """One picture as :func:`read_image_folder` reads each: float64 pixels / 255, flat."""
    size, mode = _check_options(size, color)
    return _pixels(Path(path), size, mode).reshape(-1) / 255.0


def _is_image(entry: os.DirEntry) -> bool:
    if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_EXTENSIONS):
        return False
    try:
        return stat.S_ISREG(entry.stat().st_mode)  # follows a link; only regular files
    except OSError:
        return False


def _images_in(folder: Path) -> list[Path]:
    """Every image under ``folder``, sub-folders included (not through links), sorted."""
    found = []
    for root, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        with os.scandir(root) as it:
            found += sorted(Path(e.path) for e in it if _is_image(e))
    return found


def find_images(path: str | os.PathLike[str]) -> tuple[list[tuple[Path, int]], tuple[str, ...]]:
    """(every image with its class index, the class names sorted) under ``path``."""
    root = Path(path)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise DataFileError(f"{root} {what}; give a folder holding one folder per class.")
    try:
        with os.scandir(root) as it:
            entries = list(it)
        classes = tuple(sorted(e.name for e in entries if e.is_dir() and e.name[0] != "."))
    except OSError as e:
        raise DataFileError(f"{root} cannot be read: {e.strerror or e}.") from None
    if not classes:
        loose = sum(_is_image(e) for e in entries)
        also = f" (the {loose} images in it belong in them)" if loose else ""
        raise DataFileError(
            f"{root} has no class folders{also}; put each class's images in a folder named "
            f"after it: {root}/cat/1.png, {root}/dog/2.png, ..."
        )
    if len(classes) > MAX_CLASSES:
        raise DataFileError(
            f"{root} has {len(classes)} class folders; nnet accepts at most {MAX_CLASSES}."
        )
    images: list[tuple[Path, int]] = []
    for k, name in enumerate(classes):
        found = _images_in(root / name)
        if not found:
            raise DataFileError(
                f"{root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); add some or "
                f"remove the folder."
            )
        images += [(p, k) for p in found]
        if len(images) > MAX_IMAGES:
            raise DataFileError(
                f"{root} holds more than {MAX_IMAGES} images; nnet reads at most that many."
            )
    if len(classes) == 1:
        raise DataFileError(
            f"{root} has one class folder only ({classes[0]!r}); classification needs at least two."
        )
    return images, classes


def read_image_folder(
    path: str | os.PathLike[str], *, size: tuple[int, int] = (28, 28), color: str = "gray"
) -> Table:
    """The images under ``path``'s class folders as a classification :class:`Table`.

    ``size`` is (width, height) in pixels; ``color`` is ``"gray"`` (one value per pixel) or
    ``"rgb"`` (three).
    """
    size, mode = _check_options(size, color)
    images, classes = find_images(path)
    n_pixels = size[0] * size[1] * (3 if mode == "RGB" else 1)
    if len(images) * n_pixels > MAX_VALUES:
        raise DataFileError(
            f"{path}: {len(images)} images of {n_pixels} values are more than the "
            f"{MAX_VALUES} nnet reads; choose a smaller size."
        )
    X = np.empty((len(images), n_pixels))  # noqa: N806
    for i, (p, _) in enumerate(images):
        X[i] = _pixels(p, size, mode).reshape(-1)
    X /= 255.0
    y = np.array([k for _, k in images], dtype=np.int64)
    names = [f"pixel{i}" for i in range(n_pixels)]
    if mode == "RGB":
        names = [f"pixel{i}_{c}" for i in range(n_pixels // 3) for c in "rgb"]
    return Table(X, y, tuple(names), "class", "classification", classes)
