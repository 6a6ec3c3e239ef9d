"""Model files: exact round trips, and one clear error for every kind of bad file."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import nnet
from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files.model_file import ModelFileError


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_save_load_round_trip_is_exact(tmp_path, dtype):
    net = nnet.Network(
        [6, 5, 4, 3], ["tanh", "relu", "identity"], loss="cross_entropy", seed=3, dtype=dtype
    )
    net.meta = {"task": "classifier", "dataset": "mnist", "history": [{"epoch": 1}]}
    path = tmp_path / "m.npz"
    nnet.save(net, path)
    back = nnet.load(path)
    assert back.sizes == net.sizes and back.activations == net.activations
    assert back.loss.name == "cross_entropy" and back.dtype == np.dtype(dtype)
    for a, b in zip(net.weights, back.weights, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back.meta["task"] == "classifier" and back.meta["history"] == [{"epoch": 1}]
    assert back.meta["nnet_version"] == nnet.__version__
    x = np.random.default_rng(0).normal(size=(4, 6))
    assert np.array_equal(net.forward(x), back.forward(x))


def test_meta_is_plain_json_and_nothing_is_pickled(tmp_path):
    path = tmp_path / "m.npz"
    nnet.save(nnet.Network([3, 2], seed=0), path)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"][()]))
        assert sorted(npz.files) == ["meta", "w0"]
    assert meta["format"] == "nnet-model" and meta["sizes"] == [3, 2]


def write_npz(path, arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def good_arrays(**meta_changes):
    w0 = np.zeros((4, 2), np.float32)
    meta = {
        "format": "nnet-model",
        "format_version": 1,
        "sizes": [3, 2],
        "activations": ["sigmoid"],
        "loss": "mse",
        "dtype": "float32",
        **meta_changes,
    }
    return {"w0": w0, "meta": np.array(json.dumps(meta))}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("hello"), "not an nnet model file"),
        (lambda p: p.write_bytes(b""), "not an nnet model file"),
        (lambda p: write_npz(p, {"a": np.zeros(3)}), "no nnet metadata"),
        (lambda p: write_npz(p, good_arrays(format="other")), "not an nnet model file"),
        (lambda p: write_npz(p, good_arrays(format_version=99)), "format version 99"),
        (lambda p: write_npz(p, good_arrays(sizes=[3, 5])), r"w0 has shape \(4, 2\)"),
        (
            lambda p: write_npz(p, good_arrays(sizes=[3, 2, 2], activations="sigmoid")),
            r"needs \['w0', 'w1'\]: missing \['w1'\]",
        ),
        (lambda p: write_npz(p, good_arrays(sizes="3,2")), "field sizes: expected a list"),
        (lambda p: write_npz(p, good_arrays(dtype="float16")), "field dtype: .*float32, float64"),
        (lambda p: write_npz(p, good_arrays(dtype="float64")), "not the declared float64"),
        (
            lambda p: write_npz(p, good_arrays(activations=["swish"])),
            r"field activations\[0\]: unknown activation 'swish'",
        ),
        (
            lambda p: write_npz(p, good_arrays(activations=["relu"], loss="cross_entropy")),
            "cannot build",
        ),
        (
            lambda p: write_npz(p, {**good_arrays(), "w0": np.full((4, 2), np.nan, np.float32)}),
            "NaN or infinite",
        ),
        (
            lambda p: write_npz(p, {**good_arrays(), "w0": np.array([None, 1], dtype=object)}),
            "object array",
        ),
        (
            lambda p: write_npz(p, {"w0": np.zeros((4, 2)), "meta": np.array("{not json")}),
            "not valid JSON",
        ),
    ],
)
def test_bad_model_files_get_one_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    with pytest.raises(ModelFileError, match=message) as info:
        nnet.load(path)
    assert str(path) in str(info.value)


def test_truncated_model_file(tmp_path):
    path = tmp_path / "m.npz"
    nnet.save(nnet.Network([50, 20, 10], seed=0), path)
    data = path.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(path)):
            nnet.load(path)


def test_npy_header_claiming_a_huge_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "m.npz"
    write_npz(path, good_arrays())
    raw = path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = members["w0.npy"]
    members["w0.npy"] = header.replace(b"(4, 2)", b"(400000000, 2000)")
    with zipfile.ZipFile(path, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    with pytest.raises(ModelFileError, match=r"w0 has shape \(400000000, 2000\)"):
        nnet.load(path)


def test_missing_and_folder_paths(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        nnet.load(tmp_path / "nope.npz")
    with pytest.raises(ModelFileError, match="is a folder"):
        nnet.load(tmp_path)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("new, half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]  # no temporary file left
    with atomic_write(path, "w") as f:
        f.write("new")
    assert path.read_text() == "new"


@pytest.mark.parametrize(
    ("meta", "field"),
    [({"task": "bogus"}, "field task"), ({"history": [{"lr": 1}]}, "field history[0].epoch")],
)
def test_save_refuses_metadata_that_load_would_refuse(tmp_path, meta, field):
    path = tmp_path / "m.npz"
    with pytest.raises(NnetError) as info:
        nnet.save(nnet.Network([3, 2], seed=0), path, meta)
    assert field in str(info.value) and str(path) in str(info.value)
    assert not path.exists()
