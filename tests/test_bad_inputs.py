"""Every kind of bad input a user can give, at the command line: one line, exit 2, and no
existing file changed.

Each case runs ``nnet`` in-process in a workspace holding a good model, a good (tiny, fake)
MNIST, images, and damaged copies of each; the whole workspace is compared byte for byte
before and after.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnet
from nnet.apps.cli import main
from nnet.data.idx import write_idx


def fake_mnist(folder: Path, n_train: int = 30, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    write_idx(
        folder / "train-images-idx3-ubyte.gz",
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
    )
    write_idx(folder / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, n_train, dtype=np.uint8))
    write_idx(
        folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    )
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n_test, dtype=np.uint8))


def damaged_copy(ws: Path, name: str, change) -> None:
    """data-<name>/mnist: the good fake MNIST with one file changed by ``change(folder)``."""
    folder = ws / f"data-{name}" / "mnist"
    fake_mnist(folder)
    change(folder)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    fake_mnist(ws / "data" / "mnist")
    net = nnet.Network([784, 8, 10], seed=0)
    net.meta = {"task": "classifier", "dataset": "mnist"}
    nnet.save(net, ws / "model.npz")
    ae = nnet.Network([784, 8, 784], seed=0)
    ae.meta = {"task": "autoencoder", "dataset": "mnist"}
    nnet.save(ae, ws / "ae.npz")
    nnet.save(nnet.Network([700, 10], seed=0), ws / "m700.npz")
    (ws / "notes.txt").write_text("not a model")
    (ws / "truncated.npz").write_bytes((ws / "model.npz").read_bytes()[:300])
    bad = nnet.Network([784, 8, 10], seed=0)
    bad.weights[1][0, 0] = np.nan
    nnet.save(bad, ws / "nan.npz")
    with np.load(ws / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"][()]))
    for name, change in {
        "v99.npz": {"format_version": 99},
        "shapes.npz": {"sizes": [784, 9, 10]},
    }.items():
        arrays["meta"] = np.array(json.dumps({**meta, **change}))
        with open(ws / name, "wb") as f:
            np.savez(f, **arrays)
    (ws / "folder").mkdir()
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(255 - digit).save(ws / "digit.png")
    (ws / "fake.png").write_text("not an image")
    (ws / "cut.png").write_bytes((ws / "digit.png").read_bytes()[:60])
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(ws / "blank.png")
    np.save(ws / "nan.npy", np.full((28, 28), np.nan))
    np.save(ws / "cube.npy", np.zeros((3, 3, 3)))
    np.save(ws / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (ws / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n{"epoch": 2, oops\n')
    damaged_copy(
        ws,
        "magic",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(b"\x00\x00\x09\x03" + b"\x00" * 12)
        ),
    )
    damaged_copy(
        ws,
        "cut",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(gzip.decompress((d / "t10k-images-idx3-ubyte.gz").read_bytes())[:900])
        ),
    )
    damaged_copy(
        ws, "count", lambda d: write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    )
    damaged_copy(
        ws, "label", lambda d: write_idx(d / "t10k-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8))
    )
    damaged_copy(
        ws,
        "gzip",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            (d / "t10k-images-idx3-ubyte.gz").read_bytes()[:40] + b"garbage" * 50
        ),
    )
    damaged_copy(
        ws,
        "shape",
        lambda d: write_idx(d / "t10k-images-idx3-ubyte.gz", np.zeros((20, 27, 27), np.uint8)),
    )
    damaged_copy(
        ws,
        "huge",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(b"\x00\x00\x08\x03" + np.array([2**31, 2**31, 28], ">u4").tobytes())
        ),
    )
    return ws


CASES = [
    # model files
    (["evaluate", "missing.npz"], "does not exist"),
    (["evaluate", "folder"], "is a folder"),
    (["evaluate", "notes.txt"], "not an nnet model file"),
    (["evaluate", "truncated.npz"], "truncated.npz"),
    (["evaluate", "nan.npz"], "NaN or infinite"),
    (["evaluate", "v99.npz"], "format version 99"),
    (["evaluate", "shapes.npz"], "has shape"),
    (["evaluate", "m700.npz"], "takes 700 inputs"),
    (["predict", "ae.npz", "digit.png"], "not a classifier"),
    (["inspect", "notes.txt"], "not an nnet model file"),
    # IDX files
    (["evaluate", "model.npz", "--data", "data-magic", "--no-download"], "found int8"),
    (["evaluate", "model.npz", "--data", "data-cut", "--no-download"], "truncated"),
    (["evaluate", "model.npz", "--data", "data-count", "--no-download"], "holds 19 labels"),
    (["evaluate", "model.npz", "--data", "data-label", "--no-download"], "label 12"),
    (["evaluate", "model.npz", "--data", "data-gzip", "--no-download"], "t10k-images"),
    (["evaluate", "model.npz", "--data", "data-shape", "--no-download"], "28x28 images"),
    (["evaluate", "model.npz", "--data", "data-huge", "--no-download"], "t10k-images"),
    (["evaluate", "model.npz", "--dataset", "fashion-mnist", "--no-download"], "was not found"),
    # images
    (["predict", "model.npz", "fake.png"], "fake.png"),
    (["predict", "model.npz", "cut.png"], "cut.png"),
    (["predict", "model.npz", "blank.png"], "blank.png"),
    (["predict", "model.npz", "nan.npy"], "nan.npy"),
    (["predict", "model.npz", "cube.npy"], "cube.npy"),
    (["predict", "model.npz", "objects.npy"], "objects.npy"),
    (["predict", "model.npz", "missing.png"], "does not exist"),
    (["predict", "model.npz", "digit.png", "folder"], "is a folder"),
    # flags
    (["train", "--batch-size", "0"], "positive integer"),
    (["train", "--lr", "-1"], "positive number"),
    (["train", "--sizes", "784,-3,10"], "not a list of integers"),
    (["train", "--activation", "swish"], "unknown activation"),
    (["train", "--out", "missing-folder/m.npz"], "does not exist; create it first"),
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--dropout", "1.5"], "dropout rates"),
    (["train", "--val", "-5"], "integer >= 0"),
    (["train", "--resume", "missing.npz"], "does not exist"),
    (["train", "--data", "notes.txt"], "is a file"),
    (["train", "--checkpoint", "folder"], "is a folder"),
    (["train", "--patience", "3"], "needs a validation split"),
    (["train", "--optimizer", "adamw", "--nesterov"], "adamw has no momentum"),
    (["plot", "metrics.jsonl"], "line 2"),
    (["inspect", "model.npz", "--out", "notes.txt"], "is a file"),
    (["gradcheck", "--batch", "0"], "positive integer"),
    (["evaluate", "model.npz", "--split", "valid"], "invalid choice"),
    (["bogus"], "invalid choice"),
]


def snapshot(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(ws, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(ws)
    monkeypatch.setenv("NNET_DATA", str(ws / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(ws / "no-cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(ws.parent / "mpl"))
    before = snapshot(ws)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnet"), err
    assert message in err and "Traceback" not in err
    assert snapshot(ws) == before
    assert not (ws / "no-cache").exists()


def test_there_are_at_least_30_distinct_cases():
    assert len({tuple(argv) for argv, _ in CASES}) >= 30
