"""Model files: the weights plus JSON metadata in a NumPy ``.npz``, never pickled.

Layout of the archive (a plain zip of ``.npy`` files):

- ``w0`` ... ``w{L-1}``: the weight matrices w^k, shape (#k + 1, #(k+1)), bias row last;
- ``meta``: a 0-d unicode array holding one JSON object: ``format`` ("nnet-model"),
  ``format_version``, ``nnet_version``, ``sizes``, ``activations``, ``loss``, ``dtype``,
  and whatever else the trainer records (``task``, ``dataset``, ``input`` scaling,
  ``training`` settings, ``metrics``).

Loading uses ``allow_pickle=False`` and checks everything before building a network: a file
that is not a zip, not an nnet model, truncated, of an unknown format version, with shapes
that do not match its sizes, an unusable dtype, or non-finite weights gets one
:class:`ModelFileError` sentence. Saving writes a temporary file in the same folder and
renames it into place, so a crash never leaves a half-written model under the final name.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nnet.core.network import Network
from nnet.errors import NnetError
from nnet.files.fileio import atomic_write
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
    where = str(path)
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{where} is a training checkpoint, not a model file; continue it with "
            f"nnet train --resume {where}, or use the model that --out wrote."
        )
    sizes = meta.get("sizes")
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)
    ):
        raise ModelFileError(f"{where} has invalid layer sizes {sizes!r} in its metadata.")
    L = len(sizes) - 1
    expected = {f"w{k}" for k in range(L)} | {"meta"}
    if set(arrays) != expected:
        raise ModelFileError(
            f"{where} holds arrays {sorted(arrays)} but its sizes {sizes} need "
            f"{sorted(expected)}; the file is damaged or was not written by nnet."
        )
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{where} declares dtype {dtype!r}; nnet can use float32 or float64.")
    activations = meta.get("activations")
    loss = meta.get("loss")
    weights = []
    for k in range(L):
        w = arrays[f"w{k}"]
        shape = (sizes[k] + 1, sizes[k + 1])
        if w.shape != shape:
            raise ModelFileError(
                f"{where}: w{k} has shape {w.shape} but sizes {sizes} need {shape}; "
                "the file is damaged."
            )
        if w.dtype != np.dtype(dtype):
            raise ModelFileError(f"{where}: w{k} is {w.dtype}, not the declared {dtype}.")
        if not np.isfinite(w).all():
            raise ModelFileError(
                f"{where}: w{k} contains NaN or infinite weights; the model diverged or the "
                "file is damaged, so retrain it."
            )
        weights.append(w)
    try:
        net = Network(sizes, activations, loss=loss, dtype=dtype, weights=weights)
    except NnetError as exc:
        raise ModelFileError(f"{where} describes a network nnet cannot build: {exc}") from None
    net.meta = meta
    return net


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the archive, each header checked before any allocation.

    The declared shape and dtype of a member must account exactly for its size in the zip
    directory, object (pickled) arrays are refused, and the total is capped at
    ``MAX_TOTAL_BYTES``: a damaged or hostile file cannot make nnet allocate what it claims.
    """
    where = str(path)
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > 1000 or not all(i.filename.endswith(".npy") for i in infos):
            raise ModelFileError(f"{where} is a zip archive but not an nnet model file.")
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            raise ModelFileError(f"{where} declares {total} bytes of arrays; refusing it.")
        for info in infos:
            name = info.filename[: -len(".npy")]
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ModelFileError(f"{where}: {name} uses .npy version {version}.")
                if dtype.hasobject:
                    raise ModelFileError(
                        f"{where}: {name} is an object array; nnet never unpickles files."
                    )
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if f.tell() + nbytes != info.file_size:
                    raise ModelFileError(
                        f"{where}: {name} declares shape {shape} of {dtype}, which does not "
                        "match its stored size; the file is damaged."
                    )
                data = f.read(nbytes)
                if len(data) != nbytes:
                    raise ModelFileError(f"{where}: {name} is truncated; the file is damaged.")
            order = "F" if fortran else "C"
            arrays[name] = np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()
    return arrays


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of an nnet ``.npz`` and its parsed metadata, without unpickling anything."""
    where = str(path)
    if path.is_dir():
        raise ModelFileError(f"{where} is a folder, not a model file.")
    if not path.exists():
        raise ModelFileError(f"{where} does not exist; check the path or train a model first.")
    try:
        arrays = _read_arrays(path)
    except ModelFileError:
        raise
    except zipfile.BadZipFile:
        raise ModelFileError(
            f"{where} is not an nnet model file (not a .npz archive, or truncated)."
        ) from None
    except PermissionError:
        raise ModelFileError(f"{where} cannot be read: permission denied.") from None
    except (OSError, ValueError, EOFError, zipfile.LargeZipFile, KeyError) as exc:
        raise ModelFileError(
            f"{where} is damaged or truncated ({exc.__class__.__name__}: {exc})."
        ) from None
    meta_arr = arrays.get("meta")
    if meta_arr is None or meta_arr.shape != () or meta_arr.dtype.kind != "U":
        raise ModelFileError(f"{where} has no nnet metadata; it is not an nnet model file.")
    text = str(meta_arr[()])
    if len(text) > MAX_META_CHARS:
        raise ModelFileError(f"{where} has {len(text)} characters of metadata; refusing it.")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        raise ModelFileError(
            f"{where} has metadata that is not valid JSON; it is damaged."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, "nnet-checkpoint"):
        raise ModelFileError(f"{where} is not an nnet model file (no 'format': '{FORMAT}').")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has model format version {version!r}; this nnet reads version "
            f"{FORMAT_VERSION}, so upgrade nnet or retrain the model."
        )
    return arrays, meta
