"""Model files: the weights plus JSON metadata in a NumPy ``.npz``, never pickled.

Layout of the archive (a plain zip of ``.npy`` files):

- ``w0`` ... ``w{L-1}``: the weight matrices w^k, shape (#k + 1, #(k+1)), bias row last;
- ``meta``: a 0-d unicode array holding one JSON object: :func:`network_meta` (the format,
  its version, the network's description) and whatever else the trainer records (``task``,
  ``dataset``, ``input`` scaling, ``training`` settings, ``metrics``).

Loading never unpickles and checks everything before building a network: a file that is not
a zip, not an nnet model, truncated, of an unknown format version, with shapes that do not
match its sizes, an unusable dtype, or non-finite weights gets one :class:`ModelFileError`
sentence. Saving writes a temporary file in the same folder and renames it into place, so a
crash never leaves a half-written model under the final name.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from nnet.core.network import Network
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.version import __version__

FORMAT = "nnet-model"
FORMAT_VERSION = 1
MAX_META_CHARS = 1_000_000
MAX_TOTAL_BYTES = 2**31  # 2 GiB: far above any MLP nnet trains


class ModelFileError(NnetError):
    """A model file that cannot be used; the message names the file and the problem."""


def network_meta(net: Network, kind: str = FORMAT) -> dict[str, Any]:
    """The metadata every nnet file has: its format and the network's description."""
    return {
        "format": kind,
        "format_version": FORMAT_VERSION,
        "nnet_version": __version__,
        "sizes": net.sizes,
        "activations": net.activations,
        "loss": net.loss.name,
        "dtype": net.dtype.name,
    }


def save(net: Network, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> None:
    """Write ``net`` (and ``meta``, merged over ``net.meta``) to ``path`` atomically."""
    info = {**net.meta, **(meta or {}), **network_meta(net)}
    arrays: dict[str, np.ndarray] = {f"w{k}": w for k, w in enumerate(net.weights)}
    arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
    with atomic_write(path) as f:
        np.savez(f, **arrays)  # a file object: numpy does not append ".npz" to the name


def load(path: str | os.PathLike[str]) -> Network:
    """The network stored in ``path``, with its metadata in ``net.meta``."""
    path = Path(path)
    arrays, meta = read_npz(path)
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is a training checkpoint, not a model file; continue it with "
            f"nnet train --resume {path}, or use the model that --out wrote."
        )
    sizes = meta.get("sizes")
    ints = isinstance(sizes, list) and all(type(s) is int and s >= 1 for s in sizes)
    if not ints or len(sizes) < 2:
        raise ModelFileError(f"{path} has invalid layer sizes {sizes!r} in its metadata.")
    expected = {f"w{k}" for k in range(len(sizes) - 1)} | {"meta"}
    if set(arrays) != expected:
        raise ModelFileError(
            f"{path} holds arrays {sorted(arrays)} but its sizes {sizes} need "
            f"{sorted(expected)}; the file is damaged or was not written by nnet."
        )
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path} declares dtype {dtype!r}; nnet can use float32 or float64.")
    weights = [arrays[f"w{k}"] for k in range(len(sizes) - 1)]
    for k, w in enumerate(weights):
        shape = (sizes[k] + 1, sizes[k + 1])
        if w.shape != shape:
            raise ModelFileError(
                f"{path}: w{k} has shape {w.shape} but sizes {sizes} need {shape}; "
                "the file is damaged."
            )
        if w.dtype != np.dtype(dtype):
            raise ModelFileError(f"{path}: w{k} is {w.dtype}, not the declared {dtype}.")
    try:  # Network also refuses NaN or infinite weights
        net = Network(
            sizes, meta.get("activations"), loss=meta.get("loss"), dtype=dtype, weights=weights
        )
    except NnetError as exc:
        raise ModelFileError(f"{path} describes a network nnet cannot build: {exc}") from None
    net.meta = meta
    return net


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of an nnet ``.npz`` and its parsed metadata, without unpickling anything.

    Each ``.npy`` header is checked before any allocation: the declared shape and dtype of a
    member must account exactly for its size in the zip directory, object (pickled) arrays
    are refused, and the total is capped at ``MAX_TOTAL_BYTES``, so a damaged or hostile file
    cannot make nnet allocate what it claims.
    """
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file.")
    if not path.exists():
        raise ModelFileError(f"{path} does not exist; check the path or train a model first.")
    headers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    arrays: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > 1000 or not all(i.filename.endswith(".npy") for i in infos):
                raise ModelFileError(f"{path} is a zip archive but not an nnet model file.")
            if (total := sum(i.file_size for i in infos)) > MAX_TOTAL_BYTES:
                raise ModelFileError(f"{path} declares {total} bytes of arrays; refusing it.")
            for info in infos:
                name = info.filename.removesuffix(".npy")
                with zf.open(info) as f:
                    version = npy.read_magic(f)
                    if version not in headers:
                        raise ModelFileError(f"{path}: {name} uses .npy version {version}.")
                    shape, fortran, dtype = headers[version](f)
                    if dtype.hasobject:
                        raise ModelFileError(f"{path}: {name} is an object array; never unpickled.")
                    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                    if f.tell() + nbytes != info.file_size:
                        raise ModelFileError(
                            f"{path}: {name} declares shape {shape} of {dtype}, which does not "
                            "match its stored size; the file is damaged."
                        )
                    data = f.read(nbytes)
                if len(data) != nbytes:
                    raise ModelFileError(f"{path}: {name} is truncated; the file is damaged.")
                array = np.frombuffer(data, dtype=dtype)
                arrays[name] = array.reshape(shape, order="F" if fortran else "C").copy()
    except ModelFileError:
        raise
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{path} is not an nnet model file (not a .npz archive, or truncated)."
        ) from None
    except PermissionError:
        raise ModelFileError(f"{path} cannot be read: permission denied.") from None
    except (OSError, ValueError, EOFError, zipfile.LargeZipFile, KeyError) as exc:
        raise ModelFileError(
            f"{path} is damaged or truncated ({exc.__class__.__name__}: {exc})."
        ) from None
    meta_arr = arrays.get("meta")
    if meta_arr is None or meta_arr.shape != () or meta_arr.dtype.kind != "U":
        raise ModelFileError(f"{path} has no nnet metadata; it is not an nnet model file.")
    text = str(meta_arr[()])
    if len(text) > MAX_META_CHARS:
        raise ModelFileError(f"{path} has {len(text)} characters of metadata; refusing it.")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        raise ModelFileError(
            f"{path} has metadata that is not valid JSON; it is damaged."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, "nnet-checkpoint"):
        raise ModelFileError(f"{path} is not an nnet model file (no 'format': '{FORMAT}').")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {version!r}; this nnet reads version "
            f"{FORMAT_VERSION}, so upgrade nnet or retrain the model."
        )
    return arrays, meta
