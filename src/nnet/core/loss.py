"""The error E(x, t) of one sample and its derivative dE/dO with respect to the outputs.

A loss is a small class with three methods (after Nielsen's ``network2.py``): the per-sample
``value``, the per-sample ``dEdO`` that equations (1) and (3) multiply the Jacobian by, and
``probabilities`` for reporting. Every engine only ever sees ``dEdO``, so the notes'
equations (1)/(3) hold for any loss with (2/#L)(O_q - t_q) replaced by dE/dO_q.
"""

from __future__ import annotations

import numpy as np

from nnet.errors import NnetError

Array = np.ndarray


class MSE:
    """The notes' error: E(x, t) = sum_q (O_q - t_q)^2 / #L (definitions; used in (1))."""

    name = "mse"
    output_activation: str | None = None  # any output activation is allowed

    def value(self, O: Array, t: Array) -> Array:
        """E per sample, shape (B,)."""
        d = O - t
        return np.einsum("bq,bq->b", d, d) / O.shape[1]

    def dEdO(self, O: Array, t: Array) -> Array:
        """dE/dO_q = (2/#L)(O_q - t_q), the factor in front of the sum in (1) and (3)."""
        return (2.0 / O.shape[1]) * (O - t)

    def probabilities(self, O: Array) -> Array:
        """The outputs clipped at 0 and scaled to sum to 1 (an MSE network has no softmax)."""
        p = np.maximum(O, 0)
        total = p.sum(axis=1, keepdims=True)
        uniform = np.full_like(p, 1.0 / p.shape[1])
        return np.divide(p, total, out=uniform, where=total > 0)


class CrossEntropy:
    """Softmax cross-entropy on the logits: E = -sum_q t_q log softmax(O)_q.

    The softmax belongs to the loss, not to the network: the output layer must use the
    identity activation, so O = a^L = h^L are the logits. Computed with log-sum-exp, it is
    finite for logits of any size.
    """

    name = "cross_entropy"
    output_activation: str | None = "identity"

    @staticmethod
    def log_softmax(O: Array) -> Array:
        shifted = O - O.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def value(self, O: Array, t: Array) -> Array:
        return -np.einsum("bq,bq->b", t, self.log_softmax(O))

    def dEdO(self, O: Array, t: Array) -> Array:
        """dE/dO_q = softmax(O)_q * sum_r t_r - t_q (= p - t for one-hot targets)."""
        p = self.probabilities(O)
        return p * t.sum(axis=1, keepdims=True) - t

    def probabilities(self, O: Array) -> Array:
        return np.exp(self.log_softmax(O))


LOSSES: dict[str, type[MSE] | type[CrossEntropy]] = {
    "mse": MSE,
    "cross_entropy": CrossEntropy,
}


def get_loss(name: str) -> MSE | CrossEntropy:
    """A new loss object by name; a ValueError lists the known names otherwise."""
    try:
        return LOSSES[name]()
    except (KeyError, TypeError):
        known = ", ".join(LOSSES)
        raise NnetError(f"unknown loss {name!r}: expected one of {known}.") from None
