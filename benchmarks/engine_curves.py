"""The notes' experiment with each engine: the same curve, and how long each took.

    python benchmarks/engine_curves.py                     # backprop, frontprop, matrix
    python benchmarks/engine_curves.py --engines backprop,frontprop --seed 1

Runs ``nnet train --preset seed --engine E --seed S --metrics ...`` once per engine (in a
subprocess, one after the other) and prints the test accuracy of every epoch side by side,
the largest difference between each engine's curve and the first one's, and each engine's
training seconds (data loading excluded; evaluation of the test set each epoch included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engines", default="backprop,frontprop,matrix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("extra", nargs="*", help="more nnet train flags (after --)")
    args = p.parse_args()
    engines = args.engines.split(",")
    curves, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            metrics = Path(tmp) / f"{engine}.jsonl"
            cmd = [
                sys.executable, "-m", "nnet", "train", "--preset", "seed", "--engine", engine,
                "--seed", str(args.seed), "--quiet", "--json", "--metrics", str(metrics),
                "--out", str(Path(tmp) / f"{engine}.npz"), *args.extra,
            ]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            seconds[engine] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            curves[engine] = rows
            print(f"{engine}: {seconds[engine]:.1f} s", file=sys.stderr, flush=True)
    print("epoch  " + "  ".join(f"{e:>10}" for e in engines))
    for i in range(len(curves[engines[0]])):
        accs = "  ".join(f"{100 * curves[e][i]['test_accuracy']:>9.2f}%" for e in engines)
        print(f"{i + 1:>5}  {accs}")
    first = engines[0]
    for e in engines:
        acc = max(
            abs(a["test_accuracy"] - b["test_accuracy"])
            for a, b in zip(curves[e], curves[first], strict=True)
        )
        loss = max(
            abs(a["test_loss"] - b["test_loss"]) / b["test_loss"]
            for a, b in zip(curves[e], curves[first], strict=True)
        )
        print(f"{e:>10}: {seconds[e]:8.1f} s training; largest difference from {first}: "
              f"test accuracy {100 * acc:.2f} points, test loss {loss:.1e} relative")  # fmt: skip


if __name__ == "__main__":
    main()
