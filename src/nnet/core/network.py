"""The network of the notes (Definitions): layers, weights with a bias row, forward pass.

Notation (notes -> code):

- layer sizes #0 ... #L            -> ``net.sizes[0] ... net.sizes[L]``
- w^k_{ij}, weight from a^k_i to a^{k+1}_j, k = 0 ... L-1
                                   -> ``net.weights[k][i, j]``, shape (#k + 1, #(k+1));
                                      the last row i = #k is the bias row (bias neuron a^k_{#k} = 1)
- h^l_j = sum_{i=0}^{#(l-1)} a^{l-1}_i w^{l-1}_{ij}
                                   -> ``fp.h[l][b, j]`` for sample b of the batch
- a^l_j = g(h^l_j), a^0 = x, a^l_{#l} = 1
                                   -> ``fp.a[l][b, j]``, shape (B, #l + 1), last column all 1
- O_q = a^L_q                      -> ``fp.O[b, q]`` = ``net.forward(x)[b, q]``

where ``fp = net.forward_pass(x)`` is a :class:`ForwardPass`: the forward pass is a value
that is returned (or written into a workspace the caller owns), never state kept on the
network. A :class:`Network` holds only what defines the function — sizes, activations,
loss, dtype, weights — so one network can be used from several threads at once.

Where code indexing departs from the notes: arrays gain a leading batch index b, and the
lists ``h`` and ``a`` are indexed by layer so that ``h[0]`` (the input has no
pre-activation) is ``None``. The notes' own definition writes h^k with w^k; the weight
into layer k is w^(k-1) (see docs/derivation.md, slip S1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from nnet.core.activations import Activation, get_activation
from nnet.core.init import DEFAULT_INIT_FOR_ACTIVATION, INITS, check_init
from nnet.core.loss import get_loss
from nnet.errors import NnetError

Array = np.ndarray

DTYPES = ("float32", "float64")

# Dropout masks for layers 0 ... L-1 (None: no dropout on that layer, or none at all).
Masks = Sequence[Array | None] | None
# Arrays shaped like the weights for an engine to write a gradient into (None: new ones).
Grads = list[Array] | None


def check_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype for ``dtype`` if it is float32 or float64; ValueError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise NnetError(f"unsupported dtype {dtype!r}: expected float32 or float64.")
    return dt


def check_sizes(sizes: Sequence[int]) -> list[int]:
    """[#0, ..., #L] as ints; ValueError unless there are >= 2 layers of width >= 1."""
    try:
        out = [int(s) for s in sizes]
        ok = all(float(s) == int(s) and not isinstance(s, bool) for s in sizes)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise NnetError(f"sizes must be a list of integers like [784, 16, 16, 10]; got {sizes!r}.")
    if len(out) < 2:
        raise NnetError(f"sizes must list at least two layers (input and output); got {out}.")
    if min(out) < 1:
        raise NnetError(f"every layer needs at least one neuron; got sizes {out}.")
    return out


@dataclass(frozen=True)
class ForwardPass:
    """The values of one forward pass of a batch of B samples, in the notes' names.

    ``a[l]`` (B, #l + 1) holds a^l with its bias column of ones, ``h[l]`` (B, #l) holds h^l
    (``h[0]`` is None), ``masks`` the dropout masks the pass applied (None: none), ``g`` the
    activations g[l] that produced it, and ``work[l]`` (B, #l) is scratch space that the pass
    is done with once a^l is written (an engine may put delta^l there). Made empty by
    :meth:`Network.workspace` and filled by :meth:`Network.propagate`; a caller that keeps
    one workspace for many batches allocates nothing per batch.
    """

    g: Sequence[Activation | None]
    h: list[Array | None]
    a: list[Array]
    work: list[Array]
    masks: Masks = None
    fused: ModuleType | None = None  # nnet.kernels for the fused loops, None: NumPy's

    @property
    def B(self) -> int:
        """Samples in the batch."""
        return self.a[0].shape[0]

    @property
    def L(self) -> int:
        return len(self.a) - 1

    @property
    def x(self) -> Array:
        """a^0 without its bias column: the input, (B, #0); a batch may be written here."""
        return self.a[0][:, :-1]

    @property
    def O(self) -> Array:  # noqa: E743 (the notes' name for the outputs)
        """The outputs O = a^L without the bias column, (B, #L)."""
        return self.a[-1][:, :-1]

    def rows(self, B: int) -> ForwardPass:
        """The first B rows of this workspace, as a workspace of its own (views, no copy):
        the last, smaller batch of an epoch uses the arrays of the full ones."""
        if B == self.B:
            return self
        return ForwardPass(
            self.g,
            [None if h is None else h[:B] for h in self.h],
            [a[:B] for a in self.a],
            [z[:B] for z in self.work],
            fused=self.fused,
        )

    def mask(self, l: int) -> Array | None:
        """The dropout mask of layer l (0 <= l < L), or None."""
        return self.masks[l] if self.masks is not None and l < self.L else None

    def gprime(self, l: int) -> Array:
        """g'(h^l) of this pass, (B, #l), for l = 1 ... L.

        With dropout on, it is the derivative of the *dropped* activation, g'(h^l) times
        the mask of layer l, so every engine differentiates the same function.
        """
        g, h, m = self.g[l], self.h[l], self.mask(l)
        assert g is not None and h is not None, "gprime needs 1 <= l <= L"
        if m is None:
            return g.prime(h, self.a[l][:, :-1])
        return g.prime(h) * m  # a^l holds g(h^l) * m: recompute g(h^l) where m is 0

    def times_gprime(self, l: int, delta: Array) -> Array:
        """delta *= g'(h^l) in place (the mask too, with dropout); returns delta."""
        g, h = self.g[l], self.h[l]
        assert g is not None and h is not None, "times_gprime needs 1 <= l <= L"
        if self.fused is not None and self.fused.times_gprime(
            g.name, delta, h, self.a[l], self.mask(l)
        ):
            return delta  # the same numbers, in one pass (nnet.kernels)
        if self.mask(l) is None:
            return g.times_prime(delta, h, self.a[l][:, :-1])
        delta *= self.gprime(l)
        return delta


class Network:
    """A fully connected feedforward network exactly as the notes define it.

    Parameters
    ----------
    sizes
        [#0, ..., #L], e.g. [784, 16, 16, 10].
    activation
        One name for every layer 1..L, or a list of L names (one per layer 1..L).
        Known: sigmoid (the notes'), tanh, relu, leaky_relu, elu, identity. With a single
        name and a loss that owns the output non-linearity (cross_entropy), the output
        layer gets the identity.
    loss
        ``"mse"`` (the notes' E) or ``"cross_entropy"`` (softmax on the logits).
    init
        One initialization name for every layer, a list of L names, or None for the
        customary one of each layer's activation (see :mod:`nnet.core.init`).
    seed
        An int, a ``numpy.random.Generator``, or None (fresh entropy): the only source of
        randomness of the initial weights.
    dtype
        ``"float32"`` or ``"float64"``: of the weights and of every computation.
    weights
        The weights w^0 ... w^(L-1) to use instead of initial ones (shapes and values
        checked; converted to ``dtype``).

    ``meta`` is a dict that model files fill with what they record beside the weights (task,
    dataset, classes, training settings); no computation reads it.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Sequence[str] = "sigmoid",
        *,
        loss: str = "mse",
        init: str | Sequence[str] | None = None,
        seed: int | np.random.Generator | None = None,
        dtype: str | np.dtype = "float32",
        weights: Sequence[Array] | None = None,
    ) -> None:
        self.sizes = check_sizes(sizes)
        self.dtype = check_dtype(dtype)
        self.loss = get_loss(loss)
        L = self.L
        names = self._activation_names(activation, L)
        out_act = self.loss.output_activation
        if isinstance(activation, str) and out_act is not None:
            names[-1] = out_act  # one name means "the hidden layers"; the loss owns the output
        # g[l] is the activation of layer l; the input layer 0 has none.
        self.g: list[Activation | None] = [None] + [get_activation(n) for n in names]
        if out_act is not None and names[-1] != out_act:
            raise NnetError(
                f"loss {self.loss.name} needs the {out_act} activation on the output layer "
                f"(the softmax is part of the loss); got {names[-1]}."
            )
        if init is None:
            inits = [DEFAULT_INIT_FOR_ACTIVATION[n] for n in names]
        elif isinstance(init, str):
            inits = [check_init(init)] * L
        else:
            inits = [check_init(n) for n in init]
            if len(inits) != L:
                raise NnetError(f"init needs one name per layer 1..{L}; got {len(inits)} names.")
        self.inits = inits
        self.weights: list[Array]  # weights[k] = w^k, shape (#k + 1, #(k+1)); last row = bias
        if weights is None:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            self.weights = [
                INITS[inits[k]](self.sizes[k], self.sizes[k + 1], rng).astype(self.dtype)
                for k in range(L)
            ]
        else:
            self.weights = self._checked_weights(weights)
        self.meta: dict[str, Any] = {}

    @staticmethod
    def _activation_names(activation: str | Sequence[str], L: int) -> list[str]:
        if isinstance(activation, str):
            get_activation(activation)
            return [activation] * L
        names = list(activation)
        if len(names) != L:
            raise NnetError(
                f"activation needs one name or one per layer 1..{L}; got {len(names)} names."
            )
        for n in names:
            get_activation(n)
        return names

    def _checked_weights(self, weights: Sequence[Array]) -> list[Array]:
        shapes = [(self.sizes[k] + 1, self.sizes[k + 1]) for k in range(self.L)]
        got = [np.shape(w) for w in weights]
        if got != shapes:
            raise NnetError(f"sizes {self.sizes} need weights shaped {shapes}; got {got}.")
        return [self._real_finite(np.array(w), f"w{k}") for k, w in enumerate(weights)]

    # ----------------------------------------------------------------- properties
    @property
    def L(self) -> int:
        """Index of the output layer (there are L + 1 layers, 0 ... L)."""
        return len(self.sizes) - 1

    @property
    def activations(self) -> list[str]:
        """Activation names of layers 1 ... L."""
        return [g.name for g in self.g[1:]]  # type: ignore[union-attr]

    @property
    def n_params(self) -> int:
        return sum(w.size for w in self.weights)

    def __repr__(self) -> str:
        acts = self.activations
        act = acts[0] if len(set(acts)) == 1 else acts
        return (
            f"Network({self.sizes}, activation={act!r}, loss={self.loss.name!r}, "
            f"dtype={self.dtype.name!r})"
        )

    # ----------------------------------------------------------------- checks
    def check_x(self, x: Any) -> Array:
        """``x`` as a (B, #0) array of the network's dtype; NnetError naming the problem."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0] or x.shape[0] < 1:
            hint = " (use x[None, :] for one sample)" if x.ndim == 1 else ""
            raise NnetError(
                f"inputs must have shape (batch, {self.sizes[0]}) with batch >= 1; "
                f"got shape {x.shape}{hint}."
            )
        return self._real_finite(x, "inputs")

    def check_t(self, t: Any, batch: int) -> Array:
        """Targets as a (B, #L) array of the network's dtype; NnetError naming the problem."""
        t = np.asarray(t)
        if t.shape != (batch, self.sizes[-1]):
            raise NnetError(
                f"targets must have shape ({batch}, {self.sizes[-1]}) to match the inputs "
                f"and the output layer; got shape {t.shape}."
            )
        return self._real_finite(t, "targets")

    def _real_finite(self, arr: Array, what: str) -> Array:
        """``arr`` in the network's dtype, if it holds real, finite numbers only."""
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise NnetError(f"{what} must be real numbers; got dtype {arr.dtype}.")
        arr = arr.astype(self.dtype, copy=False)
        if not np.isfinite(arr).all():
            raise NnetError(f"{what} contain NaN or infinite values; they must all be finite.")
        return arr

    # ----------------------------------------------------------------- forward
    def workspace(self, B: int, *, fused: ModuleType | None = None) -> ForwardPass:
        """Empty arrays for a forward pass of B samples (a^l's bias column already 1).

        ``fused``: the module :mod:`nnet.kernels` to compute the activations and their
        derivatives in fused loops (the same numbers), or None for the NumPy code."""
        a = [np.empty((B, n + 1), dtype=self.dtype) for n in self.sizes]
        for a_l in a:
            a_l[:, -1] = 1.0  # bias extension a^l_{#l} = 1, never overwritten
        h: list[Array | None] = [None] + [np.empty((B, n), self.dtype) for n in self.sizes[1:]]
        # g(h^l) is computed in a contiguous work array, then copied into a^l beside its
        # bias column: multi-pass activations run faster on contiguous memory than on the
        # strided view of a^l (docs/performance.md).
        work = [np.empty((B, n), self.dtype) for n in self.sizes]
        return ForwardPass(self.g, h, a, work, fused=fused)

    def propagate(self, ws: ForwardPass, masks: Masks = None) -> ForwardPass:
        """The forward pass of the input already in ``ws.x``, written into ``ws``.

        ``masks`` (dropout, training only) holds for layers l = 0 ... L-1 either None or a
        (B, #l) array that multiplies a^l (already divided by the keep probability).
        Returns the filled pass (``ws`` itself, with ``masks`` recorded).
        """
        a, h = ws.a, ws.h
        if masks is not None and masks[0] is not None:
            ws.x[...] *= masks[0]
        for l in range(1, self.L + 1):
            np.matmul(a[l - 1], self.weights[l - 1], out=h[l])  # h^l = a^(l-1) w^(l-1)
            g = self.g[l]
            assert g is not None
            m = masks[l] if masks is not None and l < self.L else None
            if ws.fused is not None and ws.fused.activate(g.name, h[l], a[l], m, ws.work[l]):
                continue  # the same numbers as below, in one pass (nnet.kernels)
            a_l = a[l][:, :-1]
            np.copyto(a_l, g(h[l], out=ws.work[l]))  # a^l = g(h^l)
            if m is not None:
                a_l *= m
        masks = None if masks is None else list(masks)
        return ForwardPass(ws.g, h, a, ws.work, masks, fused=ws.fused)

    def forward_pass(
        self, x: Any, *, masks: Masks = None, ws: ForwardPass | None = None
    ) -> ForwardPass:
        """The forward pass of a batch x (B, #0): h, a, g' and masks, as a new value (or
        written into the workspace ``ws`` of B rows)."""
        x = self.check_x(x)
        ws = self.workspace(x.shape[0]) if ws is None else ws.rows(x.shape[0])
        np.copyto(ws.x, x)
        return self.propagate(ws, masks)

    def forward(self, x: Any, *, masks: Masks = None) -> Array:
        """The outputs O = a^L for a batch x of shape (B, #0) (a new array)."""
        return np.ascontiguousarray(self.forward_pass(x, masks=masks).O)

    def predict(self, x: Any) -> Array:
        """The index of the largest output for each sample, shape (B,)."""
        return np.argmax(self.forward(x), axis=1)

    def errors(self, x: Any, t: Any) -> Array:
        """E(x, t) per sample, shape (B,)."""
        O = self.forward(x)
        return self.loss.value(O, self.check_t(t, O.shape[0]))

    def mean_error(self, x: Any, t: Any) -> float:
        """The mean over the batch of E(x, t): what `nnet.gradients` differentiates."""
        return float(np.mean(self.errors(x, t), dtype=np.float64))

    def copy(self, dtype: str | np.dtype | None = None) -> Network:
        """An independent copy (optionally converted to another dtype)."""
        new = Network(
            self.sizes,
            self.activations,
            loss=self.loss.name,
            init=self.inits,
            dtype=self.dtype if dtype is None else dtype,
            weights=self.weights,
        )
        new.meta = dict(self.meta)
        return new
