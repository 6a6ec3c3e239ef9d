"""IDX reader and writer: round trips, and a clear IdxError for every kind of damage."""

from __future__ import annotations

import gzip
import os
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from nnet.data.idx import IdxError, read_idx, write_idx
from nnet.errors import NnetError

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write_bytes(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def raises_idx(path: Path, *words: str) -> str:
    """Read ``path``, expect IdxError naming the path and every one of ``words``."""
    with pytest.raises(IdxError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, (w, msg)
    assert "\n" not in msg
    assert isinstance(info.value, NnetError)
    return msg


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path: Path, dtype: str, name: str) -> None:
    rng = np.random.default_rng(0)
    for shape in [(7,), (3, 4), (2, 3, 5), (2, 1, 3, 2)]:
        x = (rng.normal(0, 50, shape)).astype(dtype)
        path = tmp_path / name
        write_idx(path, x)
        y = read_idx(path)
        assert y.dtype == np.dtype(dtype)
        assert y.dtype.isnative
        assert y.shape == shape
        np.testing.assert_array_equal(x, y)
        assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp files left


def test_layout_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "x"
    write_idx(path, np.array([1, 256], dtype=np.int16))
    assert path.read_bytes() == header(0x0B, (2,)) + b"\x00\x01\x01\x00"
    write_idx(path, np.array([[1, 2, 3]], dtype=np.uint8))
    assert path.read_bytes() == header(0x08, (1, 3)) + b"\x01\x02\x03"


def test_compression_detected_by_content_not_name(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "a.gz", x)
    (tmp_path / "a.gz").rename(tmp_path / "plain-name")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-name"), x)
    write_idx(tmp_path / "b", x)
    (tmp_path / "b").rename(tmp_path / "b.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), x)


@pytest.mark.parametrize("name", ["z", "z.gz"])
def test_zero_dimension_is_an_empty_array(tmp_path: Path, name: str) -> None:
    write_idx(tmp_path / name, np.zeros((0, 28, 28), dtype=np.uint8))
    y = read_idx(tmp_path / name)
    assert y.shape == (0, 28, 28) and y.dtype == np.uint8


def test_write_refuses_what_idx_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(NnetError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(NnetError, match="dimensions"):
        write_idx(tmp_path / "x", np.zeros((1,) * 5, dtype=np.uint8))
    with pytest.raises(NnetError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- header damage


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path: Path, gz: bool) -> None:
    path = write_bytes(tmp_path / "f", b"\x01\x00\x08\x01" + bytes(8), gz=gz)
    raises_idx(path, "magic number", "0x01000801")


@pytest.mark.parametrize("gz", [False, True])
def test_unknown_type_code(tmp_path: Path, gz: bool) -> None:
    path = write_bytes(tmp_path / "f", header(0x0A, (2,)) + bytes(2), gz=gz)
    raises_idx(path, "type code 0x0A")


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_bad_ndim(tmp_path: Path, ndim: int) -> None:
    path = write_bytes(tmp_path / "f", bytes([0, 0, 8, ndim]) + bytes(4 * ndim + 4))
    raises_idx(path, f"{ndim} dimensions")


def test_header_truncated(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "f", bytes([0, 0, 8, 3]) + bytes(5))
    raises_idx(path, "truncated", "header")
    path = write_bytes(tmp_path / "g", bytes([0, 0]))
    raises_idx(path, "too short")


@pytest.mark.parametrize("gz", [False, True])
def test_empty_file(tmp_path: Path, gz: bool) -> None:
    path = write_bytes(tmp_path / "f", b"", gz=gz)
    raises_idx(path, "is empty")


# --------------------------------------------------------------------------- size mismatch


def test_truncated_raw(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "f", header(0x08, (10, 28, 28)) + bytes(1000))
    raises_idx(path, "truncated", "7840 bytes", "found 1000")


def test_trailing_bytes_raw(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "f", header(0x0B, (3,)) + bytes(6 + 5))
    raises_idx(path, "5 bytes of trailing data", "6")


def test_truncated_gz(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "f.gz", header(0x0C, (10, 10)) + bytes(399), gz=True)
    raises_idx(path, "truncated", "400 bytes", "holds 399")


def test_trailing_data_gz(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "f.gz", header(0x08, (4,)) + bytes(4 + 3), gz=True)
    # decompression stops one byte past the declared size: the rest is never inflated
    raises_idx(path, "trailing data", "at least 1 more bytes")


# --------------------------------------------------------------------------- gzip damage


def good_gz(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "good.gz", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8))
    return (tmp_path / "good.gz").read_bytes()


def test_gz_cut_short(tmp_path: Path) -> None:
    data = good_gz(tmp_path)
    path = write_bytes(tmp_path / "cut.gz", data[: len(data) // 2])
    raises_idx(path, "damaged gzip")


def test_gz_bad_crc(tmp_path: Path) -> None:
    data = bytearray(good_gz(tmp_path))
    data[-8] ^= 0xFF  # CRC32 of the member
    path = write_bytes(tmp_path / "crc.gz", bytes(data))
    raises_idx(path, "damaged gzip", "CRC")


def test_gz_corrupted_stream(tmp_path: Path) -> None:
    data = bytearray(good_gz(tmp_path))
    for i in range(20, len(data) - 20, 97):
        data[i] ^= 0x5A
    raises_idx(write_bytes(tmp_path / "bad.gz", bytes(data)))


def test_gz_garbage_after_member(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "junk.gz", good_gz(tmp_path) + b"garbage!")
    raises_idx(path, "gzip")


# --------------------------------------------------------------------------- huge headers


@pytest.mark.parametrize("gz", [False, True])
def test_huge_header_fails_fast_without_allocating(tmp_path: Path, gz: bool) -> None:
    path = write_bytes(
        tmp_path / "huge", header(0x0E, (2**31, 2**31, 2**31)) + bytes(3 << 20), gz=gz
    )
    tracemalloc.start()
    start = time.perf_counter()
    try:  # raw: the file is shorter than declared; gzip: more than nnet ever reads
        raises_idx(path, "truncated" if not gz else "more than", str(8 * 2**93))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20
    assert time.perf_counter() - start < 2.0


def test_max_dims_gz_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "m.gz", header(0x08, (2**32 - 1, 2**32 - 1)), gz=True)
    raises_idx(path, "more than the 268435456 bytes nnet reads")


def test_gz_stops_at_end_of_a_short_stream(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "m.gz", header(0x08, (1000, 1000)), gz=True)
    raises_idx(path, "truncated", "holds 0")


# --------------------------------------------------------------------------- not a file


def test_missing_file(tmp_path: Path) -> None:
    raises_idx(tmp_path / "nope.gz", "does not exist")


def test_directory(tmp_path: Path) -> None:
    raises_idx(tmp_path, "is a directory")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "locked", header(0x08, (1,)) + b"\x00")
    path.chmod(0)
    try:
        raises_idx(path, "cannot be read")
    finally:
        path.chmod(0o600)
