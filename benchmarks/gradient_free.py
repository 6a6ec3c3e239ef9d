"""Training without gradients against backprop, on the notes' network: accuracy vs wall time.

    python benchmarks/gradient_free.py                  # about 4 minutes on 2 cores
    python benchmarks/gradient_free.py --seed 1 --keep runs/gradient_free
    python benchmarks/gradient_free.py -- --train-samples 2000 --epochs 1   # a smoke test

Runs, one after the other, each as ``nnet train --preset seed ... --metrics --json`` with
every other setting at its default (the trainers' defaults: see ``nnet train --help``):

- ``backprop``: the notes' experiment as it is (SGD, lr 10, momentum 0.5, 16 epochs);
- ``backprop-100``: the same for 100 epochs (still a fraction of the others' time);
- ``evolution``: ``--trainer evolution`` (evolution strategies feeding Adam);
- ``genetic``: ``--trainer genetic`` (the notes' author's method, tuned).

Then prints one table (final test accuracy, training seconds, seconds per step, and the
seconds each run took to first reach 80, 85, 88 and 90 % test accuracy), measures how well
the evolution-strategies estimate points along the true gradient, and draws test accuracy
against cumulative training seconds with ``nnet plot ... --x seconds`` (default
``docs/gradient_free.png``). Flags after ``--`` are added to every run.

Tuning record (seed 0, this 2-core machine; test accuracy after about 60 s of training, then
the defaults in full; see also nnet/presets.py):

=========================================================== ==========  =========
genetic (population 100, elite 2 unless said)               test acc.   seconds
=========================================================== ==========  =========
batch 1000, mutation 5 % x N(0, 0.05^2), crossover 0.5      11.4 %      6 (3 epochs)
batch 100, same                                             79.0 %      45
batch 100, mutation scale 0.02                              55.8 %      44
batch 100, crossover 0                                      65.3 %      41
batch 50                                                    78.7 %      53
batch 100, population 50, mutation 2 % x N(0, 0.1^2)        81.1 %      41
batch 100, mutation 2 % x N(0, 0.1^2)                       83.6 %      60
batch 200, mutation 2 % x N(0, 0.1^2)                       86.6 %      60
batch 500, mutation 2 % x N(0, 0.1^2)                       86.8 %      61
batch 1000, mutation 2 % x N(0, 0.1^2)                      84.8 %      61
batch 500, mutation 1 % x N(0, 0.1^2)                       87.1 %      61
batch 500, mutation 2 % x N(0, 0.05^2)                      86.7 %      61
batch 500, mutation 2 % x N(0, 0.1^2), crossover 0          80.7 %      60
batch 500, elite 10                                         86.9 %      61
default: batch 500, 2 % x N(0, 0.1^2), 64 epochs            88.0 %      109
=========================================================== ==========  =========

=========================================================== ==========  =========
evolution (100 pairs, sigma 0.02, Adam lr 0.02 unless said) test acc.   seconds
=========================================================== ==========  =========
batch 100                                                   88.8 %      66
batch 100, lr 0.01                                          88.8 %      65
batch 100, lr 0.05                                          84.5 %      66
batch 100, sigma 0.05                                       89.1 %      69
batch 100, sigma 0.01                                       88.3 %      71
batch 100, 50 pairs                                         86.8 %      66
batch 100, 200 pairs                                        89.2 %      82
batch 300                                                   90.3 %      65
batch 500                                                   90.3 %      64
batch 1000                                                  91.0 %      62
batch 1000, 200 pairs                                       90.6 %      63
default: batch 1000, 32 epochs                              91.5 %      101
=========================================================== ==========  =========
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNS = {
    "backprop": [],
    "backprop-100": ["--epochs", "100"],
    "evolution": ["--trainer", "evolution"],
    "genetic": ["--trainer", "genetic"],
}
PLOT_ORDER = ["backprop-100", "backprop", "evolution", "genetic"]
THRESHOLDS = (0.80, 0.85, 0.88, 0.90)


def train(name: str, flags: list[str], folder: Path, seed: int, extra: list[str]) -> dict:
    metrics, model = folder / f"{name}.jsonl", folder / f"{name}.npz"
    cmd = [
        sys.executable, "-m", "nnet", "train", "--preset", "seed", *flags, "--seed", str(seed),
        "--quiet", "--json", "--metrics", str(metrics), "--out", str(model), *extra,
    ]  # fmt: skip
    print(f"running {name}: nnet {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{name} failed:\n{out.stderr}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    print(
        f"  {name}: {100 * summary['test_accuracy']:.2f} % in {summary['seconds']:.1f} s "
        f"(process {time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    return {"flags": flags, "summary": summary, "rows": rows, "metrics": metrics, "model": model}


def time_to(rows: list[dict], accuracy: float) -> float | None:
    """Cumulative seconds at the end of the first epoch with test accuracy >= accuracy."""
    total = 0.0
    for row in rows:
        total += row["seconds"]
        if row["test_accuracy"] >= accuracy:
            return total
    return None


def why(es_model: Path, data: str | None) -> None:
    """Print the cosine similarity between the evolution-strategies estimate (the trainer's
    default pairs and sigma) and the true gradient (backprop), on one batch of 1000
    training samples, at the notes' initial weights and at the weights ES trained."""
    import numpy as np

    import nnet
    from nnet.data.datasets import MNIST, load, one_hot, to_inputs
    from nnet.experiment import build
    from nnet.training.evolution import es_gradient, flatten
    from nnet.training.presets import TRAINER_DEFAULTS, settings_for

    defaults = TRAINER_DEFAULTS["evolution"]
    pairs, sigma = defaults["population"] // 2, defaults["sigma"]
    start = build(settings_for("seed", trainer="evolution"), data=data, progress=False).net
    dataset = load("mnist", data, progress=False)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(dataset.x_train), 1000, replace=False)
    x = to_inputs(dataset.x_train[idx], "float32")
    t = one_hot(dataset.y_train[idx], MNIST.n_classes, "float32")
    cos = {}
    for label, net in (("initial", start), ("trained", nnet.load(es_model))):
        true = flatten(nnet.gradients(net, x, t)).astype(np.float64)
        est, _ = es_gradient(net, x, t, pairs=pairs, sigma=sigma, rng=rng)
        est = flatten(est).astype(np.float64)
        cos[label] = float(est @ true / (np.linalg.norm(est) * np.linalg.norm(true)))
    print(
        f"\nWhy: on one batch of 1000, the evolution-strategies estimate of the gradient "
        f"({pairs} antithetic pairs, sigma {sigma}) has cosine similarity {cos['initial']:.3f} "
        f"with the true gradient at the initial weights and {cos['trained']:.3f} at the "
        f"weights it trained ({start.n_params} weights); each estimate costs {2 * pairs + 1} "
        "forward passes, where backprop gets the exact gradient for about the cost of 3."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, metavar="DIR", help="keep the metrics and model files here")
    p.add_argument(
        "--plot", type=Path, default=ROOT / "docs" / "gradient_free.png", help="PNG to write"
    )
    p.add_argument("--runs", default=",".join(RUNS), help="which runs, separated by commas")
    p.add_argument("extra", nargs="*", help="more nnet train flags for every run (after --)")
    args = p.parse_args()
    names = args.runs.split(",")
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        p.error(f"unknown runs {unknown}; choose among {', '.join(RUNS)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        results = {n: train(n, RUNS[n], folder, args.seed, args.extra) for n in names}
        report(results, args)
        if "evolution" in results:
            why(results["evolution"]["model"], os.environ.get("NNET_DATA"))
        plot = [sys.executable, "-m", "nnet", "plot"]
        # the longer backprop run first, so that the default one is drawn over it
        plot += [str(results[n]["metrics"]) for n in sorted(names, key=PLOT_ORDER.index)]
        plot += ["--x", "seconds", "--out", str(args.plot)]
        subprocess.run(plot, check=True, stdout=subprocess.DEVNULL)
        shown = args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT) else args.plot
        files = " ".join(Path(f).name for f in plot[4:-4])
        print(f"\nwrote {shown}: nnet plot {files} --x seconds --out {shown}")


def report(results: dict[str, dict], args: argparse.Namespace) -> None:
    import numpy as np

    import nnet

    print(
        f"\nThe notes' network (784-16-16-10 sigmoid, MSE, author's init) on MNIST, seed "
        f"{args.seed}; nnet {nnet.__version__}, NumPy {np.__version__}, {os.cpu_count()} CPUs"
        + (f"; extra flags {' '.join(args.extra)}" if args.extra else "")
    )
    heads = ["run", "flags (after --preset seed)", "epochs", "steps", "test acc", "seconds"]
    heads += ["ms/step"] + [f"to {int(100 * a)} %" for a in THRESHOLDS]
    widths = [13, 28, 6, 6, 8, 7, 7] + [7] * len(THRESHOLDS)
    print()
    print(row(heads, widths))
    print("  ".join("-" * w for w in widths))
    for name, r in results.items():
        s, rows = r["summary"], r["rows"]
        steps = sum(-(-row["samples"] // batch_size(r)) for row in rows)
        cells = [name, " ".join(r["flags"]) or "(the notes' settings)", str(s["epochs"])]
        cells += [str(steps), f"{100 * s['test_accuracy']:.2f}%", f"{s['seconds']:.1f}"]
        train_seconds = sum(row["train_seconds"] for row in rows)
        cells.append(f"{1000 * train_seconds / max(steps, 1):.1f}")
        for a in THRESHOLDS:
            t = time_to(rows, a)
            cells.append("never" if t is None else f"{t:.1f}")
        print(row(cells, widths))
    print(
        "\nseconds: training with each epoch's test evaluation, data loading excluded (the "
        '"seconds" of nnet train --json); steps: mini-batches = updates (a generation each for '
        "genetic and evolution); ms/step: training time per step; to N %: cumulative seconds "
        "until the test accuracy, measured after each epoch, first reached N %."
    )


def row(cells: list[str], widths: list[int]) -> str:
    """The first two columns left-aligned, the numbers right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs).rstrip()


def batch_size(result: dict) -> int:
    import nnet

    return int(nnet.load(result["model"]).meta["training"]["batch_size"])


if __name__ == "__main__":
    main()
