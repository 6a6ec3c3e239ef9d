"""The fused Numba kernels (nnet[fast]) against the NumPy reference, and how they are chosen.

The fused updates make the NumPy updates' operations in the same order and precision, so
every comparison here is bit for bit. Without Numba the comparisons are skipped; the tests
of the choice (the notice, the error, $NNET_KERNELS) run either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import nnet
from nnet import kernel_choice
from nnet.errors import NnetError
from nnet.kernel_choice import NOTICE
from nnet.training.loop import Split, Trainer
from nnet.training.optim import FLUSH_EVERY, SGD, Adam, make_optimizer

try:
    import numba

    from nnet import kernels
except ImportError:  # pragma: no cover - the NumPy-only install
    numba = kernels = None

needs_numba = pytest.mark.skipif(
    numba is None, reason="Numba is not installed (pip install 'nnet[fast]'): no fused kernels"
)

CONFIGS = {
    "sgd": dict(name="sgd"),
    "sgd-wd": dict(name="sgd", weight_decay=0.01),
    "momentum": dict(name="sgd", momentum=0.9),
    "momentum-wd": dict(name="sgd", momentum=0.9, weight_decay=0.01),
    "nesterov": dict(name="sgd", momentum=0.9, nesterov=True),
    "nesterov-wd": dict(name="sgd", momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": dict(name="adam"),
    "adam-wd": dict(name="adam", weight_decay=0.01),
    "adamw": dict(name="adamw"),
    "adamw-wd": dict(name="adamw", weight_decay=0.01),
}
# (5, 3): one small block; (300, 300): two NumPy blocks, the second partial, six kernel
# chunks; (129, 128): the bias row starts exactly at a chunk's border; (65, 300): the bias
# row inside the second chunk.
SHAPES = [[(5, 3), (4, 2)], [(300, 300), (301, 7)], [(129, 128)], [(65, 300)]]


def problem(shapes, dtype, seed=0, steps=FLUSH_EVERY + 2):
    """Weights, gradients for ``steps`` steps, and a starting state for each optimizer: with
    zeros, exact zeros in the gradients, and subnormal numbers in the moments (flushed on
    step FLUSH_EVERY)."""
    rng = np.random.default_rng(seed)
    w = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads = []
    for _ in range(steps):
        g = [(1e-2 * rng.normal(size=s)).astype(dtype) for s in shapes]
        for a in g:
            a[0] = 0  # a row of gradients that are 0, as on MNIST's border pixels
        grads.append(g)
    tiny = np.finfo(dtype).tiny
    state = {}
    for k, s in enumerate(shapes):
        for name in ("v", "m_sum", "v_sum"):
            a = rng.normal(size=s).astype(dtype) * (1e-3 if name != "v_sum" else 1e-6) ** 2
            if name == "v_sum":
                a = np.abs(a)
            a[0] = tiny * rng.random(s[1]).astype(dtype)  # subnormal (or 0)
            state[f"{name}{k}"] = a
    return w, grads, state


def run(config, kernels_choice, shapes, dtype, lr=1e-2):
    opt = make_optimizer(**config, kernels=kernels_choice)
    w, grads, state = problem(shapes, dtype)
    opt.state = {
        f"{n}{k}": state[f"{n}{k}"].copy() for k in range(len(shapes)) for n in opt.state_names
    }
    for g in grads:
        opt.step(w, g, lr)
    return opt, w


def assert_same_bits(a, b, what=""):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what}: {np.sum(a != b)} numbers differ"


@needs_numba
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "+".join(f"{r}x{c}" for r, c in s))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", list(CONFIGS), ids=str)
def test_fused_kernels_equal_the_numpy_updates_bit_for_bit(
    config, dtype, shapes, parallel, monkeypatch
):
    # The parallel kernel runs for every matrix (several chunks for the larger ones), the
    # serial one for none: both are checked on every shape.
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0 if parallel else 2**62)
    ref, w_ref = run(CONFIGS[config], "numpy", shapes, dtype)
    fused, w = run(CONFIGS[config], "numba", shapes, dtype)
    assert ref.backend == "numpy" and fused.backend == "numba"
    assert ref.t == fused.t == FLUSH_EVERY + 2 and set(ref.state) == set(fused.state)
    for k, (a, b) in enumerate(zip(w, w_ref, strict=True)):
        assert_same_bits(a, b, f"w{k}")
    for name in ref.state:
        assert_same_bits(fused.state[name], ref.state[name], name)


@needs_numba
def test_the_flush_step_flushes_subnormal_moments_in_both():
    for choice in ("numpy", "numba"):
        opt, _ = run(CONFIGS["adam"], choice, [(300, 300)], "float32")
        M = opt.state["m_sum0"]
        # Row 0 had subnormal moments and zero gradients: flushed to 0 on step 8.
        assert np.all(M[0] == 0), choice
        assert np.all(np.abs(M[1:]) >= np.finfo(np.float32).tiny), choice


@pytest.mark.parametrize("choice", [pytest.param("numba", marks=needs_numba), "numpy"])
@pytest.mark.parametrize("config", ["sgd-wd", "momentum-wd", "adam-wd", "adamw-wd"])
def test_weight_decay_spares_the_bias_row(config, choice):
    opt = make_optimizer(**{**CONFIGS[config], "weight_decay": 0.5}, kernels=choice)
    assert opt.backend == choice
    w = [np.full((301, 300), 2.0, np.float32), np.full((3, 2), 2.0)]
    g = [np.zeros_like(a) for a in w]
    for _ in range(3):
        opt.step(w, g, 0.1)
    for a in w:
        assert np.all(a[:-1] < 2.0), "the weights decay"
        assert np.all(a[-1] == 2.0), "the bias row does not"


@needs_numba
def test_fused_and_numpy_resume_each_other():
    """The state is the same arrays under the same names: a run continued with the other
    kernels from a copy of the state (what a checkpoint holds) gives the same numbers."""
    w0, grads, _ = problem([(300, 300), (301, 7)], "float32", steps=12)
    first = Adam(weight_decay=0.01, kernels="numba")
    w = [a.copy() for a in w0]
    for g in grads[:5]:
        first.step(w, g, 1e-3)
    results = {}
    for choice in ("numpy", "numba"):
        opt = Adam(weight_decay=0.01, kernels=choice)
        opt.state = {k: v.copy() for k, v in first.state.items()}
        opt.t = first.t
        wc = [a.copy() for a in w]
        for g in grads[5:]:
            opt.step(wc, g, 1e-3)
        results[choice] = (wc, opt.state)
    (wa, sa), (wb, sb) = results["numpy"], results["numba"]
    for a, b in zip(wa, wb, strict=True):
        assert_same_bits(a, b)
    for name in sa:
        assert_same_bits(sa[name], sb[name], name)


@needs_numba
def test_arrays_the_kernels_cannot_take_go_the_numpy_way():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4))
    g = rng.normal(size=(6, 4))
    assert kernels.fits(w, g)
    assert not kernels.fits(np.asfortranarray(w), g)
    assert not kernels.fits(w, g.astype(np.float32))
    assert not kernels.fits(w.astype(np.float16), g.astype(np.float16))
    ws = {c: [np.asfortranarray(w)] for c in ("numpy", "numba")}
    for c, wc in ws.items():
        opt = Adam(kernels=c)
        for _ in range(3):
            opt.step(wc, [g], 0.1)
    assert_same_bits(ws["numpy"][0], ws["numba"][0])


def blobs(n=200, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2, 0, 0, 1], [0, 2, 0, -1], [0, 0, 2, 0]], dtype=float)
    x = (centers[y] + rng.normal(0, 0.5, (n, 4))).astype(dtype)
    return Split(x, np.eye(3, dtype=dtype)[y], y)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("config", ["momentum-wd", "adam-wd", "adamw-wd"])
def test_training_gives_the_same_history_with_both_kernels(config, dtype):
    histories = {}
    for choice in ("numpy", "numba"):
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(5).spawn(2)]
        net = nnet.Network([4, 16, 3], "relu", loss="cross_entropy", seed=rngs[0], dtype=dtype)
        opt = make_optimizer(**CONFIGS[config], kernels=choice)
        trainer = Trainer.gradient(net, opt, lr=0.01, batch_size=16, epochs=4, rng=rngs[1])
        history = trainer.fit(blobs(dtype=dtype), {"test": blobs(seed=1, dtype=dtype)})
        histories[choice] = [
            [r[k] for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")]
            for r in history
        ]
        assert opt.backend == choice
    np.testing.assert_allclose(histories["numba"], histories["numpy"], rtol=1e-6, atol=0)


@needs_numba
def test_two_threads_training_at_once_stay_exact(monkeypatch):
    """One lock guards the parallel kernels (Numba's workqueue layer takes one caller at a
    time): a thread that finds it taken runs the serial kernel, with the same numbers."""
    monkeypatch.setattr(kernels, "PARALLEL_MIN", 0)
    w0, grads, _ = problem([(300, 300), (301, 7)], "float32", steps=20)
    out = {}

    def train(name, choice):
        opt = Adam(kernels=choice)
        w = [a.copy() for a in w0]
        for _ in range(5):
            for g in grads:
                opt.step(w, g, 1e-3)
        out[name] = w

    threads = [threading.Thread(target=train, args=(f"t{i}", "numba")) for i in range(3)]
    for t in threads:
        t.start()
    train("ref", "numpy")
    for t in threads:
        t.join()
    for i in range(3):
        for a, b in zip(out[f"t{i}"], out["ref"], strict=True):
            assert_same_bits(a, b)


# ----------------------------------------------------------------------------- the layers


def layer_problem(activation, dtype, B, masked, seed=0):
    rng = np.random.default_rng(seed)
    net = nnet.Network([13, 20, 17, 5], activation, loss="mse", seed=rng, dtype=dtype)
    x = rng.normal(size=(B, 13)).astype(dtype)
    masks = None
    if masked:
        masks = [None] + [
            ((rng.random((B, n)) >= 0.3) / 0.7).astype(dtype) for n in net.sizes[1:-1]
        ]
    return net, x, masks


@needs_numba
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "dropout"])
@pytest.mark.parametrize("B", [1, 7, 33])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_fused_layers_equal_the_numpy_pass_bit_for_bit(activation, dtype, B, masked):
    """a^l = g(h^l) (times the mask) and delta *= g'(h^l): every h, a and delta the same."""
    net, x, masks = layer_problem(activation, dtype, B, masked)
    passes = {}
    for name, fused in (("numpy", None), ("numba", kernels)):
        ws = net.workspace(B, fused=fused)
        np.copyto(ws.x, x)
        fp = net.propagate(ws, masks)
        deltas = []
        for l in range(1, net.L + 1):
            delta = np.random.default_rng(l).normal(size=(B, net.sizes[l])).astype(dtype)
            deltas.append(fp.times_gprime(l, delta).copy())
        passes[name] = ([h.copy() for h in fp.h[1:]], [a.copy() for a in fp.a], deltas)
    for what, got, want in zip(("h", "a", "delta"), passes["numba"], passes["numpy"], strict=True):
        for l, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_bits(g, w, f"{what}[{l}]")


@needs_numba
def test_fused_relu_keeps_numpy_on_nan_and_negative_zero():
    h = np.array([[np.nan, -0.0, 0.0, -1.0, 2.0, np.inf, -np.inf]], np.float32)
    a = np.ones((1, h.shape[1] + 1), np.float32)
    assert kernels.activate("relu", h, a, None, np.empty_like(h))
    assert_same_bits(a[:, :-1].copy(), np.maximum(h, 0))
    assert a[0, -1] == 1  # the bias column is left alone
    delta = np.arange(1.0, 8.0, dtype=np.float32)[None, :]
    want = delta * (h > 0)
    assert kernels.times_gprime("relu", delta, h, a, None)
    assert_same_bits(delta, want)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fused_dropout_mask_equals_numpy(p, dtype):
    m = np.random.default_rng(3).random((64, 50), dtype=dtype)
    m[0, :3] = np.asarray([p, np.nextafter(m.dtype.type(p), 0), np.nextafter(m.dtype.type(p), 1)])
    want = np.multiply(m >= p, m.dtype.type(1.0 / (1.0 - p)))
    assert kernels.make_dropout_mask(m, p)
    assert_same_bits(m, want)


@needs_numba
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_fused_gather_equals_take(parallel, monkeypatch):
    if parallel:
        monkeypatch.setattr(kernels, "GATHER_PARALLEL_MIN", 0)
        monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 785)).astype(np.float32)
    idx = rng.permutation(500)[:129]
    out = np.empty((129, 785), np.float32)
    assert kernels.gather(x, idx, out)
    assert_same_bits(out, np.take(x, idx, axis=0))
    assert not kernels.gather(x, idx.astype(np.int32), out)  # not intp: np.take's way


@needs_numba
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_training_with_dropout_is_bit_identical_with_both_kernels(activation):
    """The whole loop (gather, masks, forward, backward, Adam) with either kernels."""
    weights = {}
    for choice in ("numpy", "numba"):
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(9).spawn(2)]
        net = nnet.Network([4, 32, 16, 3], activation, loss="cross_entropy", seed=rngs[0])
        opt = make_optimizer("adam", kernels=choice)
        trainer = Trainer.gradient(
            net, opt, lr=0.01, batch_size=16, epochs=3, rng=rngs[1], dropout=[0.2, 0.5, 0.5]
        )
        trainer.fit(blobs(), {})
        assert trainer.update.fused is (kernels if choice == "numba" else None)
        weights[choice] = net.weights
    for a, b in zip(weights["numba"], weights["numpy"], strict=True):
        assert_same_bits(a, b)


# ----------------------------------------------------------------------------- the choice


@pytest.fixture
def no_numba(monkeypatch):
    """This process as if Numba were not installed (and the kernels never loaded)."""
    monkeypatch.setattr(kernel_choice, "_FUSED", {})
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "nnet.kernels", raising=False)


def test_auto_without_numba_runs_numpy_and_says_so_once(no_numba, capsys):
    w = [np.ones((3, 2))]
    for _ in range(2):
        opt = Adam(kernels="auto")
        opt.step(w, [np.ones((3, 2))], 0.1)
        assert opt.backend == "numpy"
    SGD().step(w, [np.ones((3, 2))], 0.1)
    assert capsys.readouterr().err == NOTICE + "\n"


def test_the_notice_is_one_line_once_per_process():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np\n"
        "from nnet.training.optim import make_optimizer\n"
        "for name in ('sgd', 'adam', 'adamw'):\n"
        "    make_optimizer(name).step([np.ones((3, 2))], [np.ones((3, 2))], 0.1)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NNET_KERNELS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == NOTICE + "\n" and done.stdout == ""


def test_numba_without_numba_is_one_line_error(no_numba, monkeypatch):
    with pytest.raises(NnetError, match=r"Numba is not installed") as info:
        Adam(kernels="numba")
    assert "\n" not in str(info.value) and "nnet[fast]" in str(info.value)
    monkeypatch.setenv("NNET_KERNELS", "numba")
    with pytest.raises(NnetError, match=r"^NNET_KERNELS=numba .*not installed"):
        make_optimizer("sgd")
    assert make_optimizer("sgd", kernels="numpy").backend == "numpy"  # the keyword wins


def test_nnet_kernels_is_checked(monkeypatch):
    monkeypatch.setenv("NNET_KERNELS", "fortran")
    with pytest.raises(NnetError, match=r"NNET_KERNELS must be one of auto, numba, numpy"):
        Adam()
    with pytest.raises(NnetError, match=r"kernels must be one of"):
        SGD(kernels="gpu")


@pytest.mark.parametrize("choice", [pytest.param("numba", marks=needs_numba), "numpy"])
def test_nnet_kernels_is_the_default(choice, monkeypatch):
    monkeypatch.setenv("NNET_KERNELS", choice)
    opt = make_optimizer("adam")
    assert opt.kernels == choice and opt.backend == choice
    monkeypatch.delenv("NNET_KERNELS")
    assert make_optimizer("adam").kernels == "auto"
    if numba is not None:
        assert make_optimizer("adam").backend == "numba"


# ----------------------------------------------------------------------------- threads


@needs_numba
def test_nnet_threads(monkeypatch):
    pool = numba.config.NUMBA_NUM_THREADS
    monkeypatch.setenv("NNET_THREADS", "1")
    assert kernels.default_threads() == 1
    monkeypatch.setenv("NNET_THREADS", str(pool + 5))
    assert kernels.default_threads() == pool  # never more than Numba's pool
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("NNET_THREADS", bad)
        with pytest.raises(NnetError, match="NNET_THREADS must be a whole number"):
            kernels.default_threads()
    monkeypatch.delenv("NNET_THREADS")
    assert kernels.default_threads() == min(len(os.sched_getaffinity(0)), pool)


@needs_numba
@pytest.mark.parametrize(
    ("env", "before", "expected"),
    [({"NNET_THREADS": "1"}, None, 1), ({}, 1, 1), ({"NNET_THREADS": "1"}, 1, 1)],
)
def test_the_kernels_take_nnet_threads_and_keep_set_num_threads(env, before, expected):
    """In a new thread (Numba's count is per thread): $NNET_THREADS applies where nobody
    called numba.set_num_threads; a count set by the program is kept."""
    code = (
        "import threading, numba, numpy as np\n"
        "from nnet.training.optim import Adam\n"
        "def run():\n"
        f"    if {before!r} is not None: numba.set_num_threads({before!r})\n"
        "    opt = Adam(kernels='numba')\n"
        "    w, g = [np.ones((400, 300), np.float32)], [np.ones((400, 300), np.float32)]\n"
        "    opt.step(w, g, 0.1)\n"
        "    print(numba.get_num_threads())\n"
        "t = threading.Thread(target=run); t.start(); t.join()\n"
    )
    full = {k: v for k, v in os.environ.items() if k != "NNET_THREADS"} | env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(expected)]
