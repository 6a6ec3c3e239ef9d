"""Your own data on the command line and in Python: CSV tables, .npz arrays, image folders;
the feature scaling and class names stored in the model and applied by evaluate, predict and
export; the Python training API that the command line uses."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnet
from nnet.apps.cli import main
from nnet.data.tables import Standardizer
from nnet.experiment import fit
from nnet.training.presets import settings_for

KINDS = ["barolo", "grignolino", "barbera"]


def blobs(n: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4-D, far from the origin and of very different scales (the
    scaling matters), labels 0..2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], dtype=float)
    x = (centers[y] + rng.normal(0, 0.4, (n, 4))) * [1, 10, 100, 1000] + 500
    return x, y


def write_csv(
    path: Path, x: np.ndarray, target: list | None, name: str = "kind", columns: str = "abcd"
) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(columns) + ([name] if target is not None else []))
        for i, row in enumerate(x.tolist()):
            w.writerow(row + ([target[i]] if target is not None else []))


def run(*argv: str) -> int:
    return main(list(argv))


TRAIN = ["--sizes", "4,16,3", "--activation", "relu", "--loss", "cross_entropy",
         "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--epochs", "15",
         "--quiet"]  # fmt: skip


@pytest.fixture
def table(tmp_path: Path) -> Path:
    x, y = blobs()
    write_csv(tmp_path / "wine.csv", x, [KINDS[k] for k in y])
    return tmp_path / "wine.csv"


def test_a_csv_classifier_keeps_its_classes_and_scaling(table, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run("train", "--data-file", str(table), "--target", "kind", *TRAIN,
               "--out", str(model), "--json") == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    net = nnet.load(model)
    assert net.meta["classes"] == sorted(KINDS) and net.meta["task"] == "classifier"
    assert net.meta["input"] == {"kind": "table", "features": list("abcd"), "target": "kind"}
    x, y = blobs()
    scaling = Standardizer.from_meta(net.meta["scaling"])
    np.testing.assert_allclose(scaling.mean, x.mean(axis=0))
    # evaluate applies the stored scaling and maps the labels by the model's class names
    assert run("evaluate", str(model), "--data-file", str(table), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    O = net.forward(scaling.transform(x).astype(net.dtype))
    expected = np.mean(np.array(sorted(KINDS))[O.argmax(axis=1)] == np.array(KINDS)[y])
    assert result["accuracy"] == pytest.approx(expected) and result["accuracy"] > 0.9
    assert summary["train_accuracy"] > 0.9
    # predict: one CSV line per row, the class names, probabilities summing to 1
    rows = tmp_path / "rows.csv"
    write_csv(rows, x[:5], None)
    assert run("predict", str(model), "--data-file", str(rows)) == 0
    lines = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert lines[0] == ["prediction", *(f"p_{k}" for k in sorted(KINDS))]
    assert [r[0] for r in lines[1:]] == list(np.array(sorted(KINDS))[O[:5].argmax(axis=1)])
    assert all(abs(sum(map(float, r[1:])) - 1) < 1e-5 for r in lines[1:])
    assert run("predict", str(model), "--data-file", str(rows), "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["row"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["prediction"] for r in records] == [r[0] for r in lines[1:]]


def test_a_regressor_predicts_values_with_a_linear_output(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)) * [1, 10, 100, 1000]
    values = x @ [1.0, 0.1, 0.01, 0.001] + 0.5
    write_csv(tmp_path / "r.csv", x, [float(v) for v in values], name="value")
    model = tmp_path / "r.npz"
    flags = ["--activation", "tanh", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "20"]
    assert run("train", "--data-file", str(tmp_path / "r.csv"), "--target", "value", *flags,
               "--epochs", "40", "--quiet", "--out", str(model)) == 0  # fmt: skip
    net = nnet.load(model)
    assert net.meta["task"] == "regressor" and net.activations[-1] == "identity"
    assert run("evaluate", str(model), "--data-file", str(tmp_path / "r.csv"), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    scaled = Standardizer.from_meta(net.meta["scaling"]).transform(x)
    mse = np.mean((net.forward(scaled.astype(net.dtype))[:, 0] - values) ** 2)
    assert result["accuracy"] is None
    assert result["loss"] == pytest.approx(mse, rel=1e-4) and result["loss"] < 0.1 * values.var()


def test_arrays_and_image_folders(tmp_path, capsys):
    x, y = blobs()
    np.savez(tmp_path / "xy.npz", X=x, y=y)
    model = tmp_path / "a.npz"
    assert run("train", "--data-file", str(tmp_path / "xy.npz"), *TRAIN, "--out", str(model)) == 0
    assert run("evaluate", str(model), "--data-file", str(tmp_path / "xy.npz"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.9
    rng = np.random.default_rng(2)
    for name, value in (("dark", 40), ("light", 215)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(value + rng.normal(0, 20, (9, 7)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / name / f"{i}.png")
    model = tmp_path / "i.npz"
    assert run("train", "--data-file", str(tmp_path / "imgs"), "--image-size", "5",
               "--sizes", "25,2", "--epochs", "30", "--lr", "2", "--batch-size", "4",
               "--quiet", "--out", str(model)) == 0  # fmt: skip
    net = nnet.load(model)
    assert net.meta["input"] == {"kind": "images", "size": [5, 5], "color": "gray"}
    assert "scaling" not in net.meta  # pixels / 255 already
    capsys.readouterr()
    assert run("predict", str(model), str(tmp_path / "imgs" / "light" / "3.png"), "--json") == 0
    assert json.loads(capsys.readouterr().out)["label"] == "light"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data-file", "wine.csv", "--target", "colour"], "colour"),
        (["train", "--data-file", "wine.csv", "--target", "kind", "--dataset", "mnist"],
         "leave out --data and --dataset"),
        (["train", "--data-file", "wine.csv", "--target", "kind", "--sizes", "4,8,5"],
         "must end with 3"),
        (["train", "--data-file", "ragged.csv", "--target", "kind"], "ragged.csv"),
        (["train", "--data-file", "missing.csv"], "does not exist"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(table, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragged.csv").write_text("a,b,c,d,kind\n1,2,3,4,x\n1,2,3,y\n")
    try:
        code = run(*argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_model_of_your_data_refuses_other_data(table, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run("train", "--data-file", str(table), "--target", "kind", *TRAIN,
               "--out", str(model), "--checkpoint", str(tmp_path / "c.npz")) == 0  # fmt: skip
    assert run("evaluate", str(model), "--no-download") == 2
    assert "custom" in capsys.readouterr().err
    x, _ = blobs()
    write_csv(tmp_path / "other.csv", x[:, ::-1], None, columns="dcba")
    assert run("predict", str(model), "--data-file", str(tmp_path / "other.csv")) == 2
    assert "trained on ['a', 'b', 'c', 'd']" in capsys.readouterr().err
    resume = ["train", "--resume", str(tmp_path / "c.npz"), "--out", str(tmp_path / "r.npz")]
    assert run(*resume) == 2
    assert "give its --data-file again" in capsys.readouterr().err
    assert run(*resume, "--data-file", str(table), "--target", "kind", "--quiet") == 0


def test_the_python_api_trains_on_arrays_like_the_command_line(tmp_path):
    x, y = blobs()
    settings = settings_for("seed", {"sizes": (4, 16, 3), "dataset": "custom", "val": 30,
                                     "patience": 3, "epochs": 30, "lr": 2.0})  # fmt: skip
    scaled = Standardizer.fit(x).transform(x)
    rows: list[dict] = []
    exp = fit(scaled, y, settings, n_classes=3, on_epoch=rows.append,
              metrics=tmp_path / "m.jsonl")  # fmt: skip
    assert rows == exp.trainer.history and len(rows) <= 30
    assert [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()] == rows
    assert rows[-1]["val_accuracy"] > 0.9
    other = fit(scaled, y, settings.replace(engine="frontprop"), n_classes=3)
    for a, b in zip(exp.net.weights, other.net.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_export_folds_the_scaling_of_a_table_model(table, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (nnet[export])")
    pytest.importorskip("onnx", reason="onnx is not installed (nnet[export])")
    model = tmp_path / "m.npz"
    assert run("train", "--data-file", str(table), "--target", "kind", *TRAIN,
               "--out", str(model)) == 0  # fmt: skip
    assert run("export", str(model), str(tmp_path / "m.onnx")) == 0
    net = nnet.load(model)
    x, _ = blobs(20, seed=5)
    (outputs,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(
        ["outputs"], {"inputs": x.astype(np.float32)}
    )
    scaled = Standardizer.from_meta(net.meta["scaling"]).transform(x)
    np.testing.assert_allclose(outputs, net.forward(scaled.astype(net.dtype)), rtol=1e-4, atol=1e-4)
