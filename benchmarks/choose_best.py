"""The runs compared to choose ``nnet train --preset best`` (MNIST, float32, seed 0).

    python benchmarks/choose_best.py            # every candidate, one after the other
    python benchmarks/choose_best.py adam-800   # only the candidates whose name matches

Each candidate trains with 5000 training samples held out for validation (``--val 5000``);
the choice is made on validation accuracy and training time, never on the test set. The
table lists, at the last epoch, the validation and test accuracy (from the per-epoch
history), then the epoch with the lowest validation loss and its validation accuracy, and
the training seconds (data loading excluded, per-epoch evaluation included).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import nnet

BASE = ["--loss", "cross_entropy", "--activation", "relu", "--val", "5000"]

CANDIDATES: dict[str, list[str]] = {
    "adam-800x2-drop0.2-cos20": [
        "--sizes", "784,800,800,10", "--optimizer", "adam", "--lr", "0.001",
        "--batch-size", "128", "--epochs", "20", "--schedule", "cosine", "--dropout", "0.2",
    ],
    "adam-800x2-nodrop-cos20": [
        "--sizes", "784,800,800,10", "--optimizer", "adam", "--lr", "0.001",
        "--batch-size", "128", "--epochs", "20", "--schedule", "cosine",
    ],
    "adam-800x2-drop0.1,0.3,0.3-cos20": [
        "--sizes", "784,800,800,10", "--optimizer", "adam", "--lr", "0.001",
        "--batch-size", "128", "--epochs", "20", "--schedule", "cosine",
        "--dropout", "0.1,0.3,0.3",
    ],
    "nesterov-800x2-drop0.2-cos20": [
        "--sizes", "784,800,800,10", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
        "--nesterov", "--batch-size", "128", "--epochs", "20", "--schedule", "cosine",
        "--warmup", "1", "--dropout", "0.2",
    ],
    "adam-1024x2-drop0.3-b256-cos16": [
        "--sizes", "784,1024,1024,10", "--optimizer", "adam", "--lr", "0.002",
        "--batch-size", "256", "--epochs", "16", "--schedule", "cosine", "--dropout", "0.3",
    ],
    "adamw-512x2-drop0.2-cos30": [
        "--sizes", "784,512,512,10", "--optimizer", "adamw", "--lr", "0.001",
        "--weight-decay", "0.01", "--batch-size", "128", "--epochs", "30",
        "--schedule", "cosine", "--dropout", "0.2",
    ],
    "nesterov-800x2-drop0.1,0.3,0.3-cos20": [
        "--sizes", "784,800,800,10", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
        "--nesterov", "--batch-size", "128", "--epochs", "20", "--schedule", "cosine",
        "--warmup", "1", "--dropout", "0.1,0.3,0.3",
    ],
    "nesterov-1024x2-drop0.1,0.3,0.3-b256-cos20": [
        "--sizes", "784,1024,1024,10", "--optimizer", "sgd", "--lr", "0.2", "--momentum", "0.9",
        "--nesterov", "--batch-size", "256", "--epochs", "20", "--schedule", "cosine",
        "--warmup", "1", "--dropout", "0.1,0.3,0.3",
    ],
    "nesterov-1024x2-drop0.2-cos16": [
        "--sizes", "784,1024,1024,10", "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9",
        "--nesterov", "--batch-size", "128", "--epochs", "16", "--schedule", "cosine",
        "--warmup", "1", "--dropout", "0.2",
    ],
    "adam-1024x2-drop0.1,0.3,0.3-b256-cos14": [
        "--sizes", "784,1024,1024,10", "--optimizer", "adam", "--lr", "0.002",
        "--batch-size", "256", "--epochs", "14", "--schedule", "cosine",
        "--dropout", "0.1,0.3,0.3",
    ],
    "adam-1024x2-drop0.3-b256-cos14": [
        "--sizes", "784,1024,1024,10", "--optimizer", "adam", "--lr", "0.002",
        "--batch-size", "256", "--epochs", "14", "--schedule", "cosine", "--dropout", "0.3",
    ],
    "adam-800x2-drop0.1,0.3,0.3-b256-cos16": [
        "--sizes", "784,800,800,10", "--optimizer", "adam", "--lr", "0.002",
        "--batch-size", "256", "--epochs", "16", "--schedule", "cosine",
        "--dropout", "0.1,0.3,0.3",
    ],
    "adam-800x2-drop0.1,0.3,0.3-b256-cos24": [
        "--sizes", "784,800,800,10", "--optimizer", "adam", "--lr", "0.002",
        "--batch-size", "256", "--epochs", "24", "--schedule", "cosine",
        "--dropout", "0.1,0.3,0.3",
    ],
}  # fmt: skip


def main() -> None:
    wanted = sys.argv[1:]
    print(
        f"{'candidate':<36} {'val acc':>8} {'test acc':>8} {'min-val-loss epoch':>18} "
        f"{'its val acc':>11} {'seconds':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in CANDIDATES.items():
            if wanted and not any(w in name for w in wanted):
                continue
            model = Path(tmp) / "model.npz"
            cmd = [sys.executable, "-m", "nnet", "train", *BASE, *flags, "--quiet", "--json",
                   "--out", str(model)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            meta = nnet.load(model).meta
            history = meta["history"]
            best = summary["best_epoch"]
            val, test = history[-1]["val_accuracy"], history[-1]["test_accuracy"]
            print(
                f"{name:<36} {100 * val:>7.2f}% {100 * test:>7.2f}% "
                f"{best:>18} {100 * history[best - 1]['val_accuracy']:>10.2f}% "
                f"{summary['seconds']:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
