"""The ``nnet`` command line: one subcommand per job.

Every problem a user can cause ends with one line ``nnet: error: ...`` and exit status 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from nnet.core.activations import ACTIVATIONS
from nnet.core.engines import ENGINES
from nnet.core.init import INITS
from nnet.core.loss import LOSSES
from nnet.core.network import DTYPES, Network, check_sizes
from nnet.data.datasets import DATASETS
from nnet.errors import NnetError
from nnet.experiment import one_or_list, to_split
from nnet.training.loop import DivergenceError
from nnet.training.optim import OPTIMIZERS, SCHEDULES
from nnet.training.presets import PRESETS, TRAINER_DEFAULTS, TRAINER_SETTINGS, settings_for
from nnet.version import __version__

# ----------------------------------------------------------------------------- arg types


def sizes_arg(text: str) -> list[int]:
    """'784,16,16,10' or '784-16-16-10' -> [784, 16, 16, 10]."""
    parts = text.replace("-", ",").split(",")
    try:
        return check_sizes([int(p) for p in parts])
    except (ValueError, NnetError) as exc:
        msg = str(exc) if isinstance(exc, NnetError) else f"not a list of integers: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def names_arg(known: Sequence[str], what: str):
    """A type for 'name' or 'name,name,...' where every name is in ``known``."""

    def parse(text: str) -> list[str]:
        names = text.split(",")
        for n in names:
            if n not in known:
                raise argparse.ArgumentTypeError(
                    f"unknown {what} {n!r}: expected one of {', '.join(known)}"
                )
        return names

    return parse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# ----------------------------------------------------------------------------- gradcheck


def add_gradcheck(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradcheck",
        help="check every engine's gradient against finite differences",
        description=(
            "Build a random network, compute the gradient of the batch mean of E with each "
            "engine, and print each engine's maximum relative error against central finite "
            "differences and against the first engine."
        ),
    )
    p.add_argument("--sizes", type=sizes_arg, default=[784, 16, 16, 10], help="e.g. 784,16,16,10")
    p.add_argument(
        "--activation",
        type=names_arg(list(ACTIVATIONS), "activation"),
        default=["sigmoid"],
        help="one name, or one per layer 1..L separated by commas",
    )
    p.add_argument("--loss", choices=list(LOSSES), default="mse")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--batch", type=positive_int, default=2, help="samples in the batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--engines",
        type=names_arg(list(ENGINES), "engine"),
        default=list(ENGINES),
        help="engines to check, separated by commas (default: all)",
    )
    p.add_argument(
        "--method",
        choices=["auto", "full", "directional"],
        default="auto",
        help="finite differences on every weight (full), along random directions, or "
        "full up to 20000 weights (auto)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_gradcheck)


def cmd_gradcheck(args: argparse.Namespace) -> int:
    from nnet.core.engines import gradients
    from nnet.core.gradcheck import check_engines

    rng = np.random.default_rng(args.seed)
    net = Network(
        args.sizes,
        one_or_list(args.activation),
        loss=args.loss,
        seed=rng,
        dtype=args.dtype,
    )
    x = rng.random((args.batch, args.sizes[0]))
    t = np.eye(args.sizes[-1])[rng.integers(0, args.sizes[-1], args.batch)]
    full = args.method == "full" or (args.method == "auto" and net.n_params <= 20000)
    seconds = {}
    for e in args.engines:
        start = time.perf_counter()
        gradients(net, x, t, engine=e)
        seconds[e] = time.perf_counter() - start
    report = check_engines(net, x, t, engines=args.engines, full=full, rng=rng)
    tol = 1e-6 if net.dtype == np.float64 else 1e-2
    ok = all(v <= tol for v in report["fd"].values())
    if args.json:
        print(json.dumps({**report, "seconds": seconds, "tolerance": tol, "ok": ok}))
        return 0 if ok else 1
    sizes = "-".join(map(str, net.sizes))
    print(
        f"gradcheck: {sizes}, {','.join(dict.fromkeys(net.activations))}, loss {net.loss.name}, "
        f"{net.dtype.name}, batch {args.batch}, seed {args.seed}; "
        f"{report['method']} central differences over {net.n_params} weights"
    )
    first = args.engines[0]
    print(
        f"{'engine':<10}  {'rel. error vs FD':>16}  {'rel. diff vs ' + first:>22}  {'seconds':>8}"
    )
    for e in args.engines:
        print(
            f"{e:<10}  {report['fd'][e]:>16.2e}  {report['agreement'][e]:>22.2e}  "
            f"{seconds[e]:>8.4f}"
        )
    verdict = "PASS: every engine is" if ok else "FAIL: some engine is not"
    print(f"{verdict} within {tol:g} of finite differences")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- train


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def fraction_below_one(text: str) -> float:
    value = nonnegative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return value


def probability(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def positive_probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text}")
    return value


def population_size(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"a population needs at least 2 members, got {value}")
    return value


def rates_arg(text: str) -> list[float]:
    """'0.2' or '0.2,0.5,0.5': dropout rates, each in [0, 1)."""
    try:
        return [fraction_below_one(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"dropout rates: {exc}") from None


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def output_path(text: str) -> Path:
    """A file path to write: its folder must exist and it must not be a folder."""
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"the folder {folder} is not writable")
    return path


def output_dir(text: str) -> Path:
    """A folder to write into: created if missing, but its parent must exist."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    if not path.exists() and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"the folder {path.parent} does not exist; create it first"
        )
    return path


def input_file(text: str) -> Path:
    """A file path to read: it must exist and be a readable file."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable")
    return path


def data_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give the data folder")
    return path


def add_data_flags(p: argparse.ArgumentParser, *, default_dataset: str | None) -> None:
    p.add_argument(
        "--dataset",
        choices=list(DATASETS),
        default=default_dataset,
        help="mnist or fashion-mnist"
        + (" (default: the model's)" if default_dataset is None else ""),
    )
    p.add_argument(
        "--data",
        type=data_dir,
        metavar="DIR",
        help="data folder holding mnist/ or fashion-mnist/ (default: $NNET_DATA, then "
        "the user cache; downloaded there when missing)",
    )
    p.add_argument("--no-download", action="store_true", help="never download; fail instead")


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a network on MNIST (the notes' experiment by default)",
        description=(
            "Train a network and save it. A preset fills every setting (default: the notes' "
            "experiment, --preset seed); flags given explicitly override it. "
            "--trainer genetic or evolution trains without gradients; it brings its own "
            "defaults for the settings it needs, laid over the preset, and flags given "
            "explicitly still win: "
            + "; ".join(
                f"{kind}: "
                + ", ".join(
                    f"--{k.replace('_', '-')} {v}"
                    for k, v in TRAINER_DEFAULTS[kind].items()
                    if v is not None and k not in ("nesterov",)
                )
                for kind in ("genetic", "evolution")
            )
            + ". They compute no gradient, so --engine, --dropout and --checkpoint are "
            "refused with them, and the genetic algorithm uses no optimizer or learning rate."
        ),
    )
    p.add_argument(
        "--preset", choices=list(PRESETS), help="the settings to start from (default seed)"
    )
    p.add_argument("--sizes", type=sizes_arg, help="layer sizes, e.g. 784,16,16,10")
    p.add_argument(
        "--activation",
        type=names_arg(list(ACTIVATIONS), "activation"),
        help="one name, or one per layer 1..L separated by commas",
    )
    p.add_argument("--loss", choices=list(LOSSES))
    p.add_argument(
        "--init",
        type=names_arg(list(INITS), "initialization"),
        help=f"weight initialization, one name or one per layer: {', '.join(INITS)}",
    )
    p.add_argument("--engine", choices=list(ENGINES), help="gradient engine (default backprop)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS))
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--momentum", type=fraction_below_one)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--weight-decay", type=nonnegative_float)
    p.add_argument(
        "--dropout",
        type=rates_arg,
        help="dropout rate for every hidden layer, or one per layer 0..L-1 (input first)",
    )
    p.add_argument("--schedule", choices=list(SCHEDULES), help="learning-rate schedule")
    p.add_argument("--warmup", type=nonnegative_float, help="epochs of linear warm-up")
    p.add_argument("--val", type=nonnegative_int, help="training samples held out for validation")
    p.add_argument(
        "--patience",
        type=nonnegative_int,
        help="stop after this many epochs without a better validation loss (needs --val)",
    )
    p.add_argument(
        "--train-samples",
        type=positive_int,
        metavar="N",
        help="train on the first N training samples only (quick experiments); default all",
    )
    p.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    p.add_argument("--dtype", choices=DTYPES, help="float32 (default) or float64")
    g = p.add_argument_group(
        "training without gradients",
        "one generation per mini-batch; the whole population is evaluated at once",
    )
    g.add_argument(
        "--trainer",
        choices=list(TRAINER_SETTINGS),
        help="gradient (default: backprop or --engine), genetic (a genetic algorithm) or "
        "evolution (evolution strategies feeding --optimizer)",
    )
    g.add_argument(
        "--population",
        type=population_size,
        metavar="P",
        help="members per generation (genetic; default "
        f"{TRAINER_DEFAULTS['genetic']['population']}) or perturbations per step, even "
        f"(evolution; default {TRAINER_DEFAULTS['evolution']['population']})",
    )
    g.add_argument(
        "--mutation-rate",
        type=positive_probability,
        metavar="R",
        help="genetic: probability that a weight of a child is mutated "
        f"(default {TRAINER_DEFAULTS['genetic']['mutation_rate']})",
    )
    g.add_argument(
        "--mutation-scale",
        type=positive_float,
        metavar="S",
        help="genetic: standard deviation of a mutation "
        f"(default {TRAINER_DEFAULTS['genetic']['mutation_scale']})",
    )
    g.add_argument(
        "--crossover-rate",
        type=probability,
        metavar="C",
        help="genetic: probability that a child is a uniform crossover of its two parents "
        f"rather than a copy of one (default {TRAINER_DEFAULTS['genetic']['crossover_rate']})",
    )
    g.add_argument(
        "--elite",
        type=nonnegative_int,
        metavar="E",
        help="genetic: best members kept unchanged in the next generation "
        f"(default {TRAINER_DEFAULTS['genetic']['elite']})",
    )
    g.add_argument(
        "--sigma",
        type=positive_float,
        help="evolution: standard deviation of the weight perturbations "
        f"(default {TRAINER_DEFAULTS['evolution']['sigma']})",
    )
    add_data_flags(p, default_dataset=None)
    p.add_argument("--out", type=output_path, default=Path("model.npz"), help="model file")
    p.add_argument("--metrics", type=output_path, help="write one JSON object per epoch here")
    p.add_argument(
        "--checkpoint",
        type=output_path,
        metavar="FILE",
        help="save everything needed to continue the run here, after every epoch and when "
        "stopped by Ctrl-C or SIGTERM",
    )
    p.add_argument(
        "--resume",
        type=input_file,
        metavar="FILE",
        help="continue the run saved in this checkpoint, with its own settings",
    )
    p.add_argument(
        "--plot",
        type=output_dir,
        metavar="DIR",
        help="write the loss and accuracy curves of the run to DIR/curves.png at the end",
    )
    p.add_argument("--json", action="store_true", help="end stdout with a JSON summary line")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no epoch lines")
    p.set_defaults(func=cmd_train)


# Flags that describe the run itself (what a checkpoint fixes), as opposed to where its data
# and outputs go.
RUN_FLAGS = (
    "preset", "sizes", "activation", "loss", "init", "engine", "optimizer", "epochs",
    "batch_size", "lr", "momentum", "nesterov", "weight_decay", "dropout", "schedule",
    "warmup", "val", "patience", "train_samples", "seed", "dtype", "dataset", "trainer",
    "population", "mutation_rate", "mutation_scale", "crossover_rate", "elite", "sigma",
)  # fmt: skip

# Flags a gradient-free trainer refuses: it computes no gradient (and the genetic algorithm
# takes no optimizer step either).
_NOT_WITHOUT_GRADIENTS = ("engine", "dropout", "checkpoint")
_NOT_GENETIC = (
    "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule", "warmup",
)  # fmt: skip


def _flag(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def check_trainer_flags(args: argparse.Namespace, trainer: str) -> None:
    """Refuse flags that the chosen trainer would silently ignore (one clear line)."""
    own = TRAINER_SETTINGS[trainer]
    stray = [
        key
        for key in dict.fromkeys(TRAINER_SETTINGS["genetic"] + TRAINER_SETTINGS["evolution"])
        if getattr(args, key, None) is not None and key not in own
    ]
    if stray:
        users = [k for k in ("genetic", "evolution") if stray[0] in TRAINER_SETTINGS[k]]
        raise NnetError(
            f"{_flag(stray[0])} applies only to --trainer {' or '.join(users)}"
            + (f", not to --trainer {trainer}" if trainer != "gradient" else "")
            + "."
        )
    if trainer == "gradient":
        return
    refused = _NOT_WITHOUT_GRADIENTS + (_NOT_GENETIC if trainer == "genetic" else ())
    given = [_flag(k) for k in refused if getattr(args, k, None) is not None]
    if given:
        why = {
            "--engine": "it computes no gradient, so there is no gradient engine",
            "--dropout": "dropout needs gradient training",
            "--checkpoint": "checkpoints are for gradient training; a gradient-free run "
            "saves its model file when stopped",
        }.get(given[0], "the genetic algorithm uses no optimizer or learning rate")
        raise NnetError(f"--trainer {trainer} does not take {given[0]}: {why}.")


def train_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The preset's settings, then the trainer's defaults (``--trainer genetic`` or
    ``evolution``, see :mod:`nnet.training.presets`), then every explicitly given flag."""
    preset = args.preset or "seed"
    trainer = args.trainer or PRESETS[preset]["trainer"]
    check_trainer_flags(args, trainer)
    settings = settings_for(preset, {k: getattr(args, k, None) for k in PRESETS[preset]}, trainer)
    settings["preset"] = preset
    if settings["optimizer"] != "sgd" and args.momentum is None and args.nesterov is None:
        settings.update(momentum=0.0, nesterov=False)  # the preset's SGD momentum does not apply
    return settings


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for name in ("train", "val", "test"):
        if f"{name}_loss" not in row:
            continue
        part = f"{name} loss {row[name + '_loss']:.4f}"
        if row.get(f"{name}_accuracy") is not None:
            part += f" acc {100 * row[name + '_accuracy']:.2f}%"
        parts.append(part)
    parts.append(f"{row['seconds']:.2f} s")
    return "  ".join(parts)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nnet.experiment import build, model_meta
    from nnet.files.checkpoint import resume, save_checkpoint
    from nnet.files.fileio import atomic_write
    from nnet.training.loop import StopFlag, evaluate

    progress = not args.quiet
    if args.resume is not None:
        given = [f"--{k.replace('_', '-')}" for k in RUN_FLAGS if getattr(args, k) is not None]
        if given:
            raise NnetError(
                f"--resume continues the run with the settings saved in {args.resume}; "
                f"leave out {', '.join(given)}."
            )
        exp = resume(args.resume, data=args.data, download=not args.no_download, progress=progress)
        if exp.settings.get("trainer", "gradient") != "gradient":
            raise NnetError(
                f"{args.resume} holds a {exp.settings['trainer']} run; checkpoints are for "
                "gradient training only."
            )
        checkpoint = args.checkpoint or args.resume
    else:
        settings = train_settings(args)
        exp = build(settings, data=args.data, download=not args.no_download, progress=progress)
        checkpoint = args.checkpoint
    settings, trainer, train = exp.settings, exp.trainer, exp.train
    quiet, epochs = args.quiet, settings["epochs"]
    bar = None

    def on_epoch_start(epoch: int) -> None:
        nonlocal bar
        if not quiet:
            bar = tqdm(
                total=len(train),
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="samples",
                unit_scale=True,
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def on_batch(n: int, loss: float) -> None:
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def on_epoch(row: dict[str, Any]) -> None:
        if bar is not None:
            bar.close()
        if not quiet:
            print(format_epoch(row, epochs), flush=True)
        if args.metrics is not None:
            with atomic_write(args.metrics, "w") as f:
                for r in trainer.history:
                    f.write(json.dumps(r) + "\n")
        if checkpoint is not None:
            save_checkpoint(exp, checkpoint)

    stop = StopFlag()
    start = time.perf_counter()
    with stop.catching():
        trainer.fit(
            train,
            exp.evals,
            stop=stop,
            on_batch=on_batch,
            on_epoch_start=on_epoch_start,
            on_epoch=on_epoch,
        )
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    if trainer.stopped_by and checkpoint is not None:
        save_checkpoint(exp, checkpoint)  # mid-epoch: the pass under way is saved too
    model = exp.net.copy()
    model.weights = [w.copy() for w in trainer.model_weights()]
    model.save(args.out, model_meta(exp, seconds))
    if args.plot is not None and trainer.history:
        from nnet.apps.plots import plot_curves

        args.plot.mkdir(exist_ok=True)
        plot_curves({Path(args.out).stem: trainer.history}, args.plot / "curves.png")
    # The figures of the model as saved (the best epoch's weights when there is a validation
    # split, which may not be the last epoch's).
    test_loss, test_acc = evaluate(model, exp.evals["test"])
    summary = {
        "model": str(args.out),
        "epochs": trainer.epoch,
        "seconds": seconds,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "best_epoch": trainer.best[1] if trainer.best is not None else trainer.epoch,
        "preset": settings["preset"],
        "trainer": settings.get("trainer", "gradient"),
        "engine": settings["engine"],
        "dtype": settings["dtype"],
        "seed": settings["seed"],
    }
    if trainer.history:
        last = trainer.history[-1]
        summary.update(train_loss=last["train_loss"], train_accuracy=last["train_accuracy"])
    if trainer.early_stopped:
        summary["early_stopped"] = True
    if trainer.stopped_by:
        summary["interrupted"] = trainer.stopped_by
        where = f"; continue with nnet train --resume {checkpoint}" if checkpoint else ""
        when = (
            f"after epoch {trainer.epoch}"
            if trainer.progress is None
            else f"in epoch {trainer.epoch + 1}, after batch {trainer.progress['batch']}"
        )
        print(
            f"nnet: stopped by {trainer.stopped_by} {when}; the model so far is saved in "
            f"{args.out}{where}.",
            file=sys.stderr,
        )
    if not quiet:
        best = f", best epoch {summary['best_epoch']}" if trainer.best is not None else ""
        shown = f"test accuracy {100 * test_acc:.2f}%, " if test_acc is not None else ""
        print(
            f"saved {args.out}: {shown}test loss {test_loss:.4f} "
            f"({trainer.epoch} epochs{best}, {seconds:.1f} s of training)"
        )
    if args.json:
        print(json.dumps(summary))
    if trainer.stopped_by:
        return 128 + int(getattr(signal, trainer.stopped_by))  # 130 for SIGINT, 143 SIGTERM
    return 0


# ----------------------------------------------------------------------------- evaluate


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and loss of a saved model on a dataset split")
    p.add_argument("model", type=input_file, metavar="MODEL")
    p.add_argument("--split", choices=["test", "train"], default="test")
    add_data_flags(p, default_dataset=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate, quiet=False)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nnet.data.datasets import load
    from nnet.files.model_file import load as load_model
    from nnet.training.loop import evaluate

    net = load_model(args.model)
    task = net.meta.get("task", "classifier")
    name = args.dataset or net.meta.get("dataset", "mnist")
    if name not in DATASETS:
        raise NnetError(
            f"{args.model} was trained on {name!r}; pass --dataset mnist or fashion-mnist."
        )
    check_model_fits_images(net, args.model, task)
    data = load(name, args.data, download=not args.no_download, progress=not args.json)
    x, y = (data.x_test, data.y_test) if args.split == "test" else (data.x_train, data.y_train)
    split = to_split(x, y, task, net.dtype)
    loss, acc = evaluate(net, split)
    if args.json:
        print(
            json.dumps(
                {
                    "accuracy": acc,
                    "loss": loss,
                    "dataset": name,
                    "split": args.split,
                    "samples": len(split),
                    "model": str(args.model),
                }
            )
        )
    else:
        shown = f"accuracy {100 * acc:.2f}%  " if acc is not None else ""
        print(f"{args.model} on {name} {args.split} ({len(split)} samples): {shown}loss {loss:.6f}")
    return 0


def check_model_fits_images(net: Network, path: Path, task: str) -> None:
    if net.sizes[0] != 784:
        raise NnetError(f"{path} takes {net.sizes[0]} inputs, not the 784 pixels of a 28x28 image.")
    want = 784 if task == "autoencoder" else 10
    if net.sizes[-1] != want:
        raise NnetError(f"{path} has {net.sizes[-1]} outputs; a {task} on MNIST needs {want}.")


# ----------------------------------------------------------------------------- predict


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images (PNG, JPEG, ... or .npy) with a saved model",
        description=(
            "Convert each image the way MNIST digits were made (grayscale, digit on black, "
            "fit into 20x20, centred by mass in 28x28) and print the predicted class and the "
            "probabilities."
        ),
    )
    p.add_argument("model", type=input_file, metavar="MODEL")
    p.add_argument("images", type=input_file, nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per line per image")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from nnet.data.preprocess import load_image
    from nnet.files.model_file import load as load_model

    net = load_model(args.model)
    task = net.meta.get("task", "classifier")
    if task != "classifier":
        raise NnetError(f"{args.model} is an {task}, not a classifier; predict needs a classifier.")
    check_model_fits_images(net, args.model, task)
    classes = net.meta.get("classes") or [str(i) for i in range(10)]
    images = [load_image(path) for path in args.images]  # every file checked before output
    x = np.stack([im.reshape(-1) for im in images]).astype(net.dtype)
    probabilities = net.loss.probabilities(net.forward(x))
    for path, p in zip(args.images, probabilities, strict=True):
        digit = int(np.argmax(p))
        if args.json:
            print(
                json.dumps(
                    {
                        "path": str(path),
                        "digit": digit,
                        "label": classes[digit],
                        "probabilities": [round(float(v), 6) for v in p],
                    }
                )
            )
        else:
            probs = " ".join(f"{i}:{v:.2f}" for i, v in enumerate(p))
            name = f" ({classes[digit]})" if classes[digit] != str(digit) else ""
            print(f"{path}: {digit}{name}  p={p[digit]:.3f}  [{probs}]")
    return 0


# ----------------------------------------------------------------------------- plot, inspect


def add_plot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw loss and accuracy per epoch (or against time) of one or more runs (PNG)",
        description=(
            "Read metrics files written by nnet train --metrics (or model files, which keep "
            "their history) and draw loss and accuracy per epoch, train, validation and test, "
            "every run overlaid with a legend."
        ),
    )
    p.add_argument("metrics", type=input_file, nargs="+", metavar="METRICS")
    p.add_argument("--out", type=output_path, default=Path("curves.png"), help="PNG file")
    p.add_argument(
        "--x",
        choices=["epoch", "seconds"],
        default="epoch",
        help="horizontal axis: epochs (default), or cumulative seconds of training (the sum "
        "of each epoch's seconds, its evaluation included) to compare runs by wall time",
    )
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from nnet.apps.plots import plot_curves, read_runs

    plot_curves(read_runs(args.metrics), args.out, x=args.x)
    print(f"wrote {args.out}")
    return 0


def add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="pictures of what a model learned (confusion matrix, weights, mistakes, ...)",
        description=(
            "On the test set: the confusion matrix, the first layer's weights as 28x28 "
            "images, the most confidently wrong digits and the hidden activations (or, for "
            "an autoencoder, originals beside their reconstructions), as PNG files in DIR."
        ),
    )
    p.add_argument("model", type=input_file, metavar="MODEL")
    p.add_argument("--out", type=Path, default=Path("inspect"), metavar="DIR", help="folder")
    add_data_flags(p, default_dataset=None)
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from nnet.apps.plots import inspect_model
    from nnet.data.datasets import load
    from nnet.files.model_file import load as load_model

    net = load_model(args.model)
    task = net.meta.get("task", "classifier")
    check_model_fits_images(net, args.model, task)
    if args.out.exists() and not args.out.is_dir():
        raise NnetError(f"{args.out} is a file; --out needs a folder for the pictures.")
    data = load(
        args.dataset or net.meta.get("dataset", "mnist"), args.data, download=not args.no_download
    )
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnetError(f"cannot create the folder {args.out}: {exc.strerror or exc}.") from None
    files = inspect_model(net, data.x_test, data.y_test, args.out, classes=net.meta.get("classes"))
    for path in files.values():
        print(path)
    return 0


# ----------------------------------------------------------------------------- serve


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number 0..65535")
    return port


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page: draw a digit and watch the network answer",
        description=(
            "Serve a page on which you draw a digit (mouse, pen or finger) and see the "
            "model's prediction, its 10 probabilities and its hidden activations update as "
            "you draw. Drawings are converted exactly as nnet predict converts images. The "
            "Random test digit button needs the dataset's test files on disk (never "
            "downloaded). Ctrl-C stops the server."
        ),
    )
    p.add_argument("model", type=input_file, metavar="MODEL")
    p.add_argument(
        "--port", type=port_number, default=8000, help="TCP port (default 8000; 0: any free port)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this computer only; 0.0.0.0 opens "
        "it to your network)",
    )
    p.add_argument(
        "--data",
        type=data_dir,
        metavar="DIR",
        help="data folder holding mnist/ for random test digits (default: $NNET_DATA, then "
        "the user cache)",
    )
    p.add_argument(
        "--log",
        choices=["errors", "all", "none"],
        default="errors",
        help="requests logged on stderr, one line each (default: errors)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from nnet.apps.serve import serve

    return serve(args.model, host=args.host, port=args.port, data=args.data, log=args.log)


# ----------------------------------------------------------------------------- bench


def add_bench(sub: argparse._SubParsersAction) -> None:
    from nnet.apps.bench import CONFIGS

    p = sub.add_parser(
        "bench",
        help="seconds per epoch of every engine and PyTorch, measured side by side",
        description=(
            "Measure, in this one run, seconds per epoch of MNIST training for every engine "
            "on the notes' experiment and for backprop on 784-800-800-10 (and PyTorch, when "
            "installed: pip install 'nnet[bench]'), with samples/s, GFLOP/s and peak memory. "
            "Rows marked * are extrapolated from a measured number of samples."
        ),
    )
    p.add_argument(
        "--configs", type=names_arg(list(CONFIGS), "configuration"), default=list(CONFIGS)
    )
    p.add_argument(
        "--engines", type=names_arg([*ENGINES, "pytorch"], "engine"), help="default: all"
    )
    p.add_argument("--repeats", type=positive_int, default=3, help="epochs per row (median)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    add_data_flags(p, default_dataset=None)
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import platform

    from nnet.apps.bench import HEADER, format_row, rows_json, run_bench, summary, threads

    if not args.json:
        try:
            import torch

            torch_version = f"torch {torch.__version__}"
        except ImportError:
            torch_version = "no torch (pip install 'nnet[bench]' for the PyTorch rows)"
        print(
            f"nnet {__version__}, NumPy {np.__version__}, {torch_version}; "
            f"{platform.processor() or platform.machine()}, {threads()} threads"
        )
        print(HEADER, flush=True)
    rows, source = run_bench(
        configs=args.configs,
        engines=args.engines,
        repeats=args.repeats,
        dtype=args.dtype,
        data=args.data,
        report=None if args.json else lambda row: print(format_row(row), flush=True),
    )
    if args.json:
        print(rows_json(rows))
        return 0
    print(f"* extrapolated to 60000 samples; data: {source}")
    for line in summary(rows):
        print(line)
    return 0


# ----------------------------------------------------------------------------- main


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nnet",
        description="A feedforward network from first principles in NumPy.",
    )
    parser.add_argument("--version", action="version", version=f"nnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_train(sub)
    add_evaluate(sub)
    add_predict(sub)
    add_serve(sub)
    add_bench(sub)
    add_plot(sub)
    add_inspect(sub)
    add_gradcheck(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DivergenceError as exc:  # not a usage error: the run itself went wrong
        print(f"nnet: error: {exc}", file=sys.stderr)
        return 1
    except NnetError as exc:
        print(f"nnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnet: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
