"""The network of the notes (Definitions): layers, weights with a bias row, forward pass.

Notation (notes -> code):

- layer sizes #0 ... #L            -> ``net.sizes[0] ... net.sizes[L]``
- w^k_{ij}, weight from a^k_i to a^{k+1}_j, k = 0 ... L-1
                                   -> ``net.weights[k][i, j]``, shape (#k + 1, #(k+1));
                                      the last row i = #k is the bias row (bias neuron a^k_{#k} = 1)
- h^l_j = sum_{i=0}^{#(l-1)} a^{l-1}_i w^{l-1}_{ij}
                                   -> ``net.h[l][b, j]`` for sample b of the batch
- a^l_j = g(h^l_j), a^0 = x, a^l_{#l} = 1
                                   -> ``net.a[l][b, j]``, shape (B, #l + 1), last column all 1
- O_q = a^L_q                      -> ``net.forward(x)[b, q]``

Where code indexing departs from the notes: arrays gain a leading batch index b, and the
lists ``h`` and ``a`` are indexed by layer so that ``h[0]`` (the input has no
pre-activation) is ``None``. The notes' own definition writes h^k with w^k; the weight
into layer k is w^(k-1) (see docs/derivation.md, slip S1).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
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
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        # weights[k] = w^k, shape (#k + 1, #(k+1)); last row = bias row.
        self.weights: list[Array] = [
            INITS[inits[k]](self.sizes[k], self.sizes[k + 1], rng).astype(self.dtype)
            for k in range(L)
        ]
        self.h: list[Array | None] = []
        self.a: list[Array] = []
        self.masks: list[Array | None] | None = None
        self._buffer_key: tuple | None = None
        self._buffer: tuple[list[Array], list[Array | None], list[Array]] = ([], [], [])
        # What a model file records beside the weights (task, dataset, training settings).
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
        """``x`` as a (B, #0) array of the network's dtype; ValueError naming the problem."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0] or x.shape[0] < 1:
            hint = " (use x[None, :] for one sample)" if x.ndim == 1 else ""
            raise NnetError(
                f"inputs must have shape (batch, {self.sizes[0]}) with batch >= 1; "
                f"got shape {x.shape}{hint}."
            )
        return self._real_finite(x, "inputs")

    def check_t(self, t: Any, batch: int) -> Array:
        """Targets as a (B, #L) array of the network's dtype; ValueError naming the problem."""
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
    def forward(self, x: Any, *, masks: Masks = None) -> Array:
        """The outputs O = a^L for a batch x of shape (B, #0) (a new array).

        ``net.h`` and ``net.a`` then hold this pass's pre-activations and activations (in
        buffers that the next forward pass reuses). ``masks`` (dropout, training only) holds
        for layers l = 0 ... L-1 either None or a (B, #l) array that multiplies a^l (already
        divided by the keep probability).
        """
        x = self.check_x(x)
        return self._forward(x, masks).copy()

    def _buffers(self, B: int) -> tuple[list[Array], list[Array | None], list[Array]]:
        """The arrays a^l (bias column set to 1) and h^l for a batch of B samples.

        Kept from one call to the next while B, the sizes and the dtype stay the same, so
        training allocates nothing per batch. They belong to the *last* forward pass: the
        next call overwrites them.
        """
        key = (B, self.dtype, tuple(self.sizes))
        if self._buffer_key != key:
            a = [np.empty((B, n + 1), dtype=self.dtype) for n in self.sizes]
            for a_l in a:
                a_l[:, -1] = 1.0  # bias extension a^l_{#l} = 1, never overwritten
            h: list[Array | None] = [None] + [np.empty((B, n), self.dtype) for n in self.sizes[1:]]
            # g(h^l) is computed in a contiguous scratch array, then copied into a^l beside
            # its bias column: multi-pass activations (sigmoid: 4 passes) run twice as fast
            # on contiguous memory as on the strided view of a^l.
            z = [np.empty((B, n), self.dtype) for n in self.sizes]
            self._buffer = (a, h, z)
            self._buffer_key = key
        return self._buffer

    def input_buffer(self, B: int) -> Array:
        """The array a^0, shape (B, #0 + 1), that the next forward pass of B samples reads.

        A caller may write a batch into it directly — its last column must stay 1 (the bias
        neuron) — and pass ``buffer[:, :-1]`` as x: `forward` then skips copying its input.
        The trainer gathers rows of inputs stored with their bias 1 straight into it.
        """
        return self._buffers(B)[0][0]

    def _forward(self, x: Array, masks: Masks = None) -> Array:
        B = x.shape[0]
        L = self.L
        a, h, z = self._buffers(B)
        x0 = a[0][:, :-1]
        if not (x.ctypes.data == x0.ctypes.data and x.strides == x0.strides):
            np.copyto(x0, x)
        if masks is not None and masks[0] is not None:
            x0 *= masks[0]
        for l in range(1, L + 1):
            np.matmul(a[l - 1], self.weights[l - 1], out=h[l])  # h^l = a^(l-1) w^(l-1)
            a_l = a[l][:, :-1]
            g_h = self.g[l](h[l], out=z[l])  # type: ignore[misc]
            np.copyto(a_l, g_h)  # a^l = g(h^l)
            if masks is not None and l < L and masks[l] is not None:
                a_l *= masks[l]
        self.h, self.a = h, a
        self.masks = list(masks) if masks is not None else None
        return a[L][:, :-1]

    def gprime(self, l: int) -> Array:
        """g'(h^l) of the last forward pass, shape (B, #l), for l = 1 ... L.

        With dropout on, it is the derivative of the *dropped* activation, g'(h^l) times
        the mask of layer l, so every engine differentiates the same function.
        """
        g = self.g[l]
        assert g is not None and self.h[l] is not None, "gprime needs 1 <= l <= L after forward"
        a_l = self.a[l][:, :-1]
        m = self.masks[l] if self.masks is not None and l < self.L else None
        if m is None:
            return g.prime(self.h[l], a_l)
        # a^l holds g(h^l) * m: recompute g(h^l) where the mask is 0.
        return g.prime(self.h[l]) * m

    def times_gprime(self, l: int, delta: Array) -> Array:
        """delta *= g'(h^l) in place (the mask too, with dropout); returns delta."""
        g = self.g[l]
        assert g is not None and self.h[l] is not None, "needs 1 <= l <= L after forward"
        m = self.masks[l] if self.masks is not None and l < self.L else None
        if m is None:
            return g.times_prime(delta, self.h[l], self.a[l][:, :-1])
        delta *= self.gprime(l)
        return delta

    def work(self, l: int) -> Array:
        """A (B, #l) array the last forward pass is done with (it held g(h^l)): space for
        an engine to write delta^l into without allocating."""
        return self._buffer[2][l]

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

    def save(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Write the network to a ``.npz`` model file (see :mod:`nnet.files.model_file`)."""
        from nnet.files.model_file import save

        save(self, path, meta)

    def copy(self, dtype: str | np.dtype | None = None) -> Network:
        """An independent copy (optionally converted to another dtype)."""
        new = object.__new__(Network)
        new.__dict__.update(self.__dict__)
        new.dtype = check_dtype(dtype if dtype is not None else self.dtype)
        new.weights = [w.astype(new.dtype, copy=True) for w in self.weights]
        new.h, new.a, new.masks = [], [], None
        new._buffer_key, new._buffer = None, ([], [], [])
        new.meta = dict(self.meta)
        return new
