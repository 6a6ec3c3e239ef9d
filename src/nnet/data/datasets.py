"""MNIST and Fashion-MNIST: what they are, where they are, how to download and load them.

A *data directory* holds one folder per dataset, ``<dir>/mnist/`` and
``<dir>/fashion-mnist/``, each with the four standard IDX files (:data:`FILES`)
gzip-compressed, or uncompressed under the names without ``.gz``.

Data directories (:func:`data_dirs`): the explicit ``data`` argument (the command line's
``--data DIR``) alone when it is given; otherwise the environment variable ``NNET_DATA``,
then the user cache (``$XDG_CACHE_HOME/nnet``, or ``~/.cache/nnet``). :func:`load` uses the
first folder that holds all four files; if none does, it downloads the missing files into
the first data directory, the most specific one.

Downloads are checked against the published md5 of each ``.gz`` file; a file on a mirror
that does not match is refused and the next mirror is tried. Files a user supplied are
not md5-checked (re-packed copies differ), but every file :func:`load` reads is checked for
structure: uint8 images of shape (N, 28, 28), uint8 labels 0..9, as many labels as images.

:class:`DatasetSpec` is the one home of what the rest of nnet needs to know about the
data: the image side, the input and class counts, and the class names.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from tqdm import tqdm

from nnet.data.idx import CHUNK, IdxError, read_idx
from nnet.errors import NnetError
from nnet.fileio import atomic_write

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


class DownloadError(NnetError):
    """A dataset is not on disk and could not be downloaded; the message says what to do."""


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is made of and where to get it: ``files`` maps each of the four
    standard file names to the md5 of the ``.gz`` file as published; ``mirrors`` are base URLs
    tried in turn; ``classes`` names the labels 0, 1, ...; the images are ``side`` x ``side``
    uint8 pixels."""

    name: str
    files: Mapping[str, str]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...]
    side: int = 28
    images: tuple[int, int] = (60000, 10000)  # training and test images (memory estimates)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    @property
    def n_inputs(self) -> int:
        """Pixels per image: a network's input count."""
        return self.side * self.side

    @property
    def n_classes(self) -> int:
        """Label values 0..n_classes - 1: a classifier's output count."""
        return len(self.classes)

    def n_outputs(self, task: str) -> int:
        """Outputs of a network for ``task``: the pixels for an autoencoder, else the classes."""
        return self.n_inputs if task == "autoencoder" else self.n_classes

    def check_sizes(self, sizes: Sequence[int], task: str) -> None:
        """NnetError unless layer ``sizes`` start with ``n_inputs`` and end with ``n_outputs``."""
        if sizes[0] != self.n_inputs:
            raise NnetError(
                f"MNIST inputs have {self.n_inputs} pixels; --sizes must start with "
                f"{self.n_inputs}, not {sizes[0]}."
            )
        want = self.n_outputs(task)
        if sizes[-1] != want:
            raise NnetError(
                f"the {task} needs {want} outputs; --sizes must end with {want}, not {sizes[-1]}."
            )


def _spec(name: str, md5s: str, classes: Sequence[str], *mirrors: str) -> DatasetSpec:
    return DatasetSpec(name, dict(zip(FILES, md5s.split(), strict=True)), mirrors, tuple(classes))


DATASETS: dict[str, DatasetSpec] = {
    "mnist": _spec(
        "mnist",
        """f68b3c2dcbeaaa9fbdd348bbdeb94873 d53e105ee54ea40749a09fcbcd1e9432
           9fb629c4189551a2d022fa330f9573f3 ec29112dd5afa0611ce80d1b7f02629c""",
        "0123456789",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": _spec(
        "fashion-mnist",
        """8d4fb7e6c68d591d4c3dfef9ec88bf0d 25c81989df183df01b3e8a0aad5dffbe
           bef4ecab320f06d8554ea6380940ec79 bb300cfdad3c16e7a12a480ee83cd310""",
        "T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot".split("|"),
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}
MNIST = DATASETS["mnist"]  # the image format every dataset here shares


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: flattened uint8 images (N, n_inputs), uint8 labels (N,), and its folder."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; NnetError naming the known datasets otherwise."""
    if name not in DATASETS:
        raise NnetError(f"unknown dataset {name!r}: expected one of {', '.join(sorted(DATASETS))}.")
    return DATASETS[name]


def class_names(meta: Mapping[str, Any], n: int) -> list[str]:
    """A model's ``n`` class names: its metadata's ``classes`` if they are ``n``, else its
    ``dataset``'s (default mnist) if that has ``n``, else "0", "1", ..., str(n - 1)."""
    names = meta.get("classes")
    if not (isinstance(names, list) and len(names) == n):
        spec = DATASETS.get(str(meta.get("dataset", "mnist")))
        names = spec.classes if spec is not None and spec.n_classes == n else range(n)
    return [str(c) for c in names]


# --------------------------------------------------------------------------- locating


def data_dirs(data: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data directories to search, most specific first (see the module docstring); the
    environment is read at each call, and a folder named twice is listed once. A folder given
    explicitly (``--data DIR``) is the only one: it is used as given (downloaded into when it
    lacks the dataset), never silently replaced by another."""
    if data is not None and str(data) != "":
        return [Path(data).expanduser()]
    dirs = [Path(d).expanduser() for d in (os.environ.get("NNET_DATA"),) if d]
    xdg = os.environ.get("XDG_CACHE_HOME")
    with suppress(RuntimeError):  # no home directory to be found
        dirs.append(Path(xdg).expanduser() / "nnet" if xdg else Path.home() / ".cache" / "nnet")
    return list(dict.fromkeys(dirs))


def _present(folder: Path, filename: str) -> Path | None:
    """The file ``filename`` in ``folder``, gzip-compressed or not, or None if absent."""
    candidates = (folder / filename, folder / filename.removesuffix(".gz"))
    return next((p for p in candidates if os.path.isfile(p)), None)  # never raises


def _missing(folder: Path, filenames: Iterable[str]) -> list[str]:
    return [f for f in filenames if _present(folder, f) is None]


def locate(name: str, data: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``<dir>/<name>/`` among :func:`data_dirs` that holds all four files, or None."""
    get_spec(name)
    return next((d / name for d in data_dirs(data) if not _missing(d / name, FILES)), None)


# --------------------------------------------------------------------------- downloading


_BAR = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "leave": False}


class _MirrorError(Exception):
    """A mirror failed to serve a file (the message says how): the next one is tried."""


def _remote(request: Callable[[], Any], timeout: float) -> Any:
    """``request()``, a call to a mirror, its failures raised as :class:`_MirrorError`."""
    try:
        return request()
    except urllib.error.HTTPError as e:
        raise _MirrorError(f"HTTP {e.code} {e.reason}") from e
    except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a bad URL
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(reason, TimeoutError):
            raise _MirrorError(f"timed out after {timeout:g} s") from e
        if isinstance(e, urllib.error.URLError) and isinstance(reason, OSError):
            raise _MirrorError(f"cannot connect ({reason.strerror or reason})") from e
        raise _MirrorError(str(reason) or type(e).__name__) from e


def _fetch(url: str, dest: Path, md5: str, *, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``dest`` through a temporary file, kept only if its md5 is ``md5``.
    What the mirror does wrong raises :class:`_MirrorError`; what the disk does, OSError."""
    with (
        atomic_write(dest) as out,
        _remote(lambda: urllib.request.urlopen(url, timeout=timeout), timeout) as response,
    ):
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        digest = hashlib.md5()
        with tqdm(desc=dest.name, total=total, disable=not progress, **_BAR) as bar:
            while chunk := _remote(lambda: response.read(CHUNK), timeout):
                digest.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
        if digest.hexdigest() != md5:
            raise _MirrorError(f"md5 {digest.hexdigest()} does not match the expected {md5}")


def _by_hand(name: str, missing: Sequence[str], folder: Path) -> str:
    return (
        f"to supply the files by hand, put {', '.join(missing)} (gzip-compressed, or "
        f"uncompressed without .gz) in {folder}, or point --data DIR or NNET_DATA at a folder "
        f"that holds {name}/"
    )


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

    Each missing file is fetched from ``mirrors`` (base URLs, default the dataset's own) in
    turn, streamed to a temporary file and moved into place only if its md5 is that of ``files``
    ({file name: md5}, default the published ones). If every mirror fails for a file,
    :class:`DownloadError` lists each mirror's failure and how to supply the files by hand.
    ``progress`` shows a progress bar per file on stderr; ``timeout`` is in seconds.
    """
    spec = get_spec(name)
    mirrors = spec.mirrors if mirrors is None else mirrors
    files = spec.files if files is None else files
    folder = Path(target) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for filename in _missing(folder, files):
            failures = []
            for url in (mirror.rstrip("/") + "/" + filename for mirror in mirrors):
                try:
                    _fetch(
                        url, folder / filename, files[filename], progress=progress, timeout=timeout
                    )
                    break
                except _MirrorError as e:
                    failures.append(f"{url}: {e}")
            else:
                tried = "; ".join(failures) or "no mirrors were given"
                raise DownloadError(
                    f"could not download {filename} of {name} from any mirror ({tried}); "
                    f"{_by_hand(name, _missing(folder, files), folder)}."
                )
    except OSError as e:  # the disk's fault, not a mirror's: no use trying others
        raise DownloadError(
            f"cannot write in {folder} to download {name} ({e.strerror or e}); free some space "
            f"or make {folder} writable, or {_by_hand(name, _missing(folder, files), folder)}."
        ) from e
    return folder


_download = download  # for load, whose ``download`` flag hides the function


# --------------------------------------------------------------------------- loading


def _read_split(spec: DatasetSpec, folder: Path, images: str, labels: str) -> list[np.ndarray]:
    """[images (N, n_inputs), labels (N,)], each file checked for structure."""
    fix = "replace it with the right file or delete it so nnet downloads a fresh copy"
    # a file removed since it was located: read_idx says it does not exist
    paths = [_present(folder, f) or folder / f for f in (images, labels)]
    x, y = (read_idx(p) for p in paths)
    side = spec.side
    if x.dtype != np.uint8 or x.shape[1:] != (side, side):
        raise IdxError(
            f"{paths[0]} does not hold {side}x{side} images: expected uint8 of shape "
            f"(N, {side}, {side}), found {x.dtype.name} of shape {x.shape}; {fix}."
        )
    if len(x) == 0:
        raise IdxError(f"{paths[0]} holds no images; {fix}.")
    if y.dtype != np.uint8 or y.ndim != 1:
        raise IdxError(
            f"{paths[1]} does not hold labels: expected uint8 of shape (N,), found "
            f"{y.dtype.name} of shape {y.shape}; {fix}."
        )
    if len(y) != len(x):
        raise IdxError(
            f"{paths[1]} holds {len(y)} labels but {paths[0]} holds {len(x)} images; {fix}."
        )
    if y.max() >= spec.n_classes:
        raise IdxError(f"{paths[1]} holds label {y.max()}, outside 0..{spec.n_classes - 1}; {fix}.")
    return [x.reshape(len(x), spec.n_inputs), y]


def load(
    name: str = "mnist",
    data: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load dataset ``name`` from the first of :func:`data_dirs` that holds it, or download
    it there (see the module docstring); without ``download``, :class:`DownloadError` says
    which files are missing where. A file of the wrong structure is an :class:`IdxError`."""
    spec = get_spec(name)
    folder = locate(name, data)
    if folder is None:
        dirs = data_dirs(data)
        if not dirs:
            raise DownloadError(
                f"{name} was not found and there is no data folder (no --data DIR, NNET_DATA or "
                f"home folder); point --data DIR or NNET_DATA at a folder that holds {name}/."
            )
        if not download:
            where = "; ".join(
                f"{d / name} lacks {', '.join(_missing(d / name, FILES))}"
                if (d / name).is_dir()
                else f"{d / name} does not exist"
                for d in dirs
            )
            raise DownloadError(
                f"{name} was not found and downloading is off ({where}); "
                f"{_by_hand(name, FILES, dirs[0] / name)}."
            )
        folder = _download(name, dirs[0], progress=progress)
    train = _read_split(spec, folder, *FILES[:2])
    test = _read_split(spec, folder, *FILES[2:])
    return Dataset(name, *train, *test, source=folder)


def _float_dtype(dtype: str | np.dtype | type) -> np.dtype:
    with suppress(TypeError):
        if (dt := np.dtype(dtype)).kind == "f":
            return dt
    raise NnetError(f"unsupported dtype {dtype!r}: expected a float type like float32.")


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
        return np.divide(images, dt.type(255), dtype=dt)
    if images.ndim != 2:
        raise NnetError(f"to_inputs with_bias expects (N, D) images; got shape {images.shape}.")
    full = np.empty((images.shape[0], images.shape[1] + 1), dtype=dt)
    full[:, -1] = 1
    return np.divide(images, dt.type(255), out=full[:, :-1], dtype=dt)


def one_hot(
    labels: np.ndarray, n_classes: int = MNIST.n_classes, dtype: str | np.dtype | type = "float32"
) -> np.ndarray:
    """Labels (N,) with values 0..n_classes-1 as one-hot rows, shape (N, n_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise NnetError(
            f"one_hot expects a 1-D array of integer labels; got {labels.dtype.name} of "
            f"shape {labels.shape}."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise NnetError(
            f"labels must lie in 0..{n_classes - 1}; found {labels.min()}..{labels.max()}."
        )
    return np.eye(n_classes, dtype=_float_dtype(dtype))[labels]


def split_validation(
    x: np.ndarray, y: np.ndarray, n_val: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): the validation samples are the first ``n_val`` of
    ``rng.permutation(N)``; both parts keep the original order of the samples."""
    n = len(x)
    if len(y) != n:
        raise NnetError(f"x and y must hold as many samples; got {n} and {len(y)}.")
    if not 0 <= n_val < n:
        raise NnetError(
            f"the validation size must be at least 0 and below the {n} training samples; "
            f"got {n_val}."
        )
    val = np.zeros(n, dtype=bool)
    val[rng.permutation(n)[:n_val]] = True
    return x[~val], y[~val], x[val], y[val]
