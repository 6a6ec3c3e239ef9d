"""Files written by nnet 0.1 before the settings object and the returned forward pass.

``tests/data/`` holds, as written by the code of commit ca34f84 (the last before the
refactoring into layers):

- ``v0.1-model.npz``: ``nnet train --train-samples 2000 --batch-size 250 --epochs 2``;
- ``v0.1-checkpoint.npz``: ``nnet train --preset best --sizes 784,32,10 --dropout 0.1,0.3
  --train-samples 20000 --batch-size 50 --epochs 3 --val 500 --checkpoint ...`` stopped by
  SIGINT in epoch 1, after batch 209;
- ``v0.1-uninterrupted.npz``: the model of the same run, never interrupted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.experiment import to_split
from nnet.training.loop import evaluate

DATA = Path(__file__).parent / "data"


def test_a_v0_1_model_file_loads_and_gives_the_accuracy_it_recorded(mnist_dir):
    from nnet.data.datasets import load

    net = nnet.load(DATA / "v0.1-model.npz")
    assert net.sizes == [784, 16, 16, 10] and net.meta["training"]["preset"] == "seed"
    data = load("mnist", mnist_dir, download=False, progress=False)
    _, acc = evaluate(net, to_split(data.x_test, data.y_test, "classifier", net.dtype, 10))
    assert acc == net.meta["history"][-1]["test_accuracy"]


@pytest.mark.slow
def test_a_v0_1_checkpoint_resumes_to_the_weights_of_the_uninterrupted_v0_1_run(
    mnist_dir, tmp_path
):
    checkpoint = tmp_path / "checkpoint.npz"  # --resume writes its checkpoint back
    shutil.copyfile(DATA / "v0.1-checkpoint.npz", checkpoint)
    out = subprocess.run(
        [sys.executable, "-m", "nnet", "train", "--resume", str(checkpoint), "--quiet",
         "--json", "--out", str(tmp_path / "m.npz"), "--data", str(mnist_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["epochs"] == 3
    resumed = nnet.load(tmp_path / "m.npz")
    reference = nnet.load(DATA / "v0.1-uninterrupted.npz")
    for a, b in zip(resumed.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    accuracies = [[r["val_accuracy"] for r in m.meta["history"]] for m in (resumed, reference)]
    assert accuracies[0] == accuracies[1]
