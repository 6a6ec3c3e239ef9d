"""``nnet tune``: a hyperparameter search on Optuna, in one process, several, or many machines.

A *study* lives in a database: an SQLite file by default (``nnet-tune.db`` in the current
folder; nothing to start) or a shared PostgreSQL or MySQL server that workers on many
machines attach to (``--storage postgresql+psycopg://...``). Every trial is an ordinary nnet
run: its settings are drawn from a search space (:mod:`nnet.apps.tune_space`) over a preset,
built and trained by :mod:`nnet.experiment` like ``nnet train`` does, and scored by its
accuracy on a validation split held out of the training set (``--val``), never on the test
set. After each epoch the run reports its validation accuracy to the trial, and the pruner
stops a trial that falls behind the others at the same epoch.

``--trials N`` is the size of the study, not of one command: the command stops when the
study holds N finished (complete or pruned) trials, so a study stopped by Ctrl-C, or joined
by the same command on another machine, goes on where it is. A worker that dies (SIGKILL,
a lost machine) leaves its trial running in the database only until its heartbeat is older
than the grace period; the next trial any worker starts marks it failed.

Optuna is optional (``pip install 'nnet[tune]'``): this module imports it only when a study
is opened.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnet.apps.tune_space import DEFAULT_SPACE, Space, read_space
from nnet.errors import NnetError
from nnet.experiment import build, run
from nnet.fileio import check_output
from nnet.training.loop import DivergenceError, StopFlag, evaluate
from nnet.training.settings import Settings
from nnet.training.threads import limited, resolve, usable_cores

#: The study a command names when --study is not given.
DEFAULT_STUDY = "nnet"
#: The SQLite file a study lives in when --storage is not given (in the current folder).
DEFAULT_STORAGE = "nnet-tune.db"
#: Seconds an SQLite connection waits for another process's write before it gives up.
SQLITE_TIMEOUT = 120
#: A command stops when this many trials in a row failed (a space that cannot work).
MAX_FAILURES = 5
#: The trial states Optuna knows, in the order the summary counts them.
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


class TrialError(Exception):
    """A trial that could not run (its settings refused, its run diverged): marked failed,
    and the study goes on."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the trial under way: marked failed, and the command ends."""


class Surplus(Exception):
    """Another worker started the study's last trial first: this one is marked failed
    before it trains (``surplus`` in its user attributes)."""


def require_optuna() -> Any:
    """The ``optuna`` module; NnetError (one line) when it is not installed."""
    try:
        import optuna
    except ImportError:
        raise NnetError("nnet tune needs Optuna: pip install 'nnet[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # nnet prints its own lines
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------- storage


def storage_url(text: str) -> str:
    """A database URL from ``--storage``: a URL as given, or a file path as SQLite."""
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).resolve()}"


def split_study_ref(text: str) -> tuple[str, str | None]:
    """STORAGE[:STUDY] as (storage URL, study name or None). The study is what follows the
    last colon when that holds no / or @ and is not a port (a URL has colons of its own)."""
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and not any(c in tail for c in "/@") and not tail.isdigit():
        if "://" in head or "://" not in text:
            return storage_url(head), tail
    return storage_url(text), None


def open_storage(url: str, *, heartbeat: int | None = None) -> Any:
    """Optuna's RDBStorage at ``url``: SQLite connections wait up to SQLITE_TIMEOUT seconds
    for each other; with ``heartbeat`` (seconds) a running trial records that it is alive,
    and one silent for twice that long is marked failed by the next trial to start."""
    optuna = require_optuna()
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            try:
                check_output(path)
            except NnetError as exc:
                raise NnetError(f"cannot keep the study in {path}: {exc}") from None
        engine = {"connect_args": {"timeout": SQLITE_TIMEOUT}}
    beat = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat} if heartbeat else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beat)
    except ImportError as exc:  # the URL names a driver that is not installed
        raise NnetError(f"the storage {url!r} needs a database driver: {exc}.") from None
    except Exception as exc:  # SQLAlchemy: a bad URL, a server that does not answer
        raise NnetError(f"cannot open the storage {url!r}: {one_line(exc)}.") from None


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, without a trailing period."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


def load_study(ref: str) -> Any:
    """The study STORAGE[:STUDY] names (without STUDY: the storage's only study)."""
    optuna = require_optuna()
    url, name = split_study_ref(ref)
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[-1])
        if not path.is_file():
            raise NnetError(f"{path} does not exist; give the storage nnet tune used.")
    storage = open_storage(url)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(storage)]
    if name is None:
        if len(names) != 1:
            shown = ", ".join(names) or "none"
            raise NnetError(f"{url} holds {len(names)} studies ({shown}); name one: STORAGE:STUDY.")
        name = names[0]
    if name not in names:
        raise NnetError(f"{url} holds no study {name!r} (it holds {', '.join(names) or 'none'}).")
    return optuna.load_study(study_name=name, storage=storage)


def best_trial(study: Any) -> Any:
    """The completed trial with the highest validation accuracy; NnetError if none."""
    optuna = require_optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        raise NnetError(f"study {study.study_name!r} has no completed trial yet.")
    return max(done, key=lambda t: (t.value, -t.number))


def study_settings(ref: str) -> tuple[Settings, str]:
    """The settings of the best trial of the study ``ref`` (STORAGE[:STUDY]) for a final run
    on the whole training set (no validation split, every training sample), and a line that
    says where they come from."""
    study = load_study(ref)
    trial = best_trial(study)
    saved = trial.user_attrs.get("settings")
    if not isinstance(saved, dict):
        raise NnetError(f"trial {trial.number} of {study.study_name!r} holds no nnet settings.")
    settings = Settings.from_dict(saved).replace(val=0, patience=0, train_samples=None)
    about = (
        f"the settings of trial {trial.number} of study {study.study_name!r} (validation "
        f"accuracy {100 * trial.value:.2f} %), trained on the whole training set"
    )
    return settings, about


# ----------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Options:
    """What every trial of one command shares."""

    space: Space
    trials: int
    seed: int
    val: int
    train_samples: int | None
    data: Path | None
    download: bool
    startup: int


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s run: from --seed and the number alone."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def trial_settings(trial: Any, options: Options) -> Settings:
    """The settings of ``trial``: drawn from the space, with the study's validation split,
    training samples and the trial's own seed."""
    explicit = options.space.draw(trial)
    explicit.update(val=options.val, seed=trial_seed(options.seed, trial.number))
    if options.train_samples is not None:
        explicit["train_samples"] = options.train_samples
    try:
        settings = options.space.settings(explicit)
    except NnetError as exc:
        trial.set_user_attr("error", str(exc))
        raise TrialError(str(exc)) from None
    if settings.task != "classifier":
        raise NnetError(
            "nnet tune searches classifiers (validation accuracy); the space's "
            f"base sets task {settings.task!r}."
        )
    return settings


def objective(trial: Any, options: Options, stop: StopFlag) -> float:
    """Train one trial's run; its validation accuracy (of the weights a model file would
    keep: the epoch with the lowest validation loss)."""
    optuna = require_optuna()
    live = (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.RUNNING,
        optuna.trial.TrialState.WAITING,
    )
    ahead = trial.study.get_trials(deepcopy=False, states=live)
    if sum(t.number < trial.number for t in ahead) >= options.trials:
        trial.set_user_attr("surplus", True)
        raise Surplus(f"the study already has its {options.trials} trials")
    settings = trial_settings(trial, options)
    trial.set_user_attr("settings", settings.to_dict())
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    exp = build(settings, data=options.data, download=options.download, progress=False)
    exp.evals.pop("test", None)  # a study never looks at the test set (nor spends time on it)

    def on_epoch(row: dict[str, Any]) -> None:
        trial.set_user_attr("epochs_trained", row["epoch"])
        trial.set_user_attr("train_seconds", exp.trainer.train_seconds)
        trial.report(row["val_accuracy"], row["epoch"])
        if row["epoch"] < settings.epochs and trial.should_prune():  # the last one completes
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

    start = time.perf_counter()
    try:
        run(exp, stop=stop, on_epoch=on_epoch)
    except DivergenceError as exc:
        trial.set_user_attr("error", str(exc))
        raise TrialError(str(exc)) from None
    finally:
        trial.set_user_attr("seconds", time.perf_counter() - start)
    if stop:
        trial.set_user_attr("interrupted", stop.signal)
        raise Interrupted(stop.signal)
    loss, accuracy = evaluate(exp.net, exp.evals["val"])
    trial.set_user_attr("val_loss", loss)
    trial.set_user_attr("best_epoch", exp.trainer.best[1] if exp.trainer.best else None)
    return float(accuracy)


def make_sampler(study: Any, options: Options, worker: int | None) -> Any:
    """The TPE sampler of the next trial. A lone process seeds it from --seed and the number
    of trials so far, so that its study is reproducible; when others work on the study too
    (a --workers process, or running trials of another) the process's own identity is
    mixed in, so that two workers never draw the same settings."""
    optuna = require_optuna()
    trials = study.get_trials(deepcopy=False)
    entropy = [options.seed, len(trials)]
    running = any(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    if worker is not None or running:
        nonce = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
        entropy += [worker or 0, nonce]
    seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=options.startup,
        multivariate=True,
        group=True,
        constant_liar=True,
    )


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trial_line(t: Any) -> str:
    """One finished trial in a line: number, state, value, epochs, seconds, parameters."""
    attrs = t.user_attrs
    epochs = (attrs.get("settings") or {}).get("epochs")
    trained = attrs.get("epochs_trained", 0)
    value = t.value if t.value is not None else (t.intermediate_values or {}).get(trained)
    shown = f"val {100 * value:6.2f}%" if value is not None else "val     -  "
    done = f"{trained:>2}/{epochs} epochs" if epochs else "            "
    seconds = attrs.get("seconds")
    secs = f"{seconds:7.1f} s" if seconds is not None else "        "
    params = " ".join(f"{k}={short(v)}" for k, v in t.params.items())
    why = f"  ({attrs['error']})" if t.state.name == "FAIL" and "error" in attrs else ""
    return f"trial {t.number:>4}  {t.state.name:<8}  {shown}  {done}  {secs}  {params}{why}"


def work(
    study: Any,
    options: Options,
    *,
    deadline: float | None,
    worker: int | None,
    print_line: Callable[[str], None],
) -> str | None:
    """Run trials until the study holds ``options.trials`` finished ones, the deadline
    passes, or a signal stops it; returns the signal's name, if one did."""
    optuna = require_optuna()
    states = optuna.trial.TrialState
    stop = StopFlag()
    surplus = False

    failures: list[str] = []  # the errors of the trials that failed in a row

    def report(study: Any, trial: Any) -> None:
        if not trial.user_attrs.get("surplus"):
            print_line(trial_line(trial))
        failed = trial.state == states.FAIL
        failures[:] = [*failures, trial.user_attrs.get("error", "")] if failed else []

    with stop.catching():
        while not stop and not surplus:
            if deadline is not None and time.time() >= deadline:
                break
            optuna.storages.fail_stale_trials(study)  # killed workers' trials: failed
            live = study.get_trials(
                deepcopy=False,
                states=(states.COMPLETE, states.PRUNED, states.RUNNING, states.WAITING),
            )
            if len(live) >= options.trials:
                break
            study.sampler = make_sampler(study, options, worker)
            current: list[int] = []  # the number of the trial under way

            def one_trial(trial: Any, current: list[int] = current) -> float:
                current[:] = [trial.number]
                return objective(trial, options, stop)

            try:
                study.optimize(
                    one_trial,
                    n_trials=1,
                    catch=(TrialError,),
                    callbacks=[report],
                )
            except Surplus:
                surplus = True
            except (Interrupted, KeyboardInterrupt) as exc:  # the trial is marked failed
                failed = study.get_trials(deepcopy=False, states=(states.FAIL,))
                for trial in (t for t in failed if current and t.number == current[0]):
                    print_line(trial_line(trial))
                if isinstance(exc, KeyboardInterrupt):  # a second Ctrl-C
                    return "SIGINT"
                break
            if len(failures) >= MAX_FAILURES:
                raise NnetError(
                    f"{MAX_FAILURES} trials in a row failed, the last with: "
                    f"{failures[-1].rstrip('.')}; fix the search space."
                )
    return stop.signal


# ----------------------------------------------------------------------------- summary


@dataclass
class Summary:
    """What a study holds: trials per state, the best ones, and what the pruner saved."""

    counts: dict[str, int]
    best: list[Any]
    pruned: int
    epochs_trained: int
    epochs_saved: int
    seconds_saved: float
    surplus: int


def summarize(study: Any, top: int) -> Summary:
    trials = study.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.user_attrs.get("surplus")]
    trials = [t for t in trials if not t.user_attrs.get("surplus")]
    counts = {s: sum(t.state.name == s for t in trials) for s in STATES}
    done = sorted(
        (t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number)
    )
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    saved = seconds_saved = 0.0
    for t in pruned:
        epochs = (t.user_attrs.get("settings") or {}).get("epochs", 0)
        trained = t.user_attrs.get("epochs_trained", 0)
        saved += max(epochs - trained, 0)
        if trained:
            per_epoch = t.user_attrs.get("seconds", 0.0) / trained
            seconds_saved += per_epoch * max(epochs - trained, 0)
    trained_total = sum(t.user_attrs.get("epochs_trained", 0) for t in trials)
    return Summary(
        counts, done[:top], len(pruned), trained_total, int(saved), seconds_saved, len(surplus)
    )


def summary_lines(study: Any, url: str, top: int) -> list[str]:
    """The end of ``nnet tune``: the counts, what the pruner saved, the best trials."""
    s = summarize(study, top)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in s.counts.items() if n)
    lines = [
        f"study {study.study_name!r} in {url}: {sum(s.counts.values())} trials ({counts or 'none'})"
    ]
    total = s.epochs_trained + s.epochs_saved
    if total:
        share = 100 * s.epochs_saved / total
        lines.append(
            f"pruner: {s.pruned} trials pruned, {s.epochs_saved} epochs not trained of the "
            f"{total} the trials would have trained without it ({share:.0f} %), about "
            f"{s.seconds_saved:.0f} s of training saved"
        )
    if not s.best:
        lines.append("no completed trial yet.")
        return lines
    val = (s.best[0].user_attrs.get("settings") or {}).get("val")
    lines.append(f"best trials (validation accuracy on {val} held-out training samples):")
    lines.append(
        f"{'rank':>4}  {'trial':>5}  {'val acc':>7}  {'epochs':>6}  {'seconds':>7}  settings"
    )
    for rank, t in enumerate(s.best, 1):
        seconds = t.user_attrs.get("seconds", math.nan)
        epochs = t.user_attrs.get("epochs_trained", "-")
        params = " ".join(f"{k}={short(v)}" for k, v in t.params.items())
        lines.append(
            f"{rank:>4}  {t.number:>5}  {100 * t.value:6.2f}%  {epochs:>6}  "
            f"{seconds:7.1f}  {params}"
        )
    lines.append(f"train the best: nnet train --from-study {url}:{study.study_name} --out best.npz")
    return lines


def plot_study(study: Any, folder: Path) -> list[Path]:
    """``history.png`` (every trial's validation accuracy and the best so far) and, with two
    completed trials or more, ``importances.png`` (each parameter's share of the variance of
    the validation accuracy), drawn like ``nnet plot``'s pictures."""
    from nnet.apps.plots import _new_figure, _write

    optuna = require_optuna()
    folder.mkdir(parents=True, exist_ok=True)
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    written = []
    fig = _new_figure((900, 450), layout="constrained")
    ax = fig.subplots()
    style = {"COMPLETE": ("C0", "o", "complete"), "PRUNED": ("0.6", "x", "pruned (last epoch)")}
    for state, (color, marker, label) in style.items():
        shown = [t for t in trials if t.state.name == state]
        values = [
            t.value
            if state == "COMPLETE"
            else (t.intermediate_values or {}).get(max(t.intermediate_values or {0: 0}))
            for t in shown
        ]
        points = [(t.number, 100 * v) for t, v in zip(shown, values, strict=True) if v is not None]
        if points:
            ax.scatter(*zip(*points, strict=True), color=color, marker=marker, s=18, label=label)
    done = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.number)
    if done:
        best = np.maximum.accumulate([100 * t.value for t in done])
        ax.step([t.number for t in done], best, where="post", color="C3", label="best so far")
        values = [100 * t.value for t in done]
        low = np.percentile(values, 10) - 2 if len(values) >= 10 else min(values) - 2
        ax.set_ylim(max(low, 0), max(values) + 0.5)  # the worst tenth may lie below
    ax.set(
        xlabel="trial",
        ylabel="validation accuracy (%)",
        title=f"optimization history of study {study.study_name!r}",
    )
    ax.grid(True, alpha=0.3)
    if done or trials:
        ax.legend(fontsize="small", loc="lower right")
    written.append(_write(folder / "history.png", fig))
    if len(done) >= 2:
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
        except (RuntimeError, ValueError, ZeroDivisionError):
            importances = {}
        if importances:
            names = list(importances)[::-1]
            fig = _new_figure((800, max(250, 40 * len(names) + 90)), layout="constrained")
            ax = fig.subplots()
            ax.barh(names, [importances[n] for n in names], color="C0")
            ax.set(
                xlabel="importance for the validation accuracy (PED-ANOVA, sums to 1)",
                title=f"parameter importances, {len(done)} completed trials",
            )
            ax.grid(True, axis="x", alpha=0.3)
            written.append(_write(folder / "importances.png", fig))
    return written


# ----------------------------------------------------------------------------- command


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def count_int(text: str) -> int:
    value = positive_int(text) if text.strip() != "0" else 0
    return value


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_tune(sub: Any) -> None:
    """``nnet tune`` and its flags (registered by :func:`nnet.apps.cli.build_parser`)."""
    help = "search hyperparameters with Optuna (validation accuracy; SQLite or PostgreSQL)"
    p = sub.add_parser("tune", help=help, description=cmd_tune.__doc__)
    p.set_defaults(func=cmd_tune)
    help = "the search space, a TOML file (default: the built-in one; see --print-space)"
    p.add_argument("--space", type=Path, metavar="FILE", help=help)
    help = "print the built-in search space (a TOML file to start from) and exit"
    p.add_argument("--print-space", action="store_true", help=help)
    help = "finished (complete or pruned) trials the study should hold (default 100)"
    p.add_argument("--trials", type=positive_int, default=100, help=help)
    help = "start no trial after this many seconds (the trial under way finishes)"
    p.add_argument("--timeout", type=seconds_arg, metavar="SECONDS", help=help)
    help = "seed of the sampler; each trial's run seed derives from it and the trial's number"
    p.add_argument("--seed", type=count_int, default=0, help=help + " (default 0)")
    help = "local processes working on the study at once, each with cores/K BLAS threads"
    p.add_argument("--workers", type=positive_int, default=1, help=help + " (default 1)")
    help = f"database of the study: a file (SQLite, default {DEFAULT_STORAGE}) or a URL such "
    help += "as postgresql+psycopg://user:password@host/db, shared by workers on many machines"
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL", help=help)
    p.add_argument(
        "--study",
        default=DEFAULT_STUDY,
        metavar="NAME",
        help=f"the study's name in the storage (default {DEFAULT_STUDY})",
    )
    help = "training samples held out to score each trial (default 5000; never the test set)"
    p.add_argument("--val", type=positive_int, default=5000, help=help)
    help = "train each trial on the first N remaining training samples only (quick studies)"
    p.add_argument("--train-samples", type=positive_int, metavar="N", help=help)
    help = "stop trials whose validation accuracy is below the median of earlier trials at the "
    help += "same epoch (median, default), or never (none)"
    p.add_argument("--pruner", choices=["median", "none"], default="median", help=help)
    help = "random trials before the TPE sampler models the results (default 10)"
    p.add_argument("--startup-trials", type=positive_int, default=10, metavar="N", help=help)
    help = "seconds between a running trial's signs of life; a trial silent for twice as long "
    help += "(its worker killed) is marked failed (default 30)"
    p.add_argument("--heartbeat", type=positive_int, default=30, metavar="SECONDS", help=help)
    help = "print the study's table (and --plot its pictures) without running trials: to "
    help += "watch a study that workers elsewhere are running"
    p.add_argument("--report", action="store_true", help=help)
    help = "best trials in the final table (default 10)"
    p.add_argument("--top", type=positive_int, default=10, metavar="N", help=help)
    help = "write the optimization history and parameter importances as PNG files to DIR"
    p.add_argument("--plot", type=Path, metavar="DIR", help=help)
    help = "data folder holding mnist/ or fashion-mnist/ (default: $NNET_DATA, then the user cache)"
    p.add_argument("--data", type=Path, metavar="DIR", help=help)
    p.add_argument("--no-download", action="store_true", help="never download; fail instead")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # one of --workers K


def check_args(args: argparse.Namespace) -> None:
    """The flags' files and folders, before anything starts."""
    if args.space is not None and not args.space.is_file():
        raise NnetError(f"--space {args.space}: no such file.")
    if args.plot is not None:
        target = args.plot if args.plot.is_dir() else args.plot.parent
        if args.plot.exists() and not args.plot.is_dir():
            raise NnetError(f"--plot {args.plot} is a file; give a folder.")
        check_output(target / ".nnet-check")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        raise NnetError(f"--data {args.data} is a file; give the data folder.")
    if not args.study.strip():
        raise NnetError("--study needs a name.")


def cmd_tune(args: argparse.Namespace) -> int:
    """Search the hyperparameters of an nnet classifier with Optuna: each trial trains an
    ordinary nnet run drawn from the search space and is scored by its accuracy on training
    samples held out for validation (never the test set); the pruner stops trials that fall
    behind at the same epoch. The study lives in a database (an SQLite file, or a PostgreSQL
    server the same command on other machines joins); run the command again to continue it.
    Ends with the best trials; nnet train --from-study trains the best one."""
    if args.print_space:
        print(DEFAULT_SPACE, end="")
        return 0
    check_args(args)
    space = read_space(args.space)
    optuna = require_optuna()
    url = storage_url(args.storage)
    storage = open_storage(url, heartbeat=args.heartbeat)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if args.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=args.study,
            direction="maximize",
            pruner=pruner,
            load_if_exists=True,
        )
    except Exception as exc:
        raise NnetError(f"cannot open study {args.study!r} in {url}: {one_line(exc)}.") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise NnetError(f"study {args.study!r} in {url} is not an nnet study (it minimizes).")
    options = Options(
        space,
        args.trials,
        args.seed,
        args.val,
        args.train_samples,
        args.data,
        not args.no_download,
        args.startup_trials,
    )
    deadline = time.time() + args.timeout if args.timeout else None
    if args.report:
        return report_study(study, url, args)
    if args.worker is not None:  # one of the processes of --workers K ($NNET_THREADS set)
        with limited(resolve(None)):
            stopped = work(study, options, deadline=deadline, worker=args.worker, print_line=emit)
        return 128 + int(getattr(signal, stopped)) if stopped else 0
    done = len(
        study.get_trials(
            deepcopy=False,
            states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
        )
    )
    emit(
        f"study {args.study!r} in {url}: {done} of {args.trials} trials done; "
        f"{args.workers} worker{'s' if args.workers > 1 else ''}, seed {args.seed}, "
        f"validation on {args.val} held-out training samples"
    )
    emit("space: " + ", ".join(f"{p.name} {p.describe()}" for p in space.params))
    if args.workers == 1:
        with limited(resolve(None)):  # $NNET_THREADS, else the cores other programs leave idle
            stopped = work(study, options, deadline=deadline, worker=None, print_line=emit)
    else:
        stopped = run_workers(args, url)
    report_study(study, url, args)
    if stopped:
        print(
            f"nnet: stopped by {stopped}; the trial under way is marked failed. Run the same "
            "command again to continue the study.",
            file=sys.stderr,
        )
        return 128 + int(getattr(signal, stopped, signal.SIGINT))
    return 0


def report_study(study: Any, url: str, args: argparse.Namespace) -> int:
    """The end of ``nnet tune`` (and all of ``nnet tune --report``): the running trials, the
    summary table, the pictures."""
    for t in study.get_trials(deepcopy=False, states=(require_optuna().trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "?")
        emit(
            f"running: trial {t.number} on {worker}, epoch {t.user_attrs.get('epochs_trained', 0)}"
        )
    for line in summary_lines(study, url, args.top):
        emit(line)
    if args.plot is not None:
        for path in plot_study(study, args.plot):
            emit(f"wrote {path}")
    return 0


def emit(line: str) -> None:
    """One line on stdout, whole (workers share it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def worker_command(args: argparse.Namespace, url: str, index: int) -> list[str]:
    """The command line of worker ``index`` of --workers K: the same study and options."""
    cmd = [
        sys.executable,
        "-m",
        "nnet",
        "tune",
        "--storage",
        url,
        "--study",
        args.study,
        "--trials",
        str(args.trials),
        "--seed",
        str(args.seed),
        "--val",
        str(args.val),
        "--pruner",
        args.pruner,
        "--startup-trials",
        str(args.startup_trials),
        "--heartbeat",
        str(args.heartbeat),
        "--worker",
        str(index),
    ]
    if args.space is not None:
        cmd += ["--space", str(args.space.resolve())]
    if args.timeout is not None:
        cmd += ["--timeout", str(args.timeout)]
    if args.train_samples is not None:
        cmd += ["--train-samples", str(args.train_samples)]
    if args.data is not None:
        cmd += ["--data", str(args.data.resolve())]
    if args.no_download:
        cmd.append("--no-download")
    return cmd


def worker_threads(workers: int, cores: int | None = None) -> int:
    """BLAS (and Numba) threads for each of ``workers`` processes: cores // workers, >= 1."""
    return max(1, (cores or usable_cores()) // workers)


def run_workers(args: argparse.Namespace, url: str) -> str | None:
    """Start --workers K processes on the study, each with its share of the cores (in its
    environment before it imports NumPy, and :func:`~nnet.training.threads.limited` to
    that), and wait for them. A signal to this process
    is passed on to them (a terminal's Ctrl-C reaches them directly); returns its name."""
    threads = str(worker_threads(args.workers))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NNET_THREADS"):
        env[name] = threads
    procs: list[subprocess.Popen] = []
    caught: list[str] = []

    def forward(signum: int, frame: Any) -> None:
        caught.append(signal.Signals(signum).name)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i in range(args.workers):
            procs.append(subprocess.Popen(worker_command(args, url, i), env=env))
        codes = [proc.wait() for proc in procs]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    failed = [c for c in codes if c not in (0, 130, 143)]
    if failed and not caught:
        raise NnetError(f"a worker ended with status {failed[0]}; see its message above.")
    if caught:
        return caught[0]
    stopped = [c for c in codes if c in (130, 143)]
    return ("SIGINT" if stopped[0] == 130 else "SIGTERM") if stopped else None
