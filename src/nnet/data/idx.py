"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the data:

- magic number, 4 bytes: two zero bytes, a type code, the number of dimensions;
- one big-endian uint32 per dimension;
- the data, prod(dims) items of the type, big-endian, C order.

Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
This reader accepts 1 to 4 dimensions (MNIST uses 1 for labels, 3 for images). A dimension
of 0 is accepted: it describes an empty array and the data must then be empty, which is
checked like any other size.

Files may be gzip-compressed; compression is recognised by the gzip magic bytes 1f 8b, not
by the file name. The reader never trusts the header with memory: a raw file's size is
compared with what the header declares before anything is allocated, and a gzip stream is
decompressed in chunks of at most 1 MiB, so a header declaring an absurd size fails as
soon as the stream ends, without allocating what it declares.

Every problem a damaged or mismatched file can cause raises :class:`IdxError`, a
:class:`~nnet.errors.NnetError` whose message names the file, what is wrong and what to do.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from nnet.errors import NnetError
from nnet.files.fileio import atomic_write

# Type code -> big-endian NumPy dtype of the data.
IDX_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

MAX_NDIM = 4
CHUNK = 1 << 20  # the most bytes read from a gzip stream at a time
GZIP_MAGIC = b"\x1f\x8b"

_FIX = "download it again or delete it so nnet downloads a fresh copy"
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, OSError)


class IdxError(NnetError):
    """An IDX file is missing, unreadable, damaged, or not what it should be."""


def _type_names() -> str:
    return ", ".join(f"0x{code:02X} {np.dtype(t).name}" for code, t in IDX_TYPES.items())


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes from ``f``, fewer only at the end of the stream."""
    parts = []
    while n > 0:
        part = f.read(min(n, CHUNK))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _parse_header(path: Path, f: BinaryIO) -> tuple[np.dtype, tuple[int, ...], int]:
    """(big-endian dtype, dims, header length) from the start of ``f``."""
    magic = _read_exact(f, 4)
    if len(magic) == 0:
        raise IdxError(f"{path} is empty; {_FIX}.")
    if len(magic) < 4:
        raise IdxError(
            f"{path} is too short to be an IDX file ({len(magic)} bytes, the magic number "
            f"alone takes 4); {_FIX}."
        )
    if magic[0] != 0 or magic[1] != 0:
        raise IdxError(
            f"{path} is not an IDX file: its magic number is 0x{magic.hex().upper()}, which "
            f"does not start with two zero bytes; check that the path names an IDX file, or "
            f"{_FIX}."
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        raise IdxError(
            f"{path} has an unknown IDX type code 0x{code:02X} (known: {_type_names()}); {_FIX}."
        )
    if not 1 <= ndim <= MAX_NDIM:
        raise IdxError(
            f"{path} declares {ndim} dimensions, but an IDX file nnet reads has 1 to "
            f"{MAX_NDIM}; {_FIX}."
        )
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxError(
            f"{path} is truncated inside its header: {ndim} dimensions need {4 * ndim} bytes "
            f"after the magic number, found {len(raw_dims)}; {_FIX}."
        )
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    return np.dtype(IDX_TYPES[code]), dims, 4 + 4 * ndim


def _describe(dtype: np.dtype, dims: tuple[int, ...]) -> str:
    return f"{' x '.join(str(d) for d in dims)} {dtype.name}"


def _finish(buf: np.ndarray | bytearray, dtype: np.dtype, dims: tuple[int, ...]) -> np.ndarray:
    """The data as a native-endian array of shape ``dims``."""
    arr = np.frombuffer(buf, dtype=dtype) if isinstance(buf, bytearray) else buf
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr.reshape(dims)


def _read_raw(path: Path, f: BinaryIO) -> np.ndarray:
    dtype, dims, header = _parse_header(path, f)
    expected = math.prod(dims) * dtype.itemsize  # Python int: cannot overflow
    size = os.fstat(f.fileno()).st_size
    found = size - header
    if found < expected:
        raise IdxError(
            f"{path} is truncated: its header declares {_describe(dtype, dims)} "
            f"({expected} bytes of data), found {found}; {_FIX}."
        )
    if found > expected:
        raise IdxError(
            f"{path} has {found - expected} bytes of trailing data after the {expected} "
            f"bytes its header declares ({_describe(dtype, dims)}); {_FIX}."
        )
    out = np.empty(math.prod(dims), dtype=dtype)
    view = memoryview(out).cast("B")
    got = 0
    while got < expected:
        n = f.readinto(view[got : got + CHUNK])
        if not n:
            break
        got += n
    if got < expected:  # the file shrank while being read
        raise IdxError(
            f"{path} is truncated: expected {expected} bytes of data, found {got}; {_FIX}."
        )
    return _finish(out, dtype, dims)


def _read_gzip(path: Path, f: BinaryIO) -> np.ndarray:
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as z:
            dtype, dims, _ = _parse_header(path, z)
            expected = math.prod(dims) * dtype.itemsize
            buf = bytearray()
            while len(buf) < expected:
                part = z.read(min(CHUNK, expected - len(buf)))
                if not part:
                    break
                buf += part
            if len(buf) < expected:
                raise IdxError(
                    f"{path} is truncated: its header declares {_describe(dtype, dims)} "
                    f"({expected} bytes of data), its decompressed content holds "
                    f"{len(buf)}; {_FIX}."
                )
            extra = len(z.read(CHUNK))
            if extra:
                raise IdxError(
                    f"{path} has trailing data after the {expected} bytes its header "
                    f"declares ({_describe(dtype, dims)}), at least {extra} more bytes in "
                    f"its decompressed content; {_FIX}."
                )
    except IdxError:
        raise
    except _GZIP_ERRORS as e:
        reason = str(e) or type(e).__name__
        raise IdxError(f"{path} is a damaged gzip file ({reason}); {_FIX}.") from e
    return _finish(buf, dtype, dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file ``path`` (raw or gzip-compressed).

    Returns a native-endian array of the file's type and of shape ``dims``. Raises
    :class:`IdxError` if the file is missing, unreadable, a directory, not an IDX file, of
    an unknown type, or if its data is shorter or longer than the header declares.
    """
    path = Path(path)
    if path.is_dir():
        raise IdxError(f"{path} is a directory, not an IDX file; give the path of the file itself.")
    try:
        f = open(path, "rb")
    except FileNotFoundError as e:
        raise IdxError(f"{path} does not exist; check the path or download the file.") from e
    except PermissionError as e:
        raise IdxError(
            f"{path} cannot be read (permission denied); make it readable or use a copy."
        ) from e
    except OSError as e:
        raise IdxError(
            f"{path} cannot be opened ({e.strerror or e}); check the path and the file."
        ) from e
    with f:
        try:
            start = f.read(2)
            f.seek(0)
        except OSError as e:
            raise IdxError(
                f"{path} cannot be read ({e.strerror or e}); check the path and the file."
            ) from e
        if start == GZIP_MAGIC:
            return _read_gzip(path, f)
        return _read_raw(path, f)


def _type_code(dtype: np.dtype) -> int:
    for code, t in IDX_TYPES.items():
        if np.dtype(t).newbyteorder("=") == dtype.newbyteorder("="):
            return code
    raise NnetError(
        f"IDX cannot store arrays of type {dtype.name}; use one of "
        f"{', '.join(np.dtype(t).name for t in IDX_TYPES.values())}."
    )


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` to the IDX file ``path``, gzip-compressed if the name ends in .gz.

    The array must have 1 to 4 dimensions and one of the IDX types (uint8, int8, int16,
    int32, float32, float64). The file is written to a temporary file in the same folder
    and moved into place, so ``path`` never holds half a file.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _type_code(arr.dtype)
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise NnetError(f"IDX files hold arrays of 1 to {MAX_NDIM} dimensions; got {arr.ndim}.")
    if max(arr.shape) >= 2**32:
        raise NnetError(f"IDX dimensions must be below 2**32; got shape {arr.shape}.")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = np.ascontiguousarray(arr, dtype=np.dtype(IDX_TYPES[code])).tobytes()
    with atomic_write(path) as out:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as z:
                z.write(header)
                z.write(data)
        else:
            out.write(header)
            out.write(data)
