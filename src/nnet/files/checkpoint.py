"""Checkpoints: everything needed to continue a training run exactly where it stopped.

A checkpoint is an ``.npz`` like a model file (never pickled, written atomically), holding

- arrays: the weights ``w{k}``, the optimizer's state ``opt_{name}`` (momentum, or Adam's
  moment sums), and the best epoch's weights ``best_w{k}`` when there is a validation split;
- metadata (JSON): ``format`` "nnet-checkpoint", the network's description, the run's
  ``settings`` (from which :func:`nnet.experiment.build` rebuilds data, network, optimizer
  and schedule), and the trainer's state: epochs done, the per-epoch history, the best
  validation loss and its epoch, the pass under way (batches done, running sums, the
  generator's state when it began) and the generator's state now.

:func:`resume` rebuilds the experiment from the settings and puts that state back, so that
a run interrupted at any batch and resumed ends with weights bit-identical to a run that
was never interrupted (same seed, same settings, same machine and BLAS).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nnet.data.datasets import DownloadError
from nnet.data.idx import IdxError
from nnet.errors import NnetError
from nnet.experiment import Experiment, build
from nnet.files.fileio import atomic_write
from nnet.files.model_file import FORMAT_VERSION, ModelFileError, read_npz

FORMAT = "nnet-checkpoint"


def save_checkpoint(exp: Experiment, path: str | os.PathLike[str]) -> None:
    """Write the state of ``exp`` to ``path`` (atomically: the old file stays until done)."""
    from nnet.version import __version__

    net, trainer, opt = exp.net, exp.trainer, exp.optimizer
    arrays: dict[str, np.ndarray] = {f"w{k}": w for k, w in enumerate(net.weights)}
    arrays.update({f"opt_{key}": value for key, value in opt.state.items()})
    if trainer.best is not None:
        arrays.update({f"best_w{k}": w for k, w in enumerate(trainer.best[2])})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "nnet_version": __version__,
        "sizes": net.sizes,
        "activations": net.activations,
        "loss": net.loss.name,
        "dtype": net.dtype.name,
        "settings": exp.settings,
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


def resume(
    path: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> Experiment:
    """The experiment saved in the checkpoint ``path``, ready to continue training."""
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
        exp = build(settings, data=data, download=download, progress=progress)
    except (DownloadError, IdxError):
        raise  # the data, not the checkpoint, is what is missing or damaged
    except NnetError as exc:
        raise ModelFileError(f"{where} holds settings nnet cannot use: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where} is damaged: its settings are incomplete ({exc}).") from None
    _restore(exp, arrays, state, opt_meta, where)
    return exp


def _restore(
    exp: Experiment,
    arrays: dict[str, np.ndarray],
    state: dict[str, Any],
    opt_meta: dict[str, Any],
    where: str,
) -> None:
    net, trainer, opt = exp.net, exp.trainer, exp.optimizer

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
    steps = opt_meta.get("t")
    expected = {f"{name}{k}" for k in range(net.L) for name in opt.state_names} if steps else set()
    if set(opt_state) != expected or opt_meta.get("name") != opt.name:
        raise ModelFileError(
            f"{where}: the optimizer state does not match a {opt.name} optimizer for this "
            "network; the checkpoint is damaged."
        )
    for key, k in ((f"{name}{k}", k) for k in range(net.L) for name in opt.state_names):
        value = opt_state.get(key)
        if value is not None and (value.shape != net.weights[k].shape or value.dtype != net.dtype):
            raise ModelFileError(f"{where}: optimizer state {key} has the wrong shape or dtype.")
    opt.state = {k: v.copy() for k, v in opt_state.items()}
    try:
        opt.t = int(opt_meta["t"])
        trainer.epoch = int(state["epoch"])
        trainer.history = list(state["history"])
        best = state["best"]
        trainer.best = None if best is None else (float(best[0]), int(best[1]), weights("best_w"))
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
