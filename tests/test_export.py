"""Export: the ONNX graph (run by ONNX Runtime) and the PyTorch module compute net.forward
(and the loss's probabilities) for every activation, loss and scaling, in float32 to 1e-5."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nnet
from nnet.core.activations import ACTIVATIONS
from nnet.errors import NnetError
from nnet.files.export import affine_layers, to_onnx, to_torch

ACTS = list(ACTIVATIONS)
TOL = {"rtol": 1e-5, "atol": 1e-5}

# (hidden activation, output activation, loss): every activation on the hidden layers and,
# with mse, on the output layer; cross_entropy needs the identity there (logits).
CASES = [(h, o, "mse") for h in ACTS for o in ACTS] + [
    (h, "identity", "cross_entropy") for h in ACTS
]


@pytest.fixture
def ort():
    pytest.importorskip("onnx", reason="the onnx package is not installed (nnet[export])")
    return pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (nnet[export])")


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (nnet[bench])")


def make_net(seed: int, hidden: str, output: str, loss: str, dtype: str) -> nnet.Network:
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 9, size=4)]
    net = nnet.Network(sizes, [hidden, hidden, output], loss=loss, seed=rng, dtype=dtype)
    # weights of order 1, so that negative pre-activations (leaky_relu, elu) occur
    net.weights = [rng.normal(0, 0.8, w.shape).astype(dtype) for w in net.weights]
    return net


def make_scaling(net: nnet.Network, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = net.sizes[0]
    scale = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
    return {"mean": rng.normal(0, 1, n), "scale": scale}


def inputs(net: nnet.Network, batch: int, seed: int, scaling=None) -> np.ndarray:
    """A float32 batch of raw features (of the scaling's spread when there is one)."""
    x = np.random.default_rng(seed).normal(0, 1, (batch, net.sizes[0]))
    if scaling is not None:
        x = x * scaling["scale"] + scaling["mean"]
    return x.astype(np.float32)


def expected(net: nnet.Network, x: np.ndarray, scaling=None) -> tuple[np.ndarray, np.ndarray]:
    """net.forward and net.loss.probabilities of the raw features x, scaled as nnet does."""
    if scaling is not None:
        x = (x.astype(np.float64) - scaling["mean"]) / scaling["scale"]
    O = net.forward(x)
    return O, net.loss.probabilities(O)


def session(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "scaled"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("hidden", "output", "loss"), CASES)
def test_onnx_equals_forward(ort, tmp_path, hidden, output, loss, dtype, scaled):
    import onnx

    seed = ACTS.index(hidden) * 100 + ACTS.index(output) * 10 + (loss == "mse")
    net = make_net(seed, hidden, output, loss, dtype)
    scaling = make_scaling(net, seed) if scaled else None
    path = tmp_path / "m.onnx"
    to_onnx(net, path, scaling=scaling)

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["inputs"]
    assert [o.name for o in model.graph.output] == ["outputs", "probabilities"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"

    sess = session(ort, path)
    for batch in (1, 7):
        x = inputs(net, batch, seed + batch, scaling)
        O, P = sess.run(None, {"inputs": x})
        O_ref, P_ref = expected(net, x, scaling)
        assert O.shape == P.shape == (batch, net.sizes[-1]) and O.dtype == np.float32
        np.testing.assert_allclose(O, O_ref, **TOL)
        np.testing.assert_allclose(P, P_ref, **TOL)


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "scaled"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("hidden", "output", "loss"), CASES)
def test_torch_equals_forward(torch, hidden, output, loss, dtype, scaled):
    seed = ACTS.index(hidden) * 100 + ACTS.index(output) * 10 + (loss == "mse")
    net = make_net(seed, hidden, output, loss, dtype)
    scaling = make_scaling(net, seed) if scaled else None
    module = to_torch(net, scaling=scaling)
    assert isinstance(module, torch.nn.Sequential) and not module.training
    for batch in (1, 7):
        x = inputs(net, batch, seed + batch, scaling)
        with torch.no_grad():
            O = module(torch.from_numpy(x)).numpy()
        assert O.dtype == np.float32
        np.testing.assert_allclose(O, expected(net, x, scaling)[0], **TOL)


def test_torch_modules_carry_nnet_constants(torch):
    net = nnet.Network([3, 4, 4, 2], ["leaky_relu", "elu", "identity"], seed=0)
    module = to_torch(net)
    kinds = [type(m).__name__ for m in module]
    assert kinds == ["Linear", "LeakyReLU", "Linear", "ELU", "Linear", "Identity"]
    assert module[1].negative_slope == pytest.approx(0.01) and module[3].alpha == 1.0
    np.testing.assert_array_equal(module[0].weight.detach().numpy(), net.weights[0][:-1].T)
    np.testing.assert_array_equal(module[0].bias.detach().numpy(), net.weights[0][-1])


def test_mse_probabilities_are_uniform_where_all_outputs_are_negative(ort, tmp_path):
    net = nnet.Network([2, 3], "identity", seed=0)
    net.weights[0][-1] = [-50.0, -50.0, 1.0]  # third output > 0 for small x only
    x = np.array([[0.0, 0.0], [0.1, -0.1], [60.0, 60.0], [-60.0, -60.0]], np.float32)
    net.weights[0][:-1] = [[0.0, 0.0, -1.0], [0.0, 0.0, 0.0]]
    to_onnx(net, tmp_path / "m.onnx")
    O, P = session(ort, tmp_path / "m.onnx").run(None, {"inputs": x})
    np.testing.assert_allclose(P, net.loss.probabilities(net.forward(x)), **TOL)
    np.testing.assert_allclose(P[2], [1 / 3] * 3)  # all outputs < 0: uniform, like nnet
    np.testing.assert_allclose(P[0], [0, 0, 1])


def test_scaling_from_meta_survives_a_model_file(ort, tmp_path):
    net = make_net(5, "tanh", "identity", "cross_entropy", "float32")
    scaling = make_scaling(net, 5)
    net.meta["scaling"] = {k: v.tolist() for k, v in scaling.items()}
    nnet.save(net, tmp_path / "m.npz")
    back = nnet.load(tmp_path / "m.npz")
    to_onnx(back, tmp_path / "m.onnx")  # scaling=None: read from net.meta["scaling"]
    x = inputs(net, 7, 0, scaling)
    O, P = session(ort, tmp_path / "m.onnx").run(None, {"inputs": x})
    O_ref, P_ref = expected(net, x, scaling)
    np.testing.assert_allclose(O, O_ref, **TOL)
    np.testing.assert_allclose(P, P_ref, **TOL)
    # an explicit scaling wins over the model's
    identity = {"mean": np.zeros(net.sizes[0]), "scale": np.ones(net.sizes[0])}
    to_onnx(back, tmp_path / "raw.onnx", scaling=identity)
    O, _ = session(ort, tmp_path / "raw.onnx").run(None, {"inputs": x})
    np.testing.assert_allclose(O, net.forward(x), **TOL)


def test_onnx_records_the_network(ort, tmp_path):
    import onnx

    net = nnet.Network([4, 3, 2], "relu", loss="cross_entropy", seed=1)
    net.meta = {"task": "classifier", "classes": ["a", "b"]}
    to_onnx(net, tmp_path / "m.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["nnet_sizes"] == "[4, 3, 2]" and props["nnet_classes"] == '["a", "b"]'
    assert props["nnet_loss"] == '"cross_entropy"'
    assert model.producer_name == "nnet" and model.opset_import[0].version == 17


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"mean": [0, 0, 0]}, "must be a dict"),
        ([1, 2], "must be a dict"),
        ({"mean": [0, 0], "scale": [1, 1, 1]}, "must be 3 numbers"),
        ({"mean": [0, 0, 0], "scale": [1, 0, 1]}, "nonzero"),
        ({"mean": [0, np.nan, 0], "scale": [1, 1, 1]}, "NaN or infinite"),
        ({"mean": ["a", "b", "c"], "scale": [1, 1, 1]}, "must be 3 numbers"),
        ({"mean": [0, 0, 0], "scale": [1e-300, 1, 1]}, "overflow float32"),
    ],
)
def test_bad_scaling_is_one_nnet_error(scaling, message):
    net = nnet.Network([3, 2], "sigmoid", seed=0)
    with pytest.raises(NnetError, match=message):
        affine_layers(net, scaling)  # what both to_onnx and to_torch fold
    net.meta["scaling"] = scaling  # the same checks on a model file's scaling
    with pytest.raises(NnetError, match=message):
        affine_layers(net)


def test_bad_scaling_writes_nothing(ort, tmp_path):
    net = nnet.Network([3, 2], "sigmoid", seed=0)
    (tmp_path / "m.onnx").write_bytes(b"previous")
    with pytest.raises(NnetError, match="nonzero"):
        to_onnx(net, tmp_path / "m.onnx", scaling={"mean": [0, 0, 0], "scale": [0, 1, 1]})
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert (tmp_path / "m.onnx").read_bytes() == b"previous"


def test_missing_onnx_is_one_line_nnet_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    net = nnet.Network([3, 2], "sigmoid", seed=0)
    with pytest.raises(NnetError) as err:
        to_onnx(net, tmp_path / "m.onnx")
    assert "pip install 'nnet[export]'" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())


def test_missing_torch_is_one_line_nnet_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(NnetError, match="pip install torch") as err:
        to_torch(nnet.Network([3, 2], "sigmoid", seed=0))
    assert "\n" not in str(err.value)


def test_unwritable_path_is_nnet_error(ort, tmp_path):
    net = nnet.Network([3, 2], "sigmoid", seed=0)
    with pytest.raises(NnetError, match="folder"):
        to_onnx(net, tmp_path)  # a folder, not a file
    with pytest.raises(NnetError, match="does not exist"):
        to_onnx(net, tmp_path / "missing" / "m.onnx")


def test_nnet_export_writes_what_onnx_runtime_runs(ort, tmp_path, capsys):
    from nnet.apps.cli import main

    net = nnet.Network([6, 5, 3], "tanh", loss="cross_entropy", seed=2)
    nnet.save(net, tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")]) == 0
    x = np.random.default_rng(0).random((4, 6), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (outputs,) = session.run(["outputs"], {"inputs": x})
    np.testing.assert_allclose(outputs, net.forward(x), rtol=1e-5, atol=1e-6)
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'm.onnx'}"
