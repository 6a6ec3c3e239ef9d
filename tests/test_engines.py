"""Every engine against central finite differences, and all engines against each other."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_batch, random_net
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnet
from nnet.core.activations import ACTIVATIONS
from nnet.core.gradcheck import numerical_gradients, relative_error

FD_TOL = 1e-6
AGREE_TOL = 1e-10


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("hidden", [0, 1, 2, 3])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_every_engine_matches_finite_differences(activation, hidden, batch):
    rng = np.random.default_rng([hidden, batch, list(ACTIVATIONS).index(activation)])
    net = random_net(rng, hidden, activation)
    x, t = random_batch(rng, net, batch)
    ref = numerical_gradients(net, x, t)
    for engine in nnet.ENGINES:
        g = nnet.gradients(net, x, t, engine=engine)
        assert [gk.shape for gk in g] == [w.shape for w in net.weights]
        err = relative_error(g, ref)
        assert err <= FD_TOL, f"{engine}: {err:.2e} against finite differences ({net.sizes})"


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("hidden", [0, 1, 2, 3])
def test_cross_entropy_matches_finite_differences(hidden, batch):
    rng = np.random.default_rng([hidden, batch, 99])
    hidden_acts = [str(a) for a in rng.choice(list(ACTIVATIONS), size=hidden)]
    net = random_net(rng, hidden, hidden_acts + ["identity"], loss="cross_entropy")
    x, t = random_batch(rng, net, batch)
    ref = numerical_gradients(net, x, t)
    for engine in nnet.ENGINES:
        err = relative_error(nnet.gradients(net, x, t, engine=engine), ref)
        assert err <= FD_TOL, f"{engine}: {err:.2e} ({net.sizes}, {net.activations})"


def test_mixed_activations_per_layer_match_finite_differences():
    rng = np.random.default_rng(5)
    for _ in range(6):
        acts = [str(a) for a in rng.choice(list(ACTIVATIONS), size=4)]
        net = random_net(rng, 3, acts)
        x, t = random_batch(rng, net, 3)
        ref = numerical_gradients(net, x, t)
        for engine in nnet.ENGINES:
            err = relative_error(nnet.gradients(net, x, t, engine=engine), ref)
            assert err <= FD_TOL, f"{engine}: {err:.2e} with {acts}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    hidden=st.integers(0, 3),
    batch=st.integers(1, 8),
    scale=st.sampled_from([0.1, 1.0, 3.0]),
    loss=st.sampled_from(["mse", "cross_entropy"]),
)
def test_engines_agree(seed, hidden, batch, scale, loss):
    rng = np.random.default_rng(seed)
    acts = [str(a) for a in rng.choice(list(ACTIVATIONS), size=hidden + 1)]
    if loss == "cross_entropy":
        acts[-1] = "identity"
    net = random_net(rng, hidden, acts, loss=loss, max_width=10)
    net.weights = [w * scale for w in net.weights]
    x, t = random_batch(rng, net, batch)
    grads = {e: nnet.gradients(net, x, t, engine=e) for e in nnet.ENGINES}
    for e in nnet.ENGINES:
        err = relative_error(grads[e], grads["recursive"])
        assert err <= AGREE_TOL, f"{e} vs recursive: {err:.2e}"


def test_matrix_engine_is_chunked_and_exact():
    """A tiny memory budget forces one sample per chunk; the result must not change."""
    from nnet.core.engines import matrix

    rng = np.random.default_rng(3)
    net = random_net(rng, 2, "tanh")
    x, t = random_batch(rng, net, 9)
    fp = net.forward_pass(x)
    whole = matrix.gradients(net, fp, t)
    assert matrix.chunk_size(net, 0, 1) == 1
    chunked = matrix.gradients(net, fp, t, memory_budget=1)
    assert relative_error(chunked, whole) <= AGREE_TOL


def test_matrix_engine_runs_batch_1000_on_the_notes_network_within_budget():
    from nnet.core.engines import matrix

    net = nnet.Network([784, 16, 16, 10], seed=0, dtype="float64")
    budget = matrix.DEFAULT_MEMORY_BUDGET
    assert budget <= 256 * 2**20
    n = matrix.chunk_size(net, 0, budget)
    live = 8 * 785 * 16 * (16 + 16) * n  # the two A tensors alive in (6) for k = 0
    assert 1 <= n < 1000 and live <= budget
    rng = np.random.default_rng(0)
    x = rng.random((1000, 784))
    t = np.eye(10)[rng.integers(0, 10, 1000)]
    g = nnet.gradients(net, x, t, engine="matrix")
    assert relative_error(g, nnet.gradients(net, x, t, engine="backprop")) <= AGREE_TOL


def test_float32_engines_agree_with_float64():
    rng = np.random.default_rng(11)
    net64 = random_net(rng, 2, "sigmoid")
    net32 = net64.copy("float32")
    x, t = random_batch(rng, net64, 5)
    ref = nnet.gradients(net64, x, t)
    for e in nnet.ENGINES:
        g = nnet.gradients(net32, x, t, engine=e)
        assert all(gk.dtype == np.float32 for gk in g)
        assert relative_error(g, ref) < 1e-5


def test_one_large_step_drives_the_sample_error_near_zero():
    """The notes' author's check: one gradient step with a large rate on one sample."""
    rng = np.random.default_rng(0)
    net = nnet.Network([784, 16, 16, 10], seed=1, dtype="float64", init="author")
    x = rng.random((1, 784))
    t = np.eye(10)[[3]]
    before = net.mean_error(x, t)
    for engine in nnet.ENGINES:
        trial = net.copy()
        g = nnet.gradients(trial, x, t, engine=engine)
        trial.weights = [w - 1000.0 * gk for w, gk in zip(trial.weights, g, strict=True)]
        after = trial.mean_error(x, t)
        assert before > 0.05
        assert after < 1e-3 * before, f"{engine}: {before:.3g} -> {after:.3g}"


def dropout_masks(rng, net, batch, rates):
    """Inverted-dropout masks for layers 0..L-1 (None where the rate is 0)."""
    masks = []
    for l, p in enumerate(rates):
        if p == 0:
            masks.append(None)
        else:
            keep = rng.random((batch, net.sizes[l])) >= p
            masks.append(keep / (1 - p))
    return masks


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("hidden", [0, 1, 2, 3])
def test_dropout_gradients_match_finite_differences(hidden, loss):
    """With the masks held fixed, every engine differentiates the same dropped network."""
    rng = np.random.default_rng([hidden, 7])
    for activation in ACTIVATIONS:
        acts = [activation] * hidden + ["identity" if loss == "cross_entropy" else activation]
        net = random_net(rng, hidden, acts, loss=loss)
        x, t = random_batch(rng, net, 5)
        rates = [0.3] + [0.5] * hidden
        masks = dropout_masks(rng, net, 5, rates)
        ref = numerical_gradients(net, x, t, masks=masks)
        plain = nnet.gradients(net, x, t)
        for engine in nnet.ENGINES:
            g = nnet.gradients(net, x, t, engine=engine, masks=masks)
            err = relative_error(g, ref)
            assert err <= FD_TOL, f"{engine}/{activation}: {err:.2e} with dropout"
        if any(np.abs(r).max() > 0 for r in ref):  # (one softmax output has no gradient)
            assert relative_error(plain, ref) > 1e-3  # the masks really change the gradient


def test_dropout_masks_scale_kept_activations():
    rng = np.random.default_rng(0)
    net = nnet.Network([6, 5, 3], "relu", seed=0, dtype="float64")
    x = rng.random((4, 6))
    masks = dropout_masks(rng, net, 4, [0.0, 0.5])
    dropped = net.forward_pass(x, masks=masks).a[1]
    plain = net.forward_pass(x).a[1]
    np.testing.assert_allclose(dropped[:, :-1], plain[:, :-1] * masks[1])
    assert np.all(dropped[:, -1] == 1.0)  # the bias neuron is never dropped
