"""Equation (2) as code: range checks, usage assertions, the k = l-2 shortcut, the memo."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import random_batch, random_net

import nnet
from nnet.core.engines.recursive import UsageError, make_dadw
from nnet.core.gradcheck import relative_error


def dadw_for(net: nnet.Network, x: np.ndarray, *, strict: bool = True):
    fp = net.forward_pass(x[None, :])
    a = [a_l[0].tolist() for a_l in fp.a]
    gp = [None] + [fp.gprime(l)[0].tolist() for l in range(1, net.L + 1)]
    w = [wk.tolist() for wk in net.weights]
    return make_dadw(net.sizes, w, a, gp, strict=strict)


def fd_dadw(net: nnet.Network, x: np.ndarray, l: int, q: int, k: int, i: int, j: int) -> float:
    """da^l_q/dw^k_ij by central differences."""
    eps = 1e-6
    old = net.weights[k][i, j]
    values = []
    for v in (old + eps, old - eps):
        net.weights[k][i, j] = v
        values.append(net.forward_pass(x[None, :]).a[l][0, q])
    net.weights[k][i, j] = old
    return (values[0] - values[1]) / (2 * eps)


@pytest.fixture
def net_x():
    rng = np.random.default_rng(0)
    net = nnet.Network([3, 4, 5, 3, 2], "tanh", seed=1, dtype="float64")
    net.weights = [rng.normal(0, 0.8, w.shape) for w in net.weights]
    return net, rng.normal(size=3)


def test_usage_assertions_fire(net_x):
    net, x = net_x
    dadw = dadw_for(net, x)
    with pytest.raises(UsageError, match="bias neuron"):
        dadw(2, net.sizes[2], 0, 1, 1)  # q = #l is the bias neuron of layer 2
    with pytest.raises(UsageError, match="k=2 >= l=2"):
        dadw(2, 0, 2, 1, 1)
    with pytest.raises(UsageError, match="k=3 >= l=2"):
        dadw(2, 0, 3, 1, 1)
    with pytest.raises(AssertionError):  # UsageError is an AssertionError, as the notes ask
        dadw(1, 0, 1, 0, 0)


def test_without_assertions_those_cases_are_the_zero_of_2(net_x):
    net, x = net_x
    dadw = dadw_for(net, x, strict=False)
    assert dadw(2, net.sizes[2], 0, 1, 1) == 0.0
    assert dadw(2, 0, 2, 1, 1) == 0.0 == fd_dadw(net, x, 2, 0, 2, 1, 1)
    assert dadw(1, 0, 3, 0, 0) == 0.0


def test_range_checks(net_x):
    net, x = net_x
    dadw = dadw_for(net, x)
    for args in [
        (5, 0, 0, 0, 0),
        (-1, 0, 0, 0, 0),
        (2, 0, 4, 0, 0),
        (2, 6, 0, 0, 0),
        (2, 0, 0, 4, 0),
        (2, 0, 0, 0, 4),
        (2, 0, 0, -1, 0),
    ]:
        with pytest.raises(IndexError, match="out of range"):
            dadw(*args)


def test_every_case_of_2_matches_finite_differences(net_x):
    """k = l-1 (both j = q and j != q), the k = l-2 shortcut, and the general recursion."""
    net, x = net_x
    dadw = dadw_for(net, x)
    cases = {
        "k=l-1, j=q": (2, 1, 1, 2, 1),
        "k=l-1, j!=q": (2, 1, 1, 2, 3),
        "k=l-1, bias row i=#k": (2, 1, 1, 4, 1),
        "k=l-2": (3, 2, 1, 0, 4),
        "k=l-3": (3, 1, 0, 2, 3),
        "k=l-4": (4, 1, 0, 1, 2),
        "k=l-4, bias row": (4, 0, 0, 3, 0),
    }
    for name, args in cases.items():
        assert dadw(*args) == pytest.approx(fd_dadw(net, x, *args), rel=1e-7, abs=1e-10), name
    assert dadw(2, 1, 1, 2, 3) == 0.0


def test_shortcut_equals_the_general_recursion(net_x):
    """The k = l-2 case is only a speed-up: (2)'s 'else' branch gives the same number."""
    net, x = net_x
    dadw = dadw_for(net, x)
    fp = net.forward_pass(x[None, :])
    gp = [None] + [fp.gprime(l)[0] for l in range(1, net.L + 1)]
    l, k = 3, 1
    for q in range(net.sizes[l]):
        for i in range(net.sizes[k] + 1):
            for j in range(net.sizes[k + 1]):
                general = gp[l][q] * sum(
                    net.weights[l - 1][r, q] * dadw(l - 1, r, k, i, j)
                    for r in range(net.sizes[l - 1])
                )
                assert dadw(l, q, k, i, j) == pytest.approx(general, rel=1e-12, abs=1e-15)


def test_memo_belongs_to_one_sample():
    """Batch gradient = mean of per-sample gradients (the author's memo broke this)."""
    rng = np.random.default_rng(4)
    net = random_net(rng, 2, "sigmoid")
    x, t = random_batch(rng, net, 5)
    batch = nnet.gradients(net, x, t, engine="recursive")
    singles = [
        nnet.gradients(net, x[b : b + 1], t[b : b + 1], engine="recursive") for b in range(5)
    ]
    mean = [np.mean([s[k] for s in singles], axis=0) for k in range(net.L)]
    assert relative_error(batch, mean) < 1e-13
    # and the samples really differ, so a shared memo would have shown
    assert relative_error(singles[0], singles[1]) > 1e-3
