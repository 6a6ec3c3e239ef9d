"""`nnet bench`: the FLOP model, the arithmetic of each row, the table and the JSON it prints.

Most tests replace the training and the clock with scripted stand-ins, so that every number
the bench prints can be computed here independently; one slow test runs the real thing.
"""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest

from nnet.apps import bench
from nnet.apps.bench import Row, flops_per_sample, gemm_row, summary
from nnet.apps.cli import main

# Training flops per sample, counted by hand from the layer sizes with the convention of
# flops_per_sample's docstring (a multiply-add counts 2; "+1" is the bias input).
# seed, 784-16-16-10: forward 2(785·16 + 17·16 + 17·10) = 26 004;
#   backprop: twice the forward + error terms 2(16·16 + 16·10) = 52 840;
#   frontprop: forward + k=0: chain 2·16(16·16 + 10·16) + dE/dO 2·10·16 + outer 2·785·16
#     (38 752), k=1: 2·16·10·16 + 2·10·16 + 2·17·16 (5 984), k=2: 2·10·10 + 2·17·10 (540);
#   matrix and recursive: forward + k=0: (3) 2·12560·10, (5) 2·12560·16, (6) 2·12560·10·16
#     (4 672 320), k=1: (3) 2·272·10, (5) 2·272·10 (10 880), k=2: (3) 2·170·10 (3 400).
# mlp800, 784-800-800-10: forward 2(785·800 + 801·800 + 801·10) = 2 553 620; backprop twice
#   that + 2(800·800 + 800·10) = 6 403 240.
FLOPS = {
    ("seed", "recursive"): 4_712_604,
    ("seed", "matrix"): 4_712_604,
    ("seed", "frontprop"): 71_280,
    ("seed", "backprop"): 52_840,
    ("seed", "pytorch"): 52_840,
    ("mlp800", "backprop"): 6_403_240,
    ("mlp800", "pytorch"): 6_403_240,
}


def test_flop_counts_by_hand():
    # 3-2-1: forward 2*(4*2 + 3*1) = 22
    assert flops_per_sample("backprop", [3, 2, 1]) == 22 + 22 + 2 * 2 * 1
    # frontprop, k=0: M chain 2*2*(1*2)=8, contraction 2*1*2=4, outer 2*8=16;
    # k=1: contraction 2*1*1=2, outer 2*3=6
    assert flops_per_sample("frontprop", [3, 2, 1]) == 22 + (8 + 4 + 16) + (2 + 6)
    # matrix, k=0: (3) 2*8*1=16, (5) 2*8*1=16; k=1: (3) 2*3*1=6
    assert flops_per_sample("matrix", [3, 2, 1]) == 22 + 16 + 16 + 6
    for (config, engine), flops in FLOPS.items():
        assert flops_per_sample(engine, bench.CONFIGS[config]["sizes"]) == flops, engine


def backprop_flops(sizes):
    """An independent count: the forward pass 2 Σ (#k+1)#(k+1), the weight gradients the
    same again, and the error terms 2 Σ_(k>=1) #k #(k+1)."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    forward = sum(2 * (a + 1) * b for a, b in pairs)
    return 2 * forward + sum(2 * a * b for a, b in pairs[1:])


@pytest.mark.parametrize("config", ["seed", "mlp800"])
def test_backprop_flops_match_an_independent_count(config):
    sizes = bench.CONFIGS[config]["sizes"]
    assert FLOPS[config, "backprop"] == backprop_flops(sizes)
    assert flops_per_sample("backprop", sizes) == flops_per_sample("pytorch", sizes)


# ----------------------------------------------------------------------------- stand-ins

# Every fake run: the warm-up, then REPEATS runs taking WALL seconds, of which ENGINE
# computing gradients. Each has a median (0.3 and 0.03) that is neither the first, the
# middle, the last, the smallest, the largest nor the mean of its list.
WARMUP_SECONDS = 100.0
WALL = [0.9, 0.3, 0.1, 0.4, 0.2]
ENGINE = [0.05, 0.03, 0.01, 0.08, 0.02]
REPEATS = len(WALL)
N = 60000
KIB = {"VmRSS": 1000.0, "VmHWM": 1000.0 + 1.5 * 1024}  # 1.5 MiB above the start


class Clock:
    """time.perf_counter for the bench module, moved only by the fake runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake(monkeypatch):
    """Scripted runs for every row, a scripted clock and /proc, a fixed gemm row.
    Returns {(config, engine): the sample counts each run was called with}."""
    clock = Clock()
    calls: dict[tuple[str, str], list[int]] = {}

    def runner(config, engine):
        name = next(k for k, c in bench.CONFIGS.items() if c is config)
        seen = calls.setdefault((name, engine), [])
        script = iter([(WARMUP_SECONDS, WARMUP_SECONDS), *zip(WALL, ENGINE, strict=True)])

        def run(n):
            seen.append(n)
            wall, engine_seconds = next(script)
            clock.now += wall
            return engine_seconds

        return run

    x = np.zeros((N, 1), dtype=np.float32)
    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(bench, "training_data", lambda dtype, data: (x, x[:, 0], "fake data"))
    monkeypatch.setattr(bench, "nnet_runner", lambda c, e, *_: runner(c, e))
    monkeypatch.setattr(bench, "torch_runner", lambda c, *_: runner(c, "pytorch"))
    monkeypatch.setattr(bench, "compile_cost", lambda dtype: (1.25, 0.5))
    monkeypatch.setattr(bench, "_proc_kib", KIB.__getitem__)
    gemm = Row("gemm", "mlp800", "128x784 @ 784x800", 128, "float32", math.nan, math.nan,
               250.0, 250.0, math.nan, False, "50 products")  # fmt: skip
    monkeypatch.setattr(bench, "gemm_row", lambda: gemm)
    return calls


def test_each_row_is_computed_from_the_medians(fake):
    reported = []
    rows, source = bench.run_bench(repeats=REPEATS, report=reported.append)
    assert source == "fake data" and reported == rows
    assert [(r.config, r.engine) for r in rows] == [*FLOPS, ("mlp800", "gemm")]
    seconds, engine_seconds = 0.3, 0.03  # the medians of WALL and ENGINE
    for r, (config, engine, samples) in zip(rows, bench.ROWS, strict=False):
        n = samples or N
        # a slow row warms up on the very samples it measures; whole epochs on 2000
        assert fake[config, engine] == [samples or 2000] + [n] * REPEATS
        assert r.arch == "-".join(map(str, bench.CONFIGS[config]["sizes"]))
        assert r.batch == bench.CONFIGS[config]["batch"] and r.dtype == "float32"
        assert r.extrapolated == (samples is not None)
        assert r.measured == f"{REPEATS} x {n} samples"
        assert r.seconds_per_epoch == pytest.approx(seconds * N / n)
        assert r.samples_per_s == pytest.approx(n / seconds)
        assert r.samples_per_s == pytest.approx(N / r.seconds_per_epoch)
        assert r.gflops == pytest.approx(FLOPS[config, engine] * n / seconds / 1e9)
        assert r.engine_gflops == pytest.approx(FLOPS[config, engine] * n / engine_seconds / 1e9)
        assert r.peak_mib == pytest.approx(1.5)


def test_rows_are_selected_by_config_and_engine(fake):
    rows, _ = bench.run_bench(configs=["seed"], engines=["matrix", "pytorch"], repeats=1)
    assert [(r.config, r.engine) for r in rows] == [
        ("seed", "matrix"),
        ("seed", "pytorch"),
        ("mlp800", "gemm"),
    ]


def test_without_torch_there_are_no_pytorch_rows(fake, monkeypatch):
    monkeypatch.setattr(bench, "torch_runner", lambda *_: None)
    rows, _ = bench.run_bench(repeats=REPEATS)
    assert "pytorch" not in {r.engine for r in rows}
    assert len(rows) == len(bench.ROWS) - 2 + 1


def test_table_and_json_carry_the_same_numbers(fake, capsys):
    assert main(["bench", "--repeats", str(REPEATS), "--no-busy", "--threads", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert main(["bench", "--repeats", str(REPEATS), "--json", "--no-busy", "--threads", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert bench.HEADER in table
    assert "* extrapolated to 60000 samples; data: fake data" in table
    lines = [line for line in table if line.partition(" ")[0] in {r["engine"] for r in rows}]
    assert len(lines) == len(rows) == len(bench.ROWS) + 1
    for line, r in zip(lines, rows, strict=True):
        words = line.split()
        assert words[:2] == [r["engine"], r["config"]] and r["arch"] in line
        assert r["threads"] == 2 and r["others"] == 0
        if r["engine"] == "gemm":  # no time, rate or memory: blank in the table, null in JSON
            assert words[-5:-2] == ["float32", "2", "no"]
            assert r["seconds_per_epoch"] is r["samples_per_s"] is r["peak_mib"] is None
            assert [float(w) for w in words[-2:]] == [r["gflops"], r["engine_gflops"]]
            continue
        sec, sps, gflops, engine_gflops, peak = words[-5:]
        assert words[-7:-5] == ["2", "no"]
        assert sec.endswith("*") == r["extrapolated"]
        assert float(sec.rstrip("*")) == pytest.approx(r["seconds_per_epoch"], abs=5e-4)
        assert float(sps) == pytest.approx(r["samples_per_s"], abs=0.5)
        assert float(gflops) == pytest.approx(r["gflops"], abs=5e-3)
        assert float(engine_gflops) == pytest.approx(r["engine_gflops"], abs=5e-3)
        assert float(peak) == pytest.approx(r["peak_mib"], abs=0.05)


def test_gemm_row_is_the_median_rate_of_its_product(monkeypatch):
    # each product is timed by two clock readings: 4 ms, 1 ms, 2 ms -> median 2 ms
    readings = iter([0.0, 0.004, 1.0, 1.001, 2.0, 2.002])
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(readings)))
    row = gemm_row(repeats=3)
    flops = 2 * 128 * 784 * 800  # (128x784) @ (784x800), a multiply-add counting 2
    assert row.gflops == row.engine_gflops == pytest.approx(flops / 0.002 / 1e9)
    assert (row.engine, row.config, row.arch, row.batch) == (
        "gemm",
        "mlp800",
        "128x784 @ 784x800",
        128,
    )
    assert row.measured == "3 products" and not row.extrapolated
    assert math.isnan(row.seconds_per_epoch) and math.isnan(row.peak_mib)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux only")
def test_peak_memory_counts_what_the_repeats_hold_not_the_warm_up():
    held = []

    def run(n):
        if n == 0:  # the warm-up: 128 MiB, given back before the measurement starts
            np.ones(32 * 2**20, dtype=np.float32)
        else:  # 16 MiB each, kept
            held.append(np.ones(4 * 2**20, dtype=np.float32))
        return 0.0

    _, _, peak = bench.measure(run, 1, 3, warmup=0)
    assert 44 < peak < 80, peak


def row(engine, config, seconds, gflops=1.0, peak=1.0):
    return Row(engine, config, "a", 1, "float32", seconds, 1.0, gflops, 2 * gflops, peak, False, "")


def test_summary_states_the_ratios():
    rows = [row("recursive", "seed", 34985.6, peak=274.8), row("matrix", "seed", 15.58, peak=9.0),
            row("backprop", "seed", 0.1), row("pytorch", "seed", 0.2),
            row("frontprop", "seed", 0.15), row("backprop", "mlp800", 4.0, 150.0),
            row("pytorch", "mlp800", 5.0), row("gemm", "mlp800", float("nan"), 200.0)]  # fmt: skip
    assert summary(rows) == [
        "seed: backprop takes 0.50 x PyTorch's time per epoch",
        "mlp800: backprop takes 0.80 x PyTorch's time per epoch",
        "seed: frontprop takes 1.50 x backprop's time per epoch",
        "mlp800: backprop reaches 75 % of the NumPy float32 GEMM's 200 GFLOP/s over the whole "
        "epoch, and 150 % while computing gradients",
        "seed: matrix takes 15.6 s per epoch (extrapolated), peak 9 MiB",
        "seed: recursive takes 0.58 s per sample",
    ]
    # only the sentences whose rows were measured
    assert summary([row("backprop", "seed", 0.1), row("frontprop", "seed", 0.3)]) == [
        "seed: frontprop takes 3.00 x backprop's time per epoch"
    ]


@pytest.mark.slow
def test_bench_json_rows(mnist_dir, capsys, monkeypatch):
    monkeypatch.setenv("NNET_DATA", str(mnist_dir))
    code = main(["bench", "--configs", "seed", "--engines", "backprop,frontprop,matrix",
                 "--repeats", "1", "--json", "--threads", "2"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    by = {r["engine"]: r for r in rows}
    # the idle rows, then backprop again beside one competing process (2 threads, as asked)
    assert [(r["engine"], r["others"]) for r in rows] == [
        ("matrix", 0), ("frontprop", 0), ("backprop", 0), ("gemm", 0), ("backprop", 1)
    ]  # fmt: skip
    assert all(r["threads"] == 2 for r in rows)
    busy = rows.pop()
    assert by["matrix"]["extrapolated"] and not by["backprop"]["extrapolated"]
    assert by["matrix"]["measured"] == "1 x 3000 samples"
    assert by["backprop"]["measured"] == "1 x 60000 samples"
    assert 0 < by["backprop"]["seconds_per_epoch"] < by["matrix"]["seconds_per_epoch"]
    for r in rows[:-1]:
        flops = FLOPS["seed", r["engine"]] * N
        assert r["samples_per_s"] == pytest.approx(N / r["seconds_per_epoch"])
        assert r["gflops"] == pytest.approx(flops / r["seconds_per_epoch"] / 1e9)
        # gradients are part of the epoch: they take less time, so run faster
        assert r["engine_gflops"] >= r["gflops"]
        assert r["peak_mib"] >= 0
    assert by["gemm"]["seconds_per_epoch"] is None and by["gemm"]["gflops"] > 0
    assert busy["seconds_per_epoch"] > 0 and busy["measured"] == "1 x 60000 samples"


def test_busy_rows_run_beside_a_competing_process(fake, monkeypatch):
    """The busy rows: nnet with the threads auto chooses while the competitor runs (1 of 2
    cores idle -> 1), PyTorch with its default (every core); a real competitor process."""
    seen = []

    def auto(look=0.2):
        # what auto_threads would answer: one core while a competitor runs, two otherwise
        seen.append(competing())
        return 1 if seen[-1] else 2

    def competing():
        import subprocess

        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        return "while True: pass" in out

    monkeypatch.delenv("NNET_THREADS", raising=False)  # auto, not the tests' fixed count
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    monkeypatch.setattr("nnet.training.threads.auto_threads", auto)
    rows, _ = bench.run_bench(repeats=REPEATS, busy=True, engines=["backprop", "pytorch"])
    busy = [(r.config, r.engine, r.threads) for r in rows if r.others == 1]
    assert busy == [("seed", "backprop", 1), ("seed", "pytorch", 1), ("seed", "pytorch", 2),
                    ("mlp800", "backprop", 1), ("mlp800", "pytorch", 1),
                    ("mlp800", "pytorch", 2)]  # fmt: skip
    assert seen == [False, True]  # auto asked once before, once while the competitor ran
    assert not competing()  # stopped
    lines = summary(rows)
    for theirs in ("1 thread", "2 threads"):
        assert f"mlp800, with one competing process: backprop (1 thread) takes 1.00 x " \
            f"PyTorch's ({theirs}) time per epoch" in lines  # fmt: skip


def test_the_cli_busy_rows_choose_their_threads_again(fake, monkeypatch, capsys):
    """nnet bench applies its count for the whole command (and sets $NNET_THREADS for the
    kernels meanwhile); the busy rows still choose anew beside the competitor."""
    monkeypatch.delenv("NNET_THREADS", raising=False)
    answers = iter([2, 2, 1])  # the command's start, the idle rows, beside the competitor
    monkeypatch.setattr("nnet.training.threads.auto_threads", lambda look=0.2: next(answers))
    monkeypatch.setattr(bench, "usable_cores", lambda: 2)
    assert main(["bench", "--repeats", "1", "--json", "--engines", "backprop,pytorch"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["engine"], r["config"], r["threads"]) for r in rows if r["others"]] == [
        ("backprop", "seed", 1), ("pytorch", "seed", 1), ("pytorch", "seed", 2),
        ("backprop", "mlp800", 1), ("pytorch", "mlp800", 1), ("pytorch", "mlp800", 2),
    ]  # fmt: skip
    assert {r["threads"] for r in rows if not r["others"]} == {2}
