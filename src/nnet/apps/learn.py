"""``nnet serve``'s learn view: a training run in a process of its own, watched live.

The run is built from a :class:`~nnet.training.settings.Settings` by
:func:`nnet.experiment.build` and trained by :func:`nnet.experiment.run`, exactly as ``nnet
train`` does, in a ``multiprocessing`` "spawn" child (:func:`_child_main`), so that the
server's event loop and its predictions never wait for a batch. The child computes with
fewer threads than there are cores (:func:`training_threads`), so that the server keeps one.

What the child reports (events, plain JSON objects, on a Queue) are the training loop's own
numbers, never recomputed:

- ``start``: the run's settings, the network's activations, batches per epoch, the
  held-out set, the saturation rule;
- ``batch``: after a batch (at most every :data:`BATCH_INTERVAL` seconds, and always when
  the held-out set was measured or the run is paused): epoch, batch, step, the batch's mean
  loss and accuracy as the loop tallied them (before that batch's update), the learning
  rate, the seconds since training began (pauses excluded); every ``eval_every`` steps also
  the loss and accuracy of the held-out set (the first ``held_out`` test images, measured
  by :func:`nnet.training.loop.evaluate`) and the saturation of every layer;
- ``epoch``: the epoch's metrics row, exactly what ``nnet train --metrics`` writes;
- ``held_out``: the held-out figures of the final weights, when training ends;
- ``weights``: the first layer's weights, one 28x28 image per hidden neuron (the first
  :data:`MAX_NEURON_IMAGES`), each scaled to its own largest magnitude and quantized to a
  byte (128 = 0), base64; at most once per :data:`WEIGHT_INTERVAL` seconds;
- ``state``: running, paused, stopped (by the user), finished, or failed (with the message);
- ``switch``: an engine switch and the largest difference of the next batch's gradient
  between the old and the new engine; ``saved``: a model file written.

Saturation: the share of a layer's units, over the held-out images, whose activation sits
where g' is below about 8 % of its peak: for sigmoid a < 0.02 or a > 0.98 (|h| > 3.9, g'(h)
< 0.0196), for tanh |a| > 0.96 (the conditions ``nnet inspect`` counts); None for the other
activations.

The child obeys commands on a Queue: pause, resume, step (one batch, then paused), stop,
switch (engine), save, predict, exit. Predictions are answered at once by a thread of the
child (NumPy frees the GIL: a forward pass of one digit does not wait for a batch);
switches and saves by the training thread, between two batches, so a save always writes
one consistent set of weights, and a save under way always finishes, even at shutdown.

The parent side is :class:`LearnHub`: one per server, at most one run at a time (starting
another while one is running or paused raises :class:`Busy`), any number of viewers
(:meth:`LearnHub.subscribe`; a late viewer first gets the events so far, the weight images
only the latest).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import itertools
import json
import multiprocessing
import os
import queue
import re
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnet.core.activations import ACTIVATIONS
from nnet.core.engines import ENGINES, get_engine
from nnet.core.loss import LOSSES
from nnet.core.network import Network
from nnet.data.datasets import DATASETS, class_names, locate
from nnet.errors import NnetError
from nnet.experiment import available_memory, build, memory_needed, model_meta
from nnet.experiment import run as run_training
from nnet.fileio import check_output
from nnet.files.model_file import save as save_model
from nnet.training.loop import Split, StopFlag, evaluate
from nnet.training.optim import OPTIMIZERS
from nnet.training.presets import PRESETS, settings_for
from nnet.training.settings import FIELDS, Settings
from nnet.training.threads import check_threads, limited, usable_cores

Array = np.ndarray

HELD_OUT = 1000  # test images measured every eval_every steps (default)
BATCH_INTERVAL = 0.05  # seconds between two batch events (at most 20 a second)
WEIGHT_INTERVAL = 0.5  # seconds between two weight images (at most 2 a second)
MAX_NEURON_IMAGES = 64  # hidden neurons of the first layer shown as images
EVAL_SHARE = 0.1  # the held-out set may cost about this share of the training time
MAX_BATCH_WORK = 1e10  # multiply-adds of one batch's gradient an engine may take (~1 s)
MAX_STORED_BATCHES = 20000  # batch events kept for late viewers (then every other one)
MAX_VIEWER_BACKLOG = 2000  # events waiting for one viewer; a slower viewer is dropped
START_TIMEOUT = 120.0  # seconds the child may take to load the data and build the run
EXIT_TIMEOUT = 60.0  # seconds the child gets to finish (a save under way) when told to exit
SIDE = 28
SATURATION = {  # activation -> (condition on a, in words): g' below ~8 % of its peak
    "sigmoid": (lambda a: (a < 0.02) | (a > 0.98), "a < 0.02 or a > 0.98"),
    "tanh": (lambda a: np.abs(a) > 0.96, "|a| > 0.96"),
}
OPTIONS = ("preset", "eval_every", "held_out")  # a request's keys that are not settings
ACTIVE = ("starting", "running", "paused")  # states of a run that refuse a second one
_SAVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class Busy(NnetError):
    """A run is already training on this server (HTTP 409)."""


class Gone(NnetError):
    """There is no run to command, or its process ended (HTTP 409)."""


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class LearnRequest:
    """What ``POST /api/train`` asks for: the settings, checked as ``nnet train`` checks its
    flags, and how often the held-out set is measured."""

    settings: Settings
    eval_every: int
    held_out: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "eval_every": self.eval_every,
            "held_out": self.held_out,
        }


def _count(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise NnetError(f"{what} must be an integer from {lo} to {hi}; got {value!r}.")
    return value


def parse_request(values: Any) -> LearnRequest:
    """The run a ``POST /api/train`` body asks for: ``preset`` (default seed), any settings
    of ``nnet train`` by their names (``lr``, ``sizes``, ``batch_size`` ...: JSON values as
    a checkpoint stores them, or text as the flag takes it, "784-16-10"; laid over the
    preset by :func:`nnet.training.presets.settings_for`, with the same one-line messages),
    ``eval_every`` and ``held_out``. NnetError for the first problem."""
    if not isinstance(values, dict):
        raise NnetError(f"the request must be a JSON object of settings; got {type(values)}.")
    explicit = {k: v for k, v in values.items() if k not in OPTIONS}
    preset = values.get("preset", "seed")
    if not isinstance(preset, str):
        raise NnetError(f"preset must be a name; got {preset!r}.")
    unknown = sorted(set(explicit) - set(FIELDS))
    if unknown:
        raise NnetError(f"unknown setting {unknown[0]!r}.")
    for key, value in explicit.items():  # text as nnet train reads its flag: "784-16-10"
        check = FIELDS[key].metadata["check"]
        if isinstance(value, str) and hasattr(check, "parse"):
            try:
                explicit[key] = check.parse(value)
            except NnetError as exc:
                raise NnetError(f"setting {key}: {exc}.") from None
    settings = settings_for(preset, explicit)
    spec = DATASETS.get(settings.dataset)
    if settings.task != "classifier" or spec is None or spec.n_classes != 10:
        raise NnetError(
            "the learn view trains classifiers of MNIST or Fashion-MNIST; use nnet train "
            f"for {settings.task}s."
        )
    if settings.trainer != "gradient":
        raise NnetError(
            f"the learn view trains by gradients; use nnet train for --trainer {settings.trainer}."
        )
    check_engine(settings.engine or "backprop", settings)
    default_every = max(1, round(HELD_OUT / (3 * EVAL_SHARE * settings.batch_size)))
    eval_every = _count(values.get("eval_every", default_every), "eval_every", 1, 10**6)
    held_out = _count(values.get("held_out", HELD_OUT), "held_out", 1, spec.images[1])
    return LearnRequest(settings, eval_every, held_out)


def engine_work(engine: str, sizes: Any, batch: int) -> float:
    """Multiply-adds of one batch's gradient by ``engine`` for ``sizes`` (the per-sample
    costs in the engines' docstrings; recursive: infinite, it recurses in Python)."""
    s = list(sizes)
    L = len(s) - 1

    def chain(k: int) -> float:  # sum over l >= k + 2 of #l #(l-1)
        return float(sum(s[l] * s[l - 1] for l in range(k + 2, L + 1)))

    if engine == "backprop":
        per = 3.0 * sum((s[k] + 1) * s[k + 1] for k in range(L))
    elif engine == "frontprop":
        per = sum(s[k + 1] * chain(k) + (s[k] + 1) * s[k + 1] for k in range(L))
    elif engine == "matrix":
        per = sum((s[k] + 1) * s[k + 1] * max(chain(k), s[k + 1]) for k in range(L))
    else:
        return float("inf")
    return per * batch


def check_engine(engine: str, settings: Settings) -> None:
    """NnetError unless ``engine`` trains ``settings``' network in reasonable time (one
    batch's gradient within :data:`MAX_BATCH_WORK` multiply-adds) and memory."""
    get_engine(engine)
    sizes = "-".join(map(str, settings.sizes))
    if engine == "recursive":
        raise NnetError(
            "the recursive engine evaluates the notes' recursion sample by sample in Python, "
            "far too slowly to train on MNIST; see it in nnet gradcheck, and switch among "
            "backprop, frontprop and matrix here."
        )
    work = engine_work(engine, settings.sizes, settings.batch_size)
    if work > MAX_BATCH_WORK:
        fast = [e for e in ENGINES if engine_work(e, settings.sizes, settings.batch_size)
                <= MAX_BATCH_WORK]  # fmt: skip
        raise NnetError(
            f"the {engine} engine would take about {work:.1e} multiply-adds per batch of "
            f"{settings.batch_size} for {sizes} (the learn view allows {MAX_BATCH_WORK:.0e}, "
            f"about a second); use {' or '.join(fast)}, or nnet train."
        )
    need, have = memory_needed(settings.replace(engine=engine)), available_memory()
    if have is not None and need > have:
        raise NnetError(
            f"the {engine} engine would need about {need / 2**30:.1f} GiB for {sizes} but "
            f"{have / 2**30:.1f} GiB is available; use another engine."
        )


def check_save_name(name: Any, folder: Path) -> Path:
    """The file ``name`` (a plain file name ending in .npz) in ``folder``; NnetError for
    anything else (a path, "..", a hidden name) or a file that cannot be written there."""
    if not isinstance(name, str) or not _SAVE_NAME.fullmatch(name) or ".." in name:
        raise NnetError(
            "name the model file with letters, digits, '_', '.' and '-' only, like run.npz "
            f"(it is saved in the server's save folder); got {str(name)[:60]!r}."
        )
    if not name.endswith(".npz"):
        raise NnetError(f"a model file's name ends with .npz; got {name!r}.")
    path = folder / name
    check_output(path)
    return path


def training_threads() -> int:
    """Threads the child computes with: ``$NNET_THREADS`` when it is a number (as for nnet
    train), else one core fewer than this process may use, at least one, so that the server
    keeps a core for its answers."""
    n = check_threads(None)
    return n if isinstance(n, int) else max(1, usable_cores() - 1)


# ----------------------------------------------------------------------------- measuring


def saturation(net: Network, x: Array) -> list[float | None]:
    """Per layer 1..L, the share of units whose activation is saturated on the inputs ``x``
    (rows [x, 1] or x; see the module docstring); None for activations without a rule."""
    fp = net.forward_pass(x[:, : net.sizes[0]])
    shares: list[float | None] = []
    for l, name in enumerate(net.activations, start=1):
        rule = SATURATION.get(name)
        shares.append(None if rule is None else float(np.mean(rule[0](fp.a[l][:, :-1]))))
    return shares


def weight_images(net: Network, limit: int = MAX_NEURON_IMAGES) -> dict[str, Any]:
    """The first layer's incoming weights of up to ``limit`` hidden neurons as 28x28 byte
    images (128 + 127 w / max|w| of that neuron), concatenated and base64-encoded."""
    w = net.weights[0][: SIDE * SIDE, :limit]  # (784, n): one column per neuron, no bias
    scale = np.abs(w).max(axis=0)
    safe = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(128 + 127 * (w / safe)), 1, 255).astype(np.uint8)
    return {
        "neurons": int(net.sizes[1]),
        "shown": int(w.shape[1]),
        "side": SIDE,
        "scale": [float(v) for v in scale],
        "data": base64.b64encode(np.ascontiguousarray(q.T).tobytes()).decode(),
    }


def predict_answer(net: Network, x28: Array) -> dict[str, Any]:
    """What ``/api/predict`` answers for ``x28`` (28x28 in [0, 1]) with ``net``; NnetError
    if its outputs are not finite."""
    x = x28.reshape(1, SIDE * SIDE).astype(net.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        fp = net.forward_pass(x)
        p = net.loss.probabilities(fp.O)[0]
    hidden = [fp.a[l][0, :-1] for l in range(1, net.L)]
    if not all(np.isfinite(v).all() for v in (fp.O, p, *hidden)):
        raise NnetError("the network's outputs overflow for this input: its weights are too large.")
    digit = int(np.argmax(p))
    classes = class_names(net.meta, int(net.sizes[-1]))
    return {
        "digit": digit,
        "label": classes[digit],
        "probabilities": p.tolist(),
        "outputs": fp.O[0].tolist(),
        "hidden": [h.tolist() for h in hidden],
        "input": x.reshape(SIDE, SIDE).tolist(),
    }


# ----------------------------------------------------------------------------- the child


def _child_main(
    request: dict[str, Any],
    data: str | None,
    threads: int,
    commands: Any,
    events: Any,
    parent: int,
) -> None:
    """The child process: build the run, train it, obey commands, until told to exit (or
    the server is gone). Ctrl-C in a terminal reaches the whole process group: the child
    ignores it, and the server tells it to exit once its own answers are done (a Ctrl-C in
    the child's first second, while Python imports, still cuts it short, with a traceback:
    the server was stopping it anyway)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with limited(threads):
        _Child(request, data, commands, events, parent).main()


class _Child:
    def __init__(
        self, request: dict[str, Any], data: str | None, commands: Any, events: Any, parent: int
    ) -> None:
        self.settings = Settings.from_dict(request["settings"])
        self.eval_every, self.held_out_n = request["eval_every"], request["held_out"]
        self.data, self.commands, self.events = data, commands, events
        self.stop = StopFlag()
        self.cond = threading.Condition()
        self.paused = False
        self.steps = 0  # batches to run before pausing again (step)
        self.exiting = False
        self.work: queue.Queue[tuple[int, str, dict[str, Any]]] = queue.Queue()
        self.state = "starting"
        self.step = 0  # batches done in this run
        self.correct = 0  # the pass's correct count after the last batch
        self.last_batch = 0.0
        self.last_weights = 0.0
        self.engine = self.settings.engine or "backprop"
        self.parent = parent  # the server's pid: when it is gone, the child ends too
        self.started = 0.0  # perf_counter when training began
        self._paused_total = 0.0  # seconds spent paused

    def orphaned(self) -> bool:
        """Whether the server that started this child has died (killed, not stopped)."""
        if os.getppid() == self.parent:
            return False
        with self.cond:
            self.exiting = True
            self.stop.signal = self.stop.signal or "stop"
        return True

    # -------------------------------------------------------------- events and replies
    def emit(self, kind: str, **fields: Any) -> None:
        self.events.put({"type": kind, **fields})

    def reply(self, cid: int, result: Any = None, error: str | None = None) -> None:
        self.events.put({"type": "reply", "id": cid, "result": result, "error": error})

    def set_state(self, state: str, **extra: Any) -> None:
        self.state = state
        p = self.exp.trainer.progress if hasattr(self, "exp") else None
        self.emit(
            "state",
            state=state,
            engine=self.engine,
            step=self.step,
            epoch=self.exp.trainer.epoch if hasattr(self, "exp") else 0,
            batch=p["batch"] if p else 0,
            **extra,
        )

    # -------------------------------------------------------------- the command thread
    def listen(self) -> None:
        """Read commands; answer predictions at once, hand switches and saves to the
        training thread, set the flags of pause, resume, step and stop."""
        while True:
            cid, name, args = self.commands.get()
            try:
                if name == "exit":
                    with self.cond:
                        self.exiting = True
                        self.stop.signal = self.stop.signal or "stop"
                        self.cond.notify_all()
                    self.reply(cid, {"state": self.state})
                    return
                if name == "predict":
                    if not hasattr(self, "exp"):
                        raise NnetError("the run is still loading its data; try again in a moment.")
                    x = np.asarray(args["pixels"], dtype=np.float64)
                    self.reply(cid, predict_answer(self.exp.net, x))
                elif name in ("switch", "save"):
                    with self.cond:
                        self.work.put((cid, name, args))
                        self.cond.notify_all()
                else:
                    self.reply(cid, self.control(name))
            except NnetError as exc:
                self.reply(cid, error=str(exc))
            except Exception as exc:  # never silent: the parent shows it as one line
                self.reply(cid, error=f"internal error: {type(exc).__name__}: {exc}")

    def control(self, name: str) -> dict[str, Any]:
        """pause, resume, step or stop; the state the run will be in."""
        with self.cond:
            if self.state not in ACTIVE:
                raise NnetError(f"the run is {self.state}; start a new one.")
            if name == "pause":
                self.paused, self.steps = True, 0
            elif name == "resume":
                self.paused, self.steps = False, 0
            elif name == "step":
                if not self.paused:
                    raise NnetError("step runs one batch of a paused run; pause first.")
                self.paused, self.steps = False, 1
            elif name == "stop":
                self.stop.signal = "stop"
                self.paused = False
            else:
                raise NnetError(f"unknown command {name!r}.")
            self.cond.notify_all()
        return {"command": name}

    # -------------------------------------------------------------- the training thread
    def main(self) -> None:
        try:
            self.train()
        finally:
            if os.getppid() != self.parent:  # nobody reads the events: exit without them
                self.events.cancel_join_thread()

    def train(self) -> None:
        threading.Thread(target=self.listen, name="nnet-learn-commands", daemon=True).start()
        try:
            self.exp = build(self.settings, data=self.data, download=False, progress=False)
        except Exception as exc:
            self.fail(exc)
            self.serve_until_exit()
            return
        exp = self.exp
        test = exp.evals["test"]
        n = min(self.held_out_n, len(test))
        y = test.y[:n] if test.y is not None else None
        self.held_out = Split(test.x[:n], test.t[:n], y)
        self.n_batches = -(-len(exp.train) // exp.trainer.batch_size)
        self.emit(
            "start",
            settings=self.settings.to_dict(),
            train_samples=len(exp.train),
            batches_per_epoch=self.n_batches,
            held_out=n,
            eval_every=self.eval_every,
            saturation_rule={k: v[1] for k, v in SATURATION.items()},
            parameters=int(exp.net.n_params),
            activations=exp.net.activations,  # of layers 1..L, as the network has them
        )
        self.set_state("running")
        self.send_weights()
        self.started = time.perf_counter()
        try:
            run_training(
                exp,
                stop=self.stop,
                on_batch=self.on_batch,
                on_epoch_start=self.on_epoch_start,
                on_epoch=self.on_epoch,
            )
        except Exception as exc:
            self.fail(exc)
        else:
            self.final_held_out()
            self.set_state("stopped" if exp.trainer.stopped_by else "finished")
        self.serve_until_exit()

    def fail(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, NnetError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, NnetError):
            traceback.print_exc()
        self.state = "failed"
        self.emit("state", state="failed", error=message, engine=self.engine, step=self.step)

    def serve_until_exit(self) -> None:
        """After training: switches and saves until told to exit."""
        with self.cond:
            self.paused = False
        while True:
            with self.cond:
                while self.work.empty() and not self.exiting:
                    self.cond.wait(0.5)
                    if os.getppid() != self.parent:
                        self.exiting = True
                if self.work.empty() and self.exiting:
                    return
            self.do_work()

    def on_epoch_start(self, epoch: int) -> None:
        self.correct = 0

    def on_epoch(self, row: dict[str, Any]) -> None:
        self.emit("epoch", **row)

    def on_batch(self, n: int, loss: float) -> None:
        """After every batch: report it, then obey what came meanwhile (pause, step...)."""
        trainer = self.exp.trainer
        p = trainer.progress
        assert p is not None
        self.step += 1
        correct = p["correct"] - self.correct
        self.correct = p["correct"]
        now = time.perf_counter()
        measured = self.step % self.eval_every == 0
        with self.cond:
            pausing = self.paused or self.steps == 1 or bool(self.stop)
        if (
            measured
            or pausing
            or p["batch"] == self.n_batches
            or (now - self.last_batch >= BATCH_INTERVAL)
        ):
            event: dict[str, Any] = {
                "epoch": trainer.epoch + 1,
                "batch": p["batch"],
                "step": self.step,
                "samples": n,
                "loss": loss,
                "accuracy": correct / n,
                "lr": trainer.update.lr_at(trainer.epoch + (p["batch"] - 1) / self.n_batches),
                "seconds": now - self.started - self._paused_total,
                "engine": self.engine,
            }
            if measured:
                event.update(self.measure())
            self.emit("batch", **event)
            self.last_batch = now
        if now - self.last_weights >= WEIGHT_INTERVAL:
            self.send_weights()
            self.orphaned()  # twice a second: a cheap system call
        self.do_work()
        self.wait_if_paused()

    def measure(self) -> dict[str, Any]:
        loss, acc = evaluate(self.exp.net, self.held_out)
        return {
            "held_out_loss": loss,
            "held_out_accuracy": acc,
            "saturation": saturation(self.exp.net, self.held_out.x),
        }

    def final_held_out(self) -> None:
        self.emit("held_out", step=self.step, final=True, **self.measure())
        self.send_weights()

    def send_weights(self) -> None:
        self.last_weights = time.perf_counter()
        self.emit("weights", step=self.step, **weight_images(self.exp.net))

    def wait_if_paused(self) -> None:
        with self.cond:
            if self.steps == 1:
                self.steps, self.paused = 0, True
            if not self.paused or self.stop:
                return
        self.set_state("paused")
        self.send_weights()
        start = time.perf_counter()
        while True:
            with self.cond:
                while self.paused and not self.stop and self.work.empty():
                    self.cond.wait(0.5)
                    if os.getppid() != self.parent:
                        self.exiting, self.stop.signal = True, "stop"
                if not self.paused or self.stop:
                    break
            self.do_work()
        self._paused_total += time.perf_counter() - start
        if not self.stop:
            self.set_state("running")

    def do_work(self) -> None:
        """The switches and saves asked for, in order, between two batches."""
        while True:
            try:
                cid, name, args = self.work.get_nowait()
            except queue.Empty:
                return
            try:
                result = self.switch(args["engine"]) if name == "switch" else self.save(args)
                self.reply(cid, result)
            except NnetError as exc:
                self.reply(cid, error=str(exc))
            except Exception as exc:
                traceback.print_exc()
                self.reply(cid, error=f"internal error: {type(exc).__name__}: {exc}")

    # -------------------------------------------------------------- switch and save
    def next_batch(self) -> tuple[Array, Array, Any]:
        """The rows of the batch the trainer will train next, and its dropout masks, drawn
        from copies of the generators (so that the run itself is left unchanged)."""
        trainer, train = self.exp.trainer, self.exp.train
        bs, N = trainer.batch_size, len(train)
        p = trainer.progress
        rng = trainer.rng
        saved = rng.bit_generator.state
        if p is None or p["batch"] >= self.n_batches:  # the next batch begins a new pass
            perm, b = rng.permutation(N), 0
        else:  # the pass's order, as run_epoch draws it again when it continues a pass
            rng.bit_generator.state = p["rng_start"]
            perm, b = rng.permutation(N), p["batch"]
            rng.bit_generator.state = saved  # the masks come from where the run is
        idx = perm[b * bs : (b + 1) * bs]
        update = trainer.update
        masks = None
        if getattr(update, "dropout", None) is not None:
            masks = [None if m is None else m.copy() for m in update.masks(self.exp.net, len(idx))]
        rng.bit_generator.state = saved
        x = np.take(train.x, idx, axis=0)
        if trainer.augment is not None:
            aug_rng = trainer.augment.rng
            aug_state = aug_rng.bit_generator.state
            x = x.copy()
            trainer.augment(x)
            aug_rng.bit_generator.state = aug_state
        return x, np.take(train.t, idx, axis=0), masks

    def switch(self, engine: str) -> dict[str, Any]:
        if self.state == "failed":
            raise NnetError("the run failed; start a new one.")
        check_engine(engine, self.settings)
        old = self.engine
        net = self.exp.net
        x, t, masks = self.next_batch()
        fp = net.forward_pass(x, masks=masks)
        g_old = get_engine(old)(net, fp, t)
        g_new = get_engine(engine)(net, fp, t)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(g_old, g_new, strict=True))
        size = max(float(np.max(np.abs(a))) for a in g_old)
        self.exp.trainer.update.engine = get_engine(engine)
        self.engine = engine
        self.settings = self.settings.replace(engine=engine)
        self.exp.settings = self.settings
        result = {
            "from": old,
            "to": engine,
            "step": self.step,
            "samples": len(x),
            "max_difference": diff,
            "largest_gradient": size,
            "relative": diff / size if size else 0.0,
        }
        self.emit("switch", **result)
        self.set_state(self.state)
        return result

    def save(self, args: dict[str, Any]) -> dict[str, Any]:
        if not hasattr(self, "exp"):
            raise NnetError("the run has no network yet; wait until it starts.")
        exp, trainer = self.exp, self.exp.trainer
        model = exp.net.copy()
        model.weights = [w.copy() for w in trainer.model_weights()]
        seconds = trainer.train_seconds + (trainer.progress or {}).get("seconds", 0.0)
        save_model(model, args["path"], model_meta(exp, seconds))
        loss, acc = evaluate(model, self.held_out)
        result = {
            "path": str(args["path"]),
            "step": self.step,
            "epoch": trainer.epoch,
            "held_out_loss": loss,
            "held_out_accuracy": acc,
        }
        self.emit("saved", **result)
        return result


# ----------------------------------------------------------------------------- the parent


class _Viewer:
    """One SSE viewer: its events (JSON text) in an asyncio queue on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.dropped = False

    def deliver(self, text: str | None) -> None:
        """From any thread: queue ``text`` (None: the end) for the viewer."""
        try:
            self.loop.call_soon_threadsafe(self._put, text)
        except RuntimeError:  # its loop is closed
            self.dropped = True

    def _put(self, text: str | None) -> None:
        if self.dropped:
            return
        if text is not None and self.queue.qsize() >= MAX_VIEWER_BACKLOG:
            self.dropped = True  # too slow: its stream ends, the page reconnects
            text = None
        self.queue.put_nowait(text)


class _Run:
    """One child process and what the parent knows of it."""

    def __init__(self, request: LearnRequest, data: str | None, threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.id = uuid.uuid4().hex[:12]
        self.request = request
        self.commands = ctx.Queue()
        self.events = ctx.Queue()
        self.process = ctx.Process(
            target=_child_main,
            args=(request.to_dict(), data, threads, self.commands, self.events, os.getpid()),
            name=f"nnet-learn-{self.id}",
            daemon=True,
        )
        self.state = "starting"
        self.pending: dict[int, concurrent.futures.Future[Any]] = {}
        self.ids = itertools.count(1)


class LearnHub:
    """The learn view's side of the server: at most one run at a time, its events for any
    number of viewers, commands to it. ``data``: the dataset folder (None: as nnet train
    looks); ``save_dir``: the folder models are saved in; ``threads``: of the child (None:
    :func:`training_threads`). Thread-safe."""

    def __init__(
        self,
        *,
        data: str | os.PathLike[str] | None = None,
        save_dir: str | os.PathLike[str] = ".",
        threads: int | None = None,
    ) -> None:
        self.data = None if data is None else str(data)
        self.save_dir = Path(save_dir)
        self.threads = threads or training_threads()
        self.lock = threading.RLock()
        self.run: _Run | None = None
        self.viewers: set[_Viewer] = set()
        self.stored: list[str] = []  # the run's events for late viewers (not weights)
        self.batches = 0  # batch events among them
        self.weights: str | None = None  # the latest weights event
        self.closed = False
        self.old: list[_Run] = []  # runs told to exit, still finishing

    # -------------------------------------------------------------- runs
    def start(self, body: Any) -> dict[str, Any]:
        """Start the run ``body`` asks for (see :func:`parse_request`); Busy if one is
        training, NnetError for bad settings or missing data."""
        request = parse_request(body)
        if locate(request.settings.dataset, self.data) is None:
            raise NnetError(
                f"no {request.settings.dataset} data on the server (looked in "
                f"{self.data or '$NNET_DATA and the user cache'}); run nnet train once to "
                "download it, or start nnet serve with --data DIR."
            )
        with self.lock:
            if self.closed:
                raise Gone("the server is stopping.")
            if self.run is not None and self.run.state in ACTIVE and self.run.process.is_alive():
                raise Busy(
                    f"a run is already {self.run.state} on this server; stop it first "
                    "(POST /api/train/stop)."
                )
            if self.run is not None:
                self._retire(self.run)
            run = _Run(request, self.data, self.threads)
            self.run = run
            self.stored, self.batches, self.weights = [], 0, None
            run.process.start()
            threading.Thread(target=self._read, args=(run,), daemon=True).start()
            self._publish(run, {"type": "run", "run": run.id, "state": "starting"})
        return {"run": run.id, **request.to_dict()}

    def command(self, name: str, args: dict[str, Any] | None = None) -> concurrent.futures.Future:
        """Send a command to the run; a Future of its result (NnetError: refused)."""
        with self.lock:
            run = self.run
            if run is None:
                raise Gone("no training run on this server; start one first.")
            if not run.process.is_alive():
                raise Gone(f"the training process has ended ({run.state}); start a new run.")
            cid = next(run.ids)
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            run.pending[cid] = future
        run.commands.put((cid, name, args or {}))
        return future

    def save_path(self, name: Any) -> Path:
        return check_save_name(name, self.save_dir)

    def status(self) -> dict[str, Any]:
        """``GET /api/train``: the run (None before the first), and what the page offers:
        the classifier presets' settings and the names each setting takes."""
        with self.lock:
            run = self.run
            now = {"run": None, "state": None} if run is None else {
                "run": run.id, "state": run.state, **run.request.to_dict()
            }  # fmt: skip
        presets = {k: v.to_dict() for k, v in PRESETS.items() if v.task == "classifier"}
        choices = {
            "activation": list(ACTIVATIONS),
            "loss": list(LOSSES),
            "engine": [e for e in ENGINES if e != "recursive"],
            "optimizer": list(OPTIMIZERS),
        }
        return {**now, "presets": presets, "choices": choices, "save_dir": str(self.save_dir)}

    def network_info(self) -> dict[str, Any] | None:
        """Settings of the run's network (for the draw view), or None without a run."""
        with self.lock:
            return None if self.run is None else self.run.request.settings.to_dict()

    def _retire(self, run: _Run) -> None:
        """Tell an ended run's child to exit (a save under way finishes first)."""
        if run.process.is_alive():
            run.commands.put((0, "exit", {}))
        self.old.append(run)

    def close(self, timeout: float = EXIT_TIMEOUT) -> None:
        """Stop every child: told to exit (a save under way finishes), then terminated if it
        has not ended within ``timeout`` seconds. Every viewer's stream ends."""
        with self.lock:
            self.closed = True
            runs = self.old + ([self.run] if self.run is not None else [])
            for run in runs:
                if run.process.is_alive():
                    run.commands.put((0, "exit", {}))
            viewers = list(self.viewers)
            self.viewers.clear()
        for viewer in viewers:
            viewer.deliver(None)
        deadline = time.monotonic() + timeout
        for run in runs:
            run.process.join(max(0.1, deadline - time.monotonic()))
            if run.process.is_alive():
                run.process.terminate()
                run.process.join(5)

    # -------------------------------------------------------------- events
    def subscribe(self, loop: asyncio.AbstractEventLoop) -> tuple[_Viewer, list[str]]:
        """A new viewer and the events so far (the latest weights last); once closed, a
        viewer already dropped."""
        viewer = _Viewer(loop)
        with self.lock:
            if self.closed:
                viewer.dropped = True  # its stream ends at once
                return viewer, []
            self.viewers.add(viewer)
            backlog = list(self.stored) + ([self.weights] if self.weights else [])
        return viewer, backlog

    def unsubscribe(self, viewer: _Viewer) -> None:
        with self.lock:
            self.viewers.discard(viewer)

    def _publish(self, run: _Run, event: dict[str, Any]) -> None:
        text = json.dumps({"run": run.id, **event}, allow_nan=False, default=_plain)
        with self.lock:
            if run is not self.run:
                return
            if event["type"] == "weights":
                self.weights = text
            else:
                self.stored.append(text)
                if event["type"] == "batch":
                    self.batches += 1
                    if self.batches > MAX_STORED_BATCHES:
                        self._thin()
            for viewer in list(self.viewers):
                if viewer.dropped:
                    self.viewers.discard(viewer)
                else:
                    viewer.deliver(text)

    def _thin(self) -> None:
        """Keep every other batch event without held-out figures (late viewers' curves)."""
        kept, seen = [], 0
        for text in self.stored:
            if '"type": "batch"' in text and '"held_out_loss"' not in text:
                seen += 1
                if seen % 2:
                    continue
            kept.append(text)
        self.stored = kept
        self.batches = sum('"type": "batch"' in t for t in kept)

    def _read(self, run: _Run) -> None:
        """The reader thread of one run: events to the viewers, replies to their Futures;
        the run marked failed if its process dies."""
        while True:
            try:
                event = run.events.get(timeout=0.5)
            except queue.Empty:
                if not run.process.is_alive():
                    break
                continue
            except (EOFError, OSError):
                break
            if event.get("type") == "reply":
                with self.lock:
                    future = run.pending.pop(event["id"], None)
                if future is not None and not future.done():
                    if event["error"] is not None:
                        future.set_exception(NnetError(event["error"]))
                    else:
                        future.set_result(event["result"])
                continue
            if event.get("type") == "state":
                run.state = event["state"]
            self._publish(run, event)
        code = run.process.exitcode
        with self.lock:
            pending, run.pending = list(run.pending.values()), {}
        for future in pending:
            if not future.done():
                future.set_exception(Gone("the training process ended; start a new run."))
        if run.state in ACTIVE:
            run.state = "failed"
            message = f"the training process ended unexpectedly (exit code {code})."
            self._publish(run, {"type": "state", "state": "failed", "error": message})


def _plain(value: Any) -> Any:
    """JSON for NumPy values in events."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def wait(future: concurrent.futures.Future, timeout: float) -> Any:
    """The result of ``future`` within ``timeout`` seconds; NnetError if it takes longer."""
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        raise NnetError(f"the training process did not answer within {timeout:g} s.") from None
