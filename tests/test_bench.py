"""`nnet bench`: the FLOP model, the rows it reports, and the JSON it prints."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnet.apps.bench import Row, flops_per_sample, gemm_gflops, summary
from nnet.apps.cli import main


def test_flop_counts_by_hand():
    # 3-2-1: forward 2*(4*2 + 3*1) = 22
    assert flops_per_sample("backprop", [3, 2, 1]) == 22 + 22 + 2 * 2 * 1
    assert flops_per_sample("pytorch", [3, 2, 1]) == flops_per_sample("backprop", [3, 2, 1])
    # frontprop, k=0: M chain 2*2*(1*2)=8, contraction 2*1*2=4, outer 2*8=16;
    # k=1: contraction 2*1*1=2, outer 2*3=6
    assert flops_per_sample("frontprop", [3, 2, 1]) == 22 + (8 + 4 + 16) + (2 + 6)
    # matrix, k=0: (3) 2*8*1=16, (5) 2*8*1=16; k=1: (3) 2*3*1=6
    assert flops_per_sample("matrix", [3, 2, 1]) == 22 + 16 + 16 + 6
    notes = [784, 16, 16, 10]
    assert flops_per_sample("matrix", notes) > 50 * flops_per_sample("frontprop", notes)


def test_numpy_gemm_reference_is_measured():
    assert 1 < gemm_gflops(repeats=5) < 10000


def row(engine, config, seconds, gflops=1.0):
    return Row(engine, config, "a", 1, "float32", seconds, 1.0, gflops, 2 * gflops, 1.0, False, "")


def test_summary_states_the_ratios():
    rows = [row("backprop", "seed", 0.1), row("pytorch", "seed", 0.2),
            row("frontprop", "seed", 0.15), row("backprop", "mlp800", 4.0, 150.0),
            row("pytorch", "mlp800", 5.0), row("gemm", "mlp800", float("nan"), 200.0)]  # fmt: skip
    text = "\n".join(summary(rows))
    assert "seed: backprop takes 0.50 x PyTorch" in text
    assert "mlp800: backprop takes 0.80 x PyTorch" in text
    assert "frontprop takes 1.50 x backprop" in text
    assert "reaches 75 % of the NumPy float32 GEMM's 200 GFLOP/s over the whole epoch" in text
    assert "and 150 % while computing gradients" in text


@pytest.mark.slow
def test_bench_json_rows(mnist_dir, capsys, monkeypatch):
    monkeypatch.setenv("NNET_DATA", str(mnist_dir))
    code = main(["bench", "--configs", "seed", "--engines", "backprop,frontprop,matrix",
                 "--repeats", "1", "--json"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["engine"]: r for r in rows}
    assert set(by) == {"backprop", "frontprop", "matrix", "gemm"}
    for r in rows:
        assert {
            "engine",
            "config",
            "seconds_per_epoch",
            "gflops",
            "peak_mib",
            "extrapolated",
        } <= set(r)
    assert by["matrix"]["extrapolated"] and not by["backprop"]["extrapolated"]
    assert 0 < by["backprop"]["seconds_per_epoch"] < by["matrix"]["seconds_per_epoch"]
    assert np.isclose(by["backprop"]["samples_per_s"] * by["backprop"]["seconds_per_epoch"], 60000)
    assert by["gemm"]["seconds_per_epoch"] is None and by["gemm"]["gflops"] > 0
