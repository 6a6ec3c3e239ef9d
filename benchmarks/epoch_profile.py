"""Where an epoch of 784-800-800-10 training goes (ReLU, cross-entropy, Adam, batch 128).

    python benchmarks/epoch_profile.py [--data DIR] [--kernels auto|numba|numpy] [--compile]

Prints, for the median of 3 MNIST epochs of the ``mlp800`` configuration of ``nnet bench``:
the whole epoch, the gradient computation (forward and backward), the optimizer steps and
the rest (gathering batches, loss and accuracy bookkeeping), with the optimizer's kernels
chosen by ``--kernels`` (default: $NNET_KERNELS, else auto); then one Adam step on arrays
the size of the network's weights, measured alone (median of 5 x 200 steps, with the
fastest and slowest of the 5) for nnet's NumPy kernels, its fused Numba kernels on 1, 2, ...
threads (up to the cores this process may use; with the parallel loop forced on every matrix
where some are below ``kernels.PARALLEL_MIN``) and, when installed, PyTorch; and the least
time an Adam step could take if it read w, g, m and v once and wrote w, m and v once, at the
memory bandwidth that ``w -= g`` reaches on the same arrays. Real MNIST when on disk, random
data of its shape otherwise.

``--compile`` adds what the fused kernels cost before their first step, each in a fresh
process: importing Numba and the kernels, then the first Adam step of mlp800 (float32, the
serial loop), cold (an empty cache: Numba compiles) and warm (the compiled code loaded from
the cache), and the same for every kernel, serial and parallel, in float32 and float64.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from nnet.apps.bench import CONFIGS, training_data
from nnet.core.network import Network
from nnet.kernel_choice import KERNELS
from nnet.training.loop import Split, Trainer
from nnet.training.optim import Adam


def timings(f: Callable[[], object], n: int = 200) -> list[float]:
    """Seconds per call of f in 5 runs of n calls, after one warm-up call."""
    f()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - start) / n)
    return times


def per_call(f: Callable[[], object], n: int = 200) -> float:
    """Median seconds per call of f over 5 runs of n calls, after one warm-up call."""
    return statistics.median(timings(f, n))


def row(label: str, value: str) -> None:
    print(f"  {label:<38} {value}")


def ms(times: list[float]) -> str:
    """The median in ms, with the fastest and slowest run."""
    return (f"{1e3 * statistics.median(times):6.2f} ms"
            f"  ({1e3 * min(times):.2f}-{1e3 * max(times):.2f})")  # fmt: skip


def epoch_parts(data: str | None, kernels: str | None) -> None:
    config = CONFIGS["mlp800"]
    x, y, source = training_data("float32", data)
    net = Network(config["sizes"], config["activation"], loss=config["loss"],
                  init=config["init"], seed=0)  # fmt: skip
    opt = Adam(kernels=kernels)
    trainer = Trainer.gradient(net, opt, lr=config["lr"], batch_size=config["batch"], epochs=1,
                      rng=np.random.default_rng(0))  # fmt: skip
    split = Split(x, np.eye(10, dtype=np.float32)[y], y)
    step = opt.step
    spent = [0.0]

    def timed_step(*args: object, **kwargs: object) -> None:
        start = time.perf_counter()
        step(*args, **kwargs)  # type: ignore[arg-type]
        spent[0] += time.perf_counter() - start

    opt.step = timed_step  # type: ignore[method-assign]
    rows = []
    for _ in range(4):  # the first is a warm-up
        spent[0] = 0.0
        trainer.progress = None
        start = time.perf_counter()
        row = trainer.run_epoch(split)
        total = time.perf_counter() - start
        assert row is not None
        rows.append((total, row["engine_seconds"], spent[0]))
    total, engine, optimizer = (statistics.median(r[i] for r in rows[1:]) for i in range(3))
    print(f"one epoch of mlp800 on {source} (median of 3), {opt.backend} kernels:")
    print(f"  whole epoch          {total:6.2f} s")
    print(f"  gradients            {engine:6.2f} s  ({100 * engine / total:.0f} %)")
    print(f"  optimizer (Adam)     {optimizer:6.2f} s  ({100 * optimizer / total:.0f} %)")
    rest = total - engine - optimizer
    print(f"  the rest             {rest:6.2f} s  ({100 * rest / total:.0f} %)")


def adam_step() -> None:
    rng = np.random.default_rng(0)
    shapes = [(785, 800), (801, 800), (801, 10)]
    w = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    g = [1e-3 * rng.standard_normal(s).astype(np.float32) for s in shapes]
    print("one Adam step on 784-800-800-10's weights (float32), alone; median (fastest-slowest):")
    opt = Adam(kernels="numpy")
    row("nnet, NumPy", ms(timings(lambda: opt.step(w, g, 1e-3))))
    try:
        import numba

        from nnet import kernels
    except ImportError:
        row("nnet, fused", "(Numba is not installed: pip install 'nnet[fast]')")
    else:
        fused = Adam(kernels="numba")
        fused.step(w, g, 1e-3)  # compiles, or loads from the cache
        before, threshold = kernels.threads(), kernels.PARALLEL_MIN
        for n in range(1, kernels.default_threads() + 1):
            numba.set_num_threads(n)
            label = f"nnet, fused, {n} thread{'s' if n > 1 else ''}"
            row(label, ms(timings(lambda: fused.step(w, g, 1e-3))))
            if n > 1 and any(a.size < threshold for a in w):
                kernels.PARALLEL_MIN = 0  # every matrix in the parallel loop
                row(f"{label}, all parallel", ms(timings(lambda: fused.step(w, g, 1e-3))))
                kernels.PARALLEL_MIN = threshold
        numba.set_num_threads(before)
    try:
        import torch
    except ImportError:
        row("PyTorch", "(not installed: pip install 'nnet[bench]')")
    else:
        torch.set_num_threads(2)
        params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in w]
        for p, gk in zip(params, g, strict=True):
            p.grad = torch.from_numpy(gk.copy())
        topt = torch.optim.Adam(params, lr=1e-3)
        row("PyTorch", ms(timings(topt.step)))
    n = sum(a.size for a in w)
    a, b = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    seconds = per_call(lambda: np.subtract(a, b, out=a))
    bandwidth = 3 * a.nbytes / seconds  # two arrays read, one written
    row("memory floor", f"{1e3 * 7 * a.nbytes / bandwidth:6.2f} ms  (7 passes of "
                        f"{a.nbytes / 2**20:.1f} MiB at {bandwidth / 1e9:.0f} GB/s)")  # fmt: skip


# What a fresh process pays before the fused kernels' first step (run with python -c).
FIRST_STEP = """
import json, sys, time
start = time.perf_counter()
import numba
from nnet import kernels
from nnet.training.optim import make_optimizer
import numpy as np
imported = time.perf_counter()
rng = np.random.default_rng(0)
def step(name, dtype, **kw):
    w = [rng.standard_normal(s).astype(dtype) for s in ((785, 800), (801, 10))]
    make_optimizer(name, kernels="numba", **kw).step(w, [a.copy() for a in w], 1e-3)
step("adam", "float32")  # what mlp800 compiles: the serial loop, float32
first = time.perf_counter()
if sys.argv[1] == "all":  # both loops of every kernel, float32 and float64
    kernels.PARALLEL_MIN = 0
    for dtype in ("float32", "float64"):
        for name, kw in (("sgd", {}), ("sgd", {"momentum": 0.9}), ("adam", {})):
            step(name, dtype, **kw)
print(json.dumps({"import": imported - start, "adam": first - imported,
                  "all": time.perf_counter() - imported}))
"""


def compile_cost() -> None:
    try:
        import numba  # noqa: F401
    except ImportError:
        print("compile cost: Numba is not installed (pip install 'nnet[fast]')")
        return
    print("the fused kernels before their first step, in a fresh process:")
    for what, label in (("adam", "mlp800's Adam (float32, serial loop)"),
                        ("all", "every kernel, both loops, float32 and float64")):  # fmt: skip
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            runs = [json.loads(subprocess.run(
                [sys.executable, "-c", FIRST_STEP, what], env=env, check=True,
                capture_output=True, text=True).stdout) for _ in range(2)]  # fmt: skip
        (cold, warm), key = runs, what
        print(f"  {label}: cold (compiling) {cold[key]:5.2f} s, warm (from the cache)"
              f" {warm[key]:5.2f} s; import of Numba and the kernels {cold['import']:.2f} s"
              f" cold, {warm['import']:.2f} s warm")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder holding mnist/ (default: $NNET_DATA)")
    parser.add_argument("--kernels", choices=KERNELS,
                        help="the optimizer's kernels in the epoch (default: $NNET_KERNELS, "
                             "else auto)")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="also measure the fused kernels' one-time compilation")  # fmt: skip
    args = parser.parse_args()
    epoch_parts(args.data, args.kernels)
    adam_step()
    if args.compile:
        compile_cost()


if __name__ == "__main__":
    main()
