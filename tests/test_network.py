"""The network of the notes: shapes, the bias row, the forward pass, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnet
from nnet.core.activations import ACTIVATIONS


def forward_by_hand(net: nnet.Network, x: list[float]) -> list[float]:
    """The notes' definitions in plain Python: h^l_j = sum_i a^(l-1)_i w^(l-1)_ij."""
    a = list(x) + [1.0]
    for l in range(1, net.L + 1):
        w = net.weights[l - 1]
        h = [sum(a[i] * float(w[i, j]) for i in range(len(a))) for j in range(net.sizes[l])]
        g = net.g[l]
        a = [float(g(np.float64(v))) for v in h] + [1.0]
    return a[:-1]


def test_shapes_and_bias_row():
    net = nnet.Network([784, 16, 16, 10], seed=0)
    assert [w.shape for w in net.weights] == [(785, 16), (17, 16), (17, 10)]
    assert net.L == 3 and net.activations == ["sigmoid"] * 3
    x = np.random.default_rng(0).random((5, 784))
    O = net.forward(x)
    assert O.shape == (5, 10) and O.dtype == np.float32
    fp = net.forward_pass(x)
    np.testing.assert_array_equal(fp.O, O)
    for l in range(net.L + 1):
        assert fp.a[l].shape == (5, net.sizes[l] + 1)
        assert np.all(fp.a[l][:, -1] == 1.0)  # bias extension a^l_{#l} = 1
    assert fp.h[0] is None and fp.h[1].shape == (5, 16)


def test_last_row_is_the_bias_of_the_next_layer():
    net = nnet.Network([3, 2, 2], "identity", seed=1, dtype="float64")
    x = np.array([[0.5, -1.0, 2.0]])
    h1 = net.forward_pass(x).h[1]
    net.weights[0][3, 1] += 0.25  # row #0 = 3 is the bias row of w^0
    assert np.allclose(net.forward_pass(x).h[1] - h1, [[0.0, 0.25]], atol=1e-15)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_forward_matches_the_definitions(activation):
    rng = np.random.default_rng(2)
    net = nnet.Network([4, 3, 5, 2], activation, seed=3, dtype="float64")
    x = rng.normal(size=(3, 4))
    O = net.forward(x)
    for b in range(3):
        assert np.allclose(O[b], forward_by_hand(net, list(x[b])), rtol=1e-12, atol=1e-14)


def test_sigmoid_is_finite_and_exact_for_huge_inputs():
    g = ACTIVATIONS["sigmoid"]
    h = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with np.errstate(all="raise"):
        s = g(h)
    assert np.allclose(s, [1 / (1 + math.exp(-v)) if v > -700 else 0.0 for v in h])


def test_seed_dtype_and_per_layer_activation():
    a = nnet.Network([6, 4, 3], ["tanh", "identity"], seed=7, dtype="float64")
    b = nnet.Network([6, 4, 3], ["tanh", "identity"], seed=7, dtype="float64")
    c = nnet.Network([6, 4, 3], ["tanh", "identity"], seed=8, dtype="float64")
    assert all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights, strict=True))
    assert not np.array_equal(a.weights[0], c.weights[0])
    assert a.activations == ["tanh", "identity"] and a.weights[0].dtype == np.float64


def test_author_initialization_bounds():
    net = nnet.Network([784, 16, 16, 10], seed=0, init="author", dtype="float64")
    for k, w in enumerate(net.weights):
        bound = math.sqrt(3 / (net.sizes[k] + 1)) / 2
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.9 * bound  # uniform over the whole range
        assert np.abs(w[-1]).max() > 0  # the bias row too


def test_author_normal_initialization_scale():
    net = nnet.Network([784, 64, 784], seed=0, init="author_normal", dtype="float64")
    for k, w in enumerate(net.weights):
        std = 1 / math.sqrt(net.sizes[k] + 1)
        assert abs(w.std() / std - 1) < 0.02  # 50 000 draws or more: within 2 %
        assert abs(w.mean()) < 0.02 * std
        assert np.abs(w[-1]).max() > 0  # the bias row too


def test_cross_entropy_puts_identity_on_the_output():
    net = nnet.Network([5, 4, 3], "relu", loss="cross_entropy", seed=0)
    assert net.activations == ["relu", "identity"]
    with pytest.raises(ValueError, match="identity activation on the output"):
        nnet.Network([5, 4, 3], ["relu", "sigmoid"], loss="cross_entropy")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: nnet.Network([784]), "at least two layers"),
        (lambda: nnet.Network([784, 0, 10]), "at least one neuron"),
        (lambda: nnet.Network([784, -3, 10]), "at least one neuron"),
        (lambda: nnet.Network([784, 2.5, 10]), "list of integers"),
        (lambda: nnet.Network("784,10"), "list of integers"),
        (lambda: nnet.Network([4, 3], "swish"), "unknown activation 'swish'"),
        (lambda: nnet.Network([4, 3, 2], ["relu"]), "one per layer 1..2"),
        (lambda: nnet.Network([4, 3], dtype="float16"), "unsupported dtype"),
        (lambda: nnet.Network([4, 3], loss="hinge"), "unknown loss 'hinge'"),
        (lambda: nnet.Network([4, 3], init="zeros"), "unknown initialization 'zeros'"),
    ],
)
def test_bad_construction_raises_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("x", "t", "engine", "message"),
    [
        (np.zeros((2, 5)), np.zeros((2, 3)), "backprop", r"shape \(batch, 4\)"),
        (np.zeros(4), np.zeros((1, 3)), "backprop", r"x\[None, :\]"),
        (np.zeros((0, 4)), np.zeros((0, 3)), "backprop", "batch >= 1"),
        (np.zeros((2, 4)), np.zeros((2, 2)), "backprop", r"targets must have shape \(2, 3\)"),
        (np.zeros((2, 4)), np.zeros((3, 3)), "backprop", r"targets must have shape \(2, 3\)"),
        (np.full((2, 4), np.nan), np.zeros((2, 3)), "backprop", "inputs contain NaN"),
        (np.zeros((2, 4)), np.full((2, 3), np.inf), "backprop", "targets contain NaN or inf"),
        (np.array([["a"] * 4]), np.zeros((1, 3)), "backprop", "real numbers"),
        (np.zeros((2, 4)), np.zeros((2, 3)), "magic", "unknown engine 'magic'"),
    ],
)
def test_bad_gradient_input_raises_value_error(x, t, engine, message):
    net = nnet.Network([4, 3], seed=0)
    with pytest.raises(ValueError, match=message):
        nnet.gradients(net, x, t, engine=engine)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_into_a_buffer_equals_the_plain_call(activation):
    g = ACTIVATIONS[activation]
    h = np.random.default_rng(0).normal(0, 3, (5, 7))
    out = np.full_like(h, np.nan)
    assert g(h, out=out) is out
    np.testing.assert_array_equal(out, g(h))


def test_forward_passes_are_values_and_a_workspace_is_reused():
    net = nnet.Network([4, 3, 2], "tanh", seed=0, dtype="float64")
    rng = np.random.default_rng(1)
    x1, x2 = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    p1 = net.forward_pass(x1)
    o1 = p1.O.copy()
    o2 = net.forward(x2)
    np.testing.assert_array_equal(p1.O, o1)  # a second pass does not touch the first
    ws = net.workspace(5)
    p2 = net.forward_pass(x2, ws=ws)
    assert np.shares_memory(p2.O, ws.a[-1])  # written into the caller's workspace
    np.testing.assert_array_equal(p2.O, o2)
    small = net.forward_pass(x1[:3], ws=ws)  # fewer rows: a view of the same arrays
    assert np.shares_memory(small.a[1], ws.a[1])
    np.testing.assert_array_equal(small.O, o1[:3])
    copy = net.copy()
    copy.weights[0][0, 0] += 1.0
    np.testing.assert_array_equal(net.forward(x1), o1)  # a copy has its own weights


def test_concurrent_forward_calls_do_not_interfere():
    import concurrent.futures

    net = nnet.Network([6, 8, 3], "sigmoid", seed=0, dtype="float64")
    xs = [np.random.default_rng(i).random((50, 6)) for i in range(16)]
    expected = [net.forward(x) for x in xs]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(20):
            got = list(pool.map(net.forward, xs))
            for e, g in zip(expected, got, strict=True):
                np.testing.assert_array_equal(e, g)
