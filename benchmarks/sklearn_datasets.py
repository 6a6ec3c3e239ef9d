"""nnet's scikit-learn estimators against scikit-learn's own MLP, on scikit-learn's datasets.

    python benchmarks/sklearn_datasets.py                  # five seeds, one BLAS thread
    python benchmarks/sklearn_datasets.py --seeds 0-9 --threads 2 --dtype float32

Both sides get the same pipeline, StandardScaler then the network, and the same training:
hidden layers ``--hidden`` (100,) with relu, Adam with learning rate 0.001, batches of
min(200, n) ("auto"), ``--epochs`` (200) epochs all run (scikit-learn: tol=0 and
n_iter_no_change=epochs; nnet has no tol), no early stopping, no L2 penalty (alpha=0,
weight_decay=0). For every seed both train on the same split (75 % train, 25 % test,
stratified for the classifiers; the seed is the split's and both models' random_state).
Printed: a markdown table of the test score (accuracy for classifiers, R^2 for the
regressions) as mean +- std over the seeds, the mean fit seconds of each, and nnet's fit time
as a fraction of scikit-learn's.

load_diabetes is run twice: with its raw targets (25 .. 346, as both MLPs see them without
help) and with the targets standardized too (``TransformedTargetRegressor``, both sides).

``--dtype float32`` makes both sides compute in float32 (nnet's ``dtype="float32"``;
scikit-learn's MLP keeps float32 input in float32). BLAS runs on ``--threads`` threads
(threadpoolctl), one by default: on a shared or busy machine, multithreaded BLAS on these
small matrices measures the load more than the code.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from threadpoolctl import threadpool_limits

from nnet.apps.sklearn import NnetClassifier, NnetRegressor

DATASETS: dict[str, tuple[Callable[..., Any], str, bool]] = {
    # name: (loader, task, standardized targets)
    "digits": (load_digits, "classifier", False),
    "breast_cancer": (load_breast_cancer, "classifier", False),
    "wine": (load_wine, "classifier", False),
    "diabetes": (load_diabetes, "regressor", False),
    "diabetes_scaled_y": (load_diabetes, "regressor", True),
}


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def models(task: str, scaled_y: bool, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """The two pipelines, trained alike."""
    common = {
        "hidden_layer_sizes": args.hidden,
        "activation": "relu",
        "learning_rate_init": 0.001,
        "batch_size": "auto",
        "max_iter": args.epochs,
        "random_state": seed,
        "early_stopping": False,
    }
    if task == "classifier":
        ours, theirs = NnetClassifier, MLPClassifier
    else:
        ours, theirs = NnetRegressor, MLPRegressor
    nnet_model = ours(optimizer="adam", weight_decay=0.0, dtype=args.dtype, **common)
    sk_model = theirs(solver="adam", alpha=0.0, tol=0.0, n_iter_no_change=args.epochs, **common)
    out = {}
    for name, model in (("nnet", nnet_model), ("sklearn", sk_model)):
        if scaled_y:
            model = TransformedTargetRegressor(model, transformer=StandardScaler())
        # float32 for both: scikit-learn's MLP keeps float32 input as float32
        to_dtype = FunctionTransformer(lambda X: np.asarray(X, args.dtype))
        out[name] = make_pipeline(StandardScaler(), to_dtype, model)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=seeds_arg, default=list(range(5)))
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--hidden", type=lambda s: tuple(map(int, s.split(","))), default=(100,))
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated names")
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # tol=0 never converges
    names = args.datasets.split(",")
    print(
        f"hidden {args.hidden}, relu, Adam lr 0.001, batch min(200, n), {args.epochs} epochs, "
        f"{args.dtype}, {args.threads} BLAS thread(s), seeds {args.seeds}\n"
    )
    print("| dataset | metric | nnet score | sklearn score | nnet fit s | sklearn fit s | ratio |")
    print("|---|---|---|---|---|---|---|")
    with threadpool_limits(args.threads):
        for name in names:
            loader, task, scaled_y = DATASETS[name]
            X, y = loader(return_X_y=True)
            scores: dict[str, list[float]] = {"nnet": [], "sklearn": []}
            seconds: dict[str, list[float]] = {"nnet": [], "sklearn": []}
            for seed in args.seeds:
                split = train_test_split(
                    X, y, test_size=0.25, random_state=seed,
                    stratify=y if task == "classifier" else None,
                )  # fmt: skip
                X_train, X_test, y_train, y_test = split
                for who, model in models(task, scaled_y, seed, args).items():
                    start = time.perf_counter()
                    model.fit(X_train, y_train)
                    seconds[who].append(time.perf_counter() - start)
                    scores[who].append(model.score(X_test, y_test))

            def shown(values: list[float]) -> str:
                std = statistics.pstdev(values) if len(values) > 1 else 0.0
                return f"{statistics.mean(values):.4f} ± {std:.4f}"

            ours, theirs = statistics.mean(seconds["nnet"]), statistics.mean(seconds["sklearn"])
            metric = "accuracy" if task == "classifier" else "R²"
            print(
                f"| {name} | {metric} | {shown(scores['nnet'])} | {shown(scores['sklearn'])} | "
                f"{ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
