"""`nnet gradcheck`: the command prints each engine's error and fails loudly on bad flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nnet.apps.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nnet", *args], capture_output=True, text=True, timeout=120
    )


def test_gradcheck_json_reports_every_engine_within_tolerance():
    out = run("gradcheck", "--sizes", "6,5,4,3", "--activation", "tanh", "--batch", "3", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["fd"]) == {"recursive", "matrix", "frontprop", "backprop"}
    assert max(report["fd"].values()) < 1e-6
    assert max(report["agreement"].values()) < 1e-10
    assert report["method"] == "full" and report["ok"] is True


def test_gradcheck_table(capsys):
    assert main(["gradcheck", "--sizes", "4-3-2", "--engines", "backprop,matrix"]) == 0
    out = capsys.readouterr().out
    assert "backprop" in out and "matrix" in out and "PASS" in out


def test_gradcheck_directional_on_a_big_network(capsys):
    code = main(
        [
            "gradcheck",
            "--sizes",
            "784,300,10",
            "--engines",
            "backprop,frontprop",
            "--method",
            "directional",
            "--json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["method"] == "directional"
    assert max(report["fd"].values()) < 1e-6


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sizes", "784"], "at least two layers"),
        (["--sizes", "784,0,10"], "at least one neuron"),
        (["--sizes", "a,b"], "not a list of integers"),
        (["--activation", "swish"], "unknown activation 'swish'"),
        (["--engines", "magic"], "unknown engine 'magic'"),
        (["--batch", "0"], "positive integer"),
        (["--dtype", "float16"], "invalid choice"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, message):
    out = run("gradcheck", *flags)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr
