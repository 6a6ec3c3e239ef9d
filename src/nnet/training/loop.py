"""The training loop: seeded shuffling, mini-batches, per-epoch metrics, and safe stops.

One :class:`Trainer` owns everything that changes during a run — the network's weights, the
update's state (the optimizer's moments, or a population), the shuffling generator, the
epoch and batch counters and the metrics so far — so that a run is reproducible bit for bit
from its seed, and a checkpoint of that state continues it exactly.

There is one batch loop (:meth:`Trainer.run_epoch`) and a pluggable :class:`Update` that says
what one batch does to the weights:

- :class:`GradientUpdate`: forward pass, gradient by one of the four engines, optimizer step;
- ``GeneticUpdate`` and ``EvolutionUpdate`` (:mod:`nnet.training.evolution`): one generation
  of a genetic algorithm or of evolution strategies.

Per batch, the loop gathers the samples into a workspace allocated once, the update computes
the outputs and loss of the current network on them and hands both to the loop's tally,
which stops training loudly if the loss is not finite *before* the update changes the
weights. Per epoch, the evaluation sets are measured in one full pass each, and one metrics
dictionary is appended to ``history``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nnet.core.engines import get_engine
from nnet.core.network import ForwardPass, Network
from nnet.errors import NnetError
from nnet.kernel_choice import fused_kernels
from nnet.training.optim import Optimizer

Array = np.ndarray

LearningRate = float | Callable[[float], float]


class DivergenceError(NnetError):
    """The loss or a weight became NaN or infinite during training."""


@dataclass(frozen=True)
class Split:
    """Inputs x (N, #0), targets t (N, #L), and class labels y (N,) or None (autoencoder)."""

    x: Array
    t: Array
    y: Array | None = None

    def __len__(self) -> int:
        return len(self.x)


def evaluate(net: Network, data: Split, *, chunk: int = 10000) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) of ``net`` on ``data``, in chunks of ``chunk`` samples;
    NnetError if an output overflows (finite but enormous weights)."""
    total = 0.0
    correct = 0
    ws = net.workspace(min(chunk, len(data)))
    for s in range(0, len(data), chunk):
        x = data.x[s : s + chunk]
        fp = ws.rows(len(x))
        np.copyto(fp.x, x)
        with np.errstate(over="ignore", invalid="ignore"):
            O = net.propagate(fp).O
        if not np.isfinite(O).all():
            largest = max(float(np.abs(w).max()) for w in net.weights)
            raise NnetError(
                f"the network's outputs overflow (its largest weight is {largest:.3g}); it is "
                "unusable, so retrain it."
            )
        total += float(np.sum(net.loss.value(O, data.t[s : s + chunk]), dtype=np.float64))
        if data.y is not None:
            correct += int(np.count_nonzero(np.argmax(O, axis=1) == data.y[s : s + chunk]))
    n = len(data)
    return total / n, (correct / n if data.y is not None else None)


class StopFlag:
    """Set by Ctrl-C (SIGINT) or SIGTERM: training stops after the current batch."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @contextmanager
    def catching(self) -> Iterator[StopFlag]:
        """Turn the first SIGINT/SIGTERM into a stop request; a second SIGINT interrupts."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal = signal.Signals(signum).name

        old_int = signal.signal(signal.SIGINT, handler)
        old_term = signal.signal(signal.SIGTERM, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


# The loop's check of one batch: (outputs O, summed loss, seconds spent in the engine).
Tally = Callable[[Array, float, float], None]


class Update(Protocol):
    """What one mini-batch does to the weights.

    ``step`` receives the batch's inputs already in ``fp.x`` (a workspace of the batch's
    rows, a^0 with its bias column) and targets ``t``. It must compute the outputs and the
    summed loss of the current network on the batch and call ``tally(O, loss_sum,
    engine_seconds)`` *before* it changes the weights: the tally raises when the loss is not
    finite, so no NaN reaches the weights.
    """

    optimizer: Optimizer | None  # saved in checkpoints (None: nothing to save)
    hint: str  # the advice when training diverges
    modifies_input: bool  # True if step scales fp.x in place (then targets are gathered apart)

    def lr_at(self, epoch_progress: float) -> float | None: ...

    def step(
        self, net: Network, fp: ForwardPass, t: Array, lr: float | None, tally: Tally
    ) -> None: ...


class GradientUpdate:
    """Gradient training: forward pass, the gradient by ``engine``, one optimizer step.

    ``lr`` is a number or a function of the fractional epoch (0 at the start of training);
    ``dropout`` one rate per layer 0 ... L-1 (None: no dropout), whose masks are drawn from
    ``rng`` into arrays kept from batch to batch.
    """

    hint = "try a smaller learning rate"

    def __init__(
        self,
        net: Network,
        optimizer: Optimizer,
        *,
        lr: LearningRate,
        rng: np.random.Generator,
        engine: str = "backprop",
        dropout: Sequence[float] | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.lr = lr
        self.rng = rng
        self.engine = get_engine(engine)
        # the optimizer's choice of kernels holds for the whole step: nnet.kernels or None
        self.fused = fused_kernels(optimizer.kernels)
        if dropout is not None:
            dropout = [float(p) for p in dropout]
            if len(dropout) != net.L or not all(0 <= p < 1 for p in dropout):
                raise NnetError(
                    f"dropout needs {net.L} rates in [0, 1), one per layer 0..{net.L - 1} "
                    f"(the input and the hidden layers); got {dropout}."
                )
            if not any(dropout):
                dropout = None
        self.dropout = dropout
        self.modifies_input = bool(dropout and dropout[0] > 0)
        self.grads = [np.empty_like(w) for w in net.weights]  # reused by every batch
        self._masks: list[Array | None] = []  # dropout masks, (batch size, #l) each
        self._mask_rows = 0

    def lr_at(self, epoch_progress: float) -> float:
        return float(self.lr(epoch_progress) if callable(self.lr) else self.lr)

    def masks(self, net: Network, B: int) -> list[Array | None] | None:
        """Inverted-dropout masks for B samples: 0 where a neuron is dropped, 1/(1 - p)
        where it is kept, drawn from ``rng``."""
        if self.dropout is None:
            return None
        if B > self._mask_rows:
            self._mask_rows = B
            self._masks = [
                None if p <= 0 else np.empty((B, net.sizes[l]), net.dtype)
                for l, p in enumerate(self.dropout)
            ]
        out: list[Array | None] = []
        for m, p in zip(self._masks, self.dropout, strict=True):
            if m is None or p <= 0:
                out.append(None)
                continue
            m = m[:B]
            self.rng.random(dtype=m.dtype, out=m)
            if self.fused is None or not self.fused.make_dropout_mask(m, p):
                np.multiply(m >= p, m.dtype.type(1.0 / (1.0 - p)), out=m)
            out.append(m)
        return out

    def step(self, net: Network, fp: ForwardPass, t: Array, lr: float | None, tally: Tally) -> None:
        masks = self.masks(net, fp.B)
        t0 = time.perf_counter()
        fp = net.propagate(fp, masks)
        loss = float(np.sum(net.loss.value(fp.O, t), dtype=np.float64))
        grads = self.engine(net, fp, t, out=self.grads)
        tally(fp.O, loss, time.perf_counter() - t0)
        self.optimizer.step(net.weights, grads, lr)  # type: ignore[arg-type]


class Augment(Protocol):
    """Distorts a batch of training inputs (B, #0) in place, drawing from its own generator
    ``rng``, which checkpoints save (:class:`nnet.data.augment.Augmenter`)."""

    rng: np.random.Generator

    def __call__(self, rows: Array) -> None: ...


class Trainer:
    """Mini-batch training of ``net`` by ``update``; see the module docstring.

    ``rng`` drives the shuffling (and the update's random draws share it: dropout masks,
    populations). ``patience`` > 0 stops after that many epochs without a better validation
    loss; ``restore_best`` puts the best epoch's weights back at the end. ``augment``
    distorts the inputs of every training batch once they are gathered (never the
    evaluation splits).
    """

    def __init__(
        self,
        net: Network,
        update: Update,
        *,
        batch_size: int,
        epochs: int,
        rng: np.random.Generator,
        patience: int = 0,
        restore_best: bool = True,
        augment: Augment | None = None,
    ) -> None:
        if batch_size < 1:
            raise NnetError(f"batch size must be at least 1; got {batch_size}.")
        if epochs < 0:
            raise NnetError(f"epochs must be at least 0; got {epochs}.")
        if patience < 0:
            raise NnetError(f"patience must be >= 0; got {patience}.")
        self.net = net
        self.update = update
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.rng = rng
        self.patience = int(patience)
        self.restore_best = restore_best
        self.augment = augment
        # The best weights by validation loss: (loss, epoch, weights), when there is one.
        self.best: tuple[float, int, list[Array]] | None = None
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.stopped_by: str | None = None
        self.early_stopped = False
        self.train_seconds = 0.0
        # The pass over the data under way (None between epochs); see run_epoch.
        self.progress: dict[str, Any] | None = None
        self._x1: tuple[Array, Array] | None = None
        self._last_loss = 0.0  # the mean loss of the last batch, for on_batch

    @classmethod
    def gradient(
        cls, net: Network, optimizer: Optimizer, *, rng: np.random.Generator, **options: Any
    ) -> Trainer:
        """A trainer of ``net`` by gradients, the usual case: ``options`` are the trainer's
        own (``batch_size``, ``epochs``, ``patience``, ``restore_best``) and those of its
        :class:`GradientUpdate` (``lr``, ``engine``, ``dropout``)."""
        mine = {k: options.pop(k) for k in ("batch_size", "epochs", "patience", "restore_best")
                if k in options}  # fmt: skip
        return cls(net, GradientUpdate(net, optimizer, rng=rng, **options), rng=rng, **mine)

    def _with_bias(self, x: Array) -> Array:
        """x with a column of ones appended, [x, 1] = a^0 of every sample: batches are then
        gathered row by row into a^0 with no further copy. Inputs made by
        ``to_inputs(..., with_bias=True)`` already are such a view and cost nothing;
        otherwise the copy is made once per training set."""
        base = x.base
        if (
            isinstance(base, np.ndarray)
            and base.shape == (x.shape[0], x.shape[1] + 1)
            and base.dtype == self.net.dtype
            and np.shares_memory(x, base)
            and x.strides == base.strides
            and np.all(base[:, -1] == 1)
        ):
            return base
        if self._x1 is not None and self._x1[0] is x:
            return self._x1[1]
        x1 = np.empty((x.shape[0], x.shape[1] + 1), dtype=self.net.dtype)
        x1[:, :-1] = x
        x1[:, -1] = 1.0
        self._x1 = (x, x1)
        return x1

    def run_epoch(
        self,
        train: Split,
        *,
        stop: StopFlag | None = None,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> dict[str, Any] | None:
        """Continue the current pass over ``train`` (seeded random order) to its end.

        Returns the running metrics of the pass, or None if ``stop`` was set first: the
        pass then stays in ``self.progress`` (batches done, running sums, the generator's
        state when the pass began) and the next call continues it exactly.
        """
        N, bs = len(train), self.batch_size
        n_batches = -(-N // bs)  # the last, partial batch is used, not dropped
        if self.progress is None:
            self.progress = {
                "batch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0,
                "engine_seconds": 0.0, "rng_start": self.rng.bit_generator.state,
            }  # fmt: skip
            perm = self.rng.permutation(N)
        else:  # the same order as when the pass began, then the generator where it was
            now = self.rng.bit_generator.state
            self.rng.bit_generator.state = self.progress["rng_start"]
            perm = self.rng.permutation(N)
            self.rng.bit_generator.state = now
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            # overflow shows up as a non-finite loss, which stops training with one clear
            # message; NumPy's warnings on the way there would only be noise
            self._batches(train, perm, n_batches, stop, on_batch)
        return self._end_pass(train, n_batches)

    def _batches(
        self,
        train: Split,
        perm: Array,
        n_batches: int,
        stop: StopFlag | None,
        on_batch: Callable[[int, float], None] | None,
    ) -> None:
        """The one batch loop: gather, let the update step, tally, report."""
        net, bs, p, update = self.net, self.batch_size, self.progress, self.update
        assert p is not None
        x1 = self._with_bias(train.x)
        fused = getattr(update, "fused", None)  # nnet.kernels, when the update uses them
        ws = net.workspace(min(bs, len(train)), fused=fused)
        t_buf = np.empty((ws.B,) + train.t.shape[1:], dtype=train.t.dtype)
        start = time.perf_counter()
        for b in range(p["batch"], n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            fp = ws.rows(len(idx))
            # gather whole rows [x, 1] straight into the workspace's a^0 (no extra copy)
            if fused is None or not fused.gather(x1, idx, fp.a[0]):
                np.take(x1, idx, axis=0, out=fp.a[0], mode="clip")
            if self.augment is not None:
                self.augment(fp.x)  # in place, from its own generator
            # an autoencoder's targets are its inputs: no second gather, unless the update
            # is about to scale the inputs in place (input dropout)
            if train.t is train.x and not update.modifies_input:
                t = fp.x
            else:
                t = np.take(train.t, idx, axis=0, out=t_buf[: len(idx)], mode="clip")

            def tally(O: Array, loss: float, seconds: float, b: int = b, idx: Array = idx) -> None:
                self._tally(train, idx, b, O, loss, seconds)

            update.step(net, fp, t, update.lr_at(self.epoch + b / n_batches), tally)
            p["batch"] = b + 1
            if on_batch is not None:
                on_batch(len(idx), self._last_loss)
            if stop and p["batch"] < n_batches:
                break
        p["seconds"] += time.perf_counter() - start

    def _tally(
        self, train: Split, idx: Array, b: int, O: Array, loss: float, seconds: float
    ) -> None:
        """Add batch b (samples ``idx``, outputs O, summed loss) to the pass's running sums;
        stop training loudly when its loss is not finite."""
        p = self.progress
        assert p is not None
        if not np.isfinite(loss):
            raise DivergenceError(
                f"training diverged at epoch {self.epoch + 1}, batch {b + 1}: the loss "
                f"became {loss}; {self.update.hint}."
            )
        if train.y is not None:
            p["correct"] += int(np.count_nonzero(np.argmax(O, axis=1) == train.y[idx]))
        p["loss_sum"] += loss
        p["seen"] += len(idx)
        p["engine_seconds"] += seconds
        self._last_loss = loss / len(idx)

    def _end_pass(self, train: Split, n_batches: int) -> dict[str, Any] | None:
        """After a pass's batches: check the weights are finite, and return the pass's
        running metrics (None when it was stopped before its last batch)."""
        p = self.progress
        assert p is not None
        for k, w in enumerate(self.net.weights):
            if not np.isfinite(w).all():
                raise DivergenceError(
                    f"training diverged in epoch {self.epoch + 1}: w{k} holds NaN or "
                    f"infinite values; {self.update.hint}."
                )
        if p["batch"] < n_batches:
            return None
        self.progress = None
        self.train_seconds += p["seconds"]
        return {
            "train_loss": p["loss_sum"] / p["seen"],
            "train_accuracy": p["correct"] / p["seen"] if train.y is not None else None,
            "samples": p["seen"],
            "train_seconds": p["seconds"],
            "engine_seconds": p["engine_seconds"],
        }

    def model_weights(self) -> list[Array]:
        """The weights a model file should get: the best epoch's when there is one."""
        if self.restore_best and self.best is not None:
            return self.best[2]
        return self.net.weights

    def _track_best(self, row: dict[str, Any]) -> bool:
        """Remember the weights if ``val_loss`` improved; True when patience ran out."""
        loss = row.get("val_loss")
        if loss is None:
            return False
        if self.best is None or loss < self.best[0]:
            self.best = (loss, self.epoch, [w.copy() for w in self.net.weights])
            return False
        return self.patience > 0 and self.epoch - self.best[1] >= self.patience

    def fit(
        self,
        train: Split,
        evals: dict[str, Split] | None = None,
        *,
        stop: StopFlag | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train until ``epochs`` are done, ``stop`` is set, or validation stops improving.

        With a ``val`` split in ``evals``, the weights of the epoch with the lowest
        validation loss are kept; with ``patience`` > 0, training stops after that many
        epochs without improvement, and when training ends the best weights are put back
        (``restore_best``). A stop request (``stop``, Ctrl-C) ends it after the current
        batch and leaves the current weights, update state and generator as they are, so
        the run can be checkpointed and continued; :meth:`model_weights` then gives the
        weights to save as the model. Returns the per-epoch metrics.
        """
        evals = evals or {}
        if self.patience and "val" not in evals:
            raise NnetError("early stopping (patience) needs a validation split (--val N).")
        while self.epoch < self.epochs and not self.early_stopped:
            if stop and stop.signal:
                break
            if on_epoch_start is not None:
                on_epoch_start(self.epoch)
            start = time.perf_counter()
            lr = self.update.lr_at(self.epoch)
            row = self.run_epoch(train, stop=stop, on_batch=on_batch)
            if row is None:  # stopped within the epoch: nothing to report for it yet
                break
            for name, data in evals.items():
                loss, acc = evaluate(self.net, data)
                row[f"{name}_loss"], row[f"{name}_accuracy"] = loss, acc
            self.epoch += 1
            row = {"epoch": self.epoch, "lr": lr, **row}
            row["seconds"] = time.perf_counter() - start
            if self._track_best(row):
                row["early_stop"] = True
                self.early_stopped = True
            self.history.append(row)
            if on_epoch is not None:
                on_epoch(row)
        if stop and stop.signal:
            self.stopped_by = stop.signal
        elif self.restore_best and self.best is not None:
            self.net.weights = [w.copy() for w in self.best[2]]
        return self.history
