"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a header followed by the data:

- magic number, 4 bytes: two zero bytes, a type code, the number of dimensions;
- one big-endian uint32 per dimension;
- the data, prod(dims) items of the type, big-endian, C order.

This reader accepts 1 to 4 dimensions (MNIST uses 1 for labels, 3 for images). A dimension
of 0 is accepted: it describes an empty array and the data must then be empty, which is
checked like any other size.

Files may be gzip-compressed; compression is recognised by the gzip magic bytes 1f 8b, not
by the file name. The reader never trusts the header with memory: only regular files are
read (:func:`open_regular`), the size the header declares is checked against
``MAX_IDX_BYTES`` and against the file (a raw file's size exactly; a gzip file may not
inflate more than ``MAX_INFLATION`` times) before anything is allocated, and a gzip stream is
decompressed in chunks of at most ``CHUNK`` bytes, only up to the declared size plus one byte
(to detect trailing data).

The module also holds what every reader of untrusted files in nnet shares (the data layer is
the lowest that reads files): :func:`open_regular`, :func:`shown` and
:func:`read_npy_header`.

Every problem a damaged or mismatched file can cause raises :class:`IdxError`, a
:class:`~nnet.errors.NnetError` whose message names the file, what is wrong and what to do.
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from nnet.errors import NnetError
from nnet.fileio import atomic_write

# Type code -> NumPy dtype of the data as stored (big-endian).
IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(t).name: code for code, t in IDX_TYPES.items()}  # "int16" -> 0x0B
MAX_NDIM = 4
CHUNK = 1 << 20  # the most bytes read from a stream at a time
GZIP_MAGIC = b"\x1f\x8b"
# The most bytes of data an IDX file may declare: 256 MiB, five times MNIST's largest file
# (47 MB of training images), so a header cannot make nnet allocate more.
MAX_IDX_BYTES = 1 << 28
# A gzip file (and a deflated member of an .npz) may declare at most this many times its
# compressed size, plus INFLATION_SLACK: real data compresses 2-5 times (MNIST), deflate's
# own limit is 1032, so only a bomb exceeds it.
MAX_INFLATION = 100
INFLATION_SLACK = 1 << 20  # 1 MiB: what any small file may inflate to, whatever its ratio
# The most bytes of an .npy header (numpy's own reader stops at 10 000; nnet writes ~128).
MAX_NPY_HEADER = 10_000

_FIX = "download it again or delete it so nnet downloads a fresh copy"


class IdxError(NnetError):
    """An IDX file is missing, unreadable, damaged, or not what it should be."""


# ----------------------------------------------------------------------------- any file
class SpecialFileError(OSError):
    """A path that names a device, FIFO or socket: never read (a FIFO would hang, a device
    like /dev/zero never ends)."""


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as it appears in a message: one line, control characters escaped."""
    text = os.fsdecode(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _regular(st: os.stat_result, path: str | os.PathLike[str]) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder", os.fsdecode(path))
    if not stat.S_ISREG(st.st_mode):
        raise SpecialFileError(
            errno.EINVAL, "not a regular file (a device, FIFO or socket)", os.fsdecode(path)
        )


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading in binary, if it is a regular file once links are followed.

    Raises FileNotFoundError, IsADirectoryError (a folder), :class:`SpecialFileError` (a
    device, FIFO or socket, never opened), PermissionError or another OSError. The file is
    opened without blocking and checked again through its descriptor, so a FIFO swapped in
    after the first check cannot hang the reader either.
    """
    _regular(os.stat(path), path)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    flags = os.O_RDONLY | nonblock | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        _regular(os.fstat(fd), path)
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_npy_header(f: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, header bytes) of the ``.npy`` stream ``f``, reading only
    the header (at most ``MAX_NPY_HEADER`` bytes). ValueError saying what is wrong otherwise;
    nothing is unpickled and no data is read."""
    magic = f.read(8)
    if len(magic) < 8 or magic[:6] != npy_format.MAGIC_PREFIX:
        raise ValueError("no .npy magic string")
    version = (magic[6], magic[7])
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    width = 2 if version == (1, 0) else 4
    raw_length = f.read(width)
    if len(raw_length) < width:
        raise ValueError("truncated .npy header")
    length = int.from_bytes(raw_length, "little")
    if length > MAX_NPY_HEADER:
        raise ValueError(f"an .npy header of {length} bytes (at most {MAX_NPY_HEADER})")
    header = f.read(length)
    if len(header) < length:
        raise ValueError("truncated .npy header")
    buf = io.BytesIO(magic + raw_length + header)
    npy_format.read_magic(buf)
    read = (
        npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    )
    try:
        shape, fortran, dtype = read(buf, max_header_size=MAX_NPY_HEADER)
    except Exception as exc:  # numpy's parser of untrusted text: any of its errors, one line
        raise ValueError(f"unreadable .npy header ({type(exc).__name__})") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return tuple(shape), bool(fortran), dtype, 8 + width + length


def read_exactly(f: BinaryIO, nbytes: int) -> tuple[np.ndarray, int]:
    """The next ``nbytes`` bytes of ``f`` as a uint8 array, read in chunks of at most
    ``CHUNK`` into one array allocated up front, and how many bytes there were (fewer than
    ``nbytes`` if the stream ended first). Never reads past ``nbytes``; the caller bounds
    ``nbytes`` before calling."""
    out = np.empty(nbytes, np.uint8)
    done = 0
    while done < nbytes:
        part = f.read(min(CHUNK, nbytes - done))
        if not part:
            break
        out[done : done + len(part)] = np.frombuffer(part, np.uint8)
        done += len(part)
    return out, done


def _parse_header(path: str, f: BinaryIO) -> tuple[np.dtype, tuple[int, ...]]:
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


def _read(path: Path, f: BinaryIO, size: int, gz: bool) -> np.ndarray:
    """The array in the IDX stream ``f``: a raw file of ``size`` bytes, or a gzip stream
    (``gz``) in a file of ``size`` bytes."""
    where = shown(path)
    dtype, dims = _parse_header(where, f)
    expected = math.prod(dims) * dtype.itemsize  # a Python int: cannot overflow
    declared = f"{' x '.join(map(str, dims))} {dtype.name}"
    raw = not gz

    def check(n: int, at_least: bool) -> None:
        """NnetError unless ``n``, the bytes of data found, is what the header declares."""
        if n < expected:
            holds = "found" if raw else "its decompressed content holds"
            raise IdxError(
                f"{where} is truncated: its header declares {declared} ({expected} bytes of "
                f"data), {holds} {n}; {_FIX}."
            )
        if n > expected:
            extra = f"at least {n - expected} more" if at_least else n - expected
            raise IdxError(
                f"{where} has {extra} bytes of trailing data after the {expected} bytes its "
                f"header declares ({declared}){'' if raw else ' in its decompressed content'}; "
                f"{_FIX}."
            )

    # everything the header declares is checked before anything is allocated
    if raw:
        check(size - 4 - 4 * len(dims), at_least=False)
    if expected > MAX_IDX_BYTES:
        raise IdxError(
            f"{where} declares {declared} ({expected} bytes of data), more than the "
            f"{MAX_IDX_BYTES} bytes nnet reads from an IDX file; {_FIX}."
        )
    if gz and expected > MAX_INFLATION * size + INFLATION_SLACK:
        raise IdxError(
            f"{where} declares {declared} ({expected} bytes of data) in {size} bytes of gzip, "
            f"more than {MAX_INFLATION} times its size: a damaged file or a decompression "
            f"bomb; {_FIX}."
        )
    data, n = read_exactly(f, expected)
    check(n + len(f.read(1)), at_least=True)  # one byte more than declared: trailing data?
    return data.view(dtype).astype(dtype.newbyteorder("="), copy=False).reshape(dims)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array stored in the IDX file ``path`` (raw or gzip-compressed).

    Returns a native-endian array of the file's type and of shape ``dims``. Raises
    :class:`IdxError` if the file is missing, unreadable, a directory, a device, FIFO or
    socket, not an IDX file, of an unknown type, if it declares more than ``MAX_IDX_BYTES``
    (or, gzip-compressed, more than ``MAX_INFLATION`` times its size), or if its data is
    shorter or longer than the header declares.
    """
    path = Path(path)
    where = shown(path)
    gz = False
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            gz = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not gz:
                return _read(path, f, size, gz=False)
            with gzip.GzipFile(fileobj=f, mode="rb") as z:
                return _read(path, z, size, gz=True)  # type: ignore[arg-type]
    except FileNotFoundError as e:
        raise IdxError(f"{where} does not exist; check the path or download the file.") from e
    except IsADirectoryError as e:
        raise IdxError(
            f"{where} is a directory, not an IDX file; give the path of the file itself."
        ) from e
    except SpecialFileError as e:
        raise IdxError(
            f"{where} is not a regular file (a device, FIFO or socket); give the path of an "
            "IDX file."
        ) from e
    except PermissionError as e:
        raise IdxError(
            f"{where} cannot be read (permission denied); make it readable or use a copy."
        ) from e
    except MemoryError:
        raise IdxError(f"{where} is too large for the memory available.") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        if gz:
            raise IdxError(f"{where} is a damaged gzip file ({reason}); {_FIX}.") from e
        raise IdxError(f"{where} cannot be read ({reason}); check the path and the file.") from e


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
