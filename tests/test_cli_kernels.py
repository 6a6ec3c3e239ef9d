"""`nnet train --kernels`: the fused optimizer kernels and NumPy's train the same network."""

from __future__ import annotations

import numpy as np
import pytest

import nnet
from nnet.apps.cli import main


@pytest.mark.parametrize("preset", ["seed", "best"])
def test_both_kernel_paths_give_the_same_weights(mnist_dir, tmp_path, monkeypatch, preset):
    pytest.importorskip("numba", reason="numba is not installed (nnet[fast])")
    monkeypatch.delenv("NNET_KERNELS", raising=False)
    flags = ["--preset", preset, "--train-samples", "2000", "--epochs", "2", "--quiet",
             "--data", str(mnist_dir)]  # fmt: skip
    if preset == "best":
        flags += ["--sizes", "784,64,64,10"]
    for kernels in ("numpy", "numba"):
        assert main(["train", *flags, "--kernels", kernels, "--out", str(tmp_path / kernels)]) == 0
    fused, reference = nnet.load(tmp_path / "numba"), nnet.load(tmp_path / "numpy")
    for a, b in zip(fused.weights, reference.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
