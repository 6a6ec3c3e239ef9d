"""Train ``--preset distorted`` with three seeds and print the README's table.

    taskset -c 1 python benchmarks/augmented_seeds.py --seeds 0-2
    taskset -c 1 python benchmarks/augmented_seeds.py --seeds 0-2 -- --dataset fashion-mnist

Each run is ``nnet train --preset distorted --seed S --threads 1 --quiet --json`` in a
subprocess (the whole 60 000 training images; the test set evaluated after every epoch, as
``nnet train`` does); its JSON summary is appended to ``--record`` when given (so the seeds
can be run one at a time), and the table lists, for every seed in the record or just run,
the test accuracy of the saved model and the minutes of training (``seconds`` of the
summary: data loading excluded, the per-epoch test evaluation included), then the median.
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


def train(preset: str, seed: int, threads: int, extra: list[str], folder: Path) -> dict:
    cmd = [
        sys.executable, "-m", "nnet", "train", "--preset", preset, "--seed", str(seed),
        "--threads", str(threads), "--quiet", "--json",
        "--out", str(folder / f"{preset}-{seed}.npz"),
        "--metrics", str(folder / f"{preset}-{seed}.jsonl"), *extra,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {**summary, "extra": extra}


def table(rows: list[dict]) -> str:
    lines = ["| seed | test accuracy | minutes of training |", "|---|---|---|"]
    for r in rows:
        minutes = r["seconds"] / 60
        lines.append(f"| {r['seed']} | {100 * r['test_accuracy']:.2f} % | {minutes:.1f} |")
    accs = [r["test_accuracy"] for r in rows]
    mins = [r["seconds"] / 60 for r in rows]
    lines.append(
        f"| median | {100 * statistics.median(accs):.2f} % | {statistics.median(mins):.1f} |"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="distorted")
    p.add_argument("--seeds", type=seeds_arg, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--record", type=Path, help="append each run's summary here (JSON lines)")
    p.add_argument("--table-only", action="store_true", help="print the record's table only")
    p.add_argument("--keep", type=Path, help="folder for the models and metrics (default: temp)")
    p.add_argument("extra", nargs="*", help="more nnet train flags (after --)")
    args = p.parse_args()
    rows: list[dict] = []
    if args.record is not None and args.record.exists():
        rows = [json.loads(line) for line in args.record.read_text().splitlines() if line]
        rows = [r for r in rows if r.get("extra", []) == args.extra]
    if not args.table_only:
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.keep or Path(tmp)
            for seed in args.seeds:
                row = train(args.preset, seed, args.threads, args.extra, folder)
                print(
                    f"seed {seed}: test accuracy {100 * row['test_accuracy']:.2f}%, "
                    f"{row['seconds'] / 60:.1f} min of training ({row['epochs']} epochs)",
                    flush=True,
                )
                rows = [r for r in rows if r["seed"] != seed] + [row]
                if args.record is not None:
                    with open(args.record, "a") as f:
                        f.write(json.dumps(row) + "\n")
    rows = sorted({r["seed"]: r for r in rows if r["seed"] in args.seeds}.values(),
                  key=lambda r: r["seed"])  # fmt: skip
    flags = " ".join(["--preset", args.preset, *args.extra])
    print(f"nnet train {flags} --seed S --threads 1 (one core):")
    print(table(rows))


if __name__ == "__main__":
    main()
