"""Every kind of bad input a user can give, at the command line: one line, exit 2, and no
existing file changed.

Each case runs ``nnet`` in-process in a workspace holding a good model, a good (tiny, fake)
MNIST, images, and damaged copies of each; the whole workspace is compared byte for byte
before and after.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import warnings
import zipfile
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
    special_files(ws)
    damaged_copy(
        ws,
        "huge",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(b"\x00\x00\x08\x03" + np.array([2**31, 2**31, 28], ">u4").tobytes())
        ),
    )
    return ws


def rewrite_meta(ws: Path, name: str, change, extra: str = "") -> None:
    """<name>: the good model file with its metadata changed by ``change(meta)``, and the
    JSON text ``extra`` added as one more field."""
    with np.load(ws / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"][()]))
    change(meta)
    text = json.dumps(meta)
    arrays["meta"] = np.array(text[:-1] + f', "extra": {extra}}}' if extra else text)
    with open(ws / name, "wb") as f:
        np.savez(f, **arrays)


def special_files(ws: Path) -> None:
    """Files an attacker or an accident would give: FIFOs, links to devices, huge
    declarations, a checkpoint and its damaged copies, enormous weights."""
    os.mkfifo(ws / "fifo")
    os.symlink("/dev/zero", ws / "zero.npz")
    os.symlink("/dev/zero", ws / "zero.png")
    os.symlink("/dev/zero", ws / "zero.jsonl")
    os.symlink(ws / "model.npz", ws / "link.npz")
    (ws / "empty-data").mkdir()
    huge = nnet.Network([784, 8, 10], "relu", loss="cross_entropy", seed=0)
    huge.weights = [w * np.float32(1e30) for w in huge.weights]  # finite, but logits overflow
    nnet.save(huge, ws / "enormous.npz")
    for name, change in {
        "sizes-huge.npz": lambda m: m.update(sizes=[784, 100000, 10]),
        "format-true.npz": lambda m: m.update(format_version=True),
        "acts-number.npz": lambda m: m.update(activations=5),
        "hugeint.npz": lambda m: m.update(sizes=[784, 10**400, 10]),
        "task-bad.npz": lambda m: m.update(task={"a": 1}),
    }.items():
        rewrite_meta(ws, name, change)
    rewrite_meta(ws, "nested.npz", lambda m: None, extra="[" * 100000 + "]" * 100000)
    with zipfile.ZipFile(ws / "dupes.npz", "w") as z, zipfile.ZipFile(ws / "model.npz") as m:
        for info in m.infolist():
            z.writestr(info.filename, m.read(info))
        with warnings.catch_warnings():  # the duplicate is the point
            warnings.simplefilter("ignore", UserWarning)
            z.writestr("w0.npy", m.read("w0.npy"))
    # a .npy whose header declares 10^10 float64 (80 GB) in a file of 128 bytes
    header = {"descr": "<f8", "fortran_order": False, "shape": (100000, 100000)}
    with open(ws / "big.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
    # a member that declares 1 GB in a zip of a few kB: the inflating bomb
    with zipfile.ZipFile(ws / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("w0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (2**27,)}
            )
            chunk = bytes(2**20)
            for _ in range(2**10):
                f.write(chunk)
    (ws / "huge.jsonl").write_text('{"epoch": 1, "train_loss": 1e999}\n')
    (ws / "nested.jsonl").write_text("[" * 100000 + "]" * 100000 + "\n")
    # a checkpoint of a tiny run on the fake MNIST, and damaged copies of it
    assert main(["train", "--data", str(ws / "data"), "--train-samples", "30", "--epochs", "2",
                 "--batch-size", "10", "--quiet", "--out", str(ws / "ck-model.npz"),
                 "--checkpoint", str(ws / "ck.npz")]) == 0  # fmt: skip
    with np.load(ws / "ck.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["meta"][()]))
    for name, change in {
        "ck-frac.npz": lambda m: m["settings"].update(batch_size=2.5),
        "ck-negative.npz": lambda m: m["trainer"].update(epoch=-1),
        "ck-rng.npz": lambda m: m["trainer"].update(rng={"bit_generator": "nope"}),
        "ck-step.npz": lambda m: m["optimizer"].update(t="many"),
    }.items():
        changed = json.loads(json.dumps(meta))
        change(changed)
        with open(ws / name, "wb") as f:
            np.savez(f, **{**arrays, "meta": np.array(json.dumps(changed))})


LONG = "x" * 300 + ".npz"

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
    # outputs: a regular file or nothing, in a folder that can be written, each its own
    (["train", "--out", "/dev/full"], "not a regular file"),
    (["train", "--out", "fifo"], "not a regular file"),
    (["train", "--out", "link.npz"], "symbolic link"),
    (["train", "--metrics", "fifo"], "not a regular file"),
    (["train", "--out", "x.npz", "--checkpoint", "x.npz"], "both name"),
    (["train", "--out", "x.npz", "--metrics", "./x.npz"], "both name"),
    (["train", "--resume", "ck.npz", "--out", "ck.npz"], "both name"),
    (["train", "--out", "/proc/nnet-model.npz"], "cannot write in the folder /proc"),
    (["train", "--plot", "/proc/nnet-plots"], "cannot write"),
    (["train", "--out", LONG], "too long"),
    (["train", "--metrics", "folder"], "is a folder"),
    (["inspect", "model.npz", "--out", "/proc/nnet-pictures"], "cannot write"),
    (["plot", "metrics.jsonl", "--out", "fifo"], "not a regular file"),
    # inputs: only regular files are read
    (["evaluate", "fifo"], "not a regular file"),
    (["evaluate", "zero.npz"], "not a regular file"),
    (["predict", "model.npz", "zero.png"], "not a regular file"),
    (["predict", "model.npz", "fifo"], "not a regular file"),
    (["plot", "zero.jsonl"], "not a regular file"),
    (["train", "--resume", "fifo"], "not a regular file"),
    # memory: refused up front, naming the estimate and what is available
    (["train", "--sizes", "784,200000,10"], "GiB of memory"),
    (["train", "--sizes", "784,60000,60000,10"], "GiB of memory"),
    (["train", "--preset", "best", "--trainer", "genetic", "--population", "5000"], "GiB"),
    (["gradcheck", "--batch", "1e12"], "positive integer"),
    (["gradcheck", "--batch", "1000000"], "up to"),
    (["train", "--batch-size", "1e12"], "positive integer"),
    # settings out of range or inconsistent
    (["train", "--seed", "-1"], "integer >= 0"),
    (["train", "--seed", "1" * 30], "integer >= 0"),
    (["train", "--epochs", "9" * 30], "positive integer"),
    (["train", "--lr", "nan"], "positive number"),
    (["train", "--lr", "inf"], "positive number"),
    (["train", "--momentum", "1"], "[0, 1)"),
    (["train", "--weight-decay", "-1"], "number >= 0"),
    (["train", "--warmup", "20"], "warm-up must be shorter"),
    (["train", "--dropout", "0.1,0.2,0.3,0.4"], "--dropout takes one rate"),
    (["train", "--activation", "relu,relu"], "one name or one per layer"),
    (["train", "--init", "he_normal,he_normal"], "one name or one per layer"),
    (["train", "--loss", "cross_entropy", "--activation", "relu,relu,relu"], "identity"),
    (["train", "--sizes", "700,10"], "must start with 784"),
    (["train", "--sizes", "784,16,9"], "must end with 10"),
    (["train", "--preset", "autoencoder", "--sizes", "784,64,10"], "must end with 784"),
    (["train", "--train-samples", "0"], "positive integer"),
    (["train", "--patience", "-1"], "integer >= 0"),
    (["train", "--momentum", "0", "--nesterov"], "Nesterov"),
    (["train", "--dtype", "float16"], "invalid choice"),
    (["train", "--engine", "magic"], "invalid choice"),
    (["train", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "--preset", "fancy"], "invalid choice"),
    (["train", "--trainer", "genetic", "--engine", "matrix"], "does not take --engine"),
    (["train", "--trainer", "genetic", "--lr", "0.1"], "no optimizer"),
    (["train", "--trainer", "genetic", "--checkpoint", "c.npz"], "does not take --checkpoint"),
    (["train", "--sigma", "0.1"], "applies only to --trainer evolution"),
    (["train", "--trainer", "evolution", "--population", "7"], "even population"),
    (["train", "--trainer", "genetic", "--population", "4", "--elite", "4"], "smaller than"),
    (["gradcheck", "--sizes", "784"], "at least two layers"),
    (["gradcheck", "--engines", "magic"], "unknown engine"),
    (["bench", "--configs", "huge"], "unknown configuration"),
    (["bench", "--repeats", "0"], "positive integer"),
    (["serve", "model.npz", "--port", "70000"], "port number"),
    (["predict", "model.npz"], "required"),
    # an explicit --data is used as given, never replaced by $NNET_DATA or the cache
    (["train", "--data", "empty-data", "--no-download"], "was not found"),
    (["evaluate", "model.npz", "--data", "empty-data", "--no-download"], "was not found"),
    # finite but enormous weights: no NaN printed, no invalid JSON
    (["evaluate", "enormous.npz", "--json"], "overflow"),
    (["predict", "enormous.npz", "digit.png", "--json"], "overflow"),
    # model files that declare more than they hold, or what they must not
    (["evaluate", "sizes-huge.npz"], "sizes-huge.npz"),
    (["evaluate", "format-true.npz"], "format-true.npz"),
    (["evaluate", "acts-number.npz"], "acts-number.npz"),
    (["evaluate", "nested.npz"], "nested.npz"),
    (["evaluate", "hugeint.npz"], "hugeint.npz"),
    (["evaluate", "task-bad.npz"], "task-bad.npz"),
    (["evaluate", "dupes.npz"], "dupes.npz"),
    (["evaluate", "bomb.npz"], "bomb.npz"),
    (["predict", "model.npz", "big.npy"], "big.npy"),
    # checkpoints
    (["train", "--resume", "model.npz"], "is a model file, not a checkpoint"),
    (["train", "--resume", "ae.npz", "--out", "m.npz"], "is a model file, not a checkpoint"),
    (["train", "--resume", "ck.npz", "--epochs", "3"], "leave out --epochs"),
    (["train", "--resume", "ck-frac.npz", "--checkpoint", "c.npz"], "ck-frac.npz"),
    (["train", "--resume", "ck-negative.npz", "--checkpoint", "c.npz"], "ck-negative.npz"),
    (["train", "--resume", "ck-rng.npz", "--checkpoint", "c.npz"], "ck-rng.npz"),
    (["train", "--resume", "ck-step.npz", "--checkpoint", "c.npz"], "ck-step.npz"),
    # metrics files
    (["plot", "huge.jsonl"], "huge.jsonl"),
    (["plot", "nested.jsonl"], "nested.jsonl"),
]


def snapshot(ws: Path) -> dict[str, bytes | str]:
    """Every file of the workspace: a regular file's bytes, the target of a link, the kind of
    anything else (a FIFO is never opened)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(ws.rglob("*")):
        mode = p.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[str(p.relative_to(ws))] = "link to " + os.readlink(p)
        elif stat.S_ISREG(mode):
            out[str(p.relative_to(ws))] = p.read_bytes()
        elif not stat.S_ISDIR(mode):
            out[str(p.relative_to(ws))] = f"mode {stat.S_IFMT(mode):o}"
    return out


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
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
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # never replaced, even as root
