"""Checkpoints and resume, interrupts, divergence, and saves killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.files.model_file import read_npz

# A run small enough for the tests: about two seconds per epoch on two cores, so that a
# signal sent a second after epoch 1 ends lands inside epoch 2.
RUN = [
    "--sizes", "784,512,10", "--activation", "relu", "--loss", "cross_entropy",
    "--optimizer", "adam", "--lr", "0.001", "--batch-size", "20", "--epochs", "3",
    "--train-samples", "60000", "--dropout", "0.1,0.2", "--val", "1000", "--seed", "5",
]  # fmt: skip


def nnet_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnet", *args]


def env_for(data: Path) -> dict[str, str]:
    return {**os.environ, "NNET_DATA": str(data)}


def weights(path: Path) -> list[np.ndarray]:
    arrays, _ = read_npz(path)
    return [arrays[f"w{k}"] for k in range(sum(1 for a in arrays if a.startswith("w")))]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_then_resumed_run_is_bit_identical(mnist_dir, tmp_path, sig):
    straight_ck = tmp_path / "straight.ckpt.npz"
    subprocess.run(
        nnet_cmd("train", *RUN, "--quiet", "--out", str(tmp_path / "straight.npz"),
                 "--checkpoint", str(straight_ck)),
        check=True, env=env_for(mnist_dir), capture_output=True, timeout=300,
    )  # fmt: skip
    ck = tmp_path / "run.ckpt.npz"
    proc = subprocess.Popen(
        nnet_cmd("train", *RUN, "--out", str(tmp_path / "run.npz"), "--checkpoint", str(ck)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_for(mnist_dir),
    )  # fmt: skip
    first = proc.stdout.readline()  # "epoch 1/3 ..." once the first epoch is done
    assert first.startswith("epoch 1/3"), first + proc.stderr.read()
    time.sleep(0.3)  # well inside epoch 2 (an epoch of RUN takes about 1 s with the fused kernels)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "continue with nnet train --resume" in err
    _, meta = read_npz(ck)
    progress = meta["trainer"]["progress"]
    assert meta["trainer"]["epoch"] == 1 and progress is not None and progress["batch"] > 0
    assert nnet.load(tmp_path / "run.npz").sizes == [784, 512, 10]  # the model so far
    resumed = subprocess.run(
        nnet_cmd("train", "--resume", str(ck), "--out", str(tmp_path / "run.npz"), "--json",
                 "--quiet"),
        env=env_for(mnist_dir), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["epochs"] == 3
    for a, b in zip(weights(ck), weights(straight_ck), strict=True):
        assert np.array_equal(a, b)  # bit for bit, mid-epoch interrupt included
    _, done = read_npz(ck)
    _, straight = read_npz(straight_ck)
    strip = ("seconds", "train_seconds", "engine_seconds")
    history = [{k: v for k, v in r.items() if k not in strip} for r in done["trainer"]["history"]]
    expected = [
        {k: v for k, v in r.items() if k not in strip} for r in straight["trainer"]["history"]
    ]
    assert history == expected


def test_resume_refuses_flags_that_change_the_run(mnist_dir, tmp_path):
    ck = tmp_path / "c.npz"
    subprocess.run(
        nnet_cmd("train", *RUN, "--epochs", "1", "--train-samples", "1000", "--quiet",
                 "--out", str(tmp_path / "m.npz"), "--checkpoint", str(ck)),
        check=True, env=env_for(mnist_dir), capture_output=True, timeout=300,
    )  # fmt: skip
    before = ck.read_bytes()
    out = subprocess.run(
        nnet_cmd("train", "--resume", str(ck), "--lr", "0.1", "--epochs", "9"),
        env=env_for(mnist_dir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "leave out --epochs, --lr" in out.stderr
    assert ck.read_bytes() == before
    model = subprocess.run(
        nnet_cmd("train", "--resume", str(tmp_path / "m.npz")),
        env=env_for(mnist_dir), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert model.returncode == 2 and "is a model file, not a checkpoint" in model.stderr
    evaluate = subprocess.run(
        nnet_cmd("evaluate", str(ck)), env=env_for(mnist_dir), capture_output=True, text=True
    )
    assert evaluate.returncode == 2 and "is a training checkpoint" in evaluate.stderr


def test_divergence_stops_at_once_and_touches_no_file(mnist_dir, tmp_path):
    out_file, ck, metrics = tmp_path / "m.npz", tmp_path / "c.npz", tmp_path / "m.jsonl"
    out_file.write_bytes(b"previous model")
    ck.write_bytes(b"previous checkpoint")
    out = subprocess.run(
        nnet_cmd("train", "--sizes", "784,32,10", "--activation", "identity", "--lr", "1e6",
                 "--train-samples", "3000", "--out", str(out_file), "--checkpoint", str(ck),
                 "--metrics", str(metrics), "--quiet"),
        env=env_for(mnist_dir), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "training diverged at epoch 1, batch" in out.stderr
    assert "smaller learning rate" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert out_file.read_bytes() == b"previous model"
    assert ck.read_bytes() == b"previous checkpoint"
    assert not metrics.exists()


def test_killing_a_save_half_way_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "model.npz"
    nnet.save(nnet.Network([784, 10], seed=0), path)
    before = path.read_bytes()
    script = (
        "import nnet, sys\n"
        "net = nnet.Network([784, 2000, 2000, 10], seed=1)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        f"    nnet.save(net, {str(path)!r})\n"
    )
    for delay in (0.05, 0.2, 0.4, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.kill()  # SIGKILL: no handler, no cleanup
        proc.wait()
        net = nnet.load(path)  # whichever version is there loads whole
        assert net.sizes in ([784, 10], [784, 2000, 2000, 10])
    # only the previous file or a complete new one ever held the name
    assert path.read_bytes() == before or nnet.load(path).sizes == [784, 2000, 2000, 10]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda m, a: m["trainer"].pop("rng"), "field trainer.rng: missing"),
        (lambda m, a: m["trainer"].update(epoch=99), "field trainer.epoch: 99 epochs done of 1"),
        (lambda m, a: m.pop("settings"), "field settings: missing"),
        (lambda m, a: m["settings"].update(sizes=[784, 0, 10]), "field settings.sizes: every"),
        (lambda m, a: a.pop("opt_m_sum0"), r"missing \['opt_m_sum0'\]"),
        (lambda m, a: a.update(w0=np.zeros((3, 3), np.float32)), r"w0 has shape \(3, 3\)"),
        (lambda m, a: a.update(w1=np.full_like(a["w1"], np.nan)), "NaN or infinite"),
    ],
)
def test_damaged_checkpoints_get_one_clear_error(mnist_dir, tmp_path, damage, message):
    from nnet.experiment import resume
    from nnet.files.model_file import ModelFileError

    ck = tmp_path / "c.npz"
    subprocess.run(
        nnet_cmd("train", *RUN, "--epochs", "1", "--train-samples", "1000", "--quiet",
                 "--out", str(tmp_path / "m.npz"), "--checkpoint", str(ck)),
        check=True, env=env_for(mnist_dir), capture_output=True, timeout=300,
    )  # fmt: skip
    arrays, meta = read_npz(ck)
    damage(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    bad = tmp_path / "bad.npz"
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelFileError, match=message):
        resume(bad, data=mnist_dir, download=False, progress=False)
