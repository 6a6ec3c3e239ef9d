"""The training loop on small synthetic problems: it learns, it is reproducible, it stops."""

from __future__ import annotations

import numpy as np
import pytest

import nnet
from nnet.training.loop import DivergenceError, Split, StopFlag, Trainer, evaluate
from nnet.training.optim import SGD, Adam


def blobs(n=240, seed=0, dtype="float64"):
    """Three Gaussian blobs in 4-D: an easy 3-class problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], dtype=float)
    x = (centers[y] + rng.normal(0, 0.5, (n, 4))).astype(dtype)
    return Split(x, np.eye(3, dtype=dtype)[y], y)


def make(seed=0, engine="backprop", dtype="float64", batch_size=32, epochs=5, **kw):
    rng_init, rng_train = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    net = nnet.Network([4, 8, 3], "sigmoid", seed=rng_init, dtype=dtype)
    return Trainer.gradient(
        net,
        SGD(momentum=0.5),
        lr=kw.pop("lr", 2.0),
        batch_size=batch_size,
        epochs=epochs,
        rng=rng_train,
        engine=engine,
        **kw,
    )


def test_training_learns_the_blobs():
    data = blobs()
    trainer = make(epochs=20)
    before, _ = evaluate(trainer.net, data)
    history = trainer.fit(data, {"test": blobs(seed=1)})
    assert len(history) == 20 and [r["epoch"] for r in history] == list(range(1, 21))
    assert history[-1]["train_loss"] < 0.5 * before
    assert history[-1]["test_accuracy"] > 0.95


def test_same_seed_same_run_bit_for_bit():
    data = blobs()
    a, b = make(seed=7), make(seed=7)
    ha, hb = a.fit(data), b.fit(data)
    assert all(np.array_equal(u, v) for u, v in zip(a.net.weights, b.net.weights, strict=True))
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    c = make(seed=8)
    c.fit(data)
    assert not np.array_equal(a.net.weights[0], c.net.weights[0])


def test_every_engine_gives_the_same_curve():
    data = blobs(n=50)
    curves = {}
    for engine in nnet.ENGINES:
        trainer = make(engine=engine, batch_size=16, epochs=3)
        curves[engine] = [r["train_loss"] for r in trainer.fit(data, {"test": data})]
    for engine, curve in curves.items():
        np.testing.assert_allclose(curve, curves["backprop"], rtol=1e-10, err_msg=engine)


def test_last_partial_batch_is_used():
    data = blobs(n=10)
    seen = []
    trainer = make(batch_size=3, epochs=1)
    row = trainer.fit(data, on_batch=lambda n, loss: seen.append(n))[0]
    assert seen == [3, 3, 3, 1] and row["samples"] == 10


def test_each_epoch_shuffles_with_the_seeded_generator(monkeypatch):
    from nnet.core.engines import ENGINE_FUNCTIONS

    data = blobs(n=12)
    seen: list[np.ndarray] = []
    backprop = ENGINE_FUNCTIONS["backprop"]

    def recording(net, fp, t, out=None):
        seen.append(fp.x[:, 0].copy())
        return backprop(net, fp, t, out=out)

    monkeypatch.setitem(ENGINE_FUNCTIONS, "backprop", recording)
    trainer = make(seed=3, batch_size=12, epochs=2)
    expected_rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[1])
    trainer.fit(data)
    for epoch in range(2):
        np.testing.assert_array_equal(seen[epoch], data.x[expected_rng.permutation(12), 0])
    assert not np.array_equal(seen[0], seen[1])


def test_divergence_stops_loudly_naming_epoch_and_batch():
    data = blobs()
    trainer = make(lr=1e6, epochs=5)
    trainer.net.weights[0][0, 0] = np.nan
    with pytest.raises(DivergenceError, match=r"epoch 1, batch 1.*smaller learning rate"):
        trainer.fit(data)


def test_adam_trains_too():
    data = blobs()
    rng = np.random.default_rng(0)
    net = nnet.Network([4, 8, 3], "relu", loss="cross_entropy", seed=rng, dtype="float64")
    trainer = Trainer.gradient(net, Adam(), lr=0.01, batch_size=32, epochs=10, rng=rng)
    assert trainer.fit(data, {"test": blobs(seed=2)})[-1]["test_accuracy"] > 0.95


def test_stop_flag_stops_after_the_current_batch_and_the_run_continues_exactly():
    data = blobs(n=100)
    trainer = make(batch_size=10, epochs=3, dropout=[0.1, 0.3])
    stop = StopFlag()
    count = []

    def on_batch(n, loss):
        count.append(n)
        if len(count) == 13:
            stop.signal = "SIGINT"

    history = trainer.fit(data, stop=stop, on_batch=on_batch)
    assert len(count) == 13 and len(history) == 1 and trainer.epoch == 1
    assert trainer.stopped_by == "SIGINT" and trainer.progress["batch"] == 3
    trainer.fit(data)  # carry on from batch 4 of epoch 2
    straight = make(batch_size=10, epochs=3, dropout=[0.1, 0.3])
    straight.fit(data)
    assert len(trainer.history) == 3
    assert all(
        np.array_equal(u, v) for u, v in zip(trainer.net.weights, straight.net.weights, strict=True)
    )
    assert [r["train_loss"] for r in trainer.history] == [r["train_loss"] for r in straight.history]


def test_early_stopping_restores_the_best_weights():
    train, val = blobs(n=60, seed=0), blobs(n=200, seed=5)
    # a rate so large that the validation loss gets worse after a while
    trainer = make(lr=30.0, epochs=40, batch_size=10, patience=3)
    history = trainer.fit(train, {"val": val})
    best_loss, best_epoch, best_weights = trainer.best
    assert best_loss == min(r["val_loss"] for r in history)
    assert history[best_epoch - 1]["val_loss"] == best_loss
    assert trainer.early_stopped and best_epoch < 40  # it did stop early, 3 epochs after the best
    assert history[-1]["early_stop"] and len(history) == best_epoch + 3
    assert all(np.array_equal(w, b) for w, b in zip(trainer.net.weights, best_weights, strict=True))
    assert evaluate(trainer.net, val)[0] == pytest.approx(best_loss)


def test_patience_needs_a_validation_split():
    from nnet.errors import NnetError

    with pytest.raises(NnetError, match="validation split"):
        make(patience=2).fit(blobs())


def test_dropout_training_is_reproducible_and_different():
    data = blobs()
    a = make(seed=1, dropout=[0.2, 0.5])
    b = make(seed=1, dropout=[0.2, 0.5])
    c = make(seed=1)
    for t in (a, b, c):
        t.fit(data)
    assert np.array_equal(a.net.weights[0], b.net.weights[0])
    assert not np.array_equal(a.net.weights[0], c.net.weights[0])


@pytest.mark.parametrize("rates", [[0.5], [0.2, 1.0], [-0.1, 0.2]])
def test_bad_dropout_rates(rates):
    from nnet.errors import NnetError

    with pytest.raises(NnetError, match="dropout needs 2 rates"):
        make(dropout=rates)


def test_autoencoder_targets_survive_input_dropout(monkeypatch):
    """The trainer reuses the input buffer as an autoencoder's targets; input dropout,
    which scales that buffer in place, must not leak into the targets."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 6))
    data = Split(x, x, None)
    net = nnet.Network([6, 3, 6], "sigmoid", seed=0, dtype="float64")
    seen = []
    from nnet.core.engines import ENGINE_FUNCTIONS

    backprop = ENGINE_FUNCTIONS["backprop"]

    def recording(net, fp, tb, out=None):
        seen.append((tb.copy(), np.asarray(fp.masks[0]).copy()))
        return backprop(net, fp, tb, out=out)

    monkeypatch.setitem(ENGINE_FUNCTIONS, "backprop", recording)
    trainer = Trainer.gradient(
        net, SGD(), lr=0.5, batch_size=40, epochs=1, rng=rng, dropout=[0.5, 0.0]
    )
    trainer.fit(data)
    targets, mask = seen[0]
    assert np.any(mask == 0)
    assert set(map(tuple, targets)) <= set(map(tuple, x))  # whole, undropped samples
