"""Checkpoints: everything needed to continue a training run exactly where it stopped.

A checkpoint is an ``.npz`` like a model file (never pickled, written atomically), holding

- arrays: the weights ``w{k}``, the optimizer's state ``opt_{name}`` (momentum, or Adam's
  moment sums), and the best epoch's weights ``best_w{k}`` when there is a validation split;
- metadata (JSON): ``format`` "nnet-checkpoint", the network's description, the run's
  ``settings`` (from which :func:`nnet.experiment.build` rebuilds data, network, optimizer
  and schedule), and the trainer's state: epochs done, the per-epoch history, the best
  validation loss and its epoch, the pass under way (batches done, running sums, the
  generator's state when it began) and the generator's state now (and, with ``--augment``,
  the augmentation generator's).

:func:`read_checkpoint` checks the file and returns its settings and state: everything a
model file's reader checks (:func:`nnet.files.model_file.open_archive`), then every field of
the settings and of the trainer's and optimizer's state against
:mod:`nnet.files.schema` (types, ranges, required keys, generator states numpy accepts,
counts that agree with each other and with the settings), and the arrays the settings imply
(``w{k}``, ``opt_{name}{k}``, ``best_w{k}``) by their ``.npy`` headers, all before any
array's data is read or the run is built. :func:`nnet.experiment.resume` rebuilds the run
from the settings and puts the state back (:meth:`Checkpoint.restore`), so that a run
interrupted at any batch and resumed ends with weights bit-identical to a run that was never
interrupted (same seed, same settings, same machine and BLAS).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnet.errors import NnetError
from nnet.fileio import atomic_write
from nnet.files import schema
from nnet.files.model_file import ModelFileError, network_meta, open_archive
from nnet.training.loop import Trainer
from nnet.training.settings import Settings
from nnet.training.threads import blas_threads

FORMAT = schema.CHECKPOINT


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
            **augment_state(trainer),
            # the BLAS threads: they decide the last bits of some products (training.threads)
            **({"threads": n} if (n := blas_threads()) is not None else {}),
        },
    }
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def augment_state(trainer: Trainer) -> dict[str, Any]:
    """The state of the run's augmentation generator (--augment), when it has one."""
    if trainer.augment is None:
        return {}
    return {"augment_rng": trainer.augment.rng.bit_generator.state}


@dataclass
class Checkpoint:
    """A checkpoint read from ``where``: the run's settings and the state to put back (its
    fields checked by :func:`read_checkpoint`)."""

    where: str
    settings: Settings
    arrays: dict[str, np.ndarray]
    state: dict[str, Any]
    opt_meta: dict[str, Any]

    @property
    def threads(self) -> int | None:
        """The BLAS threads the run computed with when it was saved (None: not recorded, as
        in checkpoints written before --threads existed, when nnet used every core)."""
        return self.state.get("threads")

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
        expected = {key for key, _ in names} if opt_meta["t"] else set()
        if set(opt_state) != expected or opt_meta["name"] != opt.name:
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
        if not 0 <= state["epoch"] <= trainer.epochs:
            raise ModelFileError(
                f"{where}: field trainer.epoch: {state['epoch']} epochs done of {trainer.epochs}."
            )
        best = state["best"]
        opt.state = {k: v.copy() for k, v in opt_state.items()}
        opt.t = opt_meta["t"]
        trainer.epoch = state["epoch"]
        trainer.history = list(state["history"])
        trainer.best = None if best is None else (best[0], best[1], weights("best_w"))
        trainer.early_stopped = state["early_stopped"]
        trainer.train_seconds = state["train_seconds"]
        trainer.progress = None if state["progress"] is None else dict(state["progress"])
        trainer.rng.bit_generator.state = state["rng"]  # checked by read_checkpoint
        if trainer.augment is not None:  # read_checkpoint checked it is there
            trainer.augment.rng.bit_generator.state = state["augment_rng"]


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at ``path``, every field checked (see the module docstring) before its
    arrays are read; ModelFileError naming the file and the field."""
    with open_archive(path, FORMAT) as archive:
        where, checked = archive.where, archive.checked
        arrays = archive.arrays()
    state, opt_meta = checked["trainer"], checked["optimizer"]
    return Checkpoint(where, checked["settings"], arrays, state, opt_meta)
