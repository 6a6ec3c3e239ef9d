"""Run a training preset for several seeds and print each seed's final test figures.

    python benchmarks/presets_over_seeds.py --preset seed --seeds 0-9
    python benchmarks/presets_over_seeds.py --preset autoencoder --seeds 0-9

Each run is ``nnet train --preset P --seed S --quiet --json`` in a subprocess; the table
lists test accuracy (classifiers) or test loss (autoencoder) at the last epoch and the
training seconds, then the min / median / mean / max over the seeds (of the test loss too,
for classifiers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="seed")
    p.add_argument("--seeds", type=seeds_arg, default=list(range(10)))
    p.add_argument("extra", nargs="*", help="more nnet train flags (after --)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            cmd = [
                sys.executable,
                "-m",
                "nnet",
                "train",
                "--preset",
                args.preset,
                "--seed",
                str(seed),
                "--quiet",
                "--json",
                "--out",
                str(Path(tmp) / "model.npz"),
                *args.extra,
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(result)
            acc = result["test_accuracy"]
            shown = f"test accuracy {100 * acc:.2f}%" if acc is not None else ""
            print(
                f"seed {seed:>3}  {shown}  test loss {result['test_loss']:.5f}  "
                f"{result['seconds']:.1f} s",
                flush=True,
            )
    keys = ["test_loss"] if rows[0]["test_accuracy"] is None else ["test_accuracy", "test_loss"]
    for key in keys:
        values = [r[key] for r in rows]
        scale, unit = (100, "%") if key == "test_accuracy" else (1, "")
        print(
            f"{key} over {len(values)} seeds: min {scale * min(values):.4g}{unit}  "
            f"median {scale * statistics.median(values):.4g}{unit}  "
            f"mean {scale * statistics.mean(values):.4g}{unit}  "
            f"max {scale * max(values):.4g}{unit}"
        )


if __name__ == "__main__":
    main()
