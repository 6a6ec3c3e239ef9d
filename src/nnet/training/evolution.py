"""Training without gradients: a genetic algorithm and evolution strategies.

The notes' author also trained his network with a genetic algorithm and never passed 25 %
on MNIST. Both trainers here are kept as fair baselines for backpropagation: they run on the
same network, data, metrics and model files, and differ only in how one mini-batch changes
the weights.

- :class:`GeneticUpdate`: a population of weight vectors; fitness = minus the batch loss;
  roulette-wheel selection, uniform crossover, Gaussian mutation, elitism.
- :class:`EvolutionUpdate`: OpenAI's evolution strategies (Salimans et al. 2017): antithetic
  Gaussian perturbations of the weights, rank-normalized fitness, and the resulting estimate
  of the gradient handed to the same optimizers as backprop (SGD, Adam).

Both are updates of the one batch loop (:class:`nnet.training.loop.Trainer`): one
*generation* per mini-batch of the shuffled training set, so an epoch is still one pass over
the data, and the evaluation, history rows, best-weights tracking, Ctrl-C, the progress bar,
metrics and model files all work unchanged. ``train_loss``/``train_accuracy`` are those of
the current network on each batch (GA: the generation's best member; ES: the centre
weights), and ``engine_seconds`` is the time spent evaluating the population.

Population layout
-----------------
A population of P members is one C-contiguous array ``W_pop`` of shape (P, n_params): row
p is member p's weights w^0, w^1, ..., w^(L-1) flattened in that order (each w^k row-major,
bias row last, as in ``net.weights``). :func:`layer_stacks` views it, without copying, as
one (P, #k + 1, #(k+1)) stack per layer; :func:`flatten` and :func:`unflatten` convert one
member. :func:`population_forward` evaluates all P members on a batch at once: the first
layer, by far the widest (784 inputs), as ONE matrix product of the batch (B, #0 + 1) with
the members' w^0 side by side (#0 + 1, P * #1); the later layers with ``np.matmul`` over the
population axis. No Python loop runs over members on the hot path.

Randomness
----------
Every random number (the shuffling, the initial population, selection, crossover, mutation,
perturbations) comes from the trainer's generator ``rng`` (shared with the update), in a
fixed order, so the same seed gives bit-identical weights (on the same machine and BLAS).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nnet.core.init import INITS
from nnet.core.network import ForwardPass, Network
from nnet.errors import NnetError
from nnet.training.loop import LearningRate, Tally
from nnet.training.optim import Optimizer

Array = np.ndarray

# ----------------------------------------------------------------------------- layout


def flatten(weights: Sequence[Array]) -> Array:
    """One member's weights w^0 ... w^(L-1) as one vector (n_params,)."""
    return np.concatenate([np.ravel(w) for w in weights])


def layer_stacks(net: Network, W_pop: Array) -> list[Array]:
    """The population (P, n_params) as one (P, #k + 1, #(k+1)) view per layer."""
    P = W_pop.shape[0]
    out, start = [], 0
    for r, c in (w.shape for w in net.weights):
        out.append(W_pop[:, start : start + r * c].reshape(P, r, c))
        start += r * c
    return out


def unflatten(vector: Array, net: Network) -> list[Array]:
    """A vector (n_params,) as arrays shaped like ``net.weights`` (views, no copy)."""
    return [stack[0] for stack in layer_stacks(net, vector[np.newaxis])]


def _check_population(net: Network, W_pop: Any) -> list[Array]:
    if isinstance(W_pop, np.ndarray) and W_pop.ndim == 2:
        if W_pop.shape[1] != net.n_params or W_pop.shape[0] < 1:
            raise NnetError(f"a population needs shape (P, {net.n_params}); got {W_pop.shape}.")
        return layer_stacks(net, np.ascontiguousarray(W_pop, dtype=net.dtype))
    stacks = [np.asarray(w, dtype=net.dtype) for w in W_pop]
    P = stacks[0].shape[0] if stacks and stacks[0].ndim == 3 else 0
    if [s.shape for s in stacks] != [(P, *w.shape) for w in net.weights]:
        raise NnetError(
            f"a population needs shape (P, {net.n_params}) or one (P, rows, columns) stack "
            f"per layer shaped {[w.shape for w in net.weights]}; got {[s.shape for s in stacks]}."
        )
    return stacks


def _forward_stacks(net: Network, stacks: list[Array], x1: Array) -> Array:
    """Outputs (P, B, #L) of the members ``stacks`` on x1 (B, #0 + 1), inputs and bias."""
    (P, r0, c0), B = stacks[0].shape, x1.shape[0]
    # w^0 of every member side by side: (#0 + 1, P * #1), then one GEMM for the whole
    # population; h[b, p * #1 + j] = h^1_j of member p on sample b.
    W0 = np.ascontiguousarray(stacks[0].transpose(1, 0, 2)).reshape(r0, P * c0)
    h = (x1 @ W0).reshape(B, P, c0).transpose(1, 0, 2)  # (P, B, #1), a view
    a = np.empty((P, B, c0), dtype=net.dtype)
    net.g[1](h, out=a)  # type: ignore[misc]
    for l in range(2, net.L + 1):
        w = stacks[l - 1]
        h = np.matmul(a, w[:, :-1, :])  # (P, B, #l): the weights of each member
        h += w[:, -1:, :]  # the bias row (bias neuron a^(l-1) = 1)
        a = net.g[l](h, out=h)  # type: ignore[misc]
    return a


def population_forward(net: Network, W_pop: Array | Sequence[Array], x: Any) -> Array:
    """The outputs (P, B, #L) of P weight sets on a batch x (B, #0), all at once.

    ``W_pop`` is (P, n_params) or one (P, #k + 1, #(k+1)) stack per layer. Member p's
    outputs equal ``net.forward(x)`` with ``net.weights`` set to member p (up to rounding);
    ``net`` itself is not changed.
    """
    stacks = _check_population(net, W_pop)
    x = net.check_x(x)
    x1 = np.concatenate([x, np.ones((x.shape[0], 1), dtype=net.dtype)], axis=1)
    return _forward_stacks(net, stacks, x1)


def member_losses(net: Network, O: Array, t: Array) -> Array:
    """The batch mean of E of every member, (P,) float64, from outputs O (P, B, #L)."""
    P, B, q = O.shape
    tiled = np.broadcast_to(t, (P, B, q)).reshape(P * B, q)
    E = net.loss.value(O.reshape(P * B, q), tiled).reshape(P, B)
    return np.mean(E, axis=1, dtype=np.float64)


def centered_ranks(values: Array) -> Array:
    """Ranks of ``values`` scaled to [-0.5, 0.5] (smallest -0.5, largest 0.5), float64.

    Ties are broken by position (a stable sort), so the result is deterministic.
    """
    values = np.asarray(values)
    n = values.size
    ranks = np.empty(n, dtype=np.float64)
    ranks[np.argsort(values, kind="stable")] = np.arange(n, dtype=np.float64)
    return ranks / max(n - 1, 1) - 0.5


def es_gradient(
    net: Network, x: Any, t: Any, *, pairs: int, sigma: float, rng: np.random.Generator
) -> tuple[list[Array], Array]:
    """The estimate :class:`EvolutionUpdate` makes of the gradient of the batch mean of E
    at ``net.weights`` (without its centre member), and the losses of the 2 ``pairs``
    perturbed members: exposed to compare it with the true gradient (``nnet.gradients``)."""
    x = net.check_x(x)
    t = net.check_t(t, x.shape[0])
    theta = flatten(net.weights)
    eps = rng.standard_normal((pairs, theta.size), dtype=net.dtype)
    W_pop = _perturbed(theta, eps, sigma, centre=False)
    losses = member_losses(net, population_forward(net, W_pop, x), t)
    return unflatten(_estimate(losses, eps, sigma), net), losses


def _perturbed(theta: Array, eps: Array, sigma: float, *, centre: bool) -> Array:
    """[theta (if centre)], theta + sigma eps_1..n, theta - sigma eps_1..n as (P, n)."""
    n, c = eps.shape[0], int(centre)
    W_pop = np.empty((c + 2 * n, theta.size), dtype=theta.dtype)
    if centre:
        W_pop[0] = theta
    step = eps * theta.dtype.type(sigma)
    np.add(theta, step, out=W_pop[c : c + n])
    np.subtract(theta, step, out=W_pop[c + n :])
    return W_pop


def _estimate(losses: Array, eps: Array, sigma: float) -> Array:
    """The estimate g of :class:`EvolutionUpdate` (step 4) from the 2n losses of
    :func:`_perturbed`'s members (plus half, then minus half)."""
    n = eps.shape[0]
    finite = np.where(np.isfinite(losses), losses, np.inf)  # a NaN loss ranks last
    r = centered_ranks(-finite)
    weights = (r[:n] - r[n:]).astype(eps.dtype)
    return (weights @ eps) * eps.dtype.type(-1.0 / (2 * n * sigma))


# ----------------------------------------------------------------------------- updates

# The most memory one copy of a population may take: a generation makes a few copies.
MAX_POPULATION_BYTES = 1 << 28


def check_population_size(net: Network, members: int) -> None:
    size = members * net.n_params * net.dtype.itemsize
    if size > MAX_POPULATION_BYTES:
        raise NnetError(
            f"a population of {members} networks of {net.n_params:,} weights "
            f"takes {size / 2**30:.1f} GiB, and a generation makes several copies; use a "
            "smaller --population or network (these trainers suit small networks)."
        )


def evaluate_population(net: Network, W_pop: Array, x1: Array, t: Array) -> tuple[Array, Array]:
    """(losses (P,) with NaN as +inf, outputs (P, B, #L)) of ``W_pop`` on x1 and t."""
    O = _forward_stacks(net, layer_stacks(net, W_pop), x1)
    losses = member_losses(net, O, t)
    return np.where(np.isnan(losses), np.inf, losses), O


class GeneticUpdate:
    """A genetic algorithm: each mini-batch is one generation of ``population`` members.

    Per generation, on the batch:

    1. fitness f_p = -(batch mean of E of member p), all members in one batched pass;
    2. the best member becomes ``net.weights`` (its loss and accuracy are the running
       training metrics);
    3. the ``elite`` best members survive unchanged;
    4. every other member of the next generation is a child of two parents drawn by
       roulette wheel (with replacement) with probability proportional to f_p - min f: the
       fitness made non-negative by subtracting the population's worst (which gets
       probability 0; a population of equal fitness is drawn uniformly);
    5. with probability ``crossover_rate`` the child is a uniform crossover of its parents
       (each weight from either with probability 1/2), otherwise a copy of the first;
    6. each weight of the child is mutated with probability ``mutation_rate`` by adding
       N(0, ``mutation_scale``^2).

    The initial population is the network's own initial weights and ``population`` - 1
    more members drawn with the network's initialization (the author's for the notes'
    network) from ``rng``. No optimizer and no learning rate (``lr`` in the history is
    None). The ranges of the settings are checked by :class:`~nnet.training.settings.Settings`.
    """

    optimizer = None
    hint = "try a smaller mutation scale"
    modifies_input = False

    def __init__(
        self,
        net: Network,
        *,
        rng: np.random.Generator,
        population: int,
        mutation_rate: float,
        mutation_scale: float,
        crossover_rate: float,
        elite: int,
    ) -> None:
        if not 0 <= elite < population:
            raise NnetError(f"the elite must be smaller than the population; got {elite}.")
        check_population_size(net, population)
        self.rng = rng
        self.population = int(population)
        self.mutation_rate = float(mutation_rate)
        self.mutation_scale = float(mutation_scale)
        self.crossover_rate = float(crossover_rate)
        self.elite = int(elite)
        self.members = self.initial_population(net)

    def lr_at(self, epoch_progress: float) -> None:
        return None  # no learning rate: the history records null

    def initial_population(self, net: Network) -> Array:
        pop = np.empty((self.population, net.n_params), dtype=net.dtype)
        pop[0] = flatten(net.weights)
        layers = [(INITS[net.inits[k]], net.sizes[k], net.sizes[k + 1]) for k in range(net.L)]
        for p in range(1, self.population):  # once, before training: not the hot path
            pop[p] = flatten([init(m, n, self.rng) for init, m, n in layers])
        return pop

    def step(self, net: Network, fp: ForwardPass, t: Array, lr: float | None, tally: Tally) -> None:
        t0 = time.perf_counter()
        losses, O = evaluate_population(net, self.members, fp.a[0], t)
        best = int(np.argmin(losses))  # the first of equals
        tally(O[best], float(losses[best]) * fp.B, time.perf_counter() - t0)
        for w, member in zip(net.weights, unflatten(self.members[best], net), strict=True):
            w[...] = member
        self.members = self._breed(losses)

    def _breed(self, losses: Array) -> Array:
        rng, pop, P, e = self.rng, self.members, self.population, self.elite
        n, children = pop.shape[1], P - e
        # roulette wheel: probability proportional to the fitness minus the worst fitness
        fitness = -losses
        finite = np.isfinite(fitness)
        weight = np.where(finite, fitness - (fitness[finite].min() if finite.any() else 0), 0)
        total = weight.sum()
        prob = weight / total if total > 0 else np.full(P, 1.0 / P)
        parents = rng.choice(P, size=(children, 2), p=prob)
        cross = np.flatnonzero(rng.random(children) < self.crossover_rate)
        new = np.empty_like(pop)
        new[:e] = pop[np.argsort(losses, kind="stable")[:e]]  # the elite, unchanged
        kids = new[e:]
        kids[...] = pop[parents[:, 0]]
        if cross.size:
            # uniform crossover: one random bit per weight (8 per random byte) says whether
            # it comes from the second parent; selected bitwise, a ^ ((a ^ b) & mask)
            bits = rng.integers(0, 256, size=(cross.size, -(-n // 8)), dtype=np.uint8)
            mask = np.unpackbits(bits, axis=1, count=n).view(np.int8)
            unsigned = f"u{pop.itemsize}"
            mask = np.negative(mask, dtype=f"i{pop.itemsize}").view(unsigned)  # 0 or all ones
            a, b = kids[cross].view(unsigned), pop[parents[cross, 1]].view(unsigned)
            kids[cross] = (a ^ ((a ^ b) & mask)).view(pop.dtype)
        # Gaussian mutation of each weight with probability mutation_rate
        where = bernoulli_positions(rng, kids.size, self.mutation_rate)
        noise = rng.standard_normal(where.size, dtype=pop.dtype)
        kids.reshape(-1)[where] += noise * pop.dtype.type(self.mutation_scale)
        return new


def bernoulli_positions(rng: np.random.Generator, n: int, rate: float) -> Array:
    """The positions 0 <= i < n where independent Bernoulli(``rate``) trials succeed, in
    increasing order: drawn as the gaps between successes (geometric), which costs one
    random number per success rather than one per trial."""
    if rate >= 1:
        return np.arange(n)
    parts, last = [], -1
    while True:
        expect = (n - 1 - last) * rate
        pos = last + np.cumsum(rng.geometric(rate, size=int(expect + 6 * expect**0.5 + 16)))
        if pos[-1] >= n:
            parts.append(pos[pos < n])
            return np.concatenate(parts)
        parts.append(pos)
        last = int(pos[-1])


class EvolutionUpdate:
    """OpenAI evolution strategies (Salimans et al. 2017) feeding a gradient optimizer.

    Per mini-batch, with centre weights theta = ``net.weights`` and n = ``population`` / 2:

    1. draw eps_1 ... eps_n ~ N(0, I) (one entry per weight);
    2. evaluate theta and the 2n antithetic members theta +- sigma eps_i on the batch in one
       batched pass (theta's loss and accuracy are the running training metrics);
    3. replace the 2n fitnesses (-loss) by their centred ranks r in [-0.5, 0.5], a NaN
       loss ranking last;
    4. g = -(1/(2 n sigma)) sum_i (r+_i - r-_i) eps_i estimates (up to a positive scale) the
       gradient of the loss;
    5. ``optimizer.step(net.weights, g, lr)``: the same optimizers as backprop (with their
       weight decay); Adam suits the rank-normalized scale of g.
    """

    hint = "try a smaller learning rate or sigma"
    modifies_input = False

    def __init__(
        self,
        net: Network,
        optimizer: Optimizer,
        *,
        rng: np.random.Generator,
        lr: LearningRate,
        population: int,
        sigma: float,
    ) -> None:
        if population < 2 or population % 2:
            raise NnetError(f"evolution strategies need an even population; got {population}.")
        check_population_size(net, population + 1)
        self.optimizer = optimizer
        self.rng = rng
        self.lr = lr
        self.pairs = int(population) // 2
        self.sigma = float(sigma)

    def lr_at(self, epoch_progress: float) -> float:
        return float(self.lr(epoch_progress) if callable(self.lr) else self.lr)

    def step(self, net: Network, fp: ForwardPass, t: Array, lr: float | None, tally: Tally) -> None:
        t0 = time.perf_counter()
        theta = flatten(net.weights)
        eps = self.rng.standard_normal((self.pairs, theta.size), dtype=net.dtype)
        W_pop = _perturbed(theta, eps, self.sigma, centre=True)
        losses, O = evaluate_population(net, W_pop, fp.a[0], t)
        tally(O[0], float(losses[0]) * fp.B, time.perf_counter() - t0)
        g = _estimate(losses[1:], eps, self.sigma)
        self.optimizer.step(net.weights, unflatten(g, net), lr)  # type: ignore[arg-type]
