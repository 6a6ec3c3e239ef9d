"""The notes' experiment gives, with every batched engine, the README's test-accuracy curve
to every printed digit (``nnet train --preset seed``, seed 0, float32, 60 000 images).

The literal matrix engine takes about 15 s per epoch, so it runs the first 6 epochs (the
learning rate is constant: they are the first 6 of the 16), which hold the flat start and
the take-off; backprop and frontprop run all 16."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def readme_curve() -> list[str]:
    row = re.search(r"^\| test accuracy % \|(.*)\|$", README.read_text(), re.MULTILINE)
    assert row is not None, "the README lost its table of the notes' experiment"
    return [cell.strip() for cell in row.group(1).split("|")]


def test_the_readme_table_has_sixteen_epochs():
    curve = readme_curve()
    assert len(curve) == 16 and all(re.fullmatch(r"\d+\.\d\d", c) for c in curve)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("engine", "epochs", "kernels"),
    [("backprop", 16, "numba"), ("backprop", 16, "numpy"), ("frontprop", 16, "auto"),
     ("matrix", 6, "auto")],
)  # fmt: skip
def test_every_engine_reproduces_the_readme_curve(engine, epochs, kernels, mnist_dir, tmp_path):
    """... with the fused kernels and with NumPy's (the seed preset: SGD with momentum,
    sigmoid)."""
    if kernels == "numba":
        pytest.importorskip("numba")
    metrics = tmp_path / "m.jsonl"
    out = subprocess.run(
        [sys.executable, "-m", "nnet", "train", "--preset", "seed", "--engine", engine,
         "--epochs", str(epochs), "--quiet", "--metrics", str(metrics),
         "--out", str(tmp_path / "m.npz"), "--data", str(mnist_dir), "--no-download",
         "--kernels", kernels],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [f"{100 * r['test_accuracy']:.2f}" for r in rows] == readme_curve()[:epochs]
