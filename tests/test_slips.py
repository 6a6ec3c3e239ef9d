"""Each index slip of the notes (docs/derivation.md, S1-S12): as written vs as corrected.

For every slip, the corrected formula matches central finite differences and the formula as
written in the notes does not (or cannot even be evaluated). One sample, float64, on a
network whose layer widths differ, so that no slip is hidden by a square matrix.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnet
from nnet.core.engines import matrix
from nnet.core.engines.recursive import UsageError, make_dadw

SIZES = [3, 5, 4, 2, 3]  # #(l-1) > #l somewhere and < #l elsewhere


@pytest.fixture(scope="module")
def s():
    """One sample's forward pass: w[k][i, j], a[l][i], h[l][q], gp[l][q] = g'(h^l_q)."""
    rng = np.random.default_rng(12)
    net = nnet.Network(SIZES, "sigmoid", seed=0, dtype="float64")
    net.weights = [rng.normal(0, 1.0, w.shape) for w in net.weights]
    x = rng.normal(size=(1, SIZES[0]))
    fp = net.forward_pass(x)

    class S:
        pass

    s = S()
    s.net, s.x, s.w = net, x, net.weights
    s.a = [a_l[0] for a_l in fp.a]
    s.h = [None] + [h_l[0] for h_l in fp.h[1:]]
    s.gp = [None] + [fp.gprime(l)[0] for l in range(1, net.L + 1)]
    s.dadw = make_dadw(
        SIZES,
        [w.tolist() for w in s.w],
        [v.tolist() for v in s.a],
        [None] + [v.tolist() for v in s.gp[1:]],
    )
    return s


def fd(s, l, q, k, i, j, what="a"):
    """d a^l_q / d w^k_ij (or h^l_q) by central differences."""
    eps = 1e-6
    net = s.net
    old = net.weights[k][i, j]
    out = []
    for v in (old + eps, old - eps):
        net.weights[k][i, j] = v
        fp = net.forward_pass(s.x)
        out.append(fp.a[l][0, q] if what == "a" else fp.h[l][0, q])
    net.weights[k][i, j] = old
    return (out[0] - out[1]) / (2 * eps)


def close(u, v):
    return abs(u - v) <= 1e-7 * max(1.0, abs(v))


def test_S1_h_of_layer_k_uses_w_k_minus_1_and_includes_the_bias(s):
    k = 2
    # as written: h^k_j = sum_{i=0}^{#k-1} a^(k-1)_i w^k_ij -- but w^k leaves layer k: its
    # #k + 1 = 5 rows do not even fit the 6 entries of a^(k-1)
    with pytest.raises(ValueError):
        s.a[k - 1] @ s.w[k]
    # corrected: w^(k-1), summed over i = 0..#(k-1), the bias neuron included
    np.testing.assert_allclose(s.a[k - 1] @ s.w[k - 1], s.h[k], rtol=1e-14)
    assert not np.allclose(s.a[k - 1][:-1] @ s.w[k - 1][:-1], s.h[k])  # the bias term counts


def test_S2_the_bias_row_is_i_equal_to_number_k_and_biases_layer_k_plus_1(s):
    k, j = 1, 2
    # as written: b^k_j = w^k_{#k-1, j}, the bias of a^k_j
    assert fd(s, k + 1, j, k, SIZES[k] - 1, j, what="h") == pytest.approx(s.a[k][SIZES[k] - 1])
    assert s.a[k][SIZES[k] - 1] != 1.0  # so that row is an ordinary neuron's weight
    # corrected: b^(k+1)_j = w^k_{#k, j}: h^(k+1)_j moves one for one with it
    assert fd(s, k + 1, j, k, SIZES[k], j, what="h") == pytest.approx(1.0, rel=1e-8)


def test_S3_a0_is_x_constant_in_the_weights_not_zero(s):
    assert np.all(s.a[0][:-1] == s.x[0]) and np.any(s.a[0] != 0)
    assert fd(s, 0, 1, 0, 1, 1) == 0.0  # constant in every weight, hence derivative 0
    relaxed = make_dadw(
        SIZES,
        [w.tolist() for w in s.w],
        [v.tolist() for v in s.a],
        [None] + [v.tolist() for v in s.gp[1:]],
        strict=False,
    )
    assert relaxed(0, 1, 0, 1, 1) == 0.0


def test_S4_output_sums_run_over_q_up_to_star_L_not_number_L(s):
    L = len(SIZES) - 1
    assert s.net.forward(s.x).shape[1] == SIZES[L]  # O_q exists for q = 0..*L only
    with pytest.raises(UsageError):
        s.dadw(L, SIZES[L], 0, 0, 0)  # q = #L would be a bias neuron of the output


def test_S5_k_equal_l_is_a_zero_case_too(s):
    # a^l does not depend on w^l (w^l feeds layer l+1): the case is k >= l, not k > l
    for l in range(1, len(SIZES) - 1):
        assert fd(s, l, 0, l, 0, 0) == 0.0
    with pytest.raises(UsageError, match="k=2 >= l=2"):
        s.dadw(2, 0, 2, 0, 0)


def test_S6_dh_l_q_dw_l_minus_1_ij_is_a_i_when_j_is_q(s):
    l, k, i, q = 2, 1, 3, 1
    assert fd(s, l, q, k, i, q, what="h") == pytest.approx(s.a[k][i], rel=1e-8)  # corrected
    assert abs(fd(s, l, q, k, i, q + 1, what="h")) < 1e-12  # j != q: zero
    # as written, the surviving term is a^k_q w^k_qj, whose derivative is a^k_q
    assert not close(s.a[k][q], fd(s, l, q, k, i, q, what="h"))


def test_S7_the_recursion_uses_w_rq_and_a_l_minus_1(s):
    l, q, k, i, j = 3, 0, 0, 2, 1
    truth = fd(s, l, q, k, i, j)
    r_range = range(SIZES[l - 1])
    corrected = s.gp[l][q] * sum(s.w[l - 1][r, q] * s.dadw(l - 1, r, k, i, j) for r in r_range)
    assert close(corrected, truth) and truth != 0
    # as written in (2): sum_r w^(l-1)_rj da^k_r/dw^k_ij -- da^k/dw^k is the k = l case, 0
    as_written = s.gp[l][q] * sum(s.w[l - 1][r, j] * 0.0 for r in range(SIZES[l - 1]))
    assert not close(as_written, truth)
    # and with only the derivative fixed, w_rj instead of w_rq is still wrong
    half_fixed = s.gp[l][q] * sum(s.w[l - 1][r, j] * s.dadw(l - 1, r, k, i, j) for r in r_range)
    assert not close(half_fixed, truth)


def test_S8_the_sum_over_r_runs_over_layer_l_minus_1(s):
    l, q, k, i, j = 2, 3, 0, 1, 4  # #(l-1) = 5 > #l = 4: the written range misses r = 4
    truth = fd(s, l, q, k, i, j)
    corrected = s.gp[l][q] * sum(
        s.w[l - 1][r, q] * s.dadw(l - 1, r, k, i, j) for r in range(SIZES[l - 1])
    )
    as_written = s.gp[l][q] * sum(
        s.w[l - 1][r, q] * s.dadw(l - 1, r, k, i, j) for r in range(SIZES[l])
    )
    assert close(corrected, truth) and not close(as_written, truth)


def test_S9_the_k_equal_l_minus_2_shortcut(s):
    l, q, i, j = 3, 0, 2, 1  # j < #l, so that the written g'(h^l_j) exists at all
    k = l - 2
    truth = fd(s, l, q, k, i, j)
    corrected = s.gp[l][q] * s.w[l - 1][j, q] * s.gp[l - 1][j] * s.a[k][i]
    as_written = s.gp[l][j] * s.w[l - 1][i, q] * s.gp[l - 1][j] * s.a[k][i]
    assert close(corrected, truth) and not close(as_written, truth)
    assert close(s.dadw(l, q, k, i, j), truth)


def test_S10_A_l_q_k_is_the_derivative_of_a_l_not_a_L(s):
    k, l = 0, 2  # l < L: the A of (4)-(6) are derivatives of a^l
    gp = [None] + [g[None, :] for g in s.gp[1:]]
    A = matrix.eq5_A(s.a[k][None, :], gp[k + 1], s.w[k + 1], gp[k + 2])  # A[q, b, j, i]
    for q, i, j in [(0, 0, 0), (3, 2, 4), (1, 3, 2)]:
        assert close(A[q, 0, j, i], fd(s, l, q, k, i, j))
    L = len(SIZES) - 1
    assert not close(A[1, 0, 2, 3], fd(s, L, 1, k, 3, 2))


def test_S11_g_prime_is_taken_at_layer_l_in_4_5_6(s):
    gp = [None] + [g[None, :] for g in s.gp[1:]]
    k = 1
    # (4), l = k+1: corrected factor g'(h^(k+1)_q); as written g'(h^k_q)
    A4 = matrix.eq4_A(s.a[k][None, :], gp[k + 1])
    q, i = 2, 1
    assert close(A4[q, 0, q, i], fd(s, k + 1, q, k, i, q))
    assert not close(s.gp[k][q] * s.a[k][i], fd(s, k + 1, q, k, i, q))
    # (5), l = k+2
    A5 = matrix.eq5_A(s.a[k][None, :], gp[k + 1], s.w[k + 1], gp[k + 2])
    q, i, j = 1, 2, 3
    truth = fd(s, k + 2, q, k, i, j)
    assert close(A5[q, 0, j, i], truth)
    assert not close(s.gp[k][q] * s.w[k + 1][j, q] * s.gp[k + 1][j] * s.a[k][i], truth)
    # (6), l = k+3: as written, the factor g'(h^k_q) of layer k
    A6 = matrix.eq6_A(A5, s.w[k + 2], gp[k + 3])
    q = 2
    truth = fd(s, k + 3, q, k, i, j)
    assert close(A6[q, 0, j, i], truth)
    assert not close(A6[q, 0, j, i] / s.gp[k + 3][q] * s.gp[k][q], truth)


def test_S12_w_k_has_number_k_plus_1_rows_and_number_k_plus_1_columns(s):
    for k, w in enumerate(s.w):
        assert w.shape == (SIZES[k] + 1, SIZES[k + 1])  # i = 0..#k (bias last), j = 0..*(k+1)
    t = np.eye(SIZES[-1])[[1]]
    g = nnet.gradients(s.net, s.x, t)
    assert [gk.shape for gk in g] == [w.shape for w in s.w]  # grad E^k is shaped like w^k
