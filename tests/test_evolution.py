"""Training without gradients (nnet.training.evolution): the batched population pass, the genetic
algorithm and evolution strategies on a small synthetic problem, and `nnet train --trainer`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.apps.cli import main
from nnet.training.evolution import (
    EvolutionUpdate,
    GeneticUpdate,
    bernoulli_positions,
    centered_ranks,
    es_gradient,
    flatten,
    layer_stacks,
    member_losses,
    population_forward,
    unflatten,
)
from nnet.training.loop import Split, StopFlag, Trainer, evaluate
from nnet.training.optim import SGD, Adam
from nnet.training.presets import settings_for

ROWS_KEYS = {
    "epoch", "lr", "train_loss", "train_accuracy", "samples", "train_seconds",
    "engine_seconds", "seconds", "test_loss", "test_accuracy",
}  # fmt: skip


def blobs(n=300, seed=0, dtype="float64"):
    """Three Gaussian blobs in 4-D: an easy 3-class problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], dtype=float)
    x = (centers[y] + rng.normal(0, 0.5, (n, 4))).astype(dtype)
    return Split(x, np.eye(3, dtype=dtype)[y], y)


def streams(seed):
    return (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))


def genetic(seed=0, epochs=5, **kw):
    init, train = streams(seed)
    net = nnet.Network([4, 8, 3], "sigmoid", init="author", seed=init, dtype="float64")
    settings = dict(
        population=30, mutation_rate=0.1, mutation_scale=0.3, crossover_rate=0.5, elite=2
    )
    settings.update(kw)
    update = GeneticUpdate(net, rng=train, **settings)
    return Trainer(net, update, batch_size=50, epochs=epochs, rng=train)


def evolution(seed=0, epochs=5, **kw):
    init, train = streams(seed)
    net = nnet.Network([4, 8, 3], "sigmoid", init="author", seed=init, dtype="float64")
    settings = dict(population=40, sigma=0.1, lr=0.05)
    settings.update(kw)
    update = EvolutionUpdate(net, Adam(), rng=train, **settings)
    return Trainer(net, update, batch_size=50, epochs=epochs, rng=train)


# ----------------------------------------------------------------------------- the population pass


@pytest.mark.parametrize(
    ("sizes", "activation", "loss"),
    [
        ([5, 4, 3, 2], ["sigmoid", "tanh", "sigmoid"], "mse"),
        ([6, 7, 4], "relu", "cross_entropy"),
        ([3, 2], "sigmoid", "mse"),
    ],
)
def test_population_forward_equals_a_loop_over_members(sizes, activation, loss):
    rng = np.random.default_rng(1)
    net = nnet.Network(sizes, activation, loss=loss, seed=rng, dtype="float64")
    P = 7
    W_pop = rng.normal(0, 0.8, (P, net.n_params))
    x = rng.normal(0, 1, (11, sizes[0]))
    before = [w.copy() for w in net.weights]
    O = population_forward(net, W_pop, x)
    assert O.shape == (P, 11, sizes[-1])
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, before, strict=True))
    stacks = layer_stacks(net, W_pop)
    assert np.array_equal(population_forward(net, stacks, x), O)
    t = rng.random((11, sizes[-1]))
    losses = member_losses(net, O, t)
    for p in range(P):
        net.weights = [w.copy() for w in unflatten(W_pop[p], net)]
        assert np.array_equal(flatten(net.weights), W_pop[p])
        np.testing.assert_allclose(O[p], net.forward(x), rtol=0, atol=1e-12)
        assert abs(losses[p] - net.mean_error(x, t)) <= 1e-12


def test_population_forward_rejects_wrong_shapes():
    net = nnet.Network([3, 2], seed=0, dtype="float64")
    with pytest.raises(nnet.errors.NnetError, match="population"):
        population_forward(net, np.zeros((4, net.n_params + 1)), np.zeros((2, 3)))
    with pytest.raises(nnet.errors.NnetError, match="population"):
        population_forward(net, [np.zeros((4, 3, 2))], np.zeros((2, 3)))


def test_centered_ranks_and_bernoulli_positions():
    np.testing.assert_allclose(centered_ranks([3.0, 1.0, 2.0, 1.0]), [0.5, -0.5, 1 / 6, -1 / 6])
    rng = np.random.default_rng(0)
    pos = bernoulli_positions(rng, 200_000, 0.05)
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < 200_000
    assert abs(pos.size / 200_000 - 0.05) < 0.003
    np.testing.assert_array_equal(bernoulli_positions(rng, 10, 1.0), np.arange(10))
    again = bernoulli_positions(np.random.default_rng(0), 200_000, 0.05)
    np.testing.assert_array_equal(pos, again)


def test_es_gradient_points_along_the_true_gradient():
    rng = np.random.default_rng(3)
    net = nnet.Network([4, 5, 3], "sigmoid", seed=rng, dtype="float64")
    net.weights = [rng.normal(0, 0.8, w.shape) for w in net.weights]
    x, t = rng.normal(0, 1, (32, 4)), rng.random((32, 3))
    true = flatten(nnet.gradients(net, x, t))
    est, losses = es_gradient(net, x, t, pairs=2000, sigma=1e-3, rng=rng)
    assert losses.shape == (4000,)
    est = flatten(est)
    cosine = est @ true / (np.linalg.norm(est) * np.linalg.norm(true))
    assert cosine > 0.95, cosine
    few, _ = es_gradient(net, x, t, pairs=20, sigma=1e-3, rng=rng)
    few = flatten(few)
    assert few @ true / (np.linalg.norm(few) * np.linalg.norm(true)) > 0.3


# ----------------------------------------------------------------------------- the trainers


@pytest.mark.parametrize("make", [genetic, evolution], ids=["genetic", "evolution"])
def test_fitness_improves_on_blobs(make):
    data, test = blobs(), blobs(seed=1)
    trainer = make(epochs=15)
    before, acc_before = evaluate(trainer.net, data)
    history = trainer.fit(data, {"test": test})
    assert [r["epoch"] for r in history] == list(range(1, 16))
    assert set(history[-1]) == ROWS_KEYS
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    after, _ = evaluate(trainer.net, data)
    assert after < 0.5 * before
    assert history[-1]["test_accuracy"] > 0.9 > acc_before


@pytest.mark.parametrize("make", [genetic, evolution], ids=["genetic", "evolution"])
def test_same_seed_same_weights_bit_for_bit(make):
    data = blobs()
    a, b, c = make(seed=5, epochs=3), make(seed=5, epochs=3), make(seed=6, epochs=3)
    ha, hb, _ = a.fit(data), b.fit(data), c.fit(data)
    assert all(np.array_equal(u, v) for u, v in zip(a.net.weights, b.net.weights, strict=True))
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    assert not all(np.array_equal(u, v) for u, v in zip(a.net.weights, c.net.weights, strict=True))


def test_same_network_different_trainer_seed_differs():
    """The population and perturbations come from the trainer's generator, not the network's."""
    data = blobs()
    a = genetic(seed=5, epochs=2)
    b = genetic(seed=5, epochs=2)
    b.rng = b.update.rng = np.random.default_rng(99)
    b.update.members = b.update.initial_population(b.net)
    a.fit(data), b.fit(data)
    assert not np.array_equal(a.net.weights[0], b.net.weights[0])


@pytest.mark.parametrize("make", [genetic, evolution], ids=["genetic", "evolution"])
def test_a_stop_mid_epoch_continues_exactly(make):
    data = blobs()
    whole = make(seed=2, epochs=2)
    whole.fit(data)
    parts = make(seed=2, epochs=2)
    stop = StopFlag()
    seen = []

    def on_batch(n, loss):
        seen.append(n)
        if len(seen) == 3:
            stop.signal = "SIGINT"

    parts.fit(data, stop=stop, on_batch=on_batch)
    assert parts.stopped_by == "SIGINT" and parts.epoch == 0
    assert parts.progress is not None and parts.progress["batch"] == 3
    parts.fit(data, stop=StopFlag())
    assert parts.epoch == 2
    for u, v in zip(whole.net.weights, parts.net.weights, strict=True):
        np.testing.assert_array_equal(u, v)


def test_rows_have_the_keys_of_gradient_training():
    data, test = blobs(), blobs(seed=1)
    init, train = streams(0)
    net = nnet.Network([4, 8, 3], "sigmoid", seed=init, dtype="float64")
    rows = Trainer.gradient(net, SGD(), lr=1.0, batch_size=50, epochs=1, rng=train).fit(
        data, {"test": test}
    )
    for make in (genetic, evolution):
        other = make(epochs=1).fit(data, {"test": test})
        assert set(other[0]) == set(rows[0]) == ROWS_KEYS
        assert other[0]["samples"] == len(data)
    assert genetic(epochs=1).fit(data)[0]["lr"] is None  # the genetic algorithm has none


def test_genetic_keeps_the_elite_and_the_best_is_the_network():
    data = blobs()
    trainer = genetic(epochs=1, elite=3)
    fp = trainer.net.workspace(50)
    fp.x[...] = data.x[:50]
    before = trainer.update.members.copy()
    tallied = []
    trainer.update.step(trainer.net, fp, data.t[:50], None, lambda O, s, t: tallied.append(s))
    loss = tallied[0] / 50
    O = population_forward(trainer.net, before, data.x[:50])
    losses = member_losses(trainer.net, O, data.t[:50])
    order = np.argsort(losses, kind="stable")
    np.testing.assert_array_equal(trainer.update.members[:3], before[order[:3]])
    np.testing.assert_array_equal(flatten(trainer.net.weights), before[order[0]])
    assert loss == losses[order[0]]


def test_settings_for_lays_trainer_defaults_under_explicit_flags():
    ga = settings_for("seed", {"population": 12}, "genetic")
    assert ga.trainer == "genetic" and ga.population == 12
    assert ga.mutation_rate is not None and ga.sigma is None
    es = settings_for("seed", {"lr": 0.5}, "evolution")
    assert es.optimizer == "adam" and es.lr == 0.5 and es.sigma is not None
    assert settings_for("seed").trainer == "gradient"
    assert settings_for("seed").lr == 10.0


# ----------------------------------------------------------------------------- the command line


def run(*args: str, data: Path, cwd: Path):
    env = {**os.environ, "NNET_DATA": str(data)}
    return subprocess.run(
        [sys.executable, "-m", "nnet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize("trainer", ["genetic", "evolution"])
def test_cli_trains_and_saves_like_gradient_training(mnist_dir, tmp_path, trainer):
    out = run(
        "train", "--trainer", trainer, "--train-samples", "2000", "--epochs", "2",
        "--population", "20", "--out", "m.npz", "--metrics", "m.jsonl", "--json",
        data=mnist_dir, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["trainer"] == trainer and summary["epochs"] == 2
    assert summary["engine"] is None
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) == ROWS_KEYS and rows[0]["samples"] == 2000
    for key in ("test_accuracy", "test_loss", "train_loss", "train_accuracy"):
        assert rows[-1][key] == summary[key], key
    net = nnet.load(tmp_path / "m.npz")
    assert net.sizes == [784, 16, 16, 10]
    assert net.meta["training"]["trainer"] == trainer
    assert net.meta["training"]["population"] == 20
    assert sum(line.startswith("epoch ") for line in out.stdout.splitlines()) == 2
    again = run(
        "evaluate", "m.npz", "--json", data=mnist_dir, cwd=tmp_path
    )  # the model file is an ordinary one
    evaluated = json.loads(again.stdout)
    assert evaluated["accuracy"] == summary["test_accuracy"]
    assert evaluated["loss"] == summary["test_loss"]


BAD = [
    (["--trainer", "genetic", "--population", "1"], "at least 2 members"),
    (["--trainer", "genetic", "--mutation-rate", "0"], "(0, 1]"),
    (["--trainer", "genetic", "--mutation-rate", "1.5"], "(0, 1]"),
    (["--trainer", "genetic", "--mutation-scale", "-1"], "positive number"),
    (["--trainer", "genetic", "--crossover-rate", "2"], "[0, 1]"),
    (["--trainer", "genetic", "--elite", "-1"], "integer >= 0"),
    (["--trainer", "genetic", "--population", "4", "--elite", "4"], "smaller than the population"),
    (["--trainer", "evolution", "--population", "7"], "even population"),
    (["--trainer", "evolution", "--sigma", "0"], "positive number"),
    (["--trainer", "annealing"], "invalid choice"),
    (["--sigma", "0.1"], "applies only to --trainer evolution"),
    (["--population", "10"], "applies only to --trainer genetic or evolution"),
    (["--trainer", "genetic", "--sigma", "0.1"], "not to --trainer genetic"),
    (["--trainer", "evolution", "--elite", "2"], "not to --trainer evolution"),
    (["--trainer", "genetic", "--engine", "matrix"], "no gradient engine"),
    (["--trainer", "evolution", "--dropout", "0.2"], "dropout needs gradient training"),
    (["--trainer", "evolution", "--checkpoint", "c.npz"], "checkpoints are for gradient"),
    (["--trainer", "genetic", "--lr", "0.1"], "no optimizer or learning rate"),
    (["--trainer", "genetic", "--optimizer", "adam"], "no optimizer or learning rate"),
    (["--resume", "model.npz", "--trainer", "genetic"], "leave out --trainer"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_are_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NNET_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no-cache"))
    nnet.save(nnet.Network([784, 8, 10], seed=0), tmp_path / "model.npz")
    try:
        code = main(["train", "--no-download", *argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnet"), err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_help_explains_the_trainer_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trainer genetic or evolution trains without gradients" in text
    assert "flags given explicitly still win" in text
    for flag in ("--population", "--mutation-rate", "--mutation-scale", "--crossover-rate"):
        assert flag in text
    assert "--elite" in text and "--sigma" in text


def test_gradient_free_trainers_drop_what_they_cannot_use():
    """--preset best has dropout; --trainer evolution/genetic bring their own settings."""
    for trainer in ("genetic", "evolution"):
        settings = settings_for("best", trainer=trainer)
        assert settings.dropout is None and settings.engine is None
    init, train = streams(0)
    big = nnet.Network([784, 800, 800, 10], "relu", seed=init)
    with pytest.raises(nnet.errors.NnetError, match="smaller --population"):
        EvolutionUpdate(big, Adam(), rng=train, lr=0.01, population=200, sigma=0.02)


# ----------------------------------------------------------------------------- plot --x seconds


def test_plot_against_seconds(tmp_path, monkeypatch, capsys):
    from nnet.apps.plots import plot_curves

    rows = [
        {"epoch": e, "train_loss": 1 / e, "test_accuracy": 0.5 + e / 20, "seconds": 2.5}
        for e in range(1, 5)
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    assert main(["plot", "a.jsonl", "--x", "seconds", "--out", "s.png"]) == 0
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(nnet.errors.NnetError, match='no "seconds"'):
        plot_curves({"r": [{"epoch": 1, "train_loss": 1.0}]}, tmp_path / "x.png", x="seconds")
    plot_curves({"r": [{"epoch": 1, "train_loss": 1.0}]}, tmp_path / "e.png")  # per epoch: fine
    with pytest.raises(SystemExit) as exc:
        main(["plot", "a.jsonl", "--x", "minutes"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_curves_figure_x_axis_is_cumulative_seconds():
    from nnet.apps.plots import curves_figure

    rows = [{"epoch": e, "test_accuracy": 0.1 * e, "seconds": 1.5} for e in range(1, 4)]
    fig = curves_figure({"r": rows}, x="seconds")
    acc = fig.axes[1]
    line = acc.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [1.5, 3.0, 4.5])
    assert "seconds" in acc.get_xlabel()


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_benchmark_runs_end_to_end(mnist_dir, tmp_path):
    """benchmarks/gradient_free.py, shrunk to 1000 samples and one epoch (a smoke test)."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gradient_free.py"
    env = {**os.environ, "NNET_DATA": str(mnist_dir), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    out = subprocess.run(
        [sys.executable, str(script), "--plot", str(tmp_path / "g.png"), "--keep", str(tmp_path),
         "--", "--train-samples", "1000", "--epochs", "1"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    for name in ("backprop", "backprop-100", "evolution", "genetic"):
        assert any(line.startswith(name + " ") for line in out.stdout.splitlines()), out.stdout
        assert (tmp_path / f"{name}.jsonl").exists()
    assert "cosine similarity" in out.stdout
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
