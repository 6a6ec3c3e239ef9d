"""Checkpoints: everything needed to continue a training run exactly where it stopped.

A checkpoint is an ``.npz`` like a model file (never pickled, written atomically), holding

- arrays: the weights ``w{k}``, the optimizer's state ``opt_{name}`` (momentum, or Adam's
  moment sums), and the best epoch's weights ``best_w{k}`` when there is a validation split;
- metadata (JSON): ``format`` "nnet-checkpoint", the network's description, the run's
  ``settings`` (from which :func:`nnet.experiment.build` rebuilds data, network, optimizer
  and schedule), and the trainer's state: epochs done, the per-epoch history, the best
  validation loss and its epoch, the pass under way (batches done, running sums, the
  generator's state when it began) and the generator's state now.

:func:`read_checkpoint` checks the file and returns its settings and state;
:func:`nnet.experiment.resume` rebuilds the run from the settings and puts the state back
(:meth:`Checkpoint.restore`), so that a run interrupted at any batch and resumed ends with
weights bit-identical to a run that was never interrupted (same seed, same settings, same
machine and BLAS).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files.model_file import ModelFileError, network_meta, read_npz
from nnet.training.loop import Trainer
from nnet.training.settings import Settings

FORMAT = "nnet-checkpoint"


def save_checkpoint(settings: Settings, trainer: Trainer, path: str | os.PathLike[str]) -> None:
    """Write the state of the run (``settings``, ``trainer``) to ``path`` atomically: the old
    file stays until the new one is complete."""
    net, opt = trainer.net, trainer.update.optimizer
    if opt is None:
        raise NnetError(f"a {settings.trainer} run has no checkpoint; its model file is saved.")
    arrays: dict[str, np.ndarray] = {f"w{k}": w for k, w in enumerate(net.weights)}
    arrays.update({f"opt_{key}": value for key, value in opt.state.items()})
    if trainer.best is not None:
        arrays.update({f"best_w{k}": w for k, w in enumerate(trainer.best[2])})
    meta = {
        **network_meta(net, FORMAT),
        "settings": settings.to_dict(),
        "optimizer": {"name": opt.name, "t": opt.t},
        "trainer": {
            "epoch": trainer.epoch,
            "history": trainer.history,
            "best": None if trainer.best is None else [trainer.best[0], trainer.best[1]],
            "early_stopped": trainer.early_stopped,
            "train_seconds": trainer.train_seconds,
            "progress": trainer.progress,
            "rng": trainer.rng.bit_generator.state,
        },
    }
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


@dataclass
class Checkpoint:
    """A checkpoint read from ``where``: the run's settings and the state to put back."""

    where: str
    settings: Settings
    arrays: dict[str, np.ndarray]
    state: dict[str, Any]
    opt_meta: dict[str, Any]

    def restore(self, trainer: Trainer) -> None:
        """Put the saved state into ``trainer``, freshly built from :attr:`settings`."""
        where, arrays, state, opt_meta = self.where, self.arrays, self.state, self.opt_meta
        net, opt = trainer.net, trainer.update.optimizer
        if opt is None:
            raise ModelFileError(
                f"{where} holds a {self.settings.trainer} run; checkpoints are for gradient "
                "training only."
            )

        def weights(prefix: str) -> list[np.ndarray]:
            out = []
            for k, w in enumerate(net.weights):
                a = arrays.get(f"{prefix}{k}")
                if a is None or a.shape != w.shape or a.dtype != w.dtype:
                    raise ModelFileError(
                        f"{where}: {prefix}{k} is missing or does not match the network "
                        f"{net.sizes} ({net.dtype.name}); the checkpoint is damaged."
                    )
                if not np.isfinite(a).all():
                    raise ModelFileError(f"{where}: {prefix}{k} holds NaN or infinite values.")
                out.append(a.copy())
            return out

        net.weights = weights("w")
        opt_state = {k[len("opt_") :]: v for k, v in arrays.items() if k.startswith("opt_")}
        names = [(f"{name}{k}", k) for k in range(net.L) for name in opt.state_names]
        expected = {key for key, _ in names} if opt_meta.get("t") else set()
        if set(opt_state) != expected or opt_meta.get("name") != opt.name:
            raise ModelFileError(
                f"{where}: the optimizer state does not match a {opt.name} optimizer for this "
                "network; the checkpoint is damaged."
            )
        for key, k in names:
            value = opt_state.get(key)
            if value is not None and (
                value.shape != net.weights[k].shape or value.dtype != net.dtype
            ):
                raise ModelFileError(
                    f"{where}: optimizer state {key} has the wrong shape or dtype."
                )
        opt.state = {k: v.copy() for k, v in opt_state.items()}
        try:
            opt.t = int(opt_meta["t"])
            trainer.epoch = int(state["epoch"])
            trainer.history = list(state["history"])
            best = state["best"]
            trainer.best = (
                None if best is None else (float(best[0]), int(best[1]), weights("best_w"))
            )
            trainer.early_stopped = bool(state["early_stopped"])
            trainer.train_seconds = float(state["train_seconds"])
            trainer.progress = state["progress"]
            trainer.rng.bit_generator.state = state["rng"]
            if trainer.progress is not None:  # check the saved generator state is usable
                np.random.default_rng().bit_generator.state = trainer.progress["rng_start"]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"{where} is damaged: bad trainer state ({exc}).") from None
        if not 0 <= trainer.epoch <= trainer.epochs or len(trainer.history) != trainer.epoch:
            raise ModelFileError(
                f"{where} is damaged: it records {trainer.epoch} epochs done of {trainer.epochs}."
            )


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at ``path``, its settings checked; ModelFileError naming the problem."""
    path = Path(path)
    where = str(path)
    arrays, meta = read_npz(path)
    if meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{where} is a model file, not a checkpoint; train with --checkpoint FILE to get "
            "one that --resume can continue."
        )
    settings, state, opt_meta = meta.get("settings"), meta.get("trainer"), meta.get("optimizer")
    if not all(isinstance(part, dict) for part in (settings, state, opt_meta)):
        raise ModelFileError(f"{where} is damaged: its metadata lacks the run's settings or state.")
    try:
        checked = Settings.from_dict(settings)
    except NnetError as exc:
        raise ModelFileError(f"{where} holds settings nnet cannot use: {exc}") from None
    return Checkpoint(where, checked, arrays, state, opt_meta)  # type: ignore[arg-type]
