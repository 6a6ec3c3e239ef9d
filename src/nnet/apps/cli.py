"""The ``nnet`` command line: one subcommand per job.

Every problem a user can cause ends with one line ``nnet: error: ...`` and exit status 2,
never a traceback. The flags of ``nnet train`` are the fields of
:class:`~nnet.training.settings.Settings`, parsed and checked by the fields' own checks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm import tqdm

from nnet.apps.tune import add_tune, study_settings
from nnet.core.engines import ENGINES, gradients
from nnet.core.gradcheck import check_engines
from nnet.core.network import DTYPES, Network
from nnet.data.datasets import DATASETS, one_hot, to_inputs
from nnet.data.datasets import load as load_dataset
from nnet.errors import NnetError
from nnet.experiment import (
    Experiment,
    UserData,
    build,
    make_augmenter,
    model_meta,
    read_user_data,
    resume,
    to_split,
    user_settings,
)
from nnet.experiment import run as run_training
from nnet.fileio import check_output
from nnet.files.checkpoint import Checkpoint, read_checkpoint
from nnet.files.model_file import load as load_model
from nnet.files.model_file import save as save_model
from nnet.training.loop import DivergenceError, Split, StopFlag, Trainer, evaluate
from nnet.training.presets import (
    AUGMENT_STRENGTHS,
    PRESETS,
    TRAINER_DEFAULTS,
    flag,
    settings_for,
)
from nnet.training.settings import (
    CUSTOM,
    FIELDS,
    POSITIVE_INT,
    TRAINER_SETTINGS,
    Choice,
    Many,
    Number,
)
from nnet.training.threads import check_threads, limited, resolve, usable_cores
from nnet.version import __version__


def checked(check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse type from a settings check (``parse`` for text), its NnetError as the
    usage error."""
    parse = getattr(check, "parse", check)

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except NnetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def setting_type(key: str) -> Callable[[str], Any]:
    """The argparse type of the setting ``key``: its field's own check."""
    return checked(FIELDS[key].metadata["check"])


def path_arg(kind: str) -> Callable[[str], Path]:
    """An argparse type for a path: ``"in"`` a readable file, ``"out"`` a file to write in an
    existing, writable folder, ``"dir"`` a folder to write into (created if missing, its
    parent must exist), ``"data"`` a data folder (need not exist)."""

    def convert(text: str) -> Path:
        path = Path(text)

        def fail(message: str) -> NoReturn:
            raise argparse.ArgumentTypeError(message)

        try:
            if kind == "in":
                if path.is_dir():
                    fail(f"{text} is a folder, not a file")
                if not path.exists():
                    fail(f"{text} does not exist")
                if not path.is_file():
                    fail(f"{text} is not a regular file (a device, FIFO or socket)")
                if not os.access(path, os.R_OK):
                    fail(f"{text} is not readable")
            elif kind == "out":
                check_output(path)
            elif kind == "any":  # a file or a folder to read
                if not path.exists():
                    fail(f"{text} does not exist")
                if not (path.is_file() or path.is_dir()):
                    fail(f"{text} is not a regular file or a folder")
            elif path.exists() and not path.is_dir():
                fail(
                    f"{text} is a file; give "
                    + ("a folder" if kind == "dir" else "the data folder")
                )
            elif kind == "dir":
                check_output((path if path.is_dir() else path.parent) / ".nnet-check")
        except NnetError as exc:
            fail(str(exc).rstrip("."))
        except OSError as exc:  # e.g. a name longer than the file system allows
            fail(f"cannot use {text[:60]}: {exc.strerror}")
        return path

    return convert


def names(known: Sequence[str], what: str) -> Callable[[str], Any]:
    """'name' or 'name,name,...' where every name is in ``known``, as a list."""
    many = checked(Many(Choice(tuple(known), what)))
    return lambda text: list(many(text))


Subcommands = argparse._SubParsersAction  # what add_subparsers returns: nnet's commands
Run = Callable[[argparse.Namespace], int]  # what a command does: its exit status


def command(
    sub: Subcommands, name: str, run: Run, help: str, *, model: bool = False
) -> argparse.ArgumentParser:
    """The subcommand ``name``, which ``run`` does: ``help`` is its line in ``nnet --help``,
    the docstring of ``run`` heads its own --help; ``model``: its first argument is a model."""
    p = sub.add_parser(name, help=help, description=run.__doc__)
    if model:
        p.add_argument("model", type=path_arg("in"), metavar="MODEL")
    p.set_defaults(func=run)
    return p


def add_gradcheck(sub: Subcommands) -> None:
    help = "check every engine's gradient against finite differences"
    p = command(sub, "gradcheck", cmd_gradcheck, help)
    p.add_argument("--sizes", type=setting_type("sizes"), default=(784, 16, 16, 10))
    p.add_argument("--activation", type=setting_type("activation"), default=("sigmoid",))
    p.add_argument("--loss", type=setting_type("loss"), default="mse")
    p.add_argument("--dtype", choices=DTYPES, default="float64")
    p.add_argument("--batch", type=checked(Number(int, 1, 100_000)), default=2, help="samples")
    p.add_argument("--seed", type=setting_type("seed"), default=0)
    help = "engines to check, separated by commas (default: all)"
    p.add_argument("--engines", type=names(ENGINES, "engine"), default=list(ENGINES), help=help)
    help = "finite differences on every weight (full), along random directions, or full up to "
    help += "20000 weights (auto)"
    p.add_argument("--method", choices=["auto", "full", "directional"], default="auto", help=help)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_gradcheck(args: argparse.Namespace) -> int:
    """Build a random network, compute the gradient of the batch mean of E with each engine,
    and print each engine's maximum relative error against central finite differences and
    against the first engine."""
    rng = np.random.default_rng(args.seed)
    acts = args.activation[0] if len(args.activation) == 1 else list(args.activation)
    net = Network(args.sizes, acts, loss=args.loss, seed=rng, dtype=args.dtype)
    x = rng.random((args.batch, net.sizes[0]))
    t = np.eye(net.sizes[-1])[rng.integers(0, net.sizes[-1], args.batch)]
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
        print(dumps({**report, "seconds": seconds, "tolerance": tol, "ok": ok}))
        return 0 if ok else 1
    print(
        f"gradcheck: {'-'.join(map(str, net.sizes))}, {','.join(dict.fromkeys(net.activations))}"
        f", loss {net.loss.name}, {net.dtype.name}, batch {args.batch}, seed {args.seed}; "
        f"{report['method']} central differences over {net.n_params} weights"
    )
    row = "{:<10}  {:>16}  {:>22}  {:>7}".format
    print(row("engine", "rel. error vs FD", "rel. diff vs " + args.engines[0], "seconds"))
    for e in args.engines:
        fd, agree = report["fd"][e], report["agreement"][e]
        print(row(e, f"{fd:.2e}", f"{agree:.2e}", f"{seconds[e]:.4f}"))
    verdict = "PASS: every engine is" if ok else "FAIL: some engine is not"
    print(f"{verdict} within {tol:g} of finite differences")
    return 0 if ok else 1


# The settings that are flags of nnet train (all but the preset and the task, which the
# preset fixes), in the order --help lists them.
RUN_FLAGS = tuple(k for k in FIELDS if k not in ("preset", "task"))
POPULATION_FLAGS = tuple(dict.fromkeys(TRAINER_SETTINGS["genetic"] + TRAINER_SETTINGS["evolution"]))
POPULATION_HELP = {
    "population": "members per generation (genetic) or perturbations per step, even (evolution)",
    "mutation_rate": "genetic: probability that a weight of a child is mutated",
    "mutation_scale": "genetic: standard deviation of a mutation",
    "crossover_rate": "genetic: probability that a child is a uniform crossover of its two "
    "parents rather than a copy of one",
    "elite": "genetic: best members kept unchanged in the next generation",
    "sigma": "evolution: standard deviation of the weight perturbations",
}


def add_setting(p: argparse._ActionsContainer, key: str, help: str = "") -> None:
    """The flag of the setting ``key``, parsed and checked by the field's check."""
    check = FIELDS[key].metadata["check"]
    if key in ("nesterov", "augment"):  # true or false: --X and --no-X
        help = help or FIELDS[key].metadata["help"] or None
        p.add_argument(flag(key), action=argparse.BooleanOptionalAction, default=None, help=help)
        return
    choice = getattr(check, "inner", check)
    help = help or FIELDS[key].metadata["help"] or None
    if isinstance(choice, Choice):  # argparse lists the choices in --help and in errors
        p.add_argument(flag(key), choices=list(choice.known), help=help)
    else:
        p.add_argument(flag(key), type=setting_type(key), help=help)


def add_own_data_flags(p: argparse.ArgumentParser, *, training: bool) -> None:
    """--data-file and what reads it: the user's own data instead of a dataset."""
    g = p.add_argument_group("your own data")
    help = "a CSV table with a header, a .npz holding X and y, or a folder DIR/<class>/<image>"
    if not training:
        help += " (read the way the model's training data was)"
    g.add_argument("--data-file", type=path_arg("any"), metavar="PATH", help=help)
    g.add_argument("--target", metavar="COLUMN", help="the CSV column to learn or to score")
    if training:
        help = "override what the target says (strings or integers: classification; floats: "
        g.add_argument("--task", choices=["classification", "regression"], help=help + "values)")
        g.add_argument("--image-size", type=checked(Number(int, 1, 1024)), default=28,
                       help="images are resized to N x N pixels (default 28)")  # fmt: skip
        g.add_argument("--color", choices=["gray", "rgb"], default="gray", help="image colour")


def add_data_flags(p: argparse.ArgumentParser, *, dataset: bool = True) -> None:
    if dataset:
        add_setting(p, "dataset", "mnist or fashion-mnist (default: the model's)")
    help = "data folder holding mnist/ or fashion-mnist/ (default: $NNET_DATA, then the user "
    help += "cache; downloaded there when missing)"
    p.add_argument("--data", type=path_arg("data"), metavar="DIR", help=help)
    p.add_argument("--no-download", action="store_true", help="never download; fail instead")


def add_train(sub: Subcommands) -> None:
    genetic, evolution = (
        ", ".join(f"{flag(k)} {v}" for k, v in TRAINER_DEFAULTS[kind].items() if v is not None)
        for kind in ("genetic", "evolution")
    )
    help = "train a network on MNIST (the notes' experiment by default)"
    p = command(sub, "train", cmd_train, help)
    p.description = (  # it lists the trainers' defaults: not a fixed docstring
        "Train a network and save it. A preset fills every setting (default: the notes' "
        "experiment, --preset seed); flags given explicitly override it. --trainer genetic or "
        "evolution trains without gradients; it brings its own defaults for the settings it "
        "needs, laid over the preset, and flags given explicitly still win: genetic: "
        f"{genetic}; evolution: {evolution}. They compute no gradient, so --engine, --dropout "
        "and --checkpoint are refused with them, and the genetic algorithm uses no optimizer "
        "or learning rate."
    )
    help = "the settings to start from (default seed)"
    p.add_argument("--preset", choices=list(PRESETS), help=help)
    for key in RUN_FLAGS:
        if key not in POPULATION_FLAGS and key != "dataset":
            add_setting(p, key)
    about = "one generation per mini-batch; the whole population is evaluated at once"
    g = p.add_argument_group("training without gradients", about)
    for key in POPULATION_FLAGS:
        kinds = [k for k in ("genetic", "evolution") if key in TRAINER_DEFAULTS[k]]
        default = "; ".join(f"{k} default {TRAINER_DEFAULTS[k][key]}" for k in kinds)
        add_setting(g, key, f"{POPULATION_HELP[key]} ({default})")
    add_data_flags(p)
    add_own_data_flags(p, training=True)
    p.add_argument("--out", type=path_arg("out"), default=Path("model.npz"), help="model file")
    p.add_argument("--metrics", type=path_arg("out"), help="write one JSON object per epoch here")
    help = "save everything needed to continue the run here, after every epoch and when "
    help += "stopped by Ctrl-C or SIGTERM"
    p.add_argument("--checkpoint", type=path_arg("out"), metavar="FILE", help=help)
    help = "continue the run saved in this checkpoint, with its own settings"
    p.add_argument("--resume", type=path_arg("in"), metavar="FILE", help=help)
    help = "train the best trial of an nnet tune study (STORAGE: its database file or URL; "
    help += "STUDY: its name, needed when the storage holds several) on the whole training "
    help += "set; flags given explicitly override its settings; the test set is measured once"
    p.add_argument("--from-study", metavar="STORAGE[:STUDY]", help=help)
    help = "write the loss and accuracy curves of the run to DIR/curves.png at the end"
    p.add_argument("--plot", type=path_arg("dir"), metavar="DIR", help=help)
    add_kernels_flag(p)
    p.add_argument("--json", action="store_true", help="end stdout with a JSON summary line")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no epoch lines")


def add_kernels_flag(p: argparse.ArgumentParser) -> None:
    help = "element-wise kernels (activations, dropout, batch gather, optimizer step): fused "
    help += "with Numba (pip install "
    help += "'nnet[fast]'), NumPy's (the reference), or auto: Numba when installed (default: "
    help += "$NNET_KERNELS, else auto); the results are the same"
    p.add_argument("--kernels", choices=["auto", "numba", "numpy"], help=help)
    help = "threads for the matrix products and the fused kernels: a number, or auto: the "
    help += "cores this process may use that other programs leave idle (default: "
    help += "$NNET_THREADS, else auto)"
    p.add_argument("--threads", type=checked(check_threads), metavar="N|auto", help=help)


@contextmanager
def kernels_for(args: argparse.Namespace) -> Iterator[None]:
    """--kernels and --threads while the command runs: the optimizers read $NNET_KERNELS
    when they are made, and the thread count holds for the BLAS and the kernels; both are
    put back afterwards (main may be called again in one process)."""
    old = os.environ.get("NNET_KERNELS")
    if getattr(args, "kernels", None):
        os.environ["NNET_KERNELS"] = args.kernels
    try:
        with limited(threads_for(args)) as args.threads_used:
            yield
    finally:
        if old is None:
            os.environ.pop("NNET_KERNELS", None)
        else:
            os.environ["NNET_KERNELS"] = old


def threads_for(args: argparse.Namespace) -> int:
    """The threads a command computes with: --threads, else $NNET_THREADS, else those of the
    checkpoint it resumes (the same count gives the same bits: nnet.training.threads; a
    checkpoint that does not say was written by an nnet that always used every core), else
    auto."""
    given = getattr(args, "threads", None)
    resume = getattr(args, "resume", None)
    if given is None and not os.environ.get("NNET_THREADS", "").strip() and resume is not None:
        saved = resumed_checkpoint(args).threads
        return usable_cores() if saved is None else saved
    return resolve(given)


def resumed_checkpoint(args: argparse.Namespace) -> Checkpoint:
    """The checkpoint --resume names, read once per command (its threads are needed before
    the run is built from it)."""
    if getattr(args, "resumed", None) is None:
        args.resumed = read_checkpoint(args.resume)
    return args.resumed


def check_outputs(args: argparse.Namespace) -> None:
    """The files a run writes are distinct: the final model must not replace the checkpoint
    that the interrupt message tells the user to resume from, nor the metrics."""
    named = {"--out": args.out, "--metrics": args.metrics, "--checkpoint": args.checkpoint}
    if args.checkpoint is None and args.resume is not None:
        named["--resume (the checkpoint it saves to)"] = args.resume
    if args.plot is not None:
        named["--plot"] = args.plot / "curves.png"
    seen: dict[str, str] = {}
    for flag_name, path in named.items():
        if path is None:
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise NnetError(
                f"{seen[real]} and {flag_name} both name {path}; give each output its own file."
            )
        seen[real] = flag_name


def start_run(args: argparse.Namespace) -> tuple[Experiment, Path | None, UserData | None]:
    """The run to train, the checkpoint it saves to, if any, and the user's own data, if it
    trains on that. A new run's settings: the preset's, then the trainer's defaults (see
    :mod:`nnet.training.presets`), then every explicit flag. ``--resume`` continues a run
    with its own settings, which no flag may change, saving to the checkpoint it resumes
    unless ``--checkpoint`` names another (a run on your own data needs its --data-file
    again)."""
    own = None
    if args.from_study is not None and (args.resume or args.preset or args.data_file):
        raise NnetError("--from-study trains the settings of a study's best trial: leave out "
                        "--resume, --preset and --data-file.")  # fmt: skip
    where: dict[str, Any] = {"data": args.data, "download": not args.no_download}
    where["progress"] = not args.quiet
    if args.data_file is not None:
        if args.data is not None or args.dataset is not None:
            raise NnetError("--data-file is your own data: leave out --data and --dataset.")
        size = {"image_size": args.image_size, "color": args.color}
        own = read_user_data(args.data_file, target=args.target, task=args.task, **size)
        classes = len(own.table.classes) or None
        where = {"arrays": {"x": own.x, "y": own.table.y, "n_classes": classes}}
        where["arrays"]["image_shape"] = own.image_shape  # images: --augment can distort them
    if args.resume is not None:
        given = [flag(k) for k in ("preset", *RUN_FLAGS) if getattr(args, k) is not None]
        if given:
            raise NnetError(
                f"--resume continues the run with the settings saved in {args.resume}; "
                f"leave out {', '.join(given)}."
            )
        checkpoint = resumed_checkpoint(args)  # is it one, before the outputs are checked
        if (checkpoint.settings.dataset == CUSTOM) != (own is not None):
            raise NnetError(
                f"{args.resume} was trained on "
                + ("your own data: give its --data-file again." if own is None else
                   f"{checkpoint.settings.dataset}: leave out --data-file.")
            )  # fmt: skip
        check_outputs(args)
        return resume(checkpoint, **where), args.checkpoint or args.resume, own
    check_outputs(args)
    explicit = {k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None}
    preset = args.preset or "seed"
    if args.from_study is not None:
        settings, about = study_settings(args.from_study)
        settings = settings.replace(**explicit)
        if not args.quiet:
            print(about)
    elif own is not None:
        settings = user_settings(own, preset, explicit)
    else:
        settings = settings_for(preset, explicit)
    if settings.trainer != "gradient" and args.checkpoint is not None:
        raise NnetError(
            f"--trainer {settings.trainer} does not take --checkpoint: checkpoints are for "
            "gradient training; a gradient-free run saves its model file when stopped."
        )
    return build(settings, **where), args.checkpoint, own


class Progress:
    """What a run shows as it trains, unless ``--quiet``: a bar on stderr for the epoch under
    way (samples done, the last batch's loss), then the epoch's line on stdout."""

    BAR = {"unit": "samples", "unit_scale": True, "leave": False, "dynamic_ncols": True}

    def __init__(self, samples: int, epochs: int, *, show: bool) -> None:
        self.samples, self.epochs, self.show = samples, epochs, show
        self.bar = tqdm(disable=True)  # the bar of the epoch under way; a disabled one: none

    def start(self, epoch: int) -> None:
        if self.show:
            desc = f"epoch {epoch + 1}/{self.epochs}"
            self.bar = tqdm(total=self.samples, desc=desc, file=sys.stderr, **self.BAR)

    def batch(self, n: int, loss: float) -> None:
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end(self, row: dict[str, Any] | None = None) -> None:
        """Clear the bar; after an epoch (its ``row``), print the epoch's line."""
        self.bar.close()
        if self.show and row is not None:
            print(format_epoch(row, self.epochs), flush=True)


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}"]
    for name in [n for n in ("train", "val", "test") if f"{n}_loss" in row]:
        acc = row.get(f"{name}_accuracy")
        shown = f" acc {100 * acc:.2f}%" if acc is not None else ""
        parts.append(f"{name} loss {row[name + '_loss']:.4f}{shown}")
    parts.append(f"{row['seconds']:.2f} s")
    return "  ".join(parts)


def cmd_train(args: argparse.Namespace) -> int:
    with kernels_for(args):
        return train(args)


def train(args: argparse.Namespace) -> int:
    """``nnet train``, its kernels chosen."""
    exp, checkpoint, own = start_run(args)
    # --from-study: the test set is measured once, at the end, not after every epoch
    held_back = exp.evals.pop("test", None) if args.from_study is not None else None
    trainer = exp.trainer
    stop = StopFlag()
    # The signals stay caught until the files are saved: a second SIGTERM during the final
    # saves is recorded, not fatal (a second Ctrl-C still interrupts; each file is atomic).
    with stop.catching():
        progress = Progress(len(exp.train), exp.settings.epochs, show=not args.quiet)
        seconds = run_training(
            exp,
            stop=stop,
            metrics=args.metrics,
            checkpoint=checkpoint,
            on_batch=progress.batch,
            on_epoch_start=progress.start,
            on_epoch=progress.end,
        )
        progress.end()
        model = exp.net.copy()
        model.weights = [w.copy() for w in trainer.model_weights()]
        meta = model_meta(exp, seconds)
        if own is not None:
            meta.update(classes=list(own.table.classes) or None, input=own.input)
            if own.scaling is not None:
                meta["scaling"] = own.scaling.to_meta()
        save_model(model, args.out, meta)
    if stop.signal and not trainer.stopped_by:  # it came after training, while saving
        trainer.stopped_by = stop.signal
    if args.plot is not None and trainer.history:
        from nnet.apps.plots import plot_curves

        args.plot.mkdir(exist_ok=True)
        plot_curves({Path(args.out).stem: trainer.history}, args.plot / "curves.png")
    # The figures of the model as saved (the best epoch's weights when there is a validation
    # split, which may not be the last epoch's), on the test split, else the validation one.
    if held_back is not None:
        exp.evals["test"] = held_back
    split = next((name for name in ("test", "val") if name in exp.evals), None)
    loss, acc = evaluate(model, exp.evals[split]) if split else (None, None)
    summary = {
        "model": str(args.out),
        "epochs": trainer.epoch,
        "seconds": seconds,
        **({f"{split}_loss": loss, f"{split}_accuracy": acc} if split else {}),
        "best_epoch": trainer.best[1] if trainer.best is not None else trainer.epoch,
        **{k: getattr(exp.settings, k) for k in ("preset", "trainer", "engine", "dtype", "seed")},
    }
    summary["threads"] = args.threads_used  # the same count gives the same bits
    if trainer.history:
        last = trainer.history[-1]
        summary.update(train_loss=last["train_loss"], train_accuracy=last["train_accuracy"])
    if trainer.early_stopped:
        summary["early_stopped"] = True
    if trainer.stopped_by:
        summary["interrupted"] = trainer.stopped_by
        print(stopped_message(trainer, args.out, checkpoint), file=sys.stderr)
    if not args.quiet:
        best = f", best epoch {summary['best_epoch']}" if trainer.best is not None else ""
        shown = f"{split} accuracy {100 * acc:.2f}%, " if acc is not None else ""
        shown += f"{split} loss {loss:.4f} " if split else ""
        run = f"{trainer.epoch} epochs{best}, {seconds:.1f} s of training"
        print(f"saved {args.out}: {shown}({run})")
    if args.json:
        print(dumps(summary))
    if trainer.stopped_by:
        return 128 + int(getattr(signal, trainer.stopped_by))  # 130 for SIGINT, 143 SIGTERM
    return 0


def stopped_message(trainer: Trainer, out: Path, checkpoint: Path | None) -> str:
    """What a run stopped by a signal says on stderr: when, and how to continue it."""
    if trainer.progress is None:
        when = f"after epoch {trainer.epoch}"
    else:
        when = f"in epoch {trainer.epoch + 1}, after batch {trainer.progress['batch']}"
    where_next = f"; continue with nnet train --resume {checkpoint}" if checkpoint else ""
    saved = f"the model so far is saved in {out}{where_next}."
    return f"nnet: stopped by {trainer.stopped_by} {when}; {saved}"


def add_evaluate(sub: Subcommands) -> None:
    help = "accuracy and loss of a saved model on a dataset split"
    p = command(sub, "evaluate", cmd_evaluate, help, model=True)
    p.add_argument("--split", choices=["test", "train"], default="test")
    add_data_flags(p)
    add_own_data_flags(p, training=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def load_image_model(
    path: Path, dataset: str | None = None, net: Network | None = None
) -> tuple[Network, str, str]:
    """The model at ``path`` (``net`` if already loaded), its task, and the dataset it is
    used on (``dataset``, or the one it was trained on): NnetError unless its sizes fit that
    dataset's images."""
    net = load_model(path) if net is None else net
    task = net.meta.get("task", "classifier")
    name = dataset or net.meta.get("dataset", "mnist")
    if name not in DATASETS:
        raise NnetError(f"{path} was trained on {name!r}; pass --dataset mnist or fashion-mnist.")
    spec = DATASETS[name]
    n_in, n_out, side = spec.n_inputs, spec.n_outputs(task), spec.side
    if net.sizes[0] != n_in:
        image = f"the {n_in} pixels of a {side}x{side} image"
        raise NnetError(f"{path} takes {net.sizes[0]} inputs, not {image}.")
    if net.sizes[-1] != n_out:
        raise NnetError(f"{path} has {net.sizes[-1]} outputs; a {task} on {name} needs {n_out}.")
    return net, task, name


def own_data(net: Network, model: Path, args: argparse.Namespace, *, target: bool) -> UserData:
    """The --data-file of ``args``, read the way ``model`` was trained (its kind of input,
    image size, feature scaling and target column), checked against the network's inputs;
    with ``target``, the labels must be among the model's classes."""
    if net.meta.get("dataset") != CUSTOM:
        raise NnetError(f"{model} was trained on {net.meta.get('dataset', 'mnist')}, not on a "
                        "data file; leave out --data-file.")  # fmt: skip
    task = None if net.meta.get("task") == "classifier" else "regression"
    column = args.target if target else None
    data = read_user_data(args.data_file, target=column, task=task, like=net.meta)
    if data.table.X.shape[1] != net.sizes[0]:
        raise NnetError(
            f"{args.data_file} has {data.table.X.shape[1]} features but {model} takes "
            f"{net.sizes[0]}."
        )
    return data


def labels_of(data: UserData, net: Network, model: Path) -> np.ndarray:
    """The classes of ``data``'s labels as indices among the model's classes."""
    known = {c: i for i, c in enumerate(net.meta.get("classes") or [])}
    unknown = [c for c in data.table.classes if c not in known]
    if unknown:
        raise NnetError(f"label {unknown[0]!r} of {data.table.target} is not a class of {model}.")
    return np.array([known[c] for c in data.table.classes], dtype=np.int64)[data.table.y]


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.data_file is not None:
        net = load_model(args.model)
        data = own_data(net, args.model, args, target=True)
        name, x = str(args.data_file), data.x.astype(net.dtype)
        if net.meta.get("task") == "classifier":
            y = labels_of(data, net, args.model)
            split = Split(x, one_hot(y, net.sizes[-1], net.dtype), y)
        else:
            split = Split(x, data.table.y.reshape(len(x), -1).astype(net.dtype), None)
        args.split = "all"
        loss, acc = evaluate(net, split)
    else:
        net, task, name = load_image_model(args.model, args.dataset)
        dataset = load_dataset(name, args.data, download=not args.no_download,
                               progress=not args.json)  # fmt: skip
        if args.split == "test":
            x, y = dataset.x_test, dataset.y_test
        else:
            x, y = dataset.x_train, dataset.y_train
        split = to_split(x, y, task, net.dtype, DATASETS[name].n_classes)
        loss, acc = evaluate(net, split)
    if args.json:
        where = {"dataset": name, "split": args.split, "samples": len(split)}
        print(dumps({"accuracy": acc, "loss": loss, **where, "model": str(args.model)}))
    else:
        shown = f"accuracy {100 * acc:.2f}%  " if acc is not None else ""
        print(f"{args.model} on {name} {args.split} ({len(split)} samples): {shown}loss {loss:.6f}")
    return 0


def finite_outputs(net: Network, x: np.ndarray, where: Path) -> np.ndarray:
    """``net.forward(x)``; NnetError if an output overflows (finite but enormous weights)."""
    with np.errstate(over="ignore", invalid="ignore"):
        O = net.forward(x)
    if not np.isfinite(O).all():
        largest = max(float(np.abs(w).max()) for w in net.weights)
        raise NnetError(
            f"the outputs of {where} overflow (its largest weight is {largest:.3g}); the model "
            "is unusable, so retrain it."
        )
    return O


def add_predict(sub: Subcommands) -> None:
    help = "classify images (PNG, JPEG, ... or .npy) with a saved model"
    p = command(sub, "predict", cmd_predict, help, model=True)
    p.add_argument("images", type=path_arg("in"), nargs="*", metavar="IMAGE")
    help = "predict each row of this CSV table (or .npz X) instead: one line per row"
    p.add_argument("--data-file", type=path_arg("in"), metavar="PATH", help=help)
    help = "one JSON object per line per image or row (default: text, or CSV for --data-file)"
    p.add_argument("--json", action="store_true", help=help)


def predict_rows(args: argparse.Namespace) -> int:
    """``predict --data-file``: one prediction per row, as CSV or JSON lines."""
    import csv

    net = load_model(args.model)
    args.target = None
    data = own_data(net, args.model, args, target=False)
    O = finite_outputs(net, data.x.astype(net.dtype), args.model)
    classes = net.meta.get("classes")
    out = csv.writer(sys.stdout, lineterminator="\n")
    if net.meta.get("task") != "classifier":
        names = [f"prediction_{q}" for q in range(O.shape[1])] if O.shape[1] > 1 else ["prediction"]
        if not args.json:
            out.writerow(names)
        for i, row in enumerate(O.tolist()):
            if args.json:
                print(dumps({"row": i + 1, "prediction": row if len(row) > 1 else row[0]}))
            else:
                out.writerow(row)
        return 0
    p = net.loss.probabilities(O)
    if not args.json:
        out.writerow(["prediction", *(f"p_{c}" for c in classes)])
    for i, (k, probs) in enumerate(zip(np.argmax(p, axis=1), p.tolist(), strict=True)):
        if args.json:
            shown = dict(zip(map(str, classes), (round(v, 6) for v in probs), strict=True))
            print(dumps({"row": i + 1, "prediction": classes[k], "probabilities": shown}))
        else:
            out.writerow([classes[k], *(f"{v:.6f}" for v in probs)])
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Convert each image the way MNIST digits were made (grayscale, digit on black, fit into
    20x20, centred by mass in 28x28), or as the model's own training images were, and print
    the predicted class and the probabilities; with --data-file, predict each row of a table."""
    from nnet.data.folders import read_image
    from nnet.data.preprocess import load_image

    if args.data_file is None and not args.images:
        raise NnetError("the images to classify are required (or --data-file TABLE).")
    if args.data_file is not None and args.images:
        raise NnetError("give images to classify or --data-file TABLE, not both.")
    if args.data_file is not None:
        return predict_rows(args)
    net = load_model(args.model)
    source = net.meta.get("input") or {}
    if net.meta.get("dataset") == CUSTOM and source.get("kind") == "images":
        size = tuple(source["size"])
        x = np.stack([read_image(p, size=size, color=source["color"]) for p in args.images])
        return print_predictions(args, net, x.astype(net.dtype), list(net.meta["classes"]))
    net, task, name = load_image_model(args.model, net=net)
    if task != "classifier":
        raise NnetError(f"{args.model} is an {task}, not a classifier; predict needs a classifier.")
    classes = net.meta.get("classes") or list(DATASETS[name].classes)
    images = [load_image(path) for path in args.images]  # every file checked before output
    x = np.stack([im.reshape(-1) for im in images]).astype(net.dtype)
    return print_predictions(args, net, x, classes)


def print_predictions(
    args: argparse.Namespace, net: Network, x: np.ndarray, classes: list[Any]
) -> int:
    """The predicted class and probabilities of each of ``args.images`` (inputs ``x``)."""
    probabilities = net.loss.probabilities(finite_outputs(net, x, args.model))
    for path, p in zip(args.images, probabilities, strict=True):
        digit = int(np.argmax(p))
        if args.json:
            record = {"path": str(path), "digit": digit, "label": classes[digit]}
            print(dumps({**record, "probabilities": [round(float(v), 6) for v in p]}))
        else:
            probs = " ".join(f"{i}:{v:.2f}" for i, v in enumerate(p))
            label = f" ({classes[digit]})" if classes[digit] != str(digit) else ""
            print(f"{path}: {digit}{label}  p={p[digit]:.3f}  [{probs}]")
    return 0


def add_plot(sub: Subcommands) -> None:
    help = "draw loss and accuracy per epoch (or against time) of one or more runs (PNG)"
    p = command(sub, "plot", cmd_plot, help)
    p.add_argument("metrics", type=path_arg("in"), nargs="+", metavar="METRICS")
    p.add_argument("--out", type=path_arg("out"), default=Path("curves.png"), help="PNG file")
    help = "horizontal axis: epochs (default), or cumulative seconds of training (the sum of "
    help += "each epoch's seconds, its evaluation included) to compare runs by wall time"
    p.add_argument("--x", choices=["epoch", "seconds"], default="epoch", help=help)


def cmd_plot(args: argparse.Namespace) -> int:
    """Read metrics files written by nnet train --metrics (or model files, which keep their
    history) and draw loss and accuracy per epoch, train, validation and test, every run
    overlaid with a legend."""
    from nnet.apps.plots import plot_curves, read_runs

    plot_curves(read_runs(args.metrics), args.out, x=args.x)
    print(f"wrote {args.out}")
    return 0


def add_inspect(sub: Subcommands) -> None:
    help = "pictures of what a model learned (confusion matrix, weights, mistakes, ...)"
    p = command(sub, "inspect", cmd_inspect, help, model=True)
    p.add_argument(
        "--out", type=path_arg("dir"), default=Path("inspect"), metavar="DIR", help="folder"
    )
    add_data_flags(p)


def add_augment(sub: Subcommands) -> None:
    help = "a picture of training images and random distortions of each (--augment)"
    p = command(sub, "augment", cmd_augment, help)
    help = "the preset whose strengths to start from (default distorted)"
    p.add_argument("--preset", choices=list(PRESETS), help=help)
    for key in AUGMENT_STRENGTHS:
        add_setting(p, key)
    p.add_argument("--dataset", choices=list(DATASETS), help="the images (default mnist)")
    add_data_flags(p, dataset=False)
    p.add_argument("--count", type=checked(Number(int, 1, 100)), default=10,
                   help="images, one per row (default 10)")  # fmt: skip
    p.add_argument("--versions", type=checked(Number(int, 1, 50)), default=8,
                   help="distortions of each image (default 8)")  # fmt: skip
    help = "seed of the distortions (default 0)"
    p.add_argument("--seed", type=setting_type("seed"), default=0, help=help)
    help = "the PNG file to write (default augmented.png)"
    p.add_argument("--out", "--show", type=path_arg("out"), default=Path("augmented.png"),
                   metavar="PNG", help=help)  # fmt: skip


def cmd_augment(args: argparse.Namespace) -> int:
    """Draw training images (the first of each class) and random distortions of each, as
    --augment makes them with the preset's strengths and the flags given, into one PNG
    picture: to judge the strengths by eye."""
    from nnet.apps.augment_show import describe, draw_augmented, pick_examples

    explicit = {k: getattr(args, k) for k in AUGMENT_STRENGTHS if getattr(args, k) is not None}
    if args.dataset is not None:
        explicit["dataset"] = args.dataset
    settings = settings_for(args.preset or "distorted", {**explicit, "augment": True})
    data = load_dataset(settings.dataset, args.data, download=not args.no_download)
    inputs = to_inputs(data.x_train[pick_examples(data.y_train, args.count)], settings.dtype)
    side = DATASETS[settings.dataset].side
    augmenter = make_augmenter(settings, (side, side), np.random.default_rng(args.seed))
    assert augmenter is not None
    title = describe(settings)
    print(draw_augmented(inputs, augmenter, args.out, versions=args.versions, title=title))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """On the test set: the confusion matrix, the first layer's weights as 28x28 images, the
    most confidently wrong digits and the hidden activations (or, for an autoencoder,
    originals beside their reconstructions), as PNG files in DIR."""
    from nnet.apps.plots import inspect_model

    net, _, name = load_image_model(args.model, args.dataset)
    data = load_dataset(name, args.data, download=not args.no_download)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NnetError(f"cannot create the folder {args.out}: {exc.strerror or exc}.") from None
    files = inspect_model(net, data.x_test, data.y_test, args.out, classes=net.meta.get("classes"))
    for path in files.values():
        print(path)
    return 0


def add_serve(sub: Subcommands) -> None:
    help = "a local web page: draw a digit and watch the network answer, or watch one learn"
    p = command(sub, "serve", cmd_serve, help)
    help = "the model file to draw for (default: none; the page opens on the learn view)"
    p.add_argument("model", type=path_arg("in"), metavar="MODEL", nargs="?", help=help)
    port = checked(Number(int, 0, 65535, what="a port number 0..65535"))
    help = "TCP port (default 8000; 0: any free port)"
    p.add_argument("--port", type=port, default=8000, help=help)
    help = "address to listen on (default 127.0.0.1, this computer only; 0.0.0.0 opens it to "
    help += "your network)"
    p.add_argument("--host", default="127.0.0.1", help=help)
    help = "data folder holding mnist/ for random test digits and the learn view's training "
    help += "(default: $NNET_DATA, then the user cache)"
    p.add_argument("--data", type=path_arg("data"), metavar="DIR", help=help)
    help = "folder the learn view saves models in (default: the current folder)"
    p.add_argument("--save-dir", type=path_arg("dir"), default=Path("."), metavar="DIR", help=help)
    help = "requests logged on stderr, one line each (default: errors)"
    p.add_argument("--log", choices=["errors", "all", "none"], default="errors", help=help)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a page on which you draw a digit (mouse, pen or finger) and see the model's
    prediction, its 10 probabilities and its hidden activations update as you draw. Drawings
    are converted exactly as nnet predict converts images. The Random test digit button needs
    the dataset's test files on disk (never downloaded). The learn view (/learn; the page
    itself without MODEL) trains a network live in a process of its own: curves, first-layer
    weights, saturation, pause, step, engine switch, save (into --save-dir). Ctrl-C stops
    the server and the training."""
    from nnet.apps.serve import serve

    where = {"data": args.data, "log": args.log, "save_dir": args.save_dir}
    return serve(args.model, host=args.host, port=args.port, **where)


def add_bench(sub: Subcommands) -> None:
    from nnet.apps.bench import CONFIGS

    help = "seconds per epoch of every engine and PyTorch, measured side by side"
    p = command(sub, "bench", cmd_bench, help)
    p.add_argument("--configs", type=names(list(CONFIGS), "configuration"), default=list(CONFIGS))
    p.add_argument("--engines", type=names([*ENGINES, "pytorch"], "engine"), help="default: all")
    help = "epochs per row (median)"
    p.add_argument("--repeats", type=checked(POSITIVE_INT), default=3, help=help)
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    add_data_flags(p, dataset=False)
    add_kernels_flag(p)
    help = "skip the rows measured with one competing CPU-bound process"
    p.add_argument("--no-busy", dest="busy", action="store_false", help=help)
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure, in this one run, seconds per epoch of MNIST training for every engine on the
    notes' experiment and for backprop on 784-800-800-10 (and PyTorch, when installed: pip
    install 'nnet[bench]'), with samples/s, GFLOP/s and peak memory. Rows marked * are
    extrapolated from a measured number of samples."""
    # the request as given (a number or auto), before kernels_for sets $NNET_THREADS to the
    # count it applies: the busy rows choose again beside their competing process
    args.threads = check_threads(args.threads)
    with kernels_for(args):
        return bench(args)


def bench(args: argparse.Namespace) -> int:
    """``nnet bench``, its kernels chosen."""
    from nnet.apps.bench import HEADER, compile_cost, format_row, rows_json, run_bench, summary
    from nnet.kernel_choice import check_kernels, fused_kernels

    if not args.json:
        try:
            import torch

            torch_version = f"torch {torch.__version__}"
        except ImportError:
            torch_version = "no torch (pip install 'nnet[bench]' for the PyTorch rows)"
        print(
            f"nnet {__version__}, NumPy {np.__version__}, {torch_version}; "
            f"{platform.processor() or platform.machine()}, {usable_cores()} cores"
        )
        if fused_kernels(check_kernels()) is None:
            print("kernels: NumPy's (the reference)")
        else:
            cost = compile_cost(args.dtype)
            assert cost is not None
            print(
                f"kernels: fused (Numba); compiling them took {cost[0]:.2f} s in the first "
                f"process, loading them from the cache {cost[1]:.2f} s in a later one"
            )
        print(HEADER, flush=True)
    report = None if args.json else lambda row: print(format_row(row), flush=True)
    keys = ("configs", "engines", "repeats", "dtype", "data", "threads", "busy")
    options = {k: getattr(args, k) for k in keys}
    rows, source = run_bench(**options, report=report)
    if args.json:
        print(rows_json(rows))
    else:
        print(f"* extrapolated to 60000 samples; data: {source}", *summary(rows), sep="\n")
    return 0


def add_export(sub: Subcommands) -> None:
    help = "write a model as ONNX (for ONNX Runtime, phones, browsers)"
    p = command(sub, "export", cmd_export, help, model=True)
    p.add_argument("out", type=path_arg("out"), metavar="OUT.onnx")


def cmd_export(args: argparse.Namespace) -> int:
    """Write MODEL as an ONNX graph: the float32 input 'inputs' (batch, #0) gives 'outputs'
    (what nnet predict computes; the logits for a cross-entropy model) and 'probabilities';
    the model's feature scaling, if it has one, is folded into the first layer. Needs the
    optional packages: pip install 'nnet[export]'."""
    from nnet.files.export import to_onnx

    to_onnx(load_model(args.model), args.out)
    print(f"wrote {args.out}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to read more)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nnet", description="A feedforward network from first principles in NumPy."
    )
    parser.add_argument("--version", action="version", version=f"nnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        add_train, add_evaluate, add_predict, add_serve, add_bench, add_plot, add_inspect,
        add_augment,
        add_gradcheck, add_export, add_tune,
    ):  # fmt: skip
        add(sub)
    return parser


def dumps(value: Any) -> str:
    """``value`` as one line of strict JSON; NnetError rather than NaN or Infinity."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise NnetError("a result is NaN or infinite, which JSON cannot hold.") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NnetError as exc:
        print(f"nnet: error: {exc}", file=sys.stderr)
        # A run that diverged is not a usage error: the run itself went wrong.
        return 1 if isinstance(exc, DivergenceError) else 2
    except BrokenPipeError:  # the reader of our output went away (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError:
        print("nnet: error: out of memory; use a smaller network or batch.", file=sys.stderr)
        return 2
    except OSError as exc:  # what no check could foresee: a full disk, a vanished folder
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nnet: error: {where}{exc.strerror or exc}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nnet: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
