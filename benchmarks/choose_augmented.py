"""The runs compared to choose ``nnet train --preset distorted`` (MNIST, float32, seed 0).

    taskset -c 1 python benchmarks/choose_augmented.py --epochs 24
    python benchmarks/choose_augmented.py --only elastic-20 --epochs 24   # one candidate

Every candidate is the ``best`` preset's network (784-800-800-10, ReLU, Adam 0.002 on a
cosine schedule, batches of 256) with ``--augment`` at some strengths and a dropout (and,
for reference, the best preset as it is: ``none``), trained
on 50 000 training images with 10 000 held out (``--val 10000``), shortened to ``--epochs``
so that all of them fit in about 25 minutes on one core. The choice is made on the
validation accuracy alone: the test set is never evaluated here (it is removed from the
run before training).

Each finished candidate is appended to ``benchmarks/augmented_candidates.jsonl`` (so an
interrupted comparison keeps what it measured), and the table of all of them is written to
``benchmarks/augmented_candidates.md`` and printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nnet.experiment import build, run
from nnet.fileio import atomic_write
from nnet.training.presets import settings_for
from nnet.training.threads import limited

HERE = Path(__file__).parent
RECORD = HERE / "augmented_candidates.jsonl"

AFFINE = {"translate": 2.0, "rotate": 10.0, "zoom": 0.1, "shear": 10.0}
NO_AFFINE = {"translate": 0.0, "rotate": 0.0, "zoom": 0.0, "shear": 0.0}
STRONG_AFFINE = {"translate": 3.0, "rotate": 15.0, "zoom": 0.15, "shear": 15.0}
BEST_DROPOUT = (0.1, 0.3, 0.3)

# name -> the settings over the best preset (with --augment)
CANDIDATES: dict[str, dict] = {
    "affine": {**AFFINE, "elastic_alpha": 0.0, "dropout": BEST_DROPOUT},
    "elastic-20": {**AFFINE, "elastic_alpha": 20.0, "elastic_sigma": 4.0, "dropout": BEST_DROPOUT},
    "elastic-34": {**AFFINE, "elastic_alpha": 34.0, "elastic_sigma": 4.0, "dropout": BEST_DROPOUT},
    "elastic-only-34": {
        **NO_AFFINE,
        "elastic_alpha": 34.0,
        "elastic_sigma": 4.0,
        "dropout": BEST_DROPOUT,
    },
    "elastic-20-less-dropout": {
        **AFFINE,
        "elastic_alpha": 20.0,
        "elastic_sigma": 4.0,
        "dropout": (0.0, 0.2, 0.2),
    },
    "strong-affine-elastic-20": {
        **STRONG_AFFINE,
        "elastic_alpha": 20.0,
        "elastic_sigma": 4.0,
        "dropout": BEST_DROPOUT,
    },
    # the reference: the best preset as it is, for as many epochs
    "none": {"augment": False, "dropout": BEST_DROPOUT},
    # added after the first seven: less dropout had won, so less still
    "elastic-20-dropout-0.1": {
        **AFFINE,
        "elastic_alpha": 20.0,
        "elastic_sigma": 4.0,
        "dropout": (0.0, 0.1, 0.1),
    },
    "elastic-20-no-dropout": {
        **AFFINE,
        "elastic_alpha": 20.0,
        "elastic_sigma": 4.0,
        "dropout": (0.0, 0.0, 0.0),
    },
}


def describe(values: dict) -> str:
    if not values.get("augment", True):
        return "no augmentation, dropout " + "/".join(f"{p:g}" for p in values["dropout"])
    parts = [
        f"translate {values['translate']:g}",
        f"rotate {values['rotate']:g}",
        f"zoom {values['zoom']:g}",
        f"shear {values['shear']:g}",
    ]
    if values["elastic_alpha"]:
        parts.append(f"elastic {values['elastic_alpha']:g}/{values.get('elastic_sigma', 4.0):g}")
    parts.append("dropout " + "/".join(f"{p:g}" for p in values["dropout"]))
    return ", ".join(parts)


def run_candidate(
    name: str, epochs: int, seed: int, data: str | None, train_samples: int | None = None
) -> dict:
    values = CANDIDATES[name]
    explicit = {"augment": True, **values, "val": 10000, "epochs": epochs, "seed": seed}
    explicit["train_samples"] = train_samples
    settings = settings_for("best", explicit)
    exp = build(settings, data=data, progress=False)
    exp.evals.pop("test")  # chosen on the validation split; the test set is never looked at

    def show(row: dict) -> None:
        print(
            f"  {name} epoch {row['epoch']:>2}/{epochs}: val acc {100 * row['val_accuracy']:.2f}%"
            f"  train loss {row['train_loss']:.4f}  {row['seconds']:.1f} s",
            flush=True,
        )

    seconds = run(exp, on_epoch=show)
    history = exp.trainer.history
    last = history[-1]
    best = max(history, key=lambda r: r["val_accuracy"])
    return {
        "name": name,
        "settings": describe(values),
        "epochs": epochs,
        "seed": seed,
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        "best_val_accuracy": best["val_accuracy"],
        "best_epoch": best["epoch"],
        "train_accuracy": last["train_accuracy"],
        "seconds": seconds,
        "seconds_per_epoch": seconds / len(history),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_table(rows: list[dict]) -> str:
    lines = [
        "# Candidates for `--preset distorted`",
        "",
        "Printed by `python benchmarks/choose_augmented.py` (one core, one thread; 50 000 "
        "training images, 10 000 held out for validation; the test set never evaluated). "
        "Every candidate is the best preset's 784-800-800-10 network with `--augment` (but the "
        "last, the reference without it).",
        "",
        "| candidate | strengths (px, degrees), dropout | epochs | val acc (last) "
        "| val acc (best, epoch) | train acc (as trained) | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['settings']} | {r['epochs']} | {100 * r['val_accuracy']:.2f} % "
            f"| {100 * r['best_val_accuracy']:.2f} % ({r['best_epoch']}) "
            f"| {100 * r['train_accuracy']:.2f} % | {r['seconds_per_epoch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", choices=list(CANDIDATES), help="these candidates only")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="data folder (default: $NNET_DATA, the cache)")
    p.add_argument("--train-samples", type=int, default=None, help="quick checks of the script")
    p.add_argument("--record", type=Path, default=RECORD, help="the .jsonl record (and its .md)")
    args = p.parse_args()
    with limited(args.threads):
        for name in args.only or list(CANDIDATES):
            print(f"{name}: {describe(CANDIDATES[name])}", flush=True)
            row = run_candidate(name, args.epochs, args.seed, args.data, args.train_samples)
            with open(args.record, "a") as f:
                f.write(json.dumps(row) + "\n")
    rows = [json.loads(line) for line in args.record.read_text().splitlines() if line.strip()]
    table = write_table(rows)
    with atomic_write(args.record.with_suffix(".md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
