"""How the matrix engine's chunk size changes its speed (784-16-16-10, float32, batch 1000).

    python benchmarks/matrix_chunks.py

For each chunk budget (bytes of live A tensors), the median over 3 repeats of one gradient
of a batch of 1000 MNIST-like inputs, and the seconds per 60 000-sample epoch it implies.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import nnet
from nnet.core.engines import matrix


def main() -> None:
    rng = np.random.default_rng(0)
    net = nnet.Network([784, 16, 16, 10], seed=0, dtype="float32", init="author")
    x = rng.random((1000, 784)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 1000)]
    print(f"{'chunk budget':>12}  {'samples/chunk':>13}  {'ms/sample':>9}  {'s/epoch':>7}")
    for mib in (2, 4, 8, 16, 32, 64, 256):
        budget = mib * 2**20
        times = []
        for _ in range(3):
            start = time.perf_counter()
            matrix.gradients(net, x, t, chunk_bytes=budget)
            times.append(time.perf_counter() - start)
        per_sample = statistics.median(times) / 1000
        n = matrix.chunk_size(net, 0, chunk_bytes=budget)
        print(f"{mib:>8} MiB  {n:>13}  {1e3 * per_sample:>9.3f}  {60000 * per_sample:>7.1f}")


if __name__ == "__main__":
    main()
