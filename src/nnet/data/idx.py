"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the data:

- magic number, 4 bytes: two zero bytes, a type code, the number of dimensions;
- one big-endian uint32 per dimension;
- the data, prod(dims) items of the type, big-endian, C order.

This reader accepts 1 to 4 dimensions (MNIST uses 1 for labels, 3 for images). A dimension
of 0 is accepted: it describes an empty array and the data must then be empty, which is
checked like any other size.

Files may be gzip-compressed; compression is recognised by the gzip magic bytes 1f 8b, not
by the file name. The reader never trusts the header with memory: a raw file's size is
compared with what the header declares before anything is allocated, and a gzip stream is
decompressed in chunks of at most ``CHUNK`` bytes, so a header declaring an absurd size
fails as soon as the stream ends, without allocating what it declares.

Every problem a damaged or mismatched file can cause raises :class:`IdxError`, a
:class:`~nnet.errors.NnetError` whose message names the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nnet.errors import NnetError
from nnet.fileio import atomic_write

# Type code -> NumPy dtype of the data as stored (big-endian).
IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(t).name: code for code, t in IDX_TYPES.items()}  # "int16" -> 0x0B
MAX_NDIM = 4
CHUNK = 1 << 20  # the most bytes read from a stream at a time
GZIP_MAGIC = b"\x1f\x8b"

_FIX = "download it again or delete it so nnet downloads a fresh copy"


class IdxError(NnetError):
    """An IDX file is missing, unreadable, damaged, or not what it should be."""


def _parse_header(path: Path, f: BinaryIO) -> tuple[np.dtype, tuple[int, ...]]:
    """(big-endian dtype, dims) from the start of ``f``."""
    magic = f.read(4)
    if not magic:
        raise IdxError(f"{path} is empty; {_FIX}.")
    if len(magic) < 4:
        raise IdxError(
            f"{path} is too short to be an IDX file ({len(magic)} bytes, the magic number "
            f"alone takes 4); {_FIX}."
        )
    if magic[:2] != b"\0\0":
        raise IdxError(
            f"{path} is not an IDX file: its magic number is 0x{magic.hex().upper()}, which "
            f"does not start with two zero bytes; check that the path names an IDX file, or "
            f"{_FIX}."
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} {name}" for name, c in _CODES.items())
        raise IdxError(
            f"{path} has an unknown IDX type code 0x{code:02X} (known: {known}); {_FIX}."
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise IdxError(
            f"{path} declares {ndim} dimensions, but an IDX file nnet reads has 1 to "
            f"{MAX_NDIM}; {_FIX}."
        )
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise IdxError(
            f"{path} is truncated inside its header: {ndim} dimensions need {4 * ndim} bytes "
            f"after the magic number, found {len(dims)}; {_FIX}."
        )
    return np.dtype(IDX_TYPES[code]), struct.unpack(f">{ndim}I", dims)


def _read(path: Path, f: BinaryIO, size: int | None) -> np.ndarray:
    """The array in the IDX stream ``f``: a raw file of ``size`` bytes, or gzip (None)."""
    dtype, dims = _parse_header(path, f)
    expected = math.prod(dims) * dtype.itemsize  # a Python int: cannot overflow
    declared = f"{' x '.join(map(str, dims))} {dtype.name}"
    raw = size is not None

    def check(n: int, at_least: bool) -> None:
        """NnetError unless ``n``, the bytes of data found, is what the header declares."""
        if n < expected:
            holds = "found" if raw else "its decompressed content holds"
            raise IdxError(
                f"{path} is truncated: its header declares {declared} ({expected} bytes of "
                f"data), {holds} {n}; {_FIX}."
            )
        if n > expected:
            extra = f"at least {n - expected} more" if at_least else n - expected
            raise IdxError(
                f"{path} has {extra} bytes of trailing data after the {expected} bytes its "
                f"header declares ({declared}){'' if raw else ' in its decompressed content'}; "
                f"{_FIX}."
            )

    if raw:  # before anything is allocated
        check(size - 4 - 4 * len(dims), at_least=False)
    buf = bytearray()
    while len(buf) < expected and (part := f.read(min(CHUNK, expected - len(buf)))):
        buf += part
    check(len(buf) + len(f.read(CHUNK)), at_least=True)  # the file may change while read
    return np.frombuffer(buf, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file ``path`` (raw or gzip-compressed).

    Returns a native-endian array of the file's type and of shape ``dims``. Raises
    :class:`IdxError` if the file is missing, unreadable, a directory, not an IDX file, of
    an unknown type, or if its data is shorter or longer than the header declares.
    """
    path = Path(path)
    if path.is_dir():
        raise IdxError(f"{path} is a directory, not an IDX file; give the path of the file itself.")
    gz = False
    try:
        with open(path, "rb") as f:
            gz = f.peek(2)[:2] == GZIP_MAGIC
            if not gz:
                return _read(path, f, os.fstat(f.fileno()).st_size)
            with gzip.GzipFile(fileobj=f, mode="rb") as z:
                return _read(path, z, None)
    except FileNotFoundError as e:
        raise IdxError(f"{path} does not exist; check the path or download the file.") from e
    except PermissionError as e:
        raise IdxError(
            f"{path} cannot be read (permission denied); make it readable or use a copy."
        ) from e
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        if gz:
            raise IdxError(f"{path} is a damaged gzip file ({reason}); {_FIX}.") from e
        raise IdxError(f"{path} cannot be read ({reason}); check the path and the file.") from e


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` to the IDX file ``path``, gzip-compressed if the name ends in .gz.

    The array must have 1 to 4 dimensions and one of the IDX types (uint8, int8, int16,
    int32, float32, float64). The file is written to a temporary file in the same folder
    and moved into place, so ``path`` never holds half a file.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _CODES.get(arr.dtype.name)
    if code is None:
        raise NnetError(
            f"IDX cannot store arrays of type {arr.dtype.name}; use one of {', '.join(_CODES)}."
        )
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise NnetError(f"IDX files hold arrays of 1 to {MAX_NDIM} dimensions; got {arr.ndim}.")
    if max(arr.shape) >= 2**32:
        raise NnetError(f"IDX dimensions must be below 2**32; got shape {arr.shape}.")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(IDX_TYPES[code]).tobytes()
    with atomic_write(path) as out:
        out.write(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
