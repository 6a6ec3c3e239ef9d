"""nnet tune: studies shared by worker processes on one SQLite file, a worker killed mid-trial,
Ctrl-C, the search space's checks, and nnet train --from-study.

The studies run on a tiny fake MNIST (400 training images, 100 test images) with tiny
networks, so that each trial takes a fraction of a second; the checks read the study's
database directly (trial numbers, states, user attributes).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optuna")

import nnet  # noqa: E402
from nnet.apps.cli import main  # noqa: E402
from nnet.apps.tune import split_study_ref, trial_seed, worker_threads  # noqa: E402
from nnet.apps.tune_space import DEFAULT_SPACE, parse_space, read_space  # noqa: E402
from nnet.data.idx import write_idx  # noqa: E402
from nnet.errors import NnetError  # noqa: E402

FAST_SPACE = """
[base]
preset = "best"
batch_size = 64
[params.width]
int = [8, 32]
[params.lr]
float = [1e-3, 1e-2]
log = true
[params.epochs]
int = [2, 4]
"""
# One trial that trains for minutes: the one a test kills or interrupts.
SLOW_SPACE = """
[base]
preset = "best"
batch_size = 8
[params.width]
int = [8, 16]
[params.epochs]
int = [100000, 100001]
"""


def fake_mnist(folder: Path, n_train: int = 400, n_test: int = 100) -> None:
    """A learnable fake MNIST: each class lights its own band of rows, plus noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = rng.integers(0, 60, (n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("tune")
    fake_mnist(ws / "data" / "mnist")
    (ws / "fast.toml").write_text(FAST_SPACE)
    (ws / "slow.toml").write_text(SLOW_SPACE)
    return ws


def env() -> dict[str, str]:
    return {
        **os.environ,
        "NNET_KERNELS": "numpy",
        "OPENBLAS_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }


def tune_cmd(ws: Path, db: Path, space: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nnet",
        "tune",
        "--data",
        str(ws / "data"),
        "--no-download",
        "--storage",
        str(db),
        "--space",
        str(ws / space),
        "--val",
        "100",
        *args,
    ]


def tune(ws: Path, db: Path, space: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        tune_cmd(ws, db, space, *args), capture_output=True, text=True, env=env(), timeout=120
    )


def trials(db: Path) -> list[tuple[int, str, dict]]:
    """(number, state, user attributes) of every trial in the study's database."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        attrs: dict[int, dict] = {}
        for tid, key, value in c.execute(
            "SELECT trial_id, key, value_json FROM trial_user_attributes"
        ):
            attrs.setdefault(tid, {})[key] = json.loads(value)
    return [(number, state, attrs.get(tid, {})) for tid, number, state in rows]


def wait_for_training(db: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until a trial has trained an epoch (it is running, mid-training)."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            if any(s == "RUNNING" and a.get("epochs_trained") for _, s, a in trials(db)):
                return
        except sqlite3.OperationalError:  # the tables are not made yet
            pass
        time.sleep(0.1)
    raise AssertionError("no trial started training")


def finished(rows: list) -> list:
    return [r for r in rows if r[1] in ("COMPLETE", "PRUNED")]


def test_two_workers_share_one_sqlite_study(ws):
    db = ws / "two.db"
    done = tune(ws, db, "fast.toml", "--workers", "2", "--trials", "8", "--seed", "3")
    assert done.returncode == 0, done.stderr
    rows = trials(db)
    ran = finished(rows)
    # exactly 8 finished trials; any other is one a worker found surplus before training
    assert len(ran) == 8
    assert all(s == "FAIL" and a.get("surplus") for _, s, a in rows if (_, s, a) not in ran)
    assert "RUNNING" not in {s for _, s, _ in rows}
    numbers = [n for n, _, _ in rows]
    assert numbers == list(range(len(rows)))  # every trial number once
    # each trial ran once, by one worker, with the seed its number gives
    seeds = [a["settings"]["seed"] for _, _, a in ran]
    assert seeds == [trial_seed(3, n) for n, _, _ in ran]
    assert len({a["worker"] for _, _, a in ran}) == 2  # both workers trained trials
    lines = [x for x in done.stdout.splitlines() if x.startswith("trial ")]
    assert sorted(int(x.split()[1]) for x in lines) == [n for n, _, _ in ran]
    assert "best trials" in done.stdout


@pytest.mark.slow  # 5 s: two runs and the grace period
def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_next_run_carries_on(ws):
    db = ws / "killed.db"
    proc = subprocess.Popen(
        tune_cmd(ws, db, "slow.toml", "--trials", "3", "--heartbeat", "1"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_for_training(db, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert [(n, s) for n, s, _ in trials(db)] == [(0, "RUNNING")]  # nobody told the database
    time.sleep(2.5)  # past the grace period: twice the heartbeat
    done = tune(ws, db, "fast.toml", "--trials", "3", "--heartbeat", "1")
    assert done.returncode == 0, done.stderr
    rows = trials(db)
    assert [(n, s) for n, s, _ in rows][0] == (0, "FAIL")
    assert [n for n, _, _ in finished(rows)] == [1, 2, 3]
    assert len(rows) == 4


def test_ctrl_c_marks_the_trial_failed_and_the_study_stays_usable(ws):
    db = ws / "interrupted.db"
    proc = subprocess.Popen(
        tune_cmd(ws, db, "slow.toml", "--trials", "2"),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_training(db, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Run the same command again" in err
    [(number, state, attrs)] = trials(db)
    assert (number, state, attrs["interrupted"]) == (0, "FAIL", "SIGINT")
    assert "trial    0  FAIL" in out


def test_from_study_trains_the_best_trial_on_the_whole_training_set(ws, capsys, monkeypatch):
    from nnet.training import loop

    measured = []  # the sizes of the splits the trials evaluate

    def evaluate(net, data, **kw):
        measured.append(len(data))
        return real_evaluate(net, data, **kw)

    real_evaluate = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", evaluate)
    db = ws / "best.db"
    data = ["--data", str(ws / "data"), "--no-download"]
    args = ["tune", *data, "--storage", str(db), "--space", str(ws / "fast.toml")]
    assert main([*args, "--val", "120", "--trials", "3", "--study", "s1"]) == 0
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    out = capsys.readouterr().out
    rows = trials(db)
    # the best trial by the database's own values
    with sqlite3.connect(db) as c:
        value, number = c.execute(
            "SELECT v.value, t.number FROM trial_values v JOIN trials t USING (trial_id) "
            "ORDER BY v.value DESC, t.number LIMIT 1"
        ).fetchone()
    best = next(r for r in rows if r[0] == number)
    assert f"{100 * value:6.2f}%" in out
    assert sorted(set(measured)) == [120]  # the validation split only, never the 100 tests
    model = ws / "best.npz"
    code = main(
        ["train", "--from-study", f"{db}:s1", *data, "--out", str(model), "--json", "--quiet"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    training = nnet.load(model).meta["training"]
    expected = {**best[2]["settings"], "val": 0, "train_samples": None}
    assert {k: training[k] for k in expected if k != "task"} == {
        k: v for k, v in expected.items() if k != "task"
    }
    history = nnet.load(model).meta["history"]
    assert all("test_loss" not in row for row in history)  # the test set is measured once
    assert history[0]["samples"] == 400  # the whole training set
    assert main(["evaluate", str(model), *data, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == summary["test_accuracy"]


def test_a_study_of_one_process_is_reproducible_from_its_seed(ws, capsys):
    import optuna

    def study(name: str, seed: str) -> list[tuple]:
        db = ws / f"{name}.db"
        args = ["tune", "--data", str(ws / "data"), "--no-download", "--storage", str(db)]
        args += ["--space", str(ws / "fast.toml"), "--val", "100", "--trials", "4"]
        assert main([*args, "--seed", seed, "--startup-trials", "2"]) == 0
        s = optuna.load_study(study_name="nnet", storage=f"sqlite:///{db}")
        return [(t.params, t.value, t.state.name) for t in s.trials]

    first = study("repro-a", "5")
    assert first == study("repro-b", "5")
    assert first != study("repro-c", "6")
    capsys.readouterr()


def test_the_default_space_draws_valid_settings():
    import optuna

    space = read_space(None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        settings = space.settings(space.draw(trial))
        layers = trial.params["hidden_layers"]
        assert settings.sizes == (784, *[trial.params["width"]] * layers, 10)
        assert len(settings.dropout) == layers + 1
        assert (settings.optimizer == "sgd") == ("momentum" in trial.params)
        assert 5 <= settings.epochs <= 30 and settings.preset == "best"
        seen.add((settings.optimizer, layers))
        study.tell(trial, 0.5)
    assert len(seen) == 9  # every optimizer with every depth


def test_per_layer_widths_and_study_references():
    import optuna

    space = parse_space(
        "[params.hidden_layers]\nint = [2, 2]\n[params.width]\nint = [5, 9]\nper_layer = true\n"
    )
    trial = optuna.create_study().ask()
    settings = space.settings(space.draw(trial))
    assert settings.sizes == (784, trial.params["width_1"], trial.params["width_2"], 10)
    assert settings.dropout == (0.1, 0.3, 0.3)
    assert split_study_ref("runs/s.db:study2") == (
        f"sqlite:///{Path('runs/s.db').resolve()}",
        "study2",
    )
    url = "postgresql+psycopg://u:pw@host:5432/db"
    assert split_study_ref(url) == (url, None)
    assert split_study_ref(url + ":s") == (url, "s")
    assert worker_threads(2, cores=2) == 1 and worker_threads(3, cores=2) == 1
    assert worker_threads(2, cores=16) == 8


BAD_SPACES = [
    ("[params.lr]\nfloat = [0.1]\n", "params.lr.float: expected [low, high]"),
    ("[params.lr]\nfloat = [0.1, 0.01]\n", "params.lr.float: low must not be above high"),
    ("[params.lr]\nfloat = [0, 0.1]\nlog = true\n", "params.lr.log: a log scale needs low > 0"),
    ("[params.lr]\nfloat = [0.01, 0.1]\nlow = 1\n", "params.lr.low: unknown key"),
    ("[params.lr]\nlog = true\n", "params.lr: give exactly one of"),
    ("[params.speed]\nfloat = [1, 2]\n", "params.speed: 'speed' is not a setting"),
    ("[params.seed]\nint = [1, 2]\n", "params.seed: seed cannot be searched"),
    ("[params.optimizer]\nchoice = ['adam', 'rmsprop']\n", "params.optimizer.choice: unknown"),
    ("[params.epochs]\nint = [1.5, 3]\n", "params.epochs.int: expected whole numbers"),
    ("[params.epochs]\nint = [0, 3]\n", "params.epochs.int: expected a positive integer"),
    (
        "[params.m]\nsetting = 'momentum'\nfloat = [0, 0.5]\nwhen = { optimizer = 'sgd' }\n",
        "params.m.when.optimizer: names no parameter above",
    ),
    ("[params.batch_size]\nchoice = []\n", "params.batch_size.choice: expected a non-empty"),
    ("[params.width]\nint = [8, 16]\nper_layer = 'yes'\n", "params.width.per_layer"),
    ("[base]\nepoch = 3\n[params.lr]\nfloat = [0.1, 0.2]\n", "base.epoch: not a setting"),
    ("[base]\nepochs = 0\n[params.lr]\nfloat = [0.1, 0.2]\n", "base.epochs: expected a positive"),
    ("[base]\npreset = 'fast'\n", "base.preset: unknown preset 'fast'"),
    ("[bass]\n", "unknown table [bass]"),
    ("[base]\n", "no parameters to search"),
    ("[params.lr\n", "is not valid TOML"),
    ("[params.dropout_hidden]\nfloat = [0.2, 1.0]\n", "a dropout rate must be in [0, 1)"),
]


@pytest.mark.parametrize("text, message", BAD_SPACES)
def test_a_bad_space_is_one_line_naming_the_key(text, message):
    with pytest.raises(NnetError) as info:
        parse_space(text, "space.toml")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith("space.toml")


def test_the_default_space_parses_and_prints(capsys):
    assert main(["tune", "--print-space"]) == 0
    assert capsys.readouterr().out == DEFAULT_SPACE
    names = [p.name for p in read_space(None).params]
    for name in (
        "hidden_layers",
        "width",
        "activation",
        "optimizer",
        "lr",
        "schedule",
        "batch_size",
        "dropout_input",
        "dropout_hidden",
        "weight_decay",
        "epochs",
    ):
        assert name in names


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["tune", "--space", "missing.toml"], "--space missing.toml: no such file"),
        (["tune", "--space", "bad.toml"], "bad.toml: params.lr.float: low must not be above high"),
        (["tune", "--storage", "nosuchdriver://x/y"], "cannot open the storage"),
        (["tune", "--storage", "nofolder/s.db"], "cannot keep the study in"),
        (["tune", "--plot", "notes.txt"], "--plot notes.txt is a file"),
        (["train", "--from-study", "missing.db"], "missing.db does not exist"),
        (["train", "--from-study", "empty.db:other"], "holds no study 'other'"),
        (["train", "--from-study", "empty.db"], "has no completed trial yet"),
        (["train", "--from-study", "empty.db", "--preset", "best"], "leave out --resume, --preset"),
    ],
)
def test_bad_flags_are_one_line(ws, monkeypatch, capsys, args, message):
    monkeypatch.chdir(ws)
    (ws / "bad.toml").write_text("[params.lr]\nfloat = [0.1, 0.01]\n")
    (ws / "notes.txt").write_text("a file")
    if not (ws / "empty.db").exists():
        import optuna

        optuna.create_study(storage=f"sqlite:///{ws / 'empty.db'}", study_name="e")
    before = {p: p.read_bytes() for p in ws.iterdir() if p.is_file()}
    code, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert {p: p.read_bytes() for p in before} == before  # nothing changed


def test_without_optuna_tune_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    code, err = run_cli(["tune", "--trials", "1"], capsys)
    assert code == 2 and err == "nnet: error: nnet tune needs Optuna: pip install 'nnet[tune]'.\n"
