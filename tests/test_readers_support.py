"""Helpers of the tests of nnet's readers (test_readers_fuzz, test_readers_attacks): files
written by hand so that they can lie (zip directories, .npy headers, PNG headers), bombs that
inflate to gigabytes but take a few MiB and milliseconds to make, and special files."""

from __future__ import annotations

import functools
import io
import json
import os
import socket
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

MiB = 1 << 20


@functools.cache
def _zero_block() -> bytes:
    """One MiB of zeros as a self-contained, byte-aligned deflate block (about 1 KiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(bytes(MiB)) + z.flush(zlib.Z_FULL_FLUSH)


def raw_deflate(header: bytes, zeros: int) -> bytes:
    """A raw deflate stream of ``header`` then ``zeros`` zero bytes, made in milliseconds
    whatever ``zeros``: the block of one MiB of zeros repeated (1.9 GB take 1.9 MB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = z.compress(header) + z.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(zeros, MiB)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = z.compress(bytes(rest)) + z.flush()  # the rest, in the final block
    return out + _zero_block() * whole + tail


def crc_of(header: bytes, zeros: int) -> int:
    """The CRC-32 of ``header`` then ``zeros`` zero bytes; 0 (wrong, on purpose) beyond
    256 MiB, which no reader that stops in time ever checks."""
    if zeros > 256 * MiB:
        return 0
    crc = zlib.crc32(header)
    chunk = bytes(min(zeros, MiB))
    for done in range(0, zeros, MiB):
        crc = zlib.crc32(chunk[: min(MiB, zeros - done)], crc)
    return crc


def gzip_of(header: bytes, zeros: int) -> bytes:
    """A gzip file of ``header`` then ``zeros`` zero bytes (made as :func:`raw_deflate`)."""
    trailer = struct.pack("<II", crc_of(header, zeros), (len(header) + zeros) & 0xFFFFFFFF)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + raw_deflate(header, zeros) + trailer


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 flip a byte, 1 cut here, 2 insert a byte."""
    out = bytearray(data)
    for kind, pos, value in edits:
        if not out:
            break
        pos %= len(out)
        if kind == 0:
            out[pos] ^= value or 1
        elif kind == 1:
            del out[pos:]
        else:
            out.insert(pos, value)
    return bytes(out)


def special(folder: Path, kind: str, name: str) -> Path:
    """A path in ``folder`` that names something other than a regular file."""
    path = folder / name
    if kind.startswith("/dev/"):
        os.symlink(kind, path)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        os.symlink(path, path)
    else:
        os.symlink(folder / "nowhere", path)
    return path


def npz_bytes(arrays: dict[str, np.ndarray], meta_text: str | None = None) -> bytes:
    buf = io.BytesIO()
    if meta_text is not None:
        arrays = {**arrays, "meta": np.array(meta_text)}
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def split(data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(io.BytesIO(data)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays, json.loads(str(arrays.pop("meta")[()]))


def deflated(header: bytes, zeros: int) -> tuple[bytes, int]:
    """(raw deflate stream, CRC-32) of ``header`` then ``zeros`` zero bytes."""
    return raw_deflate(header, zeros), crc_of(header, zeros)


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return (name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data))


def hand_zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip written by hand from (name, body as stored, method, CRC, declared size), so that
    its directory can say anything."""
    body, central = b"", b""
    for name, data, method, crc, declared in members:
        n = name.encode()
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data),
            declared, len(n), 0, 0, 0, 0, 0, len(body),
        ) + n  # fmt: skip
        body += struct.pack(
            "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), declared,
            len(n), 0,
        ) + n + data  # fmt: skip
    count = len(members)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0)
    return body + central + end


def bomb(name: str, header: bytes, declared: int, inflates_to: int) -> tuple:
    """Member ``name``: ``header`` then zeros, deflated; the directory declares ``declared``
    bytes, the stream inflates to ``inflates_to`` (a lie when they differ)."""
    data, crc = deflated(header, max(0, inflates_to - len(header)))
    return (name, data, zipfile.ZIP_DEFLATED, crc, min(declared, 2**32 - 1))


def npy_header(shape: tuple[int, ...], descr: str = "<f4", fortran: bool = False) -> bytes:
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


# ----------------------------------------------------------------------------- good files


def png(width: int, height: int, mode: int = 0, rows: bytes | None = None) -> bytes:
    """A PNG declaring ``width`` x ``height`` (color type ``mode``), with ``rows`` of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", rows or b"")
        + chunk(b"IEND", b"")
    )


def small_model(path: Path) -> None:
    """A model file of a [12, 6, 4] classifier with a history, as nnet writes one."""
    import nnet

    net = nnet.Network([12, 6, 4], ["relu", "identity"], loss="cross_entropy", seed=0)
    history = [{"epoch": 1, "lr": 0.1, "train_loss": 0.5, "train_accuracy": 0.8,
                "val_loss": 0.6, "val_accuracy": None, "samples": 40, "seconds": 0.1}]  # fmt: skip
    described = {"task": "classifier", "dataset": "custom", "classes": ["a", "b", "c", "d"]}
    nnet.save(net, path, {**described, "history": history})


def small_checkpoint(path: Path) -> None:
    """A checkpoint of a [12, 6, 4] Adam run on random data, stopped in the middle of its
    second epoch (so it holds the pass under way, the optimizer's state and best weights)."""
    from nnet.experiment import build, run
    from nnet.training.loop import StopFlag
    from nnet.training.settings import Settings

    settings = Settings(
        dataset="custom", sizes=(12, 6, 4), activation=("relu",), loss="cross_entropy",
        optimizer="adam", momentum=0.0, lr=0.01, batch_size=4, epochs=3, val=8, init=None,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 12)), rng.integers(0, 4, 40)
    exp = build(settings, arrays={"x": x, "y": y, "n_classes": 4, "test": None})
    stop = StopFlag()

    def on_batch(n: int, loss: float) -> None:
        if exp.trainer.epoch == 1 and exp.trainer.progress["batch"] == 3:
            stop.signal = "SIGINT"

    run(exp, stop=stop, checkpoint=path, on_batch=on_batch)


def rewrite(path: Path, change, *, arrays_change=None) -> None:
    """Rewrite the .npz at ``path`` with ``change(meta)`` applied to its metadata (and
    ``arrays_change(arrays)`` to its arrays)."""
    arrays, meta = split(path.read_bytes())
    change(meta)
    if arrays_change is not None:
        arrays_change(arrays)
    path.write_bytes(npz_bytes(arrays, json.dumps(meta)))
