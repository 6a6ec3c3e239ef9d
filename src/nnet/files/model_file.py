"""Model files: the weights plus JSON metadata in a NumPy ``.npz``, never pickled.

Layout of the archive (a plain zip of ``.npy`` files):

- ``w0`` ... ``w{L-1}``: the weight matrices w^k, shape (#k + 1, #(k+1)), bias row last;
- ``meta``: a 0-d unicode array holding one JSON object: :func:`network_meta` (the format,
  its version, the network's description) and whatever else the trainer records (``task``,
  ``dataset``, ``input`` scaling, ``training`` settings, ``metrics``).

Loading never unpickles and checks everything before it allocates (:func:`open_archive`),
in this order: the path names a regular file (never a device, FIFO or socket); the zip's
directory is small (``MAX_MEMBERS`` members, no name twice, stored or deflated, no member
inflating more than ``MAX_INFLATION`` times); the metadata, read first and bounded, is JSON
within the limits and every field passes :mod:`nnet.files.schema`; the members are exactly
the arrays the metadata implies, and each ``.npy`` header declares the shape and dtype the
sizes imply and a size that matches the zip directory. Only then is the data read, in
chunks, never past the declared size. A file that is not a zip, not an nnet model,
truncated, of an unknown format version, with a field out of range, shapes that do not
match its sizes, or non-finite weights gets one :class:`ModelFileError` line naming the file
and the field. Saving writes a temporary file in the same folder and renames it into place,
so a crash never leaves a half-written model under the final name.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnet.core.network import Network
from nnet.data.idx import (
    INFLATION_SLACK,
    MAX_INFLATION,
    MAX_NPY_HEADER,
    SpecialFileError,
    open_regular,
    read_exactly,
    read_npy_header,
    shown,
)
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files import schema
from nnet.files.schema import MAX_DIRECTORY_BYTES, MAX_MEMBERS, FieldError
from nnet.version import __version__

FORMAT = schema.MODEL
FORMAT_VERSION = 1
MAX_META_CHARS = schema.MAX_META_CHARS
# Bytes of the metadata member: MAX_META_CHARS characters of 4 bytes (numpy's '<U') + header.
MAX_META_BYTES = 4 * MAX_META_CHARS + MAX_NPY_HEADER + 12


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
    """Write ``net`` (and ``meta``, merged over ``net.meta``) to ``path`` atomically. The
    metadata is checked as :func:`load` will check it, so nnet never writes a model file it
    would refuse to read (NnetError naming the field)."""
    info = {**net.meta, **(meta or {}), **network_meta(net)}
    text = json.dumps(info, sort_keys=True)
    try:
        schema.check_model_meta(schema.parse_json(text, "meta"))
    except FieldError as exc:
        raise NnetError(f"cannot save {shown(path)}: {exc}.") from None
    arrays: dict[str, np.ndarray] = {f"w{k}": w for k, w in enumerate(net.weights)}
    arrays["meta"] = np.array(text)
    with atomic_write(path) as f:
        np.savez(f, **arrays)  # a file object: numpy does not append ".npz" to the name


def load(path: str | os.PathLike[str]) -> Network:
    """The network stored in ``path``, with its metadata in ``net.meta``."""
    with open_archive(path, FORMAT) as archive:
        where, meta = archive.where, archive.meta
        arrays = archive.arrays()
    sizes = meta["sizes"]
    try:  # Network also refuses NaN or infinite weights
        net = Network(
            sizes,
            meta["activations"],
            loss=meta["loss"],
            dtype=meta["dtype"],
            weights=[arrays[f"w{k}"] for k in range(len(sizes) - 1)],
        )
    except NnetError as exc:
        raise ModelFileError(f"{where} describes a network nnet cannot build: {exc}") from None
    net.meta = meta
    return net


def read_npz(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of an nnet ``.npz`` (model file or checkpoint) and its metadata, everything
    checked as :func:`open_archive` describes; never unpickles anything."""
    with open_archive(path) as archive:
        return archive.arrays(), archive.meta


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked metadata of an nnet ``.npz`` (model file or checkpoint), without reading
    its arrays."""
    with open_archive(path) as archive:
        return archive.meta


@dataclass
class Archive:
    """An nnet ``.npz`` whose directory and metadata are checked: ``meta`` as the file holds
    it, ``checked`` its checked copy (a checkpoint's counts as ints, its ``settings`` a
    :class:`~nnet.training.settings.Settings`), ``expected`` the arrays it must hold."""

    where: str
    zf: zipfile.ZipFile
    members: dict[str, zipfile.ZipInfo]
    meta: dict[str, Any]
    checked: dict[str, Any]
    expected: dict[str, tuple[tuple[int, ...], np.dtype]] = field(default_factory=dict)

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"{self.where}: {message}")

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array, each header checked against ``expected`` before any data is read."""
        headers = {name: self._header(name) for name in self.expected}
        total = sum(nbytes for _, nbytes, _ in headers.values())
        try:
            return {name: self._data(name, *headers[name]) for name in self.expected}
        except MemoryError:
            raise self.fail(
                f"its arrays take {total} bytes, more than the memory available."
            ) from None

    def _header(self, name: str) -> tuple[int, int, bool]:
        """(header size, data size, Fortran order) of member ``name``, checked against
        ``expected`` and the zip directory."""
        info, (shape, dtype) = self.members[name], self.expected[name]
        with self.zf.open(info) as f:
            try:
                got_shape, fortran, got_dtype, header = read_npy_header(f)
            except ValueError as exc:
                raise self.fail(f"member {name} is not a plain .npy array ({exc}).") from None
        if got_dtype.hasobject:
            raise self.fail(f"member {name} is an object array; nnet never unpickles.")
        if got_shape != shape:
            sizes = self.meta["sizes"]
            raise self.fail(
                f"member {name} has shape {got_shape} but sizes {sizes} need {shape}; the file "
                "is damaged."
            )
        if got_dtype != dtype:
            raise self.fail(f"member {name} is {got_dtype}, not the declared {dtype.name}.")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if header + nbytes != info.file_size:
            raise self.fail(
                f"member {name} declares shape {shape} of {dtype} ({header + nbytes} bytes), "
                f"which does not match its stored size ({info.file_size}); the file is damaged."
            )
        return header, nbytes, fortran

    def _data(self, name: str, header: int, nbytes: int, fortran: bool) -> np.ndarray:
        """The data of member ``name``, read in chunks, never past ``nbytes``."""
        shape, dtype = self.expected[name]
        with self.zf.open(self.members[name]) as f:
            f.read(header)
            data, n = read_exactly(f, nbytes)
            if n < nbytes or f.read(1):
                raise self.fail(f"member {name} is truncated; the file is damaged.")
        return data.view(dtype).reshape(shape, order="F" if fortran else "C")


_NOT_NNET = "is not an nnet model file (not a .npz archive, or truncated)."


# What a file of one format is said to be when another was expected.
_WRONG_FORMAT = {
    FORMAT: "{0} is a training checkpoint, not a model file; continue it with nnet train "
    "--resume {0}, or use the model that --out wrote.",
    schema.CHECKPOINT: "{0} is a model file, not a checkpoint; train with --checkpoint FILE to "
    "get one that --resume can continue.",
}


@contextmanager
def open_archive(path: str | os.PathLike[str], kind: str | None = None) -> Iterator[Archive]:
    """The nnet ``.npz`` at ``path`` with its directory and metadata checked (see the module
    docstring), open for :meth:`Archive.arrays`; ModelFileError naming the problem. ``kind``
    (``FORMAT`` or ``schema.CHECKPOINT``): refuse the other format first."""
    where = shown(path)
    try:
        with open_regular(path) as f, _zip(f, where) as zf:
            yield _checked(where, zf, os.fstat(f.fileno()).st_size, kind)
    except ModelFileError:
        raise
    except FileNotFoundError:
        raise ModelFileError(
            f"{where} does not exist; check the path or train a model first."
        ) from None
    except IsADirectoryError:
        raise ModelFileError(f"{where} is a folder, not a model file.") from None
    except SpecialFileError:
        raise ModelFileError(
            f"{where} is not a regular file (a device, FIFO or socket); give the path of a "
            "model file."
        ) from None
    except PermissionError:
        raise ModelFileError(f"{where} cannot be read: permission denied.") from None
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{where} is damaged or truncated ({_one_line(exc)}).") from None
    except OSError as exc:
        if exc.errno is None:  # a gzip or zip module's complaint about the content
            raise ModelFileError(f"{where} is damaged or truncated ({_one_line(exc)}).") from None
        raise ModelFileError(f"{where} cannot be read ({exc.strerror or exc}).") from None
    except (
        ValueError, EOFError, zipfile.LargeZipFile, KeyError, struct.error,
        zlib.error, NotImplementedError, RuntimeError, OverflowError, IndexError,
    ) as exc:  # fmt: skip
        reason = getattr(exc, "strerror", None) or _one_line(exc)
        raise ModelFileError(f"{where} is damaged or truncated ({reason}).") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200].rstrip(".") or type(exc).__name__


@contextmanager
def _zip(f: Any, where: str) -> Iterator[zipfile.ZipFile]:
    """``f`` as a zip, refused before the zip module parses a directory larger than
    ``MAX_DIRECTORY_BYTES`` (it would read and keep every entry)."""
    end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # the record ZipFile reads
    if end is None:
        raise ModelFileError(f"{where} {_NOT_NNET}")
    entries, directory = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_MEMBERS or directory > MAX_DIRECTORY_BYTES:
        raise ModelFileError(
            f"{where}: the zip directory declares {entries} members in {directory} bytes; an "
            f"nnet file has at most {MAX_MEMBERS} members in {MAX_DIRECTORY_BYTES} bytes."
        )
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        yield zf


def _checked(where: str, zf: zipfile.ZipFile, size: int, kind: str | None) -> Archive:
    """The archive ``zf`` (a file of ``size`` bytes) with its directory and metadata checked."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ModelFileError(f"{where} has {len(infos)} members; an nnet file has at most "
                             f"{MAX_MEMBERS}.")  # fmt: skip
    if not all(i.filename.endswith(".npy") and len(i.filename) <= 64 for i in infos):
        raise ModelFileError(f"{where} is a zip archive but not an nnet model file.")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if name in members:
            raise ModelFileError(
                f"{where}: member {info.filename} appears twice in the archive (only the last "
                "would be read); the file is damaged or forged."
            )
        members[name] = info
        _check_member(where, info, size)
    if sum(i.compress_size for i in infos) > size:
        raise ModelFileError(f"{where}: its members overlap or lie outside the archive; the "
                             "file is damaged or forged.")  # fmt: skip
    if "meta" not in members:
        raise ModelFileError(f"{where} has no nnet metadata; it is not an nnet model file.")
    meta = _read_meta(where, zf, members["meta"])
    checked, expected = _check_meta(where, meta, kind)
    del members["meta"]
    if set(members) != set(expected):
        missing, extra = sorted(set(expected) - set(members)), sorted(set(members) - set(expected))
        raise ModelFileError(
            f"{where} holds arrays {sorted(members)} but its metadata (sizes {meta['sizes']}) "
            f"needs {sorted(expected)}: missing {missing}, unexpected {extra}; the file is "
            "damaged or was not written by nnet."
        )
    return Archive(where, zf, members, meta, checked, expected)


def _check_member(where: str, info: zipfile.ZipInfo, size: int) -> None:
    """A member's entry in the zip directory, before anything of it is read."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{where}: member {name} is encrypted; nnet files never are.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ModelFileError(
            f"{where}: member {name} uses zip compression method {info.compress_type}; nnet "
            "reads stored or deflated members."
        )
    if info.compress_size > size:
        raise ModelFileError(
            f"{where}: member {name} declares {info.compress_size} stored bytes in a file of "
            f"{size}; the file is truncated or damaged."
        )
    if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
        raise ModelFileError(
            f"{where}: member {name} is stored uncompressed but declares {info.file_size} "
            f"bytes in {info.compress_size}; the file is damaged."
        )
    if info.file_size > MAX_INFLATION * info.compress_size + INFLATION_SLACK:
        raise ModelFileError(
            f"{where}: member {name} would inflate {info.compress_size} bytes to "
            f"{info.file_size}, more than {MAX_INFLATION} times: a damaged file or a "
            "decompression bomb."
        )


def _read_meta(where: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    """The JSON value of the ``meta`` member: a 0-d unicode array of at most
    ``MAX_META_CHARS`` characters."""
    if info.file_size > MAX_META_BYTES:
        raise ModelFileError(
            f"{where}: field meta: {info.file_size} bytes; nnet reads at most {MAX_META_BYTES}."
        )
    with zf.open(info) as f:
        try:
            shape, _, dtype, header = read_npy_header(f)
        except ValueError as exc:
            raise ModelFileError(f"{where}: field meta: not a plain .npy array ({exc}).") from None
        if shape != () or dtype.kind != "U":
            raise ModelFileError(f"{where} has no nnet metadata; it is not an nnet model file.")
        if header + dtype.itemsize != info.file_size:
            raise ModelFileError(
                f"{where}: field meta: declares {dtype.itemsize} bytes of text, which does not "
                "match its stored size; the file is damaged."
            )
        data, n = read_exactly(f, dtype.itemsize)
    if n < dtype.itemsize:
        raise ModelFileError(f"{where}: field meta: truncated; the file is damaged.")
    try:
        text = data.tobytes().decode("utf-32-le" if dtype.byteorder != ">" else "utf-32-be")
    except UnicodeDecodeError:
        raise ModelFileError(f"{where}: field meta: not valid text; the file is damaged.") from None
    try:
        return schema.parse_json(text.rstrip("\0"), "meta")
    except FieldError as exc:
        raise ModelFileError(f"{where}: {exc}.") from None


def _check_meta(where: str, meta: Any, kind: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(checked metadata, expected arrays): its format and version first, then every field."""
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, schema.CHECKPOINT):
        raise ModelFileError(f"{where} is not an nnet model file (no 'format': '{FORMAT}').")
    if kind is not None and meta["format"] != kind:
        raise ModelFileError(_WRONG_FORMAT[kind].format(where))
    version = meta.get("format_version")
    if type(version) is not int:
        raise ModelFileError(
            f"{where}: field format_version: expected an integer, got {schema.short(version)}."
        )
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has model format version {schema.short(version)}; this nnet reads "
            f"version {FORMAT_VERSION}, so upgrade nnet or retrain the model."
        )
    try:
        if meta["format"] == FORMAT:
            checked = schema.check_model_meta(meta)
            return checked, schema.model_arrays(checked)
        settings, checked = schema.check_checkpoint_meta(meta)
        checked["settings"] = settings
        return checked, schema.checkpoint_arrays(settings, checked)
    except FieldError as exc:
        raise ModelFileError(f"{where}: {exc}.") from None
