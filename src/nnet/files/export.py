"""A network written for other runtimes: an ONNX file (:func:`to_onnx`) or a PyTorch module
(:func:`to_torch`), each computing exactly ``net.forward``.

Layer l of the notes, h^l = a^(l-1) w^(l-1) (bias row last) and a^l = g(h^l), becomes one
affine map (ONNX ``Gemm``, ``torch.nn.Linear`` with weight = w[:-1].T, bias = w[-1]) and the
activation: ``Sigmoid``, ``Tanh``, ``Relu``, ``LeakyRelu`` (slope ``LEAKY_SLOPE``), ``Elu``
(alpha 1) or nothing for the identity.

Decisions:

- Both exports are float32, whatever the network's dtype (float64 weights are rounded once,
  after any scaling is folded in float64): float32 is what runtimes run fastest and support
  everywhere. ``module.double()`` gives a float64 PyTorch module.
- The ONNX graph has one input ``inputs``, float32 (batch, #0) with a symbolic batch
  dimension, and two outputs, both (batch, #L): ``outputs`` = ``net.forward`` (for
  cross_entropy, the logits) and ``probabilities`` = ``net.loss.probabilities`` (the softmax
  for cross_entropy; for mse the outputs clipped at 0 and scaled to sum to 1, uniform where
  they are all 0 -- meaningless for a regression, which simply ignores it). The PyTorch module
  returns ``outputs`` only (``torch.softmax(module(x), 1)`` is one call away).
- Feature scaling x' = (x - mean) / scale, given as ``scaling={"mean": ..., "scale": ...}``
  or, when ``scaling`` is None, read from ``net.meta["scaling"]``, is folded exactly into the
  first layer: w0' = w0[:-1] / scale[:, None], b' = b - (mean / scale) @ w0[:-1]. The
  exported model then takes raw features.
- opset 17, IR version 8: read by ONNX Runtime >= 1.13 and most other runtimes.

onnx and torch are optional (``pip install 'nnet[export]'``, ``pip install torch``) and
imported only when an export is asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from nnet.core.activations import LEAKY_SLOPE
from nnet.core.network import Network
from nnet.errors import NnetError
from nnet.fileio import atomic_write, check_output
from nnet.version import __version__

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17: older runtimes refuse newer IR versions
ELU_ALPHA = 1.0  # nnet's ELU (core/activations.py) has alpha = 1
MAX_ONNX_BYTES = 2**31 - 2**20  # protobuf cannot serialize a message of 2 GiB or more

# nnet activation -> (ONNX op, its attributes); identity has no node
ONNX_ACTIVATIONS: dict[str, tuple[str, dict[str, float]] | None] = {
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
    "elu": ("Elu", {"alpha": ELU_ALPHA}),
    "identity": None,
}


def check_scaling(net: Network, scaling: Mapping[str, Any] | None) -> dict[str, np.ndarray] | None:
    """``scaling`` (or, if None, ``net.meta["scaling"]``) as float64 arrays ``mean`` and
    ``scale`` of shape (#0,); None when there is none. NnetError if it is malformed."""
    if scaling is None:
        scaling = net.meta.get("scaling")
        if scaling is None:
            return None
    n = net.sizes[0]
    if not isinstance(scaling, Mapping) or not {"mean", "scale"} <= set(scaling):
        raise NnetError(
            'scaling must be a dict {"mean": [...], "scale": [...]} (x\' = (x - mean) / scale);'
            f" got {type(scaling).__name__}."
        )
    out = {}
    for key in ("mean", "scale"):
        try:
            arr = np.asarray(scaling[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise NnetError(f"scaling {key} must be {n} numbers.") from None
        if arr.shape != (n,):
            raise NnetError(f"scaling {key} must be {n} numbers (one per input); got shape "
                            f"{arr.shape}.")  # fmt: skip
        if not np.isfinite(arr).all():
            raise NnetError(f"scaling {key} contains NaN or infinite values.")
        out[key] = arr
    if (out["scale"] == 0).any():
        raise NnetError("scaling scale contains zeros; every scale must be nonzero.")
    return out


def affine_layers(
    net: Network, scaling: Mapping[str, Any] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W, b) of each layer in float32, h^l = a^(l-1) @ W + b, with W = w[:-1] (#(l-1), #l),
    b = w[-1]; the scaling (see :func:`check_scaling`) folded into the first layer."""
    sc = check_scaling(net, scaling)
    layers = []
    for k, w in enumerate(net.weights):
        W, b = w[:-1].astype(np.float64), w[-1].astype(np.float64)
        if k == 0 and sc is not None:
            # W (x - mean) / scale + b = x (W / scale) + b - (mean / scale) W
            b = b - (sc["mean"] / sc["scale"]) @ W
            W = W / sc["scale"][:, None]
        with np.errstate(over="ignore"):  # checked just below
            W32, b32 = W.astype(np.float32), b.astype(np.float32)
        if not (np.isfinite(W32).all() and np.isfinite(b32).all()):
            raise NnetError("the scaling makes the first layer's weights overflow float32; "
                            "check its scale for tiny values.")  # fmt: skip
        layers.append((W32, b32))
    return layers


def to_onnx(
    net: Network, path: str | os.PathLike[str], *, scaling: Mapping[str, Any] | None = None
) -> None:
    """Write ``net`` as an ONNX model to ``path`` (atomically): input ``inputs`` float32
    (batch, #0), outputs ``outputs`` (= ``net.forward``) and ``probabilities``
    (= ``net.loss.probabilities``), with ``scaling`` (or ``net.meta["scaling"]``) folded
    into the first layer. See the module's docstring for the decisions."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise NnetError("ONNX export needs the onnx package: pip install 'nnet[export]'.") from None
    path = check_output(path)
    layers = affine_layers(net, scaling)
    if sum(W.nbytes + b.nbytes for W, b in layers) > MAX_ONNX_BYTES:
        raise NnetError("the network is too large for one ONNX file (2 GiB at most).")

    nodes, inits = [], []
    x = "inputs"
    for l, (W, b) in enumerate(layers, start=1):
        inits += [numpy_helper.from_array(W, f"w{l - 1}"), numpy_helper.from_array(b, f"b{l - 1}")]
        last = l == net.L
        op = ONNX_ACTIVATIONS[net.activations[l - 1]]
        h = "outputs" if last and op is None else f"h{l}"
        nodes.append(helper.make_node("Gemm", [x, f"w{l - 1}", f"b{l - 1}"], [h], name=f"layer{l}"))
        x = h
        if op is not None:
            a = "outputs" if last else f"a{l}"
            nodes.append(helper.make_node(op[0], [h], [a], name=f"g{l}", **op[1]))
            x = a
    nodes += probability_nodes(net, helper, numpy_helper, inits)

    n_in, n_out = net.sizes[0], net.sizes[-1]
    graph = helper.make_graph(
        nodes,
        "nnet",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, ["batch", n_in])],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", n_out]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nnet",
        producer_version=__version__,
        doc_string=f"{net!r} exported by nnet {__version__}",
    )
    model.ir_version = IR_VERSION
    description = {"sizes": net.sizes, "activations": net.activations, "loss": net.loss.name}
    for key in ("task", "classes"):
        if net.meta.get(key) is not None:
            description[key] = net.meta[key]
    helper.set_model_props(model, {f"nnet_{k}": json.dumps(v) for k, v in description.items()})
    onnx.checker.check_model(model, full_check=True)
    with atomic_write(path) as f:
        f.write(model.SerializeToString())


def probability_nodes(net: Network, helper: Any, numpy_helper: Any, inits: list) -> list:
    """The nodes from ``outputs`` to ``probabilities``: ``net.loss.probabilities``."""
    if net.loss.name == "cross_entropy":
        return [helper.make_node("Softmax", ["outputs"], ["probabilities"], axis=-1)]
    # MSE.probabilities: p = max(O, 0); p / sum(p) where the sum is > 0, else uniform
    n_out = net.sizes[-1]
    inits += [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axes"),
        numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"),
        numpy_helper.from_array(np.full((1, n_out), 1.0 / n_out, np.float32), "uniform"),
    ]
    return [
        helper.make_node("Relu", ["outputs"], ["p_clipped"]),
        helper.make_node("ReduceSum", ["p_clipped", "sum_axes"], ["p_total"], keepdims=1),
        helper.make_node("Greater", ["p_total", "zero"], ["p_positive"]),
        helper.make_node("Div", ["p_clipped", "p_total"], ["p_scaled"]),
        helper.make_node("Where", ["p_positive", "p_scaled", "uniform"], ["probabilities"]),
    ]


def to_torch(net: Network, *, scaling: Mapping[str, Any] | None = None) -> Any:
    """A float32 ``torch.nn.Sequential`` computing ``net.forward`` (the logits, for
    cross_entropy), with ``scaling`` (or ``net.meta["scaling"]``) folded into the first
    ``nn.Linear``; in evaluation mode."""
    try:
        import torch
        from torch import nn
    except ImportError:
        raise NnetError("PyTorch export needs torch: pip install torch.") from None
    modules = {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(LEAKY_SLOPE),
        "elu": lambda: nn.ELU(ELU_ALPHA),
        "identity": nn.Identity,
    }
    seq = []
    for (W, b), name in zip(affine_layers(net, scaling), net.activations, strict=True):
        linear = nn.Linear(W.shape[0], W.shape[1], dtype=torch.float32)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        seq += [linear, modules[name]()]
    return nn.Sequential(*seq).eval()
