"""MNIST and Fashion-MNIST: where they are, how to download them, how to load them.

A *data directory* holds one folder per dataset, ``<dir>/mnist/`` and
``<dir>/fashion-mnist/``, each with the four standard IDX files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

gzip-compressed under these names, or uncompressed under the names without ``.gz``.

Data directories are searched in this order (:func:`data_dirs`): the explicit ``data``
argument (the command line's ``--data DIR``), the environment variable ``NNET_DATA``, and
the user cache (``$XDG_CACHE_HOME/nnet``, or ``~/.cache/nnet``). :func:`load` uses the first
folder that holds all four files; if none does, it downloads the missing files into the
first data directory, the most specific one.

Downloads are checked against the published md5 of each ``.gz`` file; a file on a mirror
that does not match is refused and the next mirror is tried. Files a user supplied are
not md5-checked (re-packed copies differ), but every file :func:`load` reads is checked for
structure: uint8 images of shape (N, 28, 28), uint8 labels 0..9, as many labels as images.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from tqdm import tqdm

from nnet.data.idx import IdxError, read_idx
from nnet.errors import NnetError
from nnet.files.fileio import new_file_mode

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
_DOWNLOAD_CHUNK = 1 << 16


class DownloadError(NnetError):
    """A dataset is not on disk and could not be downloaded; the message says what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of and where to get it.

    ``files`` maps each of the four standard file names to the md5 of the ``.gz`` file as
    published; ``mirrors`` are base URLs tried in turn; ``classes`` names the labels 0..9.
    """

    name: str
    files: Mapping[str, str]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=MappingProxyType(
            {
                TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
                TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
                TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
            }
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        classes=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=MappingProxyType(
            {
                TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
                TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
                TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
            }
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: flattened uint8 images (N, 784), uint8 labels (N,), and its folder."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path


# --------------------------------------------------------------------------- locating


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; NnetError naming the known datasets otherwise."""
    spec = DATASETS.get(name)
    if spec is None:
        known = ", ".join(sorted(DATASETS))
        raise NnetError(f"unknown dataset {name!r}: expected one of {known}.")
    return spec


def data_dirs(data: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data directories to search, most specific first.

    ``data`` (the command line's ``--data DIR``) if given, then ``$NNET_DATA`` if set and
    not empty, then the user cache: ``$XDG_CACHE_HOME/nnet``, or ``~/.cache/nnet`` when
    ``XDG_CACHE_HOME`` is unset or empty. The environment is read at each call; a folder
    named twice is listed once.
    """
    dirs: list[Path] = []
    if data is not None and str(data) != "":
        dirs.append(Path(data).expanduser())
    env = os.environ.get("NNET_DATA", "")
    if env:
        dirs.append(Path(env).expanduser())
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg:
        dirs.append(Path(xdg).expanduser() / "nnet")
    else:
        try:
            dirs.append(Path.home() / ".cache" / "nnet")
        except RuntimeError:  # no home directory to be found
            pass
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _present(folder: Path, filename: str) -> Path | None:
    """The file ``filename`` in ``folder``, gzip-compressed or not, or None if absent."""
    for candidate in (filename, filename.removesuffix(".gz")):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _missing(folder: Path, filenames: Sequence[str]) -> list[str]:
    return [f for f in filenames if _present(folder, f) is None]


def locate(name: str, data: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``<dir>/<name>/`` among :func:`data_dirs` that holds all four files, or None."""
    spec = get_spec(name)
    for d in data_dirs(data):
        folder = d / name
        if not _missing(folder, list(spec.files)):
            return folder
    return None


# --------------------------------------------------------------------------- downloading


class _LocalError(Exception):
    """Writing the download to disk failed: not the mirror's fault, so no use trying others."""


def _url(mirror: str, filename: str) -> str:
    return (mirror if mirror.endswith("/") else mirror + "/") + filename


def _reason(e: BaseException, timeout: float) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        if isinstance(r, TimeoutError):
            return f"timed out after {timeout:g} s"
        if isinstance(r, OSError):
            return f"cannot connect ({r.strerror or r})"
        return str(r)
    if isinstance(e, TimeoutError):
        return f"timed out after {timeout:g} s"
    return str(e) or type(e).__name__


def _fetch_one(
    url: str, folder: Path, filename: str, md5: str, *, progress: bool, timeout: float
) -> None:
    """Download ``url`` to ``folder/filename`` if its md5 is ``md5``; raise on any failure.

    The bytes go to a temporary file in ``folder`` that is moved into place only once
    verified, and removed on every failure (KeyboardInterrupt included).
    """
    try:
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
    except OSError as e:
        raise _LocalError(f"cannot create a file in {folder} ({e.strerror or e})") from e
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, new_file_mode(folder / filename))
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                digest = hashlib.md5()
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=filename,
                    file=sys.stderr,
                    disable=not progress,
                    leave=False,
                ) as bar:
                    while True:
                        chunk = response.read(_DOWNLOAD_CHUNK)
                        if not chunk:
                            break
                        digest.update(chunk)
                        try:
                            out.write(chunk)
                        except OSError as e:
                            raise _LocalError(f"cannot write {tmp} ({e.strerror or e})") from e
                        bar.update(len(chunk))
        got = digest.hexdigest()
        if got != md5:
            raise ValueError(f"md5 {got} does not match the expected {md5}")
        os.replace(tmp, folder / filename)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _supply_by_hand(name: str, missing: Sequence[str], folder: Path) -> str:
    return (
        f"to supply the files by hand, put {', '.join(missing)} (gzip-compressed, or "
        f"uncompressed without .gz) in {folder}, or point --data DIR or NNET_DATA at a folder "
        f"that holds {name}/"
    )


def _download(
    name: str,
    target: Path,
    *,
    mirrors: Sequence[str] | None,
    files: Mapping[str, str] | None,
    progress: bool,
    timeout: float,
) -> Path:
    spec = get_spec(name)
    mirrors = tuple(spec.mirrors if mirrors is None else mirrors)
    files = dict(spec.files if files is None else files)
    folder = Path(target) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            f"cannot create the folder {folder} to download {name} into "
            f"({e.strerror or e}); {_supply_by_hand(name, list(files), folder)}."
        ) from e
    for filename, md5 in files.items():
        if _present(folder, filename) is not None:
            continue
        failures: list[str] = []
        for mirror in mirrors:
            url = _url(mirror, filename)
            try:
                _fetch_one(url, folder, filename, md5, progress=progress, timeout=timeout)
            except _LocalError as e:
                raise DownloadError(
                    f"downloading {url} failed: {e}; free some space or make {folder} "
                    f"writable, or {_supply_by_hand(name, _missing(folder, list(files)), folder)}."
                ) from e
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {_reason(e, timeout)}")
            else:
                break
        else:
            tried = "; ".join(failures) if failures else "no mirrors were given"
            raise DownloadError(
                f"could not download {filename} of {name} from any mirror ({tried}); "
                f"{_supply_by_hand(name, _missing(folder, list(files)), folder)}."
            )
    return folder


def download(
    name: str,
    target: str | os.PathLike[str],
    *,
    mirrors: Sequence[str] | None = None,
    files: Mapping[str, str] | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download the missing files of dataset ``name`` into ``target/<name>/``; return that folder.

    Each file absent from the folder (under its name or without .gz) is fetched from the
    mirrors in turn (``mirrors``: base URLs, default the dataset's own), streamed to a
    temporary file in the folder, checked against its md5 (``files``: {file name: md5},
    default the published ones) and only then moved into place. A mirror that fails or
    serves a file with the wrong md5 is skipped. If every mirror fails for a file,
    :class:`DownloadError` lists each mirror's failure and how to supply the files by hand.
    ``progress`` shows a progress bar per file on stderr; ``timeout`` is in seconds.
    """
    return _download(
        name, Path(target), mirrors=mirrors, files=files, progress=progress, timeout=timeout
    )


# --------------------------------------------------------------------------- loading


def _check_images(path: Path, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise IdxError(
            f"{path} does not hold {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} images: expected uint8 "
            f"of shape (N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}), found {x.dtype.name} of shape "
            f"{x.shape}; replace it with the right file or delete it so nnet downloads a "
            f"fresh copy."
        )
    if x.shape[0] == 0:
        raise IdxError(
            f"{path} holds no images; replace it with the right file or delete it so nnet "
            f"downloads a fresh copy."
        )
    return x.reshape(x.shape[0], IMAGE_SHAPE[0] * IMAGE_SHAPE[1])


def _check_labels(path: Path, y: np.ndarray, n_images: int, images: Path) -> np.ndarray:
    fix = "replace it with the right file or delete it so nnet downloads a fresh copy"
    if y.dtype != np.uint8 or y.ndim != 1:
        raise IdxError(
            f"{path} does not hold labels: expected uint8 of shape (N,), found "
            f"{y.dtype.name} of shape {y.shape}; {fix}."
        )
    if y.shape[0] != n_images:
        raise IdxError(
            f"{path} holds {y.shape[0]} labels but {images} holds {n_images} images; {fix}."
        )
    top = int(y.max())
    if top >= N_CLASSES:
        raise IdxError(f"{path} holds label {top}, outside 0..{N_CLASSES - 1}; {fix}.")
    return y


def _lacks(folder: Path, filenames: Sequence[str]) -> str:
    if not folder.is_dir():
        return f"{folder} does not exist"
    return f"{folder} lacks {', '.join(_missing(folder, filenames))}"


def _read_split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, ...]:
    images = _present(folder, images_name)
    labels = _present(folder, labels_name)
    if images is None or labels is None:  # removed since it was located
        missing = images_name if images is None else labels_name
        raise IdxError(f"{folder / missing} does not exist; put the file back or download it.")
    x = _check_images(images, read_idx(images))
    y = _check_labels(labels, read_idx(labels), x.shape[0], images)
    return x, y


def load(
    name: str = "mnist",
    data: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load dataset ``name``, downloading it first if allowed and not found.

    Looks in :func:`data_dirs` (``data``, then ``$NNET_DATA``, then the user cache). If no
    folder holds all four files and ``download`` is true, the missing files are downloaded
    into the first data directory; otherwise :class:`DownloadError` says which files are
    missing where. The files are then checked for structure (uint8 images (N, 28, 28),
    uint8 labels 0..9, N alike), each problem an :class:`~nnet.data.idx.IdxError` naming the file.
    """
    spec = get_spec(name)
    folder = locate(name, data)
    if folder is None:
        dirs = data_dirs(data)
        if not dirs:
            raise DownloadError(
                f"{name} was not found and there is no data folder to look in or download to "
                f"(no --data DIR, no NNET_DATA, no home folder); point --data DIR or NNET_DATA "
                f"at a folder that holds {name}/."
            )
        if not download:
            where = "; ".join(_lacks(d / name, list(spec.files)) for d in dirs)
            raise DownloadError(
                f"{name} was not found and downloading is off ({where}); "
                f"{_supply_by_hand(name, list(spec.files), dirs[0] / name)}."
            )
        folder = _download(name, dirs[0], mirrors=None, files=None, progress=progress, timeout=30.0)
    x_train, y_train = _read_split(folder, TRAIN_IMAGES, TRAIN_LABELS)
    x_test, y_test = _read_split(folder, TEST_IMAGES, TEST_LABELS)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        source=folder,
    )


# --------------------------------------------------------------------------- helpers


def _float_dtype(dtype: str | np.dtype | type) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f":
        raise NnetError(f"unsupported dtype {dtype!r}: expected a float type like float32.")
    return dt


def to_inputs(
    images: np.ndarray, dtype: str | np.dtype | type = "float32", *, with_bias: bool = False
) -> np.ndarray:
    """uint8 pixel values 0..255 as floats in [0, 1] (divided by 255), a new array.

    With ``with_bias`` the images (N, D) are returned as the view ``[:, :D]`` of an (N, D + 1)
    array whose last column is 1 — each row is then a whole a^0 = [x, 1], which the trainer
    gathers into the network's input without another copy of the data set.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise NnetError(f"to_inputs expects uint8 images; got {images.dtype.name}.")
    dt = _float_dtype(dtype)
    if not with_bias:
        out = images.astype(dt)
        out /= dt.type(255)
        return out
    if images.ndim != 2:
        raise NnetError(f"to_inputs with_bias expects (N, D) images; got shape {images.shape}.")
    full = np.empty((images.shape[0], images.shape[1] + 1), dtype=dt)
    full[:, -1] = 1
    out = full[:, :-1]
    out[...] = images
    out /= dt.type(255)
    return out


def one_hot(
    labels: np.ndarray, n_classes: int = N_CLASSES, dtype: str | np.dtype | type = "float32"
) -> np.ndarray:
    """Labels (N,) with values 0..n_classes-1 as one-hot rows, shape (N, n_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise NnetError(
            f"one_hot expects a 1-D array of integer labels; got {labels.dtype.name} of "
            f"shape {labels.shape}."
        )
    if n_classes < 1:
        raise NnetError(f"one_hot needs n_classes >= 1; got {n_classes}.")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise NnetError(
            f"labels must lie in 0..{n_classes - 1}; found {labels.min()}..{labels.max()}."
        )
    out = np.zeros((labels.shape[0], n_classes), dtype=_float_dtype(dtype))
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def split_validation(
    x: np.ndarray, y: np.ndarray, n_val: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): ``n_val`` samples drawn out of (x, y) by ``rng``.

    The validation samples are the first ``n_val`` of ``rng.permutation(N)``; both parts
    keep the original order of the samples. ``n_val`` must satisfy 0 <= n_val < N.
    """
    n = len(x)
    if len(y) != n:
        raise NnetError(f"x and y must hold as many samples; got {n} and {len(y)}.")
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)):
        raise NnetError(f"the validation size must be an integer; got {n_val!r}.")
    if not 0 <= n_val < n:
        raise NnetError(
            f"the validation size must be at least 0 and below the {n} training samples; "
            f"got {n_val}."
        )
    if not isinstance(rng, np.random.Generator):
        raise NnetError(
            f"split_validation needs a numpy.random.Generator; got {type(rng).__name__}."
        )
    perm = rng.permutation(n)
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    return x[train], y[train], x[val], y[val]
