"""``nnet bench``: every engine, PyTorch and the raw GEMM, measured side by side in one run.

Two configurations:

- ``seed``: the notes' experiment (784-16-16-10, sigmoid, the notes' MSE, SGD lr 10 with
  momentum 0.5, batch 1000), for all four engines and PyTorch;
- ``mlp800``: 784-800-800-10, ReLU, softmax cross-entropy, Adam (lr 1e-3), batch 128, for
  backprop and PyTorch.

Each row is seconds per epoch of MNIST training (60 000 samples; the real MNIST when it is
on disk, otherwise random data of the same shape, which takes the same time): the median
of ``repeats`` whole epochs for the fast engines, or — for the slow ones, marked
``extrapolated`` — the median time of a measured number of samples scaled to 60 000. An
epoch is what ``nnet train`` does per epoch: gather each shuffled batch, forward, gradient,
loss and accuracy bookkeeping, optimizer step (PyTorch: the same loop with its autograd and
optimizer, same thread count). GFLOP/s counts the engine's own arithmetic (see
:func:`flops_per_sample`) per second of the whole epoch; engine GFLOP/s divides the same
count by the time spent computing gradients only (forward and backward, not the optimizer,
the batch gathering or the bookkeeping); ``peak_mib`` is how far the process's resident
memory rose above where it stood when the measurement began (Linux: VmHWM after resetting it through
/proc/self/clear_refs). The ``gemm`` row is NumPy's float32 (128x784)@(784x800) GFLOP/s,
the ceiling a batch-128 MLP step can approach.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnet.core.network import Network
from nnet.training.loop import Split, Trainer
from nnet.training.optim import SGD, Adam

Array = np.ndarray

EPOCH = 60000  # MNIST training samples

CONFIGS: dict[str, dict[str, Any]] = {
    "seed": {
        "sizes": [784, 16, 16, 10], "activation": "sigmoid", "loss": "mse", "init": "author",
        "optimizer": "sgd", "lr": 10.0, "momentum": 0.5, "batch": 1000,
    },
    "mlp800": {
        "sizes": [784, 800, 800, 10], "activation": "relu", "loss": "cross_entropy",
        "init": "he_normal", "optimizer": "adam", "lr": 1e-3, "momentum": 0.0, "batch": 128,
    },
}  # fmt: skip

# (config, engine, how many samples the slow engines measure; None: whole epochs)
ROWS: list[tuple[str, str, int | None]] = [
    ("seed", "recursive", 2),
    ("seed", "matrix", 3000),
    ("seed", "frontprop", None),
    ("seed", "backprop", None),
    ("seed", "pytorch", None),
    ("mlp800", "backprop", None),
    ("mlp800", "pytorch", None),
]


@dataclass
class Row:
    engine: str
    config: str
    arch: str
    batch: int
    dtype: str
    seconds_per_epoch: float
    samples_per_s: float
    gflops: float
    engine_gflops: float
    peak_mib: float
    extrapolated: bool
    measured: str


# ----------------------------------------------------------------------------- helpers


def flops_per_sample(engine: str, sizes: Sequence[int]) -> float:
    """Floating-point operations per training sample (a multiply-add counts 2).

    forward: 2 sum_k (n_k+1) n_(k+1). backprop and PyTorch add the weight gradients (the
    same again) and the error terms 2 sum_(k>=1) n_k n_(k+1). frontprop adds the M recursion
    2 sum_k n_(k+1) sum_(l>k+1) n_l n_(l-1), the contraction with dE/dO and the outer products.
    matrix and recursive add the A tensors: (5) and the g' scalings 2 (n_k+1) n_(k+1) n_(k+2),
    each step of (6) 2 (n_k+1) n_(k+1) n_l n_(l-1), and (3) 2 (n_k+1) n_(k+1) n_L — the
    recursive engine does the same arithmetic one scalar at a time.
    """
    L = len(sizes) - 1
    n = list(sizes)
    fwd = sum(2 * (n[k] + 1) * n[k + 1] for k in range(L))
    if engine in ("backprop", "pytorch"):
        return 2 * fwd + sum(2 * n[k] * n[k + 1] for k in range(1, L))
    total = fwd
    for k in range(L):
        outer = (n[k] + 1) * n[k + 1]
        if engine == "frontprop":
            chain = sum(2 * n[k + 1] * n[l] * n[l - 1] for l in range(k + 2, L + 1))
            total += chain + 2 * n[L] * n[k + 1] + 2 * outer
        else:  # matrix, recursive
            total += 2 * outer * n[L]  # (3)
            if L >= k + 2:
                total += 2 * outer * n[k + 2]  # (5) and its scaling
                total += sum(2 * outer * n[l] * n[l - 1] for l in range(k + 3, L + 1))  # (6)
    return float(total)


class PeakMemory:
    """How far resident memory rises above its level at ``start()``, in MiB (Linux)."""

    def __init__(self) -> None:
        self.base = 0

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])  # kB
        return 0

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the high-water mark VmHWM to the current RSS
        except OSError:
            pass
        self.base = self._status("VmRSS")

    def peak_mib(self) -> float:
        try:
            return max(0, self._status("VmHWM") - self.base) / 1024
        except OSError:
            return float("nan")


def threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def training_data(dtype: str, data: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """60 000 MNIST training inputs and labels if on disk, else random ones of that shape."""
    from nnet.data.datasets import load, locate, to_inputs

    if locate("mnist", data) is not None:
        d = load("mnist", data, download=False, progress=False)
        x = to_inputs(d.x_train, dtype, with_bias=True)  # as nnet train stores them
        return x, d.y_train.astype(np.int64), "MNIST"
    rng = np.random.default_rng(0)
    x = to_inputs(rng.integers(0, 256, (EPOCH, 784), dtype=np.uint8), dtype, with_bias=True)
    return x, rng.integers(0, 10, EPOCH), "random data of MNIST's shape"


# ----------------------------------------------------------------------------- runners


def nnet_runner(config: dict[str, Any], engine: str, x: Array, y: Array, dtype: str):
    """A function training ``n`` samples (a whole epoch when n = len(x)) with nnet."""
    net = Network(
        config["sizes"], config["activation"], loss=config["loss"], init=config["init"],
        seed=0, dtype=dtype,
    )  # fmt: skip
    if config["optimizer"] == "sgd":
        opt: Any = SGD(momentum=config["momentum"])
    else:
        opt = Adam()
    t = np.eye(10, dtype=dtype)[y]
    trainer = Trainer(
        net, opt, lr=config["lr"], batch_size=config["batch"], epochs=1,
        rng=np.random.default_rng(0), engine=engine,
    )  # fmt: skip

    splits: dict[int, Split] = {}  # one per size, so the trainer's [x, 1] copy is made once

    def run(n: int) -> float:
        split = splits.setdefault(n, Split(x[:n], t[:n], y[:n]))
        trainer.progress = None
        row = trainer.run_epoch(split)
        return row["engine_seconds"] if row else float("nan")

    return run


def torch_runner(config: dict[str, Any], x: Array, y: Array, dtype: str):
    """The same training loop in PyTorch (CPU), or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads())
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    torch.manual_seed(0)
    sizes = config["sizes"]
    act = torch.nn.Sigmoid if config["activation"] == "sigmoid" else torch.nn.ReLU
    layers: list[Any] = []
    for k in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2 or config["loss"] == "mse":
            layers.append(act())
    model = torch.nn.Sequential(*layers).to(tdtype)
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    tx = torch.from_numpy(x)
    ty = torch.from_numpy(y)
    tt = torch.nn.functional.one_hot(ty, 10).to(tdtype)
    mse = config["loss"] == "mse"
    bs = config["batch"]

    def run(n: int) -> float:
        perm = torch.randperm(n)
        engine = 0.0
        for s in range(0, n, bs):
            idx = perm[s : s + bs]
            xb, yb = tx[idx], (tt[idx] if mse else ty[idx])
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            out = model(xb)
            if mse:
                loss = torch.nn.functional.mse_loss(out, yb)
            else:
                loss = torch.nn.functional.cross_entropy(out, yb)
            loss.backward()
            engine += time.perf_counter() - t0
            opt.step()
        return engine

    return run


def measure(run: Callable[[int], float], n: int, repeats: int) -> tuple[float, float, float]:
    """(median seconds of run(n), median engine seconds, peak MiB) after one warm-up."""
    run(min(n, 2000) if n > 2000 else n)  # warm-up: buffers, BLAS threads, caches
    mem = PeakMemory()
    mem.start()
    times, engine = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.append(run(n))
        times.append(time.perf_counter() - start)
    return statistics.median(times), statistics.median(engine), mem.peak_mib()


def summary(rows: Sequence[Row]) -> list[str]:
    """The ratios the rows are for, in words (only those the rows allow)."""
    by = {(r.config, r.engine): r for r in rows}
    lines = []
    for config in CONFIGS:
        bp, pt = by.get((config, "backprop")), by.get((config, "pytorch"))
        if bp and pt:
            lines.append(
                f"{config}: backprop takes {bp.seconds_per_epoch / pt.seconds_per_epoch:.2f} x "
                "PyTorch's time per epoch"
            )
    bp, fp, gemm = (
        by.get(("seed", "backprop")),
        by.get(("seed", "frontprop")),
        by.get(("mlp800", "gemm")),
    )
    if bp and fp:
        lines.append(
            f"seed: frontprop takes {fp.seconds_per_epoch / bp.seconds_per_epoch:.2f} x "
            "backprop's time per epoch"
        )
    big = by.get(("mlp800", "backprop"))
    if big and gemm:
        lines.append(
            f"mlp800: backprop reaches {100 * big.gflops / gemm.gflops:.0f} % of the NumPy "
            f"float32 GEMM's {gemm.gflops:.0f} GFLOP/s over the whole epoch, and "
            f"{100 * big.engine_gflops / gemm.gflops:.0f} % while computing gradients"
        )
    mx = by.get(("seed", "matrix"))
    if mx:
        lines.append(
            f"seed: matrix takes {mx.seconds_per_epoch:.1f} s per epoch (extrapolated), "
            f"peak {mx.peak_mib:.0f} MiB"
        )
    rc = by.get(("seed", "recursive"))
    if rc:
        lines.append(f"seed: recursive takes {rc.seconds_per_epoch / EPOCH:.2f} s per sample")
    return lines


def gemm_gflops(repeats: int = 50) -> float:
    rng = np.random.default_rng(0)
    a = rng.random((128, 784), dtype=np.float32)
    b = rng.random((784, 800), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * 128 * 784 * 800 / statistics.median(times) / 1e9


def run_bench(
    *,
    configs: Sequence[str] = tuple(CONFIGS),
    engines: Sequence[str] | None = None,
    repeats: int = 3,
    dtype: str = "float32",
    data: str | None = None,
    report: Callable[[Row], None] | None = None,
) -> tuple[list[Row], str]:
    """Measure every selected row in this process, one after the other."""
    x, y, source = training_data(dtype, data)
    rows: list[Row] = []
    for config_name, engine, samples in ROWS:
        if config_name not in configs or (engines is not None and engine not in engines):
            continue
        config = CONFIGS[config_name]
        if engine == "pytorch":
            run = torch_runner(config, x, y, dtype)
            if run is None:
                continue
        else:
            run = nnet_runner(config, engine, x, y, dtype)
        n = len(x) if samples is None else samples
        seconds, engine_seconds, peak = measure(run, n, repeats)
        per_epoch = seconds * len(x) / n
        flops = flops_per_sample(engine, config["sizes"]) * len(x)
        row = Row(
            engine=engine,
            config=config_name,
            arch="-".join(map(str, config["sizes"])),
            batch=config["batch"],
            dtype=dtype,
            seconds_per_epoch=per_epoch,
            samples_per_s=len(x) / per_epoch,
            gflops=flops / per_epoch / 1e9,
            engine_gflops=flops / (engine_seconds * len(x) / n) / 1e9,
            peak_mib=peak,
            extrapolated=samples is not None,
            measured=f"{repeats} x {n} samples",
        )
        rows.append(row)
        if report is not None:
            report(row)
    g = gemm_gflops()
    gemm = Row("gemm", "mlp800", "128x784 @ 784x800", 128, "float32", float("nan"),
               float("nan"), g, g, float("nan"), False, "50 products")  # fmt: skip
    rows.append(gemm)
    if report is not None:
        report(gemm)
    return rows, source


def format_row(row: Row) -> str:
    sec = "" if np.isnan(row.seconds_per_epoch) else f"{row.seconds_per_epoch:10.3f}"
    sps = "" if np.isnan(row.samples_per_s) else f"{row.samples_per_s:10.0f}"
    peak = "" if np.isnan(row.peak_mib) else f"{row.peak_mib:8.1f}"
    mark = "*" if row.extrapolated else " "
    return (
        f"{row.engine:<10} {row.config:<7} {row.arch:<20} {row.batch:>5} {row.dtype:<8}"
        f"{sec:>11}{mark} {sps:>10} {row.gflops:8.2f} {row.engine_gflops:8.2f} {peak:>8}"
    )


HEADER = (
    f"{'engine':<10} {'config':<7} {'architecture':<20} {'batch':>5} {'dtype':<8}"
    f"{'s/epoch':>11}  {'samples/s':>10} {'GFLOP/s':>8} {'engine':>8} {'peak MiB':>8}"
)


def rows_json(rows: Sequence[Row]) -> str:
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and np.isnan(v) else v

    return json.dumps([{k: clean(v) for k, v in asdict(r).items()} for r in rows])
