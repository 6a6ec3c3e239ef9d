"""--augment: the distortions (nnet.data.augment), their place in the batch loop, their
generator in checkpoints, the picture, and the errors. Fake or tiny data only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nnet
from nnet.apps.cli import main
from nnet.data.augment import (
    Augmenter,
    Strengths,
    affine_matrices,
    gaussian_matrix,
    smooth,
    warp,
)
from nnet.data.idx import write_idx
from nnet.errors import NnetError
from nnet.experiment import build, resume, run, save_checkpoint
from nnet.files.checkpoint import read_checkpoint
from nnet.training.loop import StopFlag
from nnet.training.presets import settings_for

STRONG = Strengths(translate=2, rotate=15, zoom=0.15, shear=10, elastic_alpha=8, elastic_sigma=3)


def bordered(rng: np.random.Generator, B: int, H: int, W: int, *channels: int) -> np.ndarray:
    """Random images with an empty (zero) border of one pixel."""
    x = np.zeros((B, H, W, *channels), np.float32)
    x[:, 1:-1, 1:-1] = rng.random((B, H - 2, W - 2, *channels), dtype=np.float32)
    return x


def eye(B: int) -> np.ndarray:
    return np.repeat(np.eye(2)[None], B, axis=0)


# ----------------------------------------------------------------------------- transforms
def test_identity_parameters_give_the_images_back():
    rng = np.random.default_rng(0)
    x = rng.random((5, 7, 9), dtype=np.float32)  # not square, no empty border needed
    out = warp(x, eye(5), np.zeros((5, 2)))
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, x, atol=1e-6)
    x64 = rng.random((3, 6, 6, 3))
    out64 = warp(x64, eye(3), np.zeros((3, 2)), np.zeros((3, 2, 6, 6)))
    assert out64.shape == x64.shape and out64.dtype == np.float64
    np.testing.assert_allclose(out64, x64, atol=1e-12)


def test_all_strengths_zero_and_alpha_zero_are_the_identity():
    rng = np.random.default_rng(1)
    rows = rng.random((6, 10 * 10), dtype=np.float32)
    before = rows.copy()
    Augmenter(Strengths(), (10, 10), np.random.default_rng(0))(rows)
    np.testing.assert_allclose(rows, before, atol=1e-6)
    assert rows.dtype == np.float32 and rows.shape == (6, 100)
    # elastic distortion with alpha 0 (and a width) changes nothing either
    Augmenter(Strengths(elastic_alpha=0.0, elastic_sigma=2.0), (10, 10), rng)(rows)
    np.testing.assert_allclose(rows, before, atol=1e-6)
    Augmenter(Strengths(elastic_alpha=3.0), (10, 10), rng)(rows)
    assert np.abs(rows - before).max() > 0.05  # ... and with alpha > 0 it does


@pytest.mark.parametrize(("dx", "dy"), [(1, 0), (-1, 0), (0, 1), (0, -1), (1, -1)])
def test_translation_by_one_pixel_is_a_roll(dx, dy):
    x = bordered(np.random.default_rng(2), 4, 8, 9)
    out = warp(x, eye(4), np.tile([dx, dy], (4, 1)))
    np.testing.assert_allclose(out, np.roll(x, (dy, dx), axis=(1, 2)), atol=1e-6)


def test_rotation_by_90_degrees_is_rot90():
    rng = np.random.default_rng(3)
    for side in (6, 7):  # the centre on a pixel corner and on a pixel
        x = rng.random((3, side, side, 2), dtype=np.float32)
        m = affine_matrices(np.full(3, 90.0), np.ones(3), np.ones(3), np.zeros(3))
        out = warp(x, m, np.zeros((3, 2)))
        np.testing.assert_allclose(out, np.rot90(x, axes=(1, 2)), atol=1e-5)  # anticlockwise


def test_zoom_and_shear_move_pixels_where_the_matrices_say():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 6] = 1.0  # two pixels right of the centre (4, 4)
    doubled = warp(x, affine_matrices([0.0], [2.0], [1.0], [0.0]), np.zeros((1, 2)))
    assert doubled[0, 4, 8] == pytest.approx(1.0)  # 2 -> 4 pixels right of the centre
    y = np.zeros((1, 9, 9), np.float32)
    y[0, 6, 4] = 1.0  # two pixels below the centre
    sheared = warp(y, affine_matrices([0.0], [1.0], [1.0], [45.0]), np.zeros((1, 2)))
    assert sheared[0, 6, 6] == pytest.approx(1.0)  # x' = x + tan(45) y


def test_outside_the_image_reads_zero():
    x = np.ones((2, 5, 5), np.float32)
    out = warp(x, eye(2), np.array([[100.0, 0.0], [0.0, -3.0]]))
    assert out[0].max() == 0.0
    assert out[1, :2].max() == 1.0 and out[1, 2:].max() == 0.0


def test_gaussian_smoothing_matches_its_definition():
    k = gaussian_matrix(12, 2.0, np.float64)
    g = np.exp(-0.5 * (np.arange(-8, 9) / 2.0) ** 2)  # truncated at 4 sigma
    np.testing.assert_allclose(k[6], (g / g.sum())[2:14])  # offsets -6 .. 5 from pixel 6
    f = np.random.default_rng(4).random((3, 2, 12, 10))
    kh, kw = gaussian_matrix(12, 2.0, np.float64), gaussian_matrix(10, 2.0, np.float64)
    expected = np.stack([[kh @ f[b, a] @ kw.T for a in range(2)] for b in range(3)])
    np.testing.assert_allclose(smooth(f, 2.0), expected, rtol=1e-12)
    ndimage = pytest.importorskip("scipy.ndimage")  # the usual implementation agrees
    scipy = ndimage.gaussian_filter(f, (0, 0, 2.0, 2.0), mode="constant", truncate=4.0)
    np.testing.assert_allclose(smooth(f, 2.0), scipy, rtol=1e-10, atol=1e-12)


def test_the_elastic_field_is_smoothed_uniform_noise_times_alpha():
    a = Augmenter(
        Strengths(elastic_alpha=3.0, elastic_sigma=2.0), (24, 24), np.random.default_rng(0)
    )
    _, _, disp = a.draw(2000)
    centre = disp[:, :, 12, 12].astype(np.float64)  # (B, 2): far from the borders
    k = gaussian_matrix(24, 2.0, np.float64)[12]
    expected = 3.0 * np.sqrt(1 / 3) * (k**2).sum()  # std of alpha sum_ij k_i k_j u_ij
    assert abs(centre.mean()) < 0.05 * expected
    assert centre.std() == pytest.approx(expected, rel=0.05)
    # smooth: neighbours move together, pixels far apart independently
    near = np.corrcoef(disp[:, 0, 12, 12], disp[:, 0, 12, 13])[0, 1]
    far = np.corrcoef(disp[:, 0, 12, 2], disp[:, 0, 12, 22])[0, 1]
    assert near > 0.9 and abs(far) < 0.1


def test_the_batch_is_the_images_one_by_one():
    rng = np.random.default_rng(5)
    x = rng.random((6, 11, 11, 3), dtype=np.float32)
    m = affine_matrices(
        rng.uniform(-30, 30, 6), rng.uniform(0.8, 1.2, 6), rng.uniform(0.8, 1.2, 6),
        rng.uniform(-20, 20, 6),
    )  # fmt: skip
    shifts = rng.uniform(-2, 2, (6, 2))
    disp = rng.uniform(-1.5, 1.5, (6, 2, 11, 11)).astype(np.float32)
    batch = warp(x, m, shifts, disp)
    for b in range(6):
        one = warp(x[b : b + 1], m[b : b + 1], shifts[b : b + 1], disp[b : b + 1])
        np.testing.assert_allclose(batch[b], one[0], atol=1e-6)
        for c in range(3):  # and the channels, one by one
            gray = warp(x[b : b + 1, ..., c], m[b : b + 1], shifts[b : b + 1], disp[b : b + 1])
            np.testing.assert_allclose(batch[b, ..., c], gray[0], atol=1e-6)


def test_the_augmenter_is_warp_with_the_drawn_parameters():
    rng = np.random.default_rng(6)
    rows = rng.random((5, 12 * 12), dtype=np.float32)
    expected = rows.reshape(5, 12, 12).copy()
    a = Augmenter(STRONG, (12, 12), np.random.default_rng(7))
    b = Augmenter(STRONG, (12, 12), np.random.default_rng(7))
    matrices, shifts, disp = b.draw(5)
    expected = warp(expected, matrices, shifts, np.ascontiguousarray(disp))
    a(rows)
    np.testing.assert_allclose(rows.reshape(5, 12, 12), expected, atol=1e-5)
    assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_same_seed_same_distortions_other_seed_others():
    x = np.random.default_rng(8).random((4, 28 * 28), dtype=np.float32)

    def distorted(seed: int, rows: np.ndarray) -> np.ndarray:
        a = Augmenter(STRONG, (28, 28), np.random.default_rng(seed))
        out = rows.copy()
        a(out[:3])  # two batches of another size: the buffers are reused
        a(out)
        return out

    assert np.array_equal(distorted(1, x), distorted(1, x))
    assert np.abs(distorted(1, x) - distorted(2, x)).max() > 0.1


def test_in_place_on_a_strided_view_of_rows_with_the_bias_column():
    rng = np.random.default_rng(9)
    a0 = np.ones((4, 65), np.float32)
    a0[:, :-1] = rng.random((4, 64), dtype=np.float32)
    expected = a0[:, :-1].copy()
    Augmenter(STRONG, (8, 8), np.random.default_rng(3))(expected)
    Augmenter(STRONG, (8, 8), np.random.default_rng(3))(a0[:, :-1])
    assert np.array_equal(a0[:, :-1], expected)
    assert np.all(a0[:, -1] == 1.0)  # the bias column untouched


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"rotate": -1.0}, "rotate must be a number from 0 to 180"),
        ({"zoom": 1.0}, "zoom must be"),
        ({"shear": 90}, "shear must be"),
        ({"elastic_sigma": 0.0}, "elastic_sigma must be"),
        ({"translate": float("nan")}, "translate must be"),
    ],
)
def test_bad_strengths_are_one_sentence(changes, words):
    with pytest.raises(NnetError, match=words):
        Strengths(**changes)


def test_wrong_row_width_is_refused():
    with pytest.raises(NnetError, match="takes images of"):
        Augmenter(STRONG, (8, 8), np.random.default_rng(0))(np.zeros((2, 60), np.float32))


# ----------------------------------------------------------------------------- in training
def tiny_images(n: int = 240, side: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of bars (horizontal, vertical, diagonal) with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = np.zeros((n, side, side), np.float32)
    for i, k in enumerate(y):
        j = rng.integers(2, side - 2)
        if k == 0:
            x[i, j, 1:-1] = 1
        elif k == 1:
            x[i, 1:-1, j] = 1
        else:
            x[i, np.arange(1, side - 1), np.arange(1, side - 1)] = 1
    x += 0.1 * rng.random(x.shape, dtype=np.float32)
    return x.reshape(n, -1), y


def tiny_settings(**changes):
    values = {
        "sizes": (64, 16, 3), "activation": ("relu",), "loss": "cross_entropy",
        "optimizer": "adam", "lr": 0.01, "batch_size": 32, "epochs": 3, "val": 40,
        "dropout": (0.1, 0.2), "augment": True, "elastic_alpha": 2.0, "elastic_sigma": 2.0,
        "seed": 3, "dataset": "custom", **changes,
    }  # fmt: skip
    return settings_for("seed", values)


def arrays(x, y):
    return {"x": x, "y": y, "n_classes": 3, "test": (x[:50], y[:50]), "image_shape": (8, 8)}


def test_only_training_batches_are_distorted_never_the_stored_data():
    x, y = tiny_images()
    exp = build(tiny_settings(epochs=2), arrays=arrays(x, y))
    stored = {name: s.x.copy() for name, s in {"train": exp.train, **exp.evals}.items()}
    calls: list[int] = []
    augmenter = exp.trainer.augment
    assert augmenter is not None

    def spy(rows: np.ndarray) -> None:
        calls.append(len(rows))
        augmenter(rows)

    exp.trainer.augment = spy  # type: ignore[assignment]
    run(exp)
    n_train = len(exp.train)
    assert sum(calls) == 2 * n_train and max(calls) == 32  # every training sample, per epoch
    for name, s in {"train": exp.train, **exp.evals}.items():
        assert np.array_equal(s.x, stored[name]), name  # nothing stored was changed


def test_augment_changes_training_and_its_seed_is_its_own():
    x, y = tiny_images()
    plain = build(tiny_settings().replace(augment=False), arrays=arrays(x, y))
    run(plain)
    distorted = build(tiny_settings(), arrays=arrays(x, y))
    run(distorted)
    again = build(tiny_settings(), arrays=arrays(x, y))
    run(again)
    assert all(
        np.array_equal(a, b) for a, b in zip(distorted.net.weights, again.net.weights, strict=True)
    )
    assert not np.array_equal(plain.net.weights[0], distorted.net.weights[0])
    # the validation split and the initial weights do not depend on --augment
    fresh = build(tiny_settings().replace(augment=False), arrays=arrays(x, y))
    fresh_aug = build(tiny_settings(), arrays=arrays(x, y))
    assert np.array_equal(fresh.evals["val"].x, fresh_aug.evals["val"].x)
    assert all(
        np.array_equal(a, b) for a, b in zip(fresh.net.weights, fresh_aug.net.weights, strict=True)
    )


def test_stopped_mid_epoch_and_resumed_is_bit_identical(tmp_path):
    x, y = tiny_images()
    settings = tiny_settings()
    straight = build(settings, arrays=arrays(x, y))
    run(straight)

    exp = build(settings, arrays=arrays(x, y))
    stop = StopFlag()
    seen = [0]

    def on_batch(n: int, loss: float) -> None:
        seen[0] += 1
        if seen[0] == 9:  # epoch 2, batch 3 (7 batches per epoch)
            stop.signal = "SIGINT"

    ck = tmp_path / "run.ckpt.npz"
    run(exp, stop=stop, checkpoint=ck, on_batch=on_batch)
    assert exp.trainer.progress is not None and exp.trainer.progress["batch"] == 2
    saved = read_checkpoint(ck)
    assert "augment_rng" in saved.state
    resumed = resume(saved, arrays=arrays(x, y))
    run(resumed)
    for a, b in zip(resumed.net.weights, straight.net.weights, strict=True):
        assert np.array_equal(a, b)
    strip = ("seconds", "train_seconds", "engine_seconds")
    rows = [[{k: v for k, v in r.items() if k not in strip} for r in e.trainer.history]
            for e in (resumed, straight)]  # fmt: skip
    assert rows[0] == rows[1]


def test_a_checkpoint_without_the_augment_generator_is_refused(tmp_path):
    from nnet.files.model_file import read_npz

    x, y = tiny_images()
    exp = build(tiny_settings(epochs=1), arrays=arrays(x, y))
    run(exp)
    ck = tmp_path / "c.npz"
    save_checkpoint(exp, ck)
    data, meta = read_npz(ck)
    del meta["trainer"]["augment_rng"]
    np.savez(tmp_path / "bad.npz", **data, meta=np.array(json.dumps(meta)))
    with pytest.raises(NnetError, match="augment_rng: missing"):
        read_checkpoint(tmp_path / "bad.npz")


def test_augment_needs_images_and_a_classifier():
    x, y = tiny_images()
    with pytest.raises(NnetError, match="not on a table"):
        build(tiny_settings(), arrays={**arrays(x, y), "image_shape": None})
    with pytest.raises(NnetError, match="have 49 values, but the network takes 64"):
        build(tiny_settings(), arrays={**arrays(x, y), "image_shape": (7, 7)})
    with pytest.raises(NnetError, match="not of a autoencoder"):
        settings_for("autoencoder", {"augment": True})
    with pytest.raises(NnetError, match="--rotate is a strength of --augment: add --augment"):
        settings_for("best", {"rotate": 5.0})


# ----------------------------------------------------------------------------- command line
def fake_mnist(folder: Path, n: int = 30) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for kind, count in (("train", n), ("t10k", 20)):
        images = np.zeros((count, 28, 28), np.uint8)
        images[:, 6:22, 10:18] = rng.integers(0, 256, (count, 16, 8), dtype=np.uint8)
        write_idx(folder / f"{kind}-images-idx3-ubyte.gz", images)
        labels = np.arange(count, dtype=np.uint8) % 10
        write_idx(folder / f"{kind}-labels-idx1-ubyte.gz", labels)


def test_the_picture_command_writes_a_png(tmp_path, capsys):
    fake_mnist(tmp_path / "data" / "mnist")
    out = tmp_path / "grid.png"
    code = main(["augment", "--data", str(tmp_path / "data"), "--no-download", "--count", "3",
                 "--versions", "4", "--elastic-alpha", "20", "--out", str(out)])  # fmt: skip
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG"
        # 3 rows of 28 pixels and 5 columns (the image and 4 versions), 2-pixel gaps, x4,
        # and two lines of title
        assert im.size == (4 * (5 * 30 - 2), 4 * (3 * 30 - 2) + 44)


def test_augment_trains_on_fashion_mnist(tmp_path, capsys):
    fake_mnist(tmp_path / "data" / "fashion-mnist")  # the same files, another folder
    out = tmp_path / "m.npz"
    code = main(["train", "--dataset", "fashion-mnist", "--data", str(tmp_path / "data"),
                 "--no-download", "--preset", "distorted", "--sizes", "784,16,10", "--dropout",
                 "0.1", "--epochs", "2", "--batch-size", "8", "--out", str(out), "--quiet",
                 "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["preset"] == "distorted" and summary["epochs"] == 2
    assert nnet.load(out).meta["training"]["augment"] is True


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--augment", "--rotate", "-5"], "argument --rotate: expected a number in [0"),
        (["train", "--augment", "--zoom", "1"], "argument --zoom: expected a number in [0, 1)"),
        (["train", "--augment", "--elastic-sigma", "0"], "expected a positive number"),
        (["train", "--shear", "5"], "--shear is a strength of --augment: add --augment."),
        (["train", "--preset", "autoencoder", "--augment"], "not of a autoencoder"),
        (["augment", "--translate", "x"], "argument --translate: expected a number"),
    ],
)
def test_bad_values_are_one_line_errors(args, words, tmp_path, capsys):
    argv = [*args, "--out", str(tmp_path / "m.npz"), "--no-download", "--data", str(tmp_path)]
    try:
        code = main(argv)  # an error of the settings: one line, status 2
    except SystemExit as exc:  # a flag's value, refused by argparse: usage, then one line
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and words in err[-1], err
    assert "Traceback" not in "".join(err)
    assert not (tmp_path / "m.npz").exists()


def test_augment_on_a_table_is_refused(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("a,b,kind\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(20)))
    code = main(["train", "--data-file", str(table), "--target", "kind", "--augment",
                 "--out", str(tmp_path / "m.npz"), "--quiet"])  # fmt: skip
    assert code == 2
    assert "--augment distorts images" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_augment_trains_on_an_image_folder_in_colour(tmp_path):
    rng = np.random.default_rng(0)
    for k, name in enumerate(("red", "green")):
        for i in range(12):
            px = np.zeros((6, 6, 3), np.uint8)
            px[1:5, 1:5, k] = rng.integers(128, 256, (4, 4), dtype=np.uint8)
            (tmp_path / "pics" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(tmp_path / "pics" / name / f"{i}.png")
    out = tmp_path / "m.npz"
    code = main(["train", "--data-file", str(tmp_path / "pics"), "--image-size", "6", "--color",
                 "rgb", "--sizes", "108,8,2", "--augment", "--elastic-alpha", "2", "--epochs", "2",
                 "--batch-size", "8", "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0 and out.exists()


@pytest.mark.slow
def test_a_real_process_interrupted_by_sigint_resumes_bit_identically(mnist_dir, tmp_path):
    """As tests/test_checkpoint.py does it, with --augment: SIGINT inside epoch 2."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from nnet.files.model_file import read_npz

    run_args = [
        "--sizes", "784,256,10", "--activation", "relu", "--loss", "cross_entropy",
        "--optimizer", "adam", "--lr", "0.001", "--batch-size", "50", "--epochs", "3",
        "--train-samples", "20000", "--dropout", "0.1,0.2", "--val", "1000", "--seed", "4",
        "--augment", "--elastic-alpha", "20", "--threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "NNET_DATA": str(mnist_dir)}

    def nnet(*args: str) -> list[str]:
        return [sys.executable, "-m", "nnet", "train", *args]

    straight = tmp_path / "straight.ckpt.npz"
    first_run = nnet(*run_args, "--quiet", "--out", str(tmp_path / "s.npz"), "--checkpoint",
                     str(straight))  # fmt: skip
    subprocess.run(first_run, check=True, env=env, capture_output=True, timeout=300)
    ck = tmp_path / "run.ckpt.npz"
    proc = subprocess.Popen(nnet(*run_args, "--out", str(tmp_path / "r.npz"), "--checkpoint",
                                 str(ck)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    first = proc.stdout.readline()
    assert first.startswith("epoch 1/3"), first + proc.stderr.read()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    _, meta = read_npz(ck)
    assert meta["trainer"]["epoch"] == 1 and meta["trainer"]["progress"]["batch"] > 0
    assert "augment_rng" in meta["trainer"]
    # the same BLAS threads as the other runs: they decide the last bits of some products
    resumed = subprocess.run(nnet("--resume", str(ck), "--out", str(tmp_path / "r.npz"), "--json",
                                  "--quiet", "--threads", "1"), env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["epochs"] == 3
    a, _ = read_npz(ck)
    b, _ = read_npz(straight)
    for k in range(2):
        assert np.array_equal(a[f"w{k}"], b[f"w{k}"])
