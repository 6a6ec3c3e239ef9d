"""Where an epoch of 784-800-800-10 training goes (ReLU, cross-entropy, Adam, batch 128).

    python benchmarks/epoch_profile.py [--data DIR]

Prints, for the median of 3 MNIST epochs of the ``mlp800`` configuration of ``nnet bench``:
the whole epoch, the gradient computation (forward and backward), the optimizer steps and
the rest (gathering batches, loss and accuracy bookkeeping); then one Adam step on arrays
the size of the network's weights, measured alone (median of 5 x 200 steps) for nnet and,
when installed, PyTorch; and the least time an Adam step could take if it read w, g, m
and v once and wrote w, m and v once, at the memory bandwidth that ``w -= g`` reaches on
the same arrays. Real MNIST when on disk, random data of its shape otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from nnet.apps.bench import CONFIGS, training_data
from nnet.core.network import Network
from nnet.training.loop import Split, Trainer
from nnet.training.optim import Adam


def per_call(f: Callable[[], object], n: int = 200) -> float:
    """Median seconds per call of f over 5 runs of n calls, after one warm-up call."""
    f()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def epoch_parts(data: str | None) -> None:
    config = CONFIGS["mlp800"]
    x, y, source = training_data("float32", data)
    net = Network(config["sizes"], config["activation"], loss=config["loss"],
                  init=config["init"], seed=0)  # fmt: skip
    opt = Adam()
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
    print(f"one epoch of mlp800 on {source} (median of 3):")
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
    opt = Adam()
    print("one Adam step on 784-800-800-10's weights, alone:")
    print(f"  nnet                 {1e3 * per_call(lambda: opt.step(w, g, 1e-3)):6.2f} ms")
    try:
        import torch
    except ImportError:
        print("  PyTorch              (not installed: pip install 'nnet[bench]')")
    else:
        torch.set_num_threads(2)
        params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in w]
        for p, gk in zip(params, g, strict=True):
            p.grad = torch.from_numpy(gk.copy())
        topt = torch.optim.Adam(params, lr=1e-3)
        print(f"  PyTorch              {1e3 * per_call(topt.step):6.2f} ms")
    n = sum(a.size for a in w)
    a, b = rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32)
    seconds = per_call(lambda: np.subtract(a, b, out=a))
    bandwidth = 3 * a.nbytes / seconds  # two arrays read, one written
    print(f"  memory floor         {1e3 * 7 * a.nbytes / bandwidth:6.2f} ms"
          f"  (7 passes of {a.nbytes / 2**20:.1f} MiB at {bandwidth / 1e9:.0f} GB/s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder holding mnist/ (default: $NNET_DATA)")
    args = parser.parse_args()
    epoch_parts(args.data)
    adam_step()


if __name__ == "__main__":
    main()
