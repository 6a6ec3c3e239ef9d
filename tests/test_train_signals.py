"""A signal that arrives while `nnet train` saves its files does not end the process half-way."""

from __future__ import annotations

import os
import signal

import nnet
import nnet.apps.cli as cli


def test_sigterm_during_the_final_save_is_recorded_and_the_model_saved(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    real_save = cli.save_model

    def save_with_a_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as if a second SIGTERM came now
        real_save(*args, **kwargs)

    monkeypatch.setattr(cli, "save_model", save_with_a_signal)
    out = tmp_path / "m.npz"
    code = cli.main(["train", "--train-samples", "500", "--epochs", "1", "--quiet",
                     "--data", str(mnist_dir), "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 128 + signal.SIGTERM
    assert "stopped by SIGTERM after epoch 1" in err and str(out) in err
    assert nnet.load(out).meta["history"][0]["epoch"] == 1  # saved whole
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back
