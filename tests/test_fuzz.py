"""Property-based fuzzing of the two readers of untrusted files: IDX and model files.

Mutated files (bytes flipped, cut, inserted, headers rewritten) must either load or raise
the documented error (IdxError / ModelFileError, both NnetError) — never another
exception — and never allocate what a damaged header claims (checked with tracemalloc).
"""

from __future__ import annotations

import gzip
import io
import tracemalloc

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_readers_support import mutate  # the same edits the subprocess fuzzing applies

import nnet
from nnet.data.idx import read_idx, write_idx
from nnet.errors import NnetError

MAX_BYTES = 64 * 2**20  # no mutated file may make a reader allocate more than this


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2**20), st.integers(0, 255)), max_size=6
)


def load_bounded(load, path):
    tracemalloc.start()
    try:
        try:
            load(path)
        except NnetError:
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_BYTES, f"{peak} bytes allocated for a {path.stat().st_size}-byte file"


def idx_bytes(compressed: bool) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    header = bytes([0, 0, 8, 3]) + np.array([20, 28, 28], ">u4").tobytes()
    raw = header + rng.integers(0, 256, 20 * 28 * 28, dtype=np.uint8).tobytes()
    if not compressed:
        return raw
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as z:
        z.write(raw)
    return buf.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(compressed=st.booleans(), edits=EDITS, header=st.binary(min_size=0, max_size=16))
def test_idx_reader_on_mutated_files(tmp_path, compressed, edits, header):
    data = mutate(idx_bytes(compressed), edits)
    if header and not compressed:
        data = header + data[len(header) :]  # a rewritten header: any dims, any type
    path = tmp_path / "f.idx"
    path.write_bytes(data)
    load_bounded(read_idx, path)


def test_idx_round_trip_still_works(tmp_path):
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", x)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), x)


def model_bytes() -> bytes:
    buf = io.BytesIO()
    net = nnet.Network([30, 8, 4], "relu", seed=0)
    arrays = {f"w{k}": w for k, w in enumerate(net.weights)}
    import json

    meta = {"format": "nnet-model", "format_version": 1, "sizes": net.sizes,
            "activations": net.activations, "loss": "mse", "dtype": "float32"}  # fmt: skip
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(buf, **arrays)
    return buf.getvalue()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=EDITS)
def test_model_loader_on_mutated_files(tmp_path, edits):
    path = tmp_path / "m.npz"
    path.write_bytes(mutate(model_bytes(), edits))
    load_bounded(nnet.load, path)
