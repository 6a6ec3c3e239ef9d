"""Optimizers against their textbook update rules, written out by hand: with the NumPy
kernels and, when Numba is installed, the fused ones (tests/test_kernels.py checks the two
equal bit for bit)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from nnet.errors import NnetError
from nnet.training.optim import SGD, Adam, make_optimizer

HAS_NUMBA = importlib.util.find_spec("numba") is not None


@pytest.fixture(
    params=[
        "numpy",
        pytest.param(
            "numba", marks=pytest.mark.skipif(not HAS_NUMBA, reason="Numba is not installed")
        ),
    ]
)
def kernels(request):
    """The optimizer's kernels: the NumPy reference, then the fused ones."""
    return request.param


def weights_and_grads(seed=0):
    rng = np.random.default_rng(seed)
    w = [rng.normal(size=(4, 3)), rng.normal(size=(4, 2))]
    g = [[rng.normal(size=x.shape) for x in w] for _ in range(3)]
    return w, g


def test_sgd_with_momentum_matches_the_rule(kernels):
    w, gs = weights_and_grads()
    ref = [x.copy() for x in w]
    v = [np.zeros_like(x) for x in w]
    opt = SGD(momentum=0.5, kernels=kernels)
    for g in gs:
        opt.step(w, g, 0.1)
        for k in range(2):
            v[k] = 0.5 * v[k] + g[k]
            ref[k] = ref[k] - 0.1 * v[k]
    for a, b in zip(w, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_nesterov_matches_the_rule(kernels):
    w, gs = weights_and_grads(1)
    ref = [x.copy() for x in w]
    v = [np.zeros_like(x) for x in w]
    opt = SGD(momentum=0.9, nesterov=True, kernels=kernels)
    for g in gs:
        opt.step(w, g, 0.01)
        for k in range(2):
            v[k] = 0.9 * v[k] + g[k]
            ref[k] = ref[k] - 0.01 * (g[k] + 0.9 * v[k])
    for a, b in zip(w, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_and_adamw_match_the_rule(decoupled, kernels):
    w, gs = weights_and_grads(2)
    ref = [x.copy() for x in w]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-8
    opt = Adam(weight_decay=wd, decoupled=decoupled, kernels=kernels)
    for t, g in enumerate(gs, start=1):
        opt.step(w, g, lr)
        for k in range(2):
            gk = g[k].copy()
            if not decoupled:
                gk[:-1] += wd * ref[k][:-1]  # L2, not on the bias row
            m[k] = b1 * m[k] + (1 - b1) * gk
            v[k] = b2 * v[k] + (1 - b2) * gk**2
            mhat, vhat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            if decoupled:
                ref[k][:-1] -= lr * wd * ref[k][:-1]
            ref[k] = ref[k] - lr * mhat / (np.sqrt(vhat) + eps)
    for a, b in zip(w, ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_weight_decay_spares_the_bias_row(kernels):
    w = [np.ones((3, 2))]
    SGD(weight_decay=0.5, kernels=kernels).step(w, [np.zeros((3, 2))], 1.0)
    np.testing.assert_allclose(w[0][:-1], 0.5)
    np.testing.assert_allclose(w[0][-1], 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "sgd", "momentum": 1.0}, "momentum must be in"),
        ({"name": "sgd", "momentum": -0.1}, "momentum must be in"),
        ({"name": "sgd", "nesterov": True}, "Nesterov momentum needs"),
        ({"name": "sgd", "weight_decay": -1.0}, "weight decay must be"),
        ({"name": "adam", "momentum": 0.9}, "adam has no momentum"),
        ({"name": "rmsprop"}, "unknown optimizer"),
        ({"name": "adam", "kernels": "cuda"}, "kernels must be one of auto, numba, numpy"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(NnetError, match=message):
        make_optimizer(**kwargs)


def test_schedules():
    from nnet.training.optim import make_schedule

    const = make_schedule("constant", 0.1, epochs=10)
    assert const(0) == const(9.9) == 0.1
    step = make_schedule("step", 0.1, epochs=10, step_every=3, gamma=0.5)
    assert [step(p) for p in (0, 2.9, 3, 6.5, 9)] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.0125])
    cos = make_schedule("cosine", 0.1, epochs=10)
    assert cos(0) == pytest.approx(0.1) and cos(5) == pytest.approx(0.05)
    assert cos(10) == pytest.approx(0.0, abs=1e-12)
    assert all(cos(p) >= cos(p + 0.5) for p in np.arange(0, 9.5, 0.5))
    warm = make_schedule("cosine", 0.1, epochs=10, warmup=2)
    assert warm(0.5) == pytest.approx(0.025) and warm(1.0) == pytest.approx(0.05)
    assert warm(2) == pytest.approx(0.1) and warm(6) == pytest.approx(0.05)
    assert warm(0) > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "cyclic"}, "unknown schedule"),
        ({"name": "cosine", "warmup": 10}, "warm-up must be"),
        ({"name": "step", "gamma": 0}, "step schedule needs"),
    ],
)
def test_bad_schedules(kwargs, message):
    from nnet.training.optim import make_schedule

    with pytest.raises(NnetError, match=message):
        make_schedule(lr=0.1, epochs=10, **kwargs)


def test_adam_flushes_subnormal_moments_and_keeps_normal_ones(kernels):
    from nnet.training.optim import FLUSH_EVERY

    w = [np.zeros((3, 2), dtype=np.float32)]
    g = [np.zeros((3, 2), dtype=np.float32)]
    opt = Adam(kernels=kernels)
    opt.step(w, g, 0.1)  # creates the state
    M = opt.state["m_sum0"]
    M[0, 0], M[0, 1] = np.float32(1e-40), np.float32(1e-20)  # subnormal, normal
    expected = np.float32(1e-20)
    for _ in range(FLUSH_EVERY):
        opt.step(w, g, 0.1)
        expected = np.float32(expected * np.float32(0.9))
    assert M[0, 0] == 0  # flushed within FLUSH_EVERY steps
    assert M[0, 1] == expected  # a normal number: bit for bit what b1 M + 0 gives
