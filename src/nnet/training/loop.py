"""The training loop: seeded shuffling, mini-batches, per-epoch metrics, and safe stops.

One :class:`Trainer` owns everything that changes during a run — the network's weights, the
optimizer's state, the shuffling generator, the epoch and batch counters and the metrics so
far — so that a run is reproducible bit for bit from its seed, and a checkpoint of that
state continues it exactly.

Per batch: the engine computes the gradient of the batch mean of E (which leaves the
outputs of that forward pass in ``net.a[L]``, used for the running training loss and
accuracy at no extra cost), the loss is checked to be finite, and the optimizer steps.
Per epoch: the evaluation sets are measured in one full pass each, and one metrics
dictionary is appended to ``history``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnet.core.engines import _ENGINES, check_engine
from nnet.core.network import Network
from nnet.errors import NnetError
from nnet.training.optim import Optimizer

Array = np.ndarray


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
    """(mean loss, accuracy or None) of ``net`` on ``data``, in chunks of ``chunk`` samples."""
    total = 0.0
    correct = 0
    for s in range(0, len(data), chunk):
        x = data.x[s : s + chunk]
        t = data.t[s : s + chunk]
        O = net._forward(x)
        total += float(np.sum(net.loss.value(O, t), dtype=np.float64))
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


LearningRate = float | Callable[[float], float]


class Trainer:
    """Mini-batch training of ``net`` with ``optimizer``; see the module docstring.

    ``lr`` is a number or a function of the fractional epoch (0 at the start of training)
    returning the learning rate. ``rng`` drives the shuffling (and dropout masks, if any).
    """

    _divergence_hint = "try a smaller learning rate"  # the advice when training diverges

    def __init__(
        self,
        net: Network,
        optimizer: Optimizer,
        *,
        lr: LearningRate,
        batch_size: int,
        epochs: int,
        rng: np.random.Generator,
        engine: str = "backprop",
        dropout: Sequence[float] | None = None,
        patience: int = 0,
        restore_best: bool = True,
    ) -> None:
        if batch_size < 1:
            raise NnetError(f"batch size must be at least 1; got {batch_size}.")
        if epochs < 0:
            raise NnetError(f"epochs must be at least 0; got {epochs}.")
        self.net = net
        self.optimizer = optimizer
        self.lr = lr
        self.batch_size = int(batch_size)
        self.epochs = int(epochs)
        self.rng = rng
        self.engine = check_engine(engine)
        if dropout is not None:
            dropout = [float(p) for p in dropout]
            if len(dropout) != net.L or not all(0 <= p < 1 for p in dropout):
                raise NnetError(
                    f"dropout needs {net.L} rates in [0, 1), one per layer 0..{net.L - 1} "
                    f"(the input and the hidden layers); got {dropout}."
                )
        self.dropout = dropout
        if patience < 0:
            raise NnetError(f"patience must be >= 0; got {patience}.")
        self.patience = int(patience)
        self.restore_best = restore_best
        # The best weights by validation loss: (loss, epoch, weights), when there is one.
        self.best: tuple[float, int, list[Array]] | None = None
        self.epoch = 0  # epochs completed
        self.history: list[dict[str, Any]] = []
        self.stopped_by: str | None = None
        self.early_stopped = False
        self.train_seconds = 0.0
        # The pass over the data under way (None between epochs); see run_epoch.
        self.progress: dict[str, Any] | None = None

    def lr_at(self, epoch_progress: float) -> float:
        return float(self.lr(epoch_progress) if callable(self.lr) else self.lr)

    def _masks(self, batch: int) -> list[Array | None] | None:
        if not self.dropout or not any(self.dropout):
            return None
        masks: list[Array | None] = []
        for l, p in enumerate(self.dropout):
            if p <= 0:
                masks.append(None)
                continue
            keep = self.rng.random((batch, self.net.sizes[l]), dtype=self.net.dtype) >= p
            masks.append(keep.astype(self.net.dtype) * self.net.dtype.type(1.0 / (1.0 - p)))
        return masks

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
            and x.ctypes.data == base.ctypes.data
            and x.strides == base.strides
            and np.all(base[:, -1] == 1)
        ):
            return base
        cached = self.__dict__.get("_x1")
        if cached is not None and cached[0] is x:
            return cached[1]
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
            return self._pass(train, perm, n_batches, stop, on_batch)

    def _pass(
        self,
        train: Split,
        perm: Array,
        n_batches: int,
        stop: StopFlag | None,
        on_batch: Callable[[int, float], None] | None,
    ) -> dict[str, Any] | None:
        net, L, bs, p = self.net, self.net.L, self.batch_size, self.progress
        assert p is not None
        grad_fn = _ENGINES[self.engine]
        grads = [np.empty_like(w) for w in net.weights]  # reused by every batch
        input_dropout = bool(self.dropout and self.dropout[0] > 0)
        x1 = self._with_bias(train.x)
        t_buf = np.empty((bs,) + train.t.shape[1:], dtype=train.t.dtype)
        start = time.perf_counter()
        for b in range(p["batch"], n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            # gather whole rows [x, 1] straight into the network's a^0 buffer (no extra copy)
            a0 = np.take(x1, idx, axis=0, out=net.input_buffer(len(idx)), mode="clip")
            xb = a0[:, :-1]
            # an autoencoder's targets are its inputs: no second gather, unless input dropout
            # is about to scale the input buffer in place
            if train.t is train.x and not input_dropout:
                tb = xb
            else:
                tb = np.take(train.t, idx, axis=0, out=t_buf[: len(idx)], mode="clip")
            masks = self._masks(len(idx))
            t0 = time.perf_counter()
            grad_fn(net, xb, tb, masks=masks, out=grads)
            p["engine_seconds"] += time.perf_counter() - t0
            O = net.a[L][:, :-1]
            batch_loss = float(np.sum(net.loss.value(O, tb), dtype=np.float64))
            self._tally(train, idx, b, O, batch_loss)  # before the step: no NaN reaches w
            self.optimizer.step(net.weights, grads, self.lr_at(self.epoch + b / n_batches))
            p["batch"] = b + 1
            if on_batch is not None:
                on_batch(len(idx), batch_loss / len(idx))
            if stop and p["batch"] < n_batches:
                break
        p["seconds"] += time.perf_counter() - start
        return self._end_pass(train, n_batches)

    def _tally(self, train: Split, idx: Array, b: int, O: Array, batch_loss: float) -> None:
        """Add batch b (samples ``idx``, outputs O, summed loss) to the pass's running sums;
        stop training loudly when its loss is not finite."""
        p = self.progress
        assert p is not None
        if not np.isfinite(batch_loss):
            raise DivergenceError(
                f"training diverged at epoch {self.epoch + 1}, batch {b + 1}: the loss "
                f"became {batch_loss}; {self._divergence_hint}."
            )
        if train.y is not None:
            p["correct"] += int(np.count_nonzero(np.argmax(O, axis=1) == train.y[idx]))
        p["loss_sum"] += batch_loss
        p["seen"] += len(idx)

    def _end_pass(self, train: Split, n_batches: int) -> dict[str, Any] | None:
        """After a pass's batches: check the weights are finite, and return the pass's
        running metrics (None when it was stopped before its last batch)."""
        p = self.progress
        assert p is not None
        for k, w in enumerate(self.net.weights):
            if not np.isfinite(w).all():
                raise DivergenceError(
                    f"training diverged in epoch {self.epoch + 1}: w{k} holds NaN or "
                    f"infinite values; {self._divergence_hint}."
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
        batch and leaves the current weights, optimizer and generator as they are, so the
        run can be checkpointed and continued; :meth:`model_weights` then gives the weights
        to save as the model. Returns the per-epoch metrics.
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
            lr = self.lr_at(self.epoch)
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
