"""``nnet bench``: every engine, PyTorch and the raw GEMM, measured side by side in one run.

Two configurations (``CONFIGS``): ``seed``, the notes' experiment, for all four engines
and PyTorch; ``mlp800``, a wide MLP trained with Adam, for backprop and PyTorch (``ROWS``).
Each row times MNIST training epochs (the real MNIST when on disk, else random data of the
same shape, which takes the same time) as ``nnet train`` runs them: gather each shuffled
batch, forward, gradient, loss and accuracy bookkeeping, optimizer step; PyTorch runs the
same loop with its autograd and optimizer on as many threads. The columns are defined at
:class:`Row`; docs/performance.md says what was measured with them.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from nnet.training.threads import limited, resolve, usable_cores

Array = np.ndarray
Run = Callable[[int], float]  # trains n samples; returns the seconds computing gradients

EPOCH = 60000  # MNIST training samples
NAN = float("nan")

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
# The rows measured again with one competing CPU-bound process running (``busy``): nnet
# with the threads it chooses (or --threads), PyTorch with as many and with its default,
# every core (the last row is left out where the two are the same).
BUSY_ROWS: list[tuple[str, str, str]] = [
    ("seed", "backprop", "chosen"),
    ("seed", "pytorch", "chosen"),
    ("seed", "pytorch", "default"),
    ("mlp800", "backprop", "chosen"),
    ("mlp800", "pytorch", "chosen"),
    ("mlp800", "pytorch", "default"),
]


@dataclass
class Row:
    """One line of the table; NaN where a column does not apply (the gemm row)."""

    engine: str  # an nnet engine, "pytorch", or "gemm": NumPy's float32 GEMM, the ceiling
    config: str
    arch: str
    batch: int
    dtype: str
    seconds_per_epoch: float  # median of the repeats, scaled to EPOCH samples if extrapolated
    samples_per_s: float
    gflops: float  # flops_per_sample x samples / seconds of the whole epoch
    engine_gflops: float  # the same count / seconds computing gradients (forward, backward)
    peak_mib: float  # rise of resident memory during the repeats, after a warm-up (Linux)
    extrapolated: bool  # timed on a few samples instead of whole epochs (the slow engines)
    measured: str
    threads: int = 0  # the threads it computed with (BLAS, kernels; PyTorch's intra-op)
    others: int = 0  # CPU-bound processes competing for the cores while it was measured


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
        return float(2 * fwd + sum(2 * n[k] * n[k + 1] for k in range(1, L)))
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


def threads_default() -> int:
    """PyTorch's default thread count: the CPU cores this process may run on."""
    return usable_cores()


@contextlib.contextmanager
def competitor() -> Iterator[None]:
    """One other CPU-bound process (a Python busy loop) for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # running before anything looks at the cores
        yield
    finally:
        proc.kill()
        proc.wait()


# What a fresh process pays before the first fused step: importing Numba and the kernels,
# and compiling (or loading from the cache) every kernel a training run calls.
WARM_UP = """
import sys, time
start = time.perf_counter()
from nnet import kernels
kernels.warm_up(sys.argv[1])
print(time.perf_counter() - start)
"""


def compile_cost(dtype: str) -> tuple[float, float] | None:
    """(seconds in a process that compiles the kernels, seconds in a later one that loads
    them from the cache), measured in two fresh processes on an empty cache folder; None
    without Numba."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold, warm = (
            float(subprocess.run([sys.executable, "-c", WARM_UP, dtype], env=env, check=True,
                                 capture_output=True, text=True).stdout)
            for _ in range(2)
        )  # fmt: skip
    return cold, warm


def training_data(dtype: str, data: str | None) -> tuple[Array, Array, str]:
    """60 000 MNIST training inputs and labels if on disk, else random ones of that shape,
    and which of the two it is."""
    from nnet.data.datasets import load, locate, to_inputs

    if locate("mnist", data) is not None:
        d = load("mnist", data, download=False, progress=False)
        x = to_inputs(d.x_train, dtype, with_bias=True)  # as nnet train stores them
        return x, d.y_train.astype(np.int64), "MNIST"
    rng = np.random.default_rng(0)
    x = to_inputs(rng.integers(0, 256, (EPOCH, 784), dtype=np.uint8), dtype, with_bias=True)
    return x, rng.integers(0, 10, EPOCH), "random data of MNIST's shape"


def nnet_runner(config: dict[str, Any], engine: str, x: Array, y: Array, dtype: str) -> Run:
    """Training of the first n samples (one pass) with nnet's Trainer: the one place this
    module uses the network and training code."""
    from nnet.core.network import Network
    from nnet.training.loop import Split, Trainer
    from nnet.training.optim import SGD, Adam

    net = Network(config["sizes"], config["activation"], loss=config["loss"],
                  init=config["init"], seed=0, dtype=dtype)  # fmt: skip
    opt = SGD(momentum=config["momentum"]) if config["optimizer"] == "sgd" else Adam()
    trainer = Trainer.gradient(net, opt, lr=config["lr"], batch_size=config["batch"], epochs=1,
                               rng=np.random.default_rng(0), engine=engine)  # fmt: skip
    t = np.eye(10, dtype=dtype)[y]
    splits: dict[int, Split] = {}  # one per n: the trainer's [x, 1] copy of a subset is kept

    def run(n: int) -> float:
        result = trainer.run_epoch(splits.setdefault(n, Split(x[:n], t[:n], y[:n])))
        assert result is not None  # None only when a stop flag ends the pass early
        return result["engine_seconds"]

    return run


def torch_runner(
    config: dict[str, Any], x: Array, y: Array, dtype: str, n_threads: int
) -> Run | None:
    """The same training loop in PyTorch (CPU) on ``n_threads`` threads, or None when torch
    is not installed."""
    try:
        import torch
    except ImportError:
        return None
    F, sizes, mse = torch.nn.functional, config["sizes"], config["loss"] == "mse"
    torch.manual_seed(0)
    act = torch.nn.Sigmoid if config["activation"] == "sigmoid" else torch.nn.ReLU
    # a Linear and an activation per layer, but cross_entropy applies its own softmax
    layers = [m for a, b in pairwise(sizes) for m in (torch.nn.Linear(a, b), act())]
    tdtype = getattr(torch, dtype)
    model = torch.nn.Sequential(*(layers if mse else layers[:-1])).to(tdtype)
    if config["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    targets = F.one_hot(ty, 10).to(tdtype) if mse else ty
    loss_fn = F.mse_loss if mse else F.cross_entropy
    bs = config["batch"]

    def run(n: int) -> float:
        torch.set_num_threads(n_threads)
        engine = 0.0
        for idx in torch.randperm(n).split(bs):
            xb, tb = tx[idx], targets[idx]
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss_fn(model(xb), tb).backward()
            engine += time.perf_counter() - t0
            opt.step()
        return engine

    return run


def _timed(f: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds f(*args) took, what it returned)."""
    start = time.perf_counter()
    out = f(*args)
    return time.perf_counter() - start, out


def _proc_kib(key: str) -> float:
    """The field ``key`` of /proc/self/status in KiB; NaN where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            return next(float(line.split()[1]) for line in f if line.startswith(key + ":"))
    except (OSError, StopIteration):
        return NAN


def measure(run: Run, n: int, repeats: int, warmup: int) -> tuple[float, float, float]:
    """(median seconds of run(n), median of the engine seconds it returns, peak MiB) over
    ``repeats`` runs, after one run(warmup): buffers, BLAS threads, caches, data copies."""
    run(warmup)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark VmHWM to the current RSS
    base = _proc_kib("VmRSS")
    seconds, engine = zip(*(_timed(run, n) for _ in range(repeats)), strict=True)
    peak = max(_proc_kib("VmHWM") - base, 0.0) / 1024
    return statistics.median(seconds), statistics.median(engine), peak


def gemm_row(repeats: int = 50) -> Row:
    """NumPy's float32 GFLOP/s on mlp800's first-layer product (batch x #0) @ (#0 x #1), the
    ceiling its training can approach: the median of ``repeats`` products, after one."""
    m, (k, n) = CONFIGS["mlp800"]["batch"], CONFIGS["mlp800"]["sizes"][:2]
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    a @ b
    seconds = statistics.median(_timed(np.matmul, a, b)[0] for _ in range(repeats))
    g = 2 * m * k * n / seconds / 1e9
    return Row("gemm", "mlp800", f"{m}x{k} @ {k}x{n}", m, "float32", NAN, NAN, g, g, NAN, False,
               f"{repeats} products")  # fmt: skip


def run_bench(
    *,
    configs: Sequence[str] = tuple(CONFIGS),
    engines: Sequence[str] | None = None,
    repeats: int = 3,
    dtype: str = "float32",
    data: str | None = None,
    threads: str | int | None = None,
    busy: bool = False,
    report: Callable[[Row], None] | None = None,
) -> tuple[list[Row], str]:
    """Measure every selected row in this process, one after the other, then the gemm row,
    then (``busy``) the ``BUSY_ROWS`` with one competing process; ``report`` gets each row as
    soon as it is measured. nnet and PyTorch compute with ``threads`` (a number, or auto:
    see :mod:`nnet.training.threads`), chosen anew for the busy rows, where PyTorch keeps its
    default of every core. Returns the rows and the data's name.
    """
    x, y, source = training_data(dtype, data)
    rows: list[Row] = []
    report = report or (lambda row: None)
    n_threads = resolve(threads)

    def measured(name: str, engine: str, samples: int | None, n_threads: int, others: int) -> None:
        config = CONFIGS[name]
        if engine == "pytorch":
            run = torch_runner(config, x, y, dtype, n_threads)
        else:
            run = nnet_runner(config, engine, x, y, dtype)
        if run is None:
            return
        n = samples or len(x)
        # a slow row warms up on the samples it measures, so that their copy is not counted
        with limited(n_threads):
            seconds, engine_seconds, peak = measure(run, n, repeats, warmup=samples or 2000)
        flops = flops_per_sample(engine, config["sizes"]) * n
        rows.append(Row(
            engine=engine, config=name, arch="-".join(map(str, config["sizes"])),
            batch=config["batch"], dtype=dtype, seconds_per_epoch=seconds * len(x) / n,
            samples_per_s=n / seconds, gflops=flops / seconds / 1e9,
            engine_gflops=flops / engine_seconds / 1e9, peak_mib=peak,
            extrapolated=samples is not None, measured=f"{repeats} x {n} samples",
            threads=n_threads, others=others,
        ))  # fmt: skip
        report(rows[-1])

    def chosen(config: str, engine: str) -> bool:
        return config in configs and (engines is None or engine in engines)

    for name, engine, samples in ROWS:
        if chosen(name, engine):
            measured(name, engine, samples, n_threads, 0)
    with limited(n_threads):
        rows.append(gemm_row())
    rows[-1].threads = n_threads
    report(rows[-1])
    busy_rows = [(c, e, w) for c, e, w in BUSY_ROWS if chosen(c, e)] if busy else []
    if busy_rows:
        with competitor():
            mine = resolve(threads)  # auto sees the competitor now
            for name, engine, which in busy_rows:
                if which == "chosen":
                    measured(name, engine, None, mine, 1)
                elif threads_default() != mine:
                    measured(name, engine, None, threads_default(), 1)
    return rows, source


def summary(rows: Sequence[Row]) -> list[str]:
    """The ratios the rows are for, in words (only those the rows allow)."""
    by = {(r.config, r.engine): r for r in rows if not r.others}
    lines = []
    for config, a, b in [("seed", "backprop", "pytorch"), ("mlp800", "backprop", "pytorch"),
                         ("seed", "frontprop", "backprop")]:  # fmt: skip
        ra, rb = by.get((config, a)), by.get((config, b))
        if ra and rb:
            lines.append(
                f"{config}: {a} takes {ra.seconds_per_epoch / rb.seconds_per_epoch:.2f} x "
                f"{'PyTorch' if b == 'pytorch' else b}'s time per epoch"
            )
    big, gemm = by.get(("mlp800", "backprop")), by.get(("mlp800", "gemm"))
    if big and gemm:
        lines.append(
            f"mlp800: backprop reaches {100 * big.gflops / gemm.gflops:.0f} % of the NumPy "
            f"float32 GEMM's {gemm.gflops:.0f} GFLOP/s over the whole epoch, and "
            f"{100 * big.engine_gflops / gemm.gflops:.0f} % while computing gradients"
        )

    def n_threads(row: Row) -> str:
        return f"{row.threads} thread{'s' if row.threads > 1 else ''}"

    for config in CONFIGS:
        busy = [r for r in rows if r.others and r.config == config]
        mine = next((r for r in busy if r.engine == "backprop"), None)
        for theirs in (r for r in busy if r.engine == "pytorch" and mine):
            assert mine is not None
            lines.append(
                f"{config}, with one competing process: backprop ({n_threads(mine)}) takes "
                f"{mine.seconds_per_epoch / theirs.seconds_per_epoch:.2f} x PyTorch's "
                f"({n_threads(theirs)}) time per epoch"
            )
    if mx := by.get(("seed", "matrix")):
        lines.append(
            f"seed: matrix takes {mx.seconds_per_epoch:.1f} s per epoch (extrapolated), "
            f"peak {mx.peak_mib:.0f} MiB"
        )
    if rc := by.get(("seed", "recursive")):
        lines.append(f"seed: recursive takes {rc.seconds_per_epoch / EPOCH:.2f} s per sample")
    return lines


HEADER = (
    f"{'engine':<10} {'config':<7} {'architecture':<20} {'batch':>5} {'dtype':<8}"
    f"{'threads':>7} {'busy':>4}"
    f"{'s/epoch':>11}  {'samples/s':>10} {'GFLOP/s':>8} {'engine':>8} {'peak MiB':>8}"
)


def format_row(row: Row) -> str:
    """``row`` under ``HEADER``: NaN columns blank, ``*`` after an extrapolated time."""

    def cell(value: float, spec: str) -> str:
        return "" if np.isnan(value) else format(value, spec)

    return (
        f"{row.engine:<10} {row.config:<7} {row.arch:<20} {row.batch:>5} {row.dtype:<8}"
        f"{row.threads:>7} {'yes' if row.others else 'no':>4}"
        f"{cell(row.seconds_per_epoch, '10.3f'):>11}{'*' if row.extrapolated else ' '} "
        f"{cell(row.samples_per_s, '10.0f'):>10} {row.gflops:8.2f} {row.engine_gflops:8.2f} "
        f"{cell(row.peak_mib, '8.1f'):>8}"
    )


def rows_json(rows: Sequence[Row]) -> str:
    """The rows as a JSON list of objects, NaN as null."""
    nan_to_none = [{k: None if v != v else v for k, v in asdict(r).items()} for r in rows]
    return json.dumps(nan_to_none)  # v != v only for NaN
