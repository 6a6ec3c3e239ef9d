"""`nnet train`, `evaluate` and `predict` on the real MNIST, end to end, in new processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnet
from nnet.data.datasets import load


def run(*args: str, data: Path | None = None, cwd: Path | None = None):
    env = dict(os.environ)
    if data is not None:
        env["NNET_DATA"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "nnet", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )


def last_json(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seed_runs(mnist_dir, tmp_path_factory):
    """The notes' experiment, in full (16 epochs), for three seeds."""
    tmp = tmp_path_factory.mktemp("seed")
    runs = {}
    for seed in (0, 1, 2):
        model = tmp / f"seed{seed}.npz"
        metrics = tmp / f"seed{seed}.jsonl"
        out = run(
            "train",
            "--preset",
            "seed",
            "--seed",
            str(seed),
            "--out",
            str(model),
            "--metrics",
            str(metrics),
            "--json",
            data=mnist_dir,
        )
        runs[seed] = (last_json(out), model, metrics, out)
    return runs


@pytest.mark.slow
def test_seed_preset_reproduces_the_notes_experiment(seed_runs):
    """The author reached 91 %, a PyTorch twin 89.8 %; the median over three seeds >= 89 %."""
    accs = sorted(r[0]["test_accuracy"] for r in seed_runs.values())
    assert accs[1] >= 0.89, accs
    assert accs[0] >= 0.88, accs
    summary, model, metrics, out = seed_runs[1]
    assert summary["epochs"] == 16 and summary["model"] == str(model)
    assert summary["seconds"] > 0 and summary["test_loss"] < 0.03
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 17))
    assert rows[-1]["test_accuracy"] == summary["test_accuracy"]
    assert rows[0]["test_accuracy"] < rows[-1]["test_accuracy"]
    assert sum(line.startswith("epoch ") for line in out.stdout.splitlines()) == 16


@pytest.mark.slow
def test_model_file_records_the_run(seed_runs):
    summary, model, _, _ = seed_runs[0]
    net = nnet.load(model)
    assert net.sizes == [784, 16, 16, 10] and net.activations == ["sigmoid"] * 3
    assert net.dtype == np.float32 and net.loss.name == "mse"
    meta = net.meta
    assert meta["task"] == "classifier" and meta["dataset"] == "mnist"
    assert meta["training"]["lr"] == 10.0 and meta["training"]["momentum"] == 0.5
    assert meta["training"]["batch_size"] == 1000 and meta["training"]["init"] == ["author"]
    assert meta["input"]["scaling"] == "pixel / 255"
    assert len(meta["history"]) == 16


@pytest.mark.slow
def test_evaluate_in_a_new_process_gives_the_same_accuracy(seed_runs, mnist_dir):
    summary, model, _, _ = seed_runs[0]
    result = last_json(run("evaluate", str(model), "--json", data=mnist_dir))
    assert result["accuracy"] == summary["test_accuracy"]
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-9)
    train = last_json(run("evaluate", str(model), "--split", "train", "--json", data=mnist_dir))
    assert train["samples"] == 60000 and 0.85 < train["accuracy"] < 0.95


@pytest.mark.slow
def test_same_seed_gives_the_same_weights_bit_for_bit(seed_runs, mnist_dir, tmp_path):
    summary, model, _, _ = seed_runs[2]
    again = tmp_path / "again.npz"
    last_json(
        run(
            "train",
            "--preset",
            "seed",
            "--seed",
            "2",
            "--out",
            str(again),
            "--quiet",
            "--json",
            data=mnist_dir,
        )
    )
    a, b = nnet.load(model), nnet.load(again)
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights, strict=True))


def test_predict_reads_pictures_like_mnist_digits(seed_runs, mnist_dir, tmp_path):
    _, model, _, _ = seed_runs[1]
    data = load("mnist", mnist_dir, download=False)
    paths, labels = [], []
    for i in range(20):
        digit = data.x_test[i].reshape(28, 28)
        img = Image.fromarray(255 - digit).resize((112, 112))  # black on white, 4x larger
        path = tmp_path / f"digit{i}.png"
        img.save(path)
        paths.append(str(path))
        labels.append(int(data.y_test[i]))
    np.save(tmp_path / "raw.npy", data.x_test[0].reshape(28, 28))
    out = run("predict", str(model), *paths, str(tmp_path / "raw.npy"), "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in rows] == [*paths, str(tmp_path / "raw.npy")]
    assert all(len(r["probabilities"]) == 10 for r in rows)
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 for r in rows)
    correct = sum(r["digit"] == y for r, y in zip(rows, labels, strict=False))
    assert correct >= 16, [(r["digit"], y) for r, y in zip(rows, labels, strict=False)]
    assert rows[-1]["digit"] == labels[0]
    text = run("predict", str(model), paths[0])
    assert text.returncode == 0 and text.stdout.startswith(f"{paths[0]}: ")


def test_autoencoder_preset_short_run(mnist_dir, tmp_path):
    model = tmp_path / "ae.npz"
    summary = last_json(
        run(
            "train",
            "--preset",
            "autoencoder",
            "--epochs",
            "2",
            "--train-samples",
            "10000",
            "--out",
            str(model),
            "--json",
            "--plot",
            str(tmp_path / "pictures"),
            data=mnist_dir,
        )
    )
    assert summary["test_accuracy"] is None and summary["test_loss"] < 0.08
    net = nnet.load(model)
    losses = [r["test_loss"] for r in net.meta["history"]]
    assert losses[1] < losses[0]
    with Image.open(tmp_path / "pictures" / "curves.png") as im:  # --plot DIR
        assert im.format == "PNG" and im.size == (1000, 400)
    assert net.sizes == [784, 64, 784] and net.meta["task"] == "autoencoder"
    result = last_json(run("evaluate", str(model), "--json", data=mnist_dir))
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(summary["test_loss"], rel=1e-9)
    np.save(tmp_path / "d.npy", np.zeros((28, 28)))
    refused = run("predict", str(model), str(tmp_path / "d.npy"))
    assert refused.returncode == 2 and "not a classifier" in refused.stderr


@pytest.mark.slow
def test_engines_give_the_same_curve_on_real_data(mnist_dir, tmp_path):
    """A shortened seed run (2000 samples, batch 250, float64) with each engine."""
    curves = {}
    for engine in ("backprop", "frontprop", "matrix"):
        out = run(
            "train",
            "--engine",
            engine,
            "--train-samples",
            "2000",
            "--batch-size",
            "250",
            "--epochs",
            "2",
            "--dtype",
            "float64",
            "--out",
            str(tmp_path / f"{engine}.npz"),
            "--metrics",
            str(tmp_path / f"{engine}.jsonl"),
            "--quiet",
            "--json",
            data=mnist_dir,
        )
        last_json(out)
        rows = [json.loads(x) for x in (tmp_path / f"{engine}.jsonl").read_text().splitlines()]
        curves[engine] = [(r["train_loss"], r["test_loss"], r["test_accuracy"]) for r in rows]
    for engine in ("frontprop", "matrix"):
        np.testing.assert_allclose(curves[engine], curves["backprop"], rtol=1e-9)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "positive integer"),
        (["--epochs", "-1"], "positive integer"),
        (["--lr", "0"], "positive number"),
        (["--lr", "-1"], "positive number"),
        (["--lr", "nan"], "positive number"),
        (["--momentum", "1.5"], "in [0, 1)"),
        (["--sizes", "784,0,10"], "at least one neuron"),
        (["--sizes", "700,10"], "must start with 784"),
        (["--sizes", "784,10,5"], "must end with 10"),
        (["--activation", "swish"], "unknown activation"),
        (["--engine", "magic"], "invalid choice"),
        (["--dataset", "cifar"], "invalid choice"),
        (["--out", "/nonexistent-folder/m.npz"], "does not exist; create it first"),
        (["--metrics", "/nonexistent-folder/m.jsonl"], "does not exist; create it first"),
        (["--optimizer", "adam", "--momentum", "0.9"], "adam has no momentum"),
        (["--val", "60000"], "validation size"),
    ],
)
def test_bad_train_flags_exit_2_and_write_nothing(flags, message, mnist_dir, tmp_path):
    keep = tmp_path / "model.npz"
    keep.write_bytes(b"precious")
    out = run(
        "train", "--epochs", "1", "--train-samples", "100", *flags, data=mnist_dir, cwd=tmp_path
    )
    assert out.returncode == 2, out.stdout
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3  # argparse adds a usage line
    assert keep.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_missing_data_offline_says_what_to_do(tmp_path):
    env_dir = tmp_path / "empty"
    out = run("train", "--no-download", "--data", str(env_dir), data=env_dir, cwd=tmp_path)
    assert out.returncode == 2
    assert "train-images-idx3-ubyte.gz" in out.stderr and "--data DIR" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "missing.npz"], "does not exist"),
        (["evaluate", "notes.txt"], "not an nnet model file"),
        (["predict", "missing.npz", "x.png"], "does not exist"),
        (["predict", "model.npz", "notes.txt"], "notes.txt"),
    ],
)
def test_bad_files_for_evaluate_and_predict(args, message, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    nnet.save(nnet.Network([784, 10], seed=0), tmp_path / "model.npz")
    before = (tmp_path / "model.npz").read_bytes()
    out = run(*args, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "model.npz").read_bytes() == before
