"""The factorization behind the frontprop engine: A^{l,q}_k[i, j] = a^k_i M^l_k[q, j]."""

from __future__ import annotations

import numpy as np
from helpers import random_batch, random_net

from nnet.core.engines import frontprop, matrix


def all_A_and_M(net, x):
    """A^l_k from (4)/(5)/(6) and M^l_k from (4')/(6'), for every k < l <= L."""
    fp = net.forward_pass(x)
    gp = [None] + [fp.gprime(l) for l in range(1, net.L + 1)]
    A, M = {}, {}
    for k in range(net.L):
        A[k, k + 1] = matrix.eq4_A(fp.a[k], gp[k + 1])
        M[k, k + 1] = frontprop.M_first(gp[k + 1])
        for l in range(k + 2, net.L + 1):
            if l == k + 2:
                A[k, l] = matrix.eq5_A(fp.a[k], gp[k + 1], net.weights[k + 1], gp[k + 2])
            else:
                A[k, l] = matrix.eq6_A(A[k, l - 1], net.weights[l - 1], gp[l])
            M[k, l] = frontprop.M_next(M[k, l - 1], net.weights[l - 1], gp[l])
    return A, M, fp


def test_every_A_is_an_outer_product_of_a_and_M():
    rng = np.random.default_rng(0)
    for hidden in range(4):
        net = random_net(rng, hidden, "sigmoid")
        x, _ = random_batch(rng, net, 4)
        A, M, fp = all_A_and_M(net, x)
        for (k, _l), A_kl in A.items():
            # A[q, b, j, i] = A^{l,q}_k[i, j] of sample b = a^k[b, i] * M[q, b, j]
            outer = M[k, _l][:, :, :, None] * fp.a[k][None, :, None, :]
            np.testing.assert_allclose(A_kl, outer, rtol=1e-12, atol=1e-15)


def test_M_is_the_jacobian_of_a_l_with_respect_to_h_k_plus_1():
    """M^l_k[q, j] = da^l_q / dh^(k+1)_j, checked by perturbing h^(k+1)_j directly."""
    rng = np.random.default_rng(1)
    net = random_net(rng, 2, "tanh")
    x, _ = random_batch(rng, net, 1)
    _, M, fp = all_A_and_M(net, x)
    eps = 1e-6
    k, L = 0, net.L
    h = fp.h[k + 1][0].copy()

    def a_L_from_h(h_k1):
        a = np.append(net.g[k + 1](h_k1), 1.0)
        for l in range(k + 2, L + 1):
            a = np.append(net.g[l](a @ net.weights[l - 1]), 1.0)
        return a[:-1]

    for j in range(net.sizes[k + 1]):
        d = np.zeros_like(h)
        d[j] = eps
        fd = (a_L_from_h(h + d) - a_L_from_h(h - d)) / (2 * eps)
        np.testing.assert_allclose(M[k, L][:, 0, j], fd, rtol=1e-6, atol=1e-10)


def test_equation_6_applied_to_4_gives_5():
    """(5) is the first step of (6): the notes' k = l-2 case is not a new rule."""
    rng = np.random.default_rng(2)
    net = random_net(rng, 1, "sigmoid")
    x, _ = random_batch(rng, net, 3)
    fp = net.forward_pass(x)
    gp = [None] + [fp.gprime(l) for l in range(1, net.L + 1)]
    A4 = matrix.eq4_A(fp.a[0], gp[1])
    np.testing.assert_allclose(
        matrix.eq6_A(A4, net.weights[1], gp[2]),
        matrix.eq5_A(fp.a[0], gp[1], net.weights[1], gp[2]),
        rtol=1e-12,
        atol=1e-15,
    )
