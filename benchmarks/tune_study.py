"""The figures of an nnet tune study against ``--preset best``, for the README.

    nnet tune --storage tune-1h.db --study mnist-1h --timeout 3600 --trials 1000 --workers 2 \\
        --seed 0 --plot tune-1h
    python benchmarks/tune_study.py --storage tune-1h.db --study mnist-1h

It prints three comparisons of the study's best trial (the completed trial with the highest
validation accuracy) with ``--preset best``:

1. validation accuracy on the same split: the best trial's, as the study recorded it, and
   ``--preset best`` trained exactly as a trial is (``nnet.experiment.build`` and ``run`` on
   the trial's validation split, training samples and seed; the weights of the epoch with
   the lowest validation loss, scored on the validation split);
2. test accuracy, each trained on the whole training set: ``nnet train --from-study`` and
   ``nnet train --preset best`` (seed 0), each once;
3. training time of those two runs: the seconds of the training passes (the ``train_seconds``
   of every epoch in the model file's history, evaluations excluded, since ``--from-study``
   measures the test set once at the end and ``--preset best`` after every epoch), and the
   wall seconds of the run as ``nnet train --json`` reports them.

Flags after ``--`` go to both ``nnet train`` runs (e.g. ``-- --epochs 1`` for a quick check
of the whole path).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnet.apps.tune import best_trial, load_study
from nnet.experiment import build, run
from nnet.files.model_file import load as load_model
from nnet.training.loop import evaluate
from nnet.training.presets import settings_for


def train(args: list[str], out: Path) -> dict[str, Any]:
    """``nnet train ARGS --out OUT --quiet --json``: its summary, and the training passes'
    seconds summed from the model file's history."""
    cmd = [sys.executable, "-m", "nnet", "train", *args, "--out", str(out), "--quiet", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    history = load_model(out).meta["history"]
    summary["train_seconds"] = sum(row["train_seconds"] for row in history)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--storage", default="nnet-tune.db", help="the study's database (file or URL)")
    p.add_argument("--study", help="its name (default: the storage's only study)")
    p.add_argument("--data", help="data folder holding mnist/ (default: $NNET_DATA, ...)")
    p.add_argument("extra", nargs="*", help="more nnet train flags for both runs (after --)")
    args = p.parse_args()
    ref = f"{args.storage}:{args.study}" if args.study else args.storage
    study = load_study(ref)
    trial = best_trial(study)
    tuned = trial.user_attrs["settings"]
    data = ["--data", args.data] if args.data else []

    # 1. validation accuracy on the trial's own split, --preset best trained as a trial is
    same = {k: tuned[k] for k in ("val", "train_samples", "seed", "dataset")}
    exp = build(settings_for("best", same), data=args.data, progress=False)
    exp.evals.pop("test", None)  # as in a trial
    run(exp)
    _, preset_val = evaluate(exp.net, exp.evals["val"])

    # 2., 3. each trained on the whole training set, the test set measured once
    with tempfile.TemporaryDirectory() as tmp:
        best = train(["--from-study", ref, *data, *args.extra], Path(tmp) / "tuned.npz")
        preset = train(["--preset", "best", *data, *args.extra], Path(tmp) / "best.npz")

    split = f"{tuned['val']} held-out training images, seed {tuned['seed']}"
    if tuned.get("train_samples"):
        split += f", {tuned['train_samples']} training images"
    print(f"study {study.study_name!r}: best trial {trial.number} of {len(study.trials)}")
    print(f"settings: {json.dumps({k: v for k, v in trial.params.items()})}")
    print()
    print("| | validation accuracy (same split) | test accuracy | training seconds | wall s |")
    print("|---|---|---|---|---|")
    for name, val, result in (
        (f"tuned (trial {trial.number})", trial.value, best),
        ("`--preset best`", preset_val, preset),
    ):
        print(
            f"| {name} | {100 * val:.2f} % | {100 * result['test_accuracy']:.2f} % | "
            f"{result['train_seconds']:.1f} | {result['seconds']:.1f} |"
        )
    print(
        f"\nvalidation split: {split}; test and time: the whole training set, "
        f"{best['epochs']} and {preset['epochs']} epochs"
    )


if __name__ == "__main__":
    main()
