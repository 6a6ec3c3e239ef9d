"""What --augment costs: its seconds per epoch against the epoch of the network it feeds.

    taskset -c 1 python benchmarks/augment_cost.py --threads 1
    python benchmarks/augment_cost.py --preset distorted --repeats 3

Builds the run of a preset on MNIST (default ``distorted``, the whole 60 000 training
images) and measures, each the median of ``--repeats``:

- ``augment``: the augmenter alone, on every training image of an epoch in the run's batches
  (gathered into a batch array first, as the batch loop does; the gather is not counted);
- ``epoch without``: one training epoch of the network (``Trainer.run_epoch``: gather,
  forward pass, backprop, optimizer step; no evaluation) with augmentation switched off;
- ``epoch with``: the same epoch with it on.

It prints the augmenter's seconds as a percentage of the epoch without it (the goal: at
most 20 %), and the difference of the two epochs as a check of that figure in the loop.
The augmenter runs in the training thread, so the figures hold for the thread count given
(``--threads``, default 1, the BLAS's and Numba's threads while it runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from nnet.experiment import build
from nnet.training.presets import PRESETS, settings_for
from nnet.training.threads import limited


def time_augmenter(exp, rows_per_batch: int) -> float:
    """Seconds the augmenter takes for one epoch of ``exp``'s training images."""
    augmenter = exp.trainer.augment
    x = exp.train.x
    n = len(x)
    order = np.random.default_rng(0).permutation(n)
    batch = np.empty((rows_per_batch, x.shape[1]), x.dtype)
    total = 0.0
    for s in range(0, n, rows_per_batch):
        idx = order[s : s + rows_per_batch]
        rows = batch[: len(idx)]
        np.take(x, idx, axis=0, out=rows)
        start = time.perf_counter()
        augmenter(rows)
        total += time.perf_counter() - start
    return total


def time_epoch(exp, augment) -> float:
    """Seconds of one training epoch of ``exp`` with ``augment`` (None: off)."""
    trainer = exp.trainer
    trainer.augment = augment
    start = time.perf_counter()
    trainer.run_epoch(exp.train)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="distorted", choices=[k for k, v in PRESETS.items()
                                                             if v.augment])  # fmt: skip
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="data folder (default: $NNET_DATA, the cache)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="settings over the preset's, e.g. elastic_alpha=20")  # fmt: skip
    args = p.parse_args()
    changes = dict(item.split("=", 1) for item in args.set)
    settings = settings_for(args.preset)
    settings = settings.replace(**{k: type(getattr(settings, k))(v) for k, v in changes.items()})
    exp = build(settings, data=args.data, progress=False)
    augmenter = exp.trainer.augment
    assert augmenter is not None
    bs = settings.batch_size
    with limited(args.threads):
        time_epoch(exp, augmenter)  # warm-up: compiled kernels, first-touch of every buffer
        aug = [time_augmenter(exp, bs) for _ in range(args.repeats)]
        without, with_ = [], []
        for _ in range(args.repeats):
            without.append(time_epoch(exp, None))
            with_.append(time_epoch(exp, augmenter))
    a, e0, e1 = (statistics.median(v) for v in (aug, without, with_))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sizes = "-".join(map(str, settings.sizes))
    print(
        f"preset {args.preset}: {sizes}, batches of {bs}, {len(exp.train)} training images, "
        f"{settings.dtype}, {args.threads} thread(s) on {cores} usable core(s), "
        f"median of {args.repeats}"
    )
    s = settings
    print(
        f"strengths: translate {s.translate:g} px, rotate {s.rotate:g} deg, zoom {s.zoom:g}, "
        f"shear {s.shear:g} deg, elastic alpha {s.elastic_alpha:g} px, sigma "
        f"{s.elastic_sigma:g} px"
    )
    print(f"augment alone:       {a:6.2f} s per epoch")
    print(f"epoch without it:    {e0:6.2f} s")
    print(f"epoch with it:       {e1:6.2f} s  (difference {e1 - e0:+.2f} s)")
    verdict = "within" if a <= 0.2 * e0 else "over"
    share = 100 * a / e0
    print(f"augmentation costs {share:.1f} % of the epoch it feeds ({verdict} the 20 % goal)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
