"""Plots: metrics files, training curves, confusion matrices, and model inspection pictures.

Every picture is checked to be a real PNG of exactly the promised pixel size; the numbers
behind them are checked on hand-made models whose predictions are known exactly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnet
from nnet.apps.plots import (
    INSPECT_SIZES,
    MAX_WEIGHT_IMAGES,
    _weights_figure,
    confusion_matrix,
    curves_figure,
    inspect_model,
    most_confident_mistakes,
    per_class_accuracy,
    plot_curves,
    read_metrics,
    read_runs,
)
from nnet.core.network import Network
from nnet.errors import NnetError


def assert_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size == size
        im.verify()


def epoch_row(epoch: int, *, val: bool = True, accuracy: bool = True) -> dict:
    loss = 2.0 / epoch
    acc = (lambda a: a if accuracy else None)(1 - 0.5 / epoch)
    row = {
        "epoch": epoch,
        "lr": 0.1,
        "train_loss": loss,
        "train_accuracy": acc,
        "samples": 100,
        "train_seconds": 0.5,
        "seconds": 0.6,
        "test_loss": loss * 1.1,
        "test_accuracy": None if acc is None else acc - 0.01,
    }
    if val:
        row["val_loss"] = loss * 1.05
        row["val_accuracy"] = None if acc is None else acc - 0.02
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- read_metrics


def test_read_metrics_reads_every_epoch_and_skips_blank_lines(tmp_path: Path) -> None:
    rows = [epoch_row(e) for e in (1, 2, 3)]
    path = tmp_path / "run.jsonl"
    path.write_text(
        json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n  \n" + json.dumps(rows[2])
    )
    assert read_metrics(path) == rows


@pytest.mark.parametrize(
    ("lines", "line_no", "words"),
    [
        (['{"epoch": 1}', '{"epoch": 2}', '{"epoch": 3, "train_loss": 0.'], 3, "not valid JSON"),
        (['{"epoch": 1}', "[1, 2]"], 2, "not a JSON object"),
        (['{"epoch": 1}', '"text"'], 2, "not a JSON object"),
        (['{"train_loss": 0.5}'], 1, 'no "epoch"'),
        (['{"epoch": "one"}'], 1, "not a number"),
        (['{"epoch": 1}', "", '{"epoch": 2, "test_loss": "abc"}'], 3, '"test_loss"'),
    ],
)
def test_read_metrics_names_the_damaged_line(
    tmp_path: Path, lines: list[str], line_no: int, words: str
) -> None:
    path = tmp_path / "damaged.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(NnetError) as info:
        read_metrics(path)
    message = str(info.value)
    assert f"{path} line {line_no} " in message
    assert words in message


def test_read_metrics_refuses_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(NnetError, match="does not exist"):
        read_metrics(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n \n")
    with pytest.raises(NnetError, match="empty"):
        read_metrics(tmp_path / "empty.jsonl")
    with pytest.raises(NnetError, match="folder"):
        read_metrics(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b'{"epoch": 1}\n\xff\xfe\n')
    with pytest.raises(NnetError, match="line 2 is not UTF-8"):
        read_metrics(tmp_path / "bin.jsonl")


def test_read_runs_names_runs_by_file_and_reads_model_history(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    rows = [epoch_row(1), epoch_row(2)]
    p1 = write_jsonl(tmp_path / "a" / "run.jsonl", rows)
    p2 = write_jsonl(tmp_path / "b" / "run.jsonl", rows)
    p3 = write_jsonl(tmp_path / "best.jsonl", rows)
    net = Network([4, 2], dtype="float64", seed=0)
    nnet.save(net, tmp_path / "model.npz", {"history": rows})
    runs = read_runs([p1, p2, p3, tmp_path / "model.npz"])
    assert list(runs) == [str(p1), str(p2), "best", "model"]
    assert runs["model"] == rows
    nnet.save(net, tmp_path / "bare.npz")
    with pytest.raises(NnetError, match="no training history"):
        read_runs([tmp_path / "bare.npz"])


# ----------------------------------------------------------------------------- plot_curves


def test_plot_curves_two_runs_with_validation(tmp_path: Path) -> None:
    runs = {
        "seed": [epoch_row(e) for e in range(1, 6)],
        "best": [epoch_row(e, val=False) for e in range(1, 4)],
    }
    out = tmp_path / "curves.png"
    plot_curves(runs, out)
    assert_png(out, (1000, 400))
    fig = curves_figure(runs)
    loss_ax, acc_ax = fig.axes
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["seed", "best"]
    assert [t.get_text() for t in acc_ax.get_legend().get_texts()] == [
        "train",
        "validation",
        "test",
    ]
    # 5 + 3 loss curves (train, val, test / train, test); accuracy in percent
    assert len(loss_ax.get_lines()) == 5
    top = max(line.get_ydata().max() for line in acc_ax.get_lines())
    assert top == pytest.approx(100 * (1 - 0.5 / 5))
    assert loss_ax.get_yscale() == "linear"  # 2.2 / 0.38: less than two decades


def test_plot_curves_autoencoder_has_no_accuracy_panel(tmp_path: Path) -> None:
    runs = {"ae": [epoch_row(e, val=False, accuracy=False) for e in (1, 2, 3)]}
    out = tmp_path / "ae.png"
    plot_curves(runs, out)
    assert_png(out, (1000, 400))
    fig = curves_figure(runs)
    assert len(fig.axes) == 1
    # with one panel both legends stay: the run names and the line styles
    texts = {
        t.get_text()
        for leg in fig.axes[0].findobj(lambda a: hasattr(a, "get_texts"))
        for t in leg.get_texts()
    }
    assert {"ae", "train", "test"} <= texts
    mixed = dict(runs, clf=[epoch_row(e) for e in (1, 2)])
    assert len(curves_figure(mixed).axes) == 2


def test_plot_curves_log_scale_gaps_and_sizes(tmp_path: Path) -> None:
    rows = [
        {"epoch": e, "train_loss": 2.0 / 10 ** (e - 1), "train_accuracy": 0.5} for e in (1, 2, 3)
    ]
    rows[1]["train_loss"] = float("nan")  # a diverged value is a gap, not an error
    assert curves_figure({"r": rows}).axes[0].get_yscale() == "log"
    out = tmp_path / "small.png"
    plot_curves({"r": rows}, out, size=(2.3, 4.35), dpi=100)  # 229.99... and 434.99... inches*dpi
    assert_png(out, (230, 435))
    plot_curves({"r": rows}, out, size=(5.55, 3.3), dpi=72)  # 399.6 x 237.6: rounded
    assert_png(out, (400, 238))
    plot_curves({"r": rows}, out, size=(6.4, 4.8), dpi=50)
    assert_png(out, (320, 240))
    with pytest.raises(NnetError, match="positive"):
        plot_curves({"r": rows}, out, size=(0, 4))
    with pytest.raises(NnetError, match="no runs"):
        plot_curves({}, out)
    with pytest.raises(NnetError, match="run 'r' entry 2 has no \"epoch\""):
        plot_curves({"r": [{"epoch": 1}, {"train_loss": 1.0}]}, out)
    plot_curves({"bare": [{"epoch": 1}, {"epoch": 2}]}, out)  # nothing to draw is no error
    assert_png(out, (1000, 400))
    with pytest.raises(NnetError, match="does not exist"):
        plot_curves({"r": rows}, tmp_path / "no" / "such.png")


def test_plotting_needs_no_display(tmp_path: Path) -> None:
    metrics = write_jsonl(tmp_path / "m.jsonl", [epoch_row(1), epoch_row(2)])
    out = tmp_path / "c.png"
    code = textwrap.dedent(
        f"""
        import sys
        from nnet.apps.plots import plot_curves, read_metrics
        plot_curves({{"m": read_metrics({str(metrics)!r})}}, {str(out)!r})
        assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
        """
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND", "WAYLAND_DISPLAY")
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert_png(out, (1000, 400))


# ----------------------------------------------------------------------------- confusion


def test_confusion_matrix_and_per_class_accuracy_by_hand() -> None:
    y_true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 0, 2, 2, 1, 2]
    cm = confusion_matrix(y_true, y_pred, n_classes=4)
    expected = np.array([[2, 1, 0, 0], [1, 1, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [2 / 3, 1 / 2, 3 / 4])
    assert math.isnan(acc[3])  # no samples of class 3: NaN, not 0
    with pytest.raises(NnetError, match="0..3"):
        confusion_matrix([0, 4], [0, 1], n_classes=4)
    with pytest.raises(NnetError, match="one length"):
        confusion_matrix([0, 1], [0], n_classes=4)
    with pytest.raises(NnetError, match="square"):
        per_class_accuracy(np.zeros((2, 3)))


def test_most_confident_mistakes_orders_by_probability() -> None:
    y = np.array([0, 1, 2, 3, 4, 5])
    pred = np.array([0, 2, 2, 0, 1, 5])
    conf = np.array([0.99, 0.6, 0.9, 0.8, 0.6, 0.7])
    np.testing.assert_array_equal(most_confident_mistakes(y, pred, conf), [3, 1, 4])
    np.testing.assert_array_equal(most_confident_mistakes(y, pred, conf, k=1), [3])


# ----------------------------------------------------------------------------- inspect


BLOCK = 78  # 10 blocks of 78 pixels: class k is "block k is bright"


def block_classifier() -> Network:
    """A linear softmax classifier with logit_k = 10 * mean brightness of block k."""
    net = Network([784, 10], "identity", loss="cross_entropy", dtype="float64", seed=0)
    w = np.zeros((785, 10))
    for k in range(10):
        w[k * BLOCK : (k + 1) * BLOCK, k] = 10.0 / BLOCK
    net.weights = [w]
    return net


def image(bright: int, second: int | None = None, level: int = 0) -> np.ndarray:
    x = np.zeros(784, dtype=np.uint8)
    x[bright * BLOCK : (bright + 1) * BLOCK] = 255
    if second is not None:
        x[second * BLOCK : (second + 1) * BLOCK] = level
    return x


def softmax_top(logits: list[float]) -> float:
    e = np.exp(np.array(logits) - max(logits))
    return float(e.max() / e.sum())


@pytest.fixture
def known_test_set() -> tuple[np.ndarray, np.ndarray]:
    """Two right images of each class 0..8 (none of class 9) and three mistakes."""
    images, labels = [], []
    for c in range(9):
        for _ in range(2):
            images.append(image(c))
            labels.append(c)
    mistakes = [
        (image(0, 3, 200), 3),  # index 18: pred 0, logits 10 vs 7.84
        (image(2), 7),  # index 19: pred 2, logits 10 vs 0 (the surest mistake)
        (image(2, 5, 128), 5),  # index 20: pred 2, logits 10 vs 5.02
    ]
    for x, y in mistakes:
        images.append(x)
        labels.append(y)
    return np.array(images), np.array(labels, dtype=np.uint8)


def test_inspect_classifier_with_known_predictions(tmp_path: Path, known_test_set) -> None:
    x, y = known_test_set
    net = block_classifier()
    files = inspect_model(net, x, y, tmp_path, chunk=4)
    assert set(files) == {
        "confusion.png",
        "confusion.json",
        "wrong.png",
        "weights.png",
        "activations.png",
        "activations.json",
    }
    assert json.loads(files["activations.json"].read_text()) == {"samples": 21, "layers": []}
    for name, path in files.items():
        assert path == tmp_path / name and path.exists()
        if name.endswith(".png"):
            assert_png(path, INSPECT_SIZES[name])
    info = json.loads(files["confusion.json"].read_text())
    expected = 2 * np.diag([1] * 9 + [0])
    expected[3, 0] = expected[7, 2] = expected[5, 2] = 1
    assert info["counts"] == expected.tolist()
    third = 2 / 3
    assert info["per_class_accuracy"] == pytest.approx(
        [1, 1, 1, third, 1, third, 1, third, 1, None]
    )
    assert info["per_class_accuracy"][9] is None
    assert info["accuracy"] == 18 / 21
    assert info["samples"] == 21
    assert info["classes"] == [str(k) for k in range(10)]
    mistakes = info["most_confident_mistakes"]
    assert [(m["index"], m["true"], m["pred"]) for m in mistakes] == [
        (19, 7, 2),
        (20, 5, 2),
        (18, 3, 0),
    ]
    tops = [[10.0] + [0.0] * 9, [10.0, 10 * 128 / 255] + [0.0] * 8, [10.0, 10 * 200 / 255]]
    tops[2] += [0.0] * 8
    assert [m["probability"] for m in mistakes] == pytest.approx([softmax_top(t) for t in tops])
    # the chunk size changes nothing
    other = tmp_path / "whole"
    other.mkdir()
    inspect_model(net, x.reshape(-1, 28, 28), y, other)
    assert json.loads((other / "confusion.json").read_text()) == info


def test_inspect_uses_class_names_and_handles_no_mistakes(tmp_path: Path) -> None:
    net = block_classifier()
    net.meta = {"classes": [f"c{k}" for k in range(10)]}
    x = np.array([image(k) for k in range(10)])
    files = inspect_model(net, x, np.arange(10), tmp_path)
    info = json.loads(files["confusion.json"].read_text())
    assert info["classes"] == [f"c{k}" for k in range(10)]
    assert info["accuracy"] == 1.0 and info["most_confident_mistakes"] == []
    assert_png(files["wrong.png"], INSPECT_SIZES["wrong.png"])
    files = inspect_model(net, x, np.arange(10), tmp_path, classes=list("abcdefghij"))
    assert json.loads(files["confusion.json"].read_text())["classes"] == list("abcdefghij")
    with pytest.raises(NnetError, match="all 10 outputs"):
        inspect_model(net, x, np.arange(10), tmp_path, classes=["a"])


def test_inspect_hidden_layers(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 784), dtype=np.uint8)
    y = rng.integers(0, 10, 30)
    net = Network([784, 120, 10], "sigmoid", loss="cross_entropy", dtype="float64", seed=0)
    files = inspect_model(net, x, y, tmp_path, chunk=7)
    assert_png(files["weights.png"], INSPECT_SIZES["weights.png"])
    assert_png(files["activations.png"], INSPECT_SIZES["activations.png"])
    title = _weights_figure(net).axes[0].get_title()
    assert f"first {MAX_WEIGHT_IMAGES} of 120 hidden neurons" in title
    info = json.loads(files["activations.json"].read_text())
    (layer,) = info["layers"]
    assert layer["activation"] == "sigmoid" and layer["neurons"] == 120
    assert layer["bin_edges"][0] == 0.0 and layer["bin_edges"][-1] == 1.0
    assert sum(layer["counts"]) == 30 * 120
    # zero weights into layer 1: every sigmoid activation is exactly 0.5 (bin 25 of 50)
    net.weights[0][:] = 0.0
    info = json.loads(inspect_model(net, x, y, tmp_path)["activations.json"].read_text())
    (layer,) = info["layers"]
    assert layer["counts"][25] == 30 * 120 and layer["saturated_fraction"] == 0.0
    # relu (range measured in a first pass; here all dead: a zero-width range) and tanh
    deep = Network([784, 8, 6, 10], ["relu", "tanh", "identity"], loss="cross_entropy", seed=1)
    deep.weights[0][:] = -1.0
    deep.weights[1][:] = 0.0
    deep.weights[1][-1, :3] = 5.0  # bias only: tanh(5) > 0.96 for 3 of the 6 neurons
    files = inspect_model(deep, x, y, tmp_path, chunk=8)
    assert_png(files["activations.png"], INSPECT_SIZES["activations.png"])
    relu, tanh = json.loads(files["activations.json"].read_text())["layers"]
    assert relu["zero_fraction"] == 1.0 and relu["bin_edges"][0] == -0.5
    assert sum(relu["counts"]) == 30 * 8
    assert tanh["saturated_fraction"] == 0.5 and tanh["bin_edges"][0] == -1.0
    assert tanh["counts"][-1] == 30 * 3 and tanh["counts"][25] == 30 * 3


def test_inspect_autoencoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (15, 784), dtype=np.uint8)
    net = Network([784, 16, 784], "sigmoid", dtype="float64", seed=0)
    net.meta = {"task": "autoencoder"}
    files = inspect_model(net, x, None, tmp_path, chunk=5)
    assert set(files) == {
        "reconstructions.png",
        "reconstructions.json",
        "weights.png",
        "activations.png",
        "activations.json",
    }
    for name, path in files.items():
        if name.endswith(".png"):
            assert_png(path, INSPECT_SIZES[name])
    assert not (tmp_path / "confusion.json").exists()
    # zero weights into the output: every reconstructed pixel is sigmoid(0) = 0.5
    net.weights[1][:] = 0.0
    files = inspect_model(net, x, None, tmp_path, chunk=4)
    info = json.loads(files["reconstructions.json"].read_text())
    assert info["samples"] == 15
    assert info["mse_per_pixel"] == pytest.approx(np.mean((x / 255 - 0.5) ** 2), rel=1e-12)
    # ... and the lower row of the picture shows them: 12 uniformly mid-gray squares
    with Image.open(files["reconstructions.png"]) as im:
        pixels = np.asarray(im.convert("L"))
    bottom = pixels[pixels.shape[0] // 2 + 20 :]
    assert np.count_nonzero(np.abs(bottom.astype(int) - 128) <= 1) > 12 * 60 * 60


def test_inspect_refuses_bad_input(tmp_path: Path, known_test_set) -> None:
    x, y = known_test_set
    net = block_classifier()
    with pytest.raises(NnetError, match="does not exist"):
        inspect_model(net, x, y, tmp_path / "missing")
    with pytest.raises(NnetError, match="uint8"):
        inspect_model(net, x.astype(np.float32), y, tmp_path)
    with pytest.raises(NnetError, match="one label per test image"):
        inspect_model(net, x, y[:-1], tmp_path)
    with pytest.raises(NnetError, match="0..9"):
        inspect_model(net, x, y + 10, tmp_path)
    with pytest.raises(NnetError, match="labels"):
        inspect_model(net, x, None, tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing written before the checks pass
