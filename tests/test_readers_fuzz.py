"""Every reader of untrusted files, fed mutated and adversarial files by Hypothesis, in a
subprocess limited to 1 GiB of address space: each file is read, or refused with one line
(an NnetError naming the file); never a traceback, a crash, a MemoryError or a hang.

The readers: model files (``nnet.load``), checkpoints (``read_checkpoint`` and
``Checkpoint.restore``), metrics files (``read_metrics``, and ``read_runs`` of a model file),
IDX files (``read_idx``), ``.npy`` inputs and images (``load_image``/``load_images``). The
inputs: byte mutations of good files, metadata fields set to adversarial JSON (wrong types,
huge integers, deep nesting, duplicate keys), archives with duplicate, missing, extra or
lying members, members and gzip streams that inflate far past what they declare, headers
declaring huge shapes, and special files (links to /dev/zero, FIFOs, sockets, folders).

One worker process serves all the reads of the module (restarted if it dies), so each
example costs a file write and a read, and bombs that inflate to gigabytes take milliseconds
to make (test_readers_support); the variants that make many more examples, or pictures of
megapixels, are marked slow.
"""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_readers_support import (
    bomb,
    gzip_of,
    hand_zip,
    mutate,
    npy_bytes,
    npy_header,
    npz_bytes,
    png,
    small_checkpoint,
    small_model,
    special,
    split,
    stored,
)

LIMIT = 1 << 30  # the worker's address space: 1 GiB
TIMEOUT = 60  # seconds one read may take before the worker counts as hung

WORKER = r"""
import json, resource, sys, traceback, warnings
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import numpy as np
import nnet
from nnet.errors import NnetError
from nnet.apps.plots import read_metrics, read_runs
from nnet.core.network import Network
from nnet.data.idx import read_idx
from nnet.data.preprocess import load_image, load_images
from nnet.experiment import make_update
from nnet.files.checkpoint import read_checkpoint
from nnet.training.loop import Trainer


def resume(path):
    # what nnet.experiment.resume does, without loading a dataset
    ck = read_checkpoint(path)
    s = ck.settings
    net = Network(s.sizes, s.one_or_list("activation"), loss=s.loss,
                  init=s.one_or_list("init"), seed=0, dtype=s.dtype)
    rng = np.random.default_rng(0)
    trainer = Trainer(net, make_update(s, net, rng), batch_size=s.batch_size,
                      epochs=s.epochs, rng=rng, patience=s.patience)
    ck.restore(trainer)


READERS = {
    "model": nnet.load, "checkpoint": resume, "metrics": read_metrics,
    "runs": lambda p: read_runs([p]), "idx": read_idx, "image": load_image,
    "images": load_images,
}
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            READERS[request["reader"]](request["path"])
            answer = {"ok": True}
        except NnetError as exc:
            answer = {"error": str(exc)}
        except BaseException:
            answer = {"crash": traceback.format_exc()}
    answer["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    print(json.dumps(answer), flush=True)
"""


class Worker:
    """A process that reads files on request, under the address-space limit."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1",
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(LIMIT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env,
        )  # fmt: skip
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            self.stop()
            pytest.fail(f"a reader hung for {TIMEOUT} s")
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            pytest.fail(f"the reader process died (exit status {code})")
        return line.strip()

    def read(self, reader: str, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"reader": reader, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.stop()


def check(worker: Worker, reader: str, path: Path, *, ok: bool | None = None) -> dict:
    """Read ``path``: success, or one line naming the file; nothing else, no warning."""
    answer = worker.read(reader, path)
    if os.environ.get("NNET_FUZZ_LOG"):  # to see what the readers answered
        with open(os.environ["NNET_FUZZ_LOG"], "a") as log:
            log.write(f"{reader}\t{json.dumps(answer)}\n")
    assert "crash" not in answer, answer["crash"]
    assert not answer["warnings"], answer["warnings"]
    if "error" in answer:
        message = answer["error"]
        assert "\n" not in message and "Traceback" not in message, message
        assert path.name in message, message
        assert len(message) < 1000, message
    if ok is not None:
        assert ("ok" in answer) == ok, answer
    return answer


# ----------------------------------------------------------------------------- inputs
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SLOW = settings(FUZZ, max_examples=400)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2**22), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)
SPECIAL = st.sampled_from(
    ["/dev/zero", "/dev/null", "/dev/urandom", "fifo", "socket", "folder", "loop", "dangling"]
)

# JSON values an attacker would put in a field, as JSON text.
HUGE_INT = st.integers(10, 4200).map(lambda n: "9" * n)
DEEP = st.integers(20, 200_000).map(lambda n: "[" * n + "]" * n)
DEEP_OBJECT = st.integers(20, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["", "relu", "mnist", "float64", "PCG64", "x" * 5000]),
)  # fmt: skip
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=12,
)
RAW_JSON = st.one_of(
    JSON_VALUES.map(lambda v: json.dumps(v)),
    HUGE_INT,
    DEEP,
    DEEP_OBJECT,
    st.sampled_from(
        ["1e999", "-1e999", "NaN", "Infinity", '{"a": 1, "a": 2}', "[1, 2", '"\\ud800"']
    ),
)


@pytest.fixture
def case(tmp_path_factory):
    """A fresh, empty folder for each example (short: sockets need short paths)."""
    root = tmp_path_factory.getbasetemp() / "f"
    root.mkdir(exist_ok=True)

    def fresh() -> Path:
        folder = root / "c"
        if folder.exists() or folder.is_symlink():
            shutil.rmtree(folder)
        folder.mkdir()
        return folder

    return fresh


class Files(dict):
    """Good files by kind; shown briefly when an example fails."""

    def __repr__(self) -> str:
        return f"<good files: {', '.join(self)}>"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Files:
    """One good file of each kind, as bytes."""
    folder = tmp_path_factory.mktemp("good")
    small_model(folder / "m.npz")
    small_checkpoint(folder / "c.npz")
    history = split((folder / "m.npz").read_bytes())[1]["history"]
    digit = np.zeros((40, 30), np.uint8)
    digit[8:32, 12:18] = 255
    pictures = {}
    for fmt, mode in [("PNG", "L"), ("PNG", "RGBA"), ("PNG", "I;16"), ("JPEG", "L"),
                      ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "F")]:  # fmt: skip
        buf = io.BytesIO()
        im = (
            Image.fromarray(digit).convert(mode)
            if mode != "I;16"
            else Image.fromarray(digit.astype(np.uint16) * 257)
        )
        im.save(buf, fmt)
        pictures[f"{fmt}-{mode}"] = buf.getvalue()
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 6:22, 12:16] = 255
    idx = bytes([0, 0, 8, 3]) + struct.pack(">3I", 20, 28, 28)
    idx += np.random.default_rng(1).integers(0, 256, 20 * 28 * 28, dtype=np.uint8).tobytes()
    return Files(
        {
            "model": (folder / "m.npz").read_bytes(),
            "checkpoint": (folder / "c.npz").read_bytes(),
            "metrics": "".join(json.dumps(r) + "\n" for r in history * 3).encode(),
            "idx": idx,
            "npy": npy_bytes(images),
            "npy1": npy_bytes(images[0]),
            **{f"image-{k}": v for k, v in pictures.items()},
        }
    )


def test_the_good_files_are_read(worker, good, case):
    folder = case()
    for name, reader in [("model", "model"), ("checkpoint", "checkpoint"), ("model", "runs"),
                         ("metrics", "metrics"), ("idx", "idx"), ("npy", "images"),
                         ("npy1", "image")]:  # fmt: skip
        path = folder / f"{name}-{reader}.{'npy' if 'npy' in name else 'npz'}"
        path.write_bytes(good[name])
        check(worker, reader, path, ok=True)
    for name in good:
        if name.startswith("image-"):
            path = folder / f"{name}.img"
            path.write_bytes(good[name])
            check(worker, "image", path, ok=True)
    link = folder / "link.npz"
    os.symlink(folder / "model-model.npz", link)
    check(worker, "model", link, ok=True)


@FUZZ
@given(kind=SPECIAL, reader=st.sampled_from(["model", "checkpoint", "metrics", "idx", "image"]))
def test_special_files_are_refused_at_once(worker, case, kind, reader):
    name = {"model": "m.npz", "checkpoint": "c.npz", "metrics": "m.jsonl", "idx": "t.gz",
            "image": "i.npy"}[reader]  # fmt: skip
    path = special(case(), kind, name)
    check(worker, reader, path, ok=False)


# ----------------------------------------------------------------------------- model files
def model_variant(data: st.DataObject, good: bytes, folder: Path, bombs: int) -> Path:
    """A model file (or checkpoint: ``good``) changed the way ``data`` draws; ``bombs``: the
    most bytes an inflating member inflates to."""
    arrays, meta = split(good)
    how = data.draw(st.sampled_from(
        ["mutate", "field", "nested-field", "raw", "members", "lie", "bomb", "shape", "meta-npy"]
    ))  # fmt: skip

    def members(skip: str = "", meta_value: np.ndarray | None = None) -> list[tuple]:
        out = [stored(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items() if k != skip]
        value = np.array(json.dumps(meta)) if meta_value is None else meta_value
        return [*out, stored("meta.npy", npy_bytes(value))]

    if how == "mutate":
        out = mutate(good, data.draw(EDITS))
    elif how in ("field", "nested-field"):
        nested = [f"{k}.{sub}" for k, v in meta.items() if isinstance(v, dict) for sub in v]
        fields = sorted(nested if how == "nested-field" and nested else meta)
        *parents, leaf = data.draw(st.sampled_from(fields)).split(".")
        target = meta
        for p in parents:
            target = target[p]
        if data.draw(st.booleans()):
            del target[leaf]
        else:
            target[leaf] = data.draw(JSON_VALUES)
        out = npz_bytes(arrays, json.dumps(meta))
    elif how == "raw":
        field = data.draw(st.sampled_from(sorted(meta)))
        text = json.dumps({k: v for k, v in meta.items() if k != field})
        out = npz_bytes(arrays, f'{text[:-1]}, "{field}": {data.draw(RAW_JSON)}}}')
    elif how == "members":
        change = data.draw(st.sampled_from(["twice", "extra", "missing", "rename", "object"]))
        name = data.draw(st.sampled_from(sorted(arrays)))
        listed = members()
        if change == "twice":
            listed.append(stored(f"{name}.npy", npy_bytes(arrays[name])))
        elif change == "extra":
            listed.append(stored("x.npy", npy_bytes(np.zeros(3))))
        elif change == "missing":
            listed = members(skip=name)
        elif change == "rename":
            listed = [(m[0].upper(), *m[1:]) for m in listed]
        else:
            buf = io.BytesIO()
            np.save(buf, np.empty(arrays[name].shape, object), allow_pickle=True)
            listed = [*members(skip=name), stored(f"{name}.npy", buf.getvalue())]
        out = hand_zip(listed)
    elif how == "lie":  # a member whose directory entry, header and data disagree
        name = data.draw(st.sampled_from(sorted(arrays)))
        a = arrays[name]
        header = npy_header(a.shape, a.dtype.str)
        size = len(header) + a.nbytes
        declared = size + data.draw(st.integers(-size, 2**20))
        inflates = size + data.draw(st.integers(-size, bombs))
        out = hand_zip([bomb(f"{name}.npy", header, declared, inflates), *members(skip=name)])
    elif how == "bomb":  # metadata and headers agree on a big network; the member inflates
        width = data.draw(st.integers(1, max(1, bombs // (13 * 4))))
        meta["sizes"] = [12, width, 4]
        if "settings" in meta:
            meta["settings"]["sizes"] = meta["sizes"]
        names = [k for k in arrays if k.endswith("0")]  # w0, opt_*0, best_w0: shape (13, width)
        header = npy_header((13, width), "<f4")
        size = len(header) + 4 * 13 * width
        bombs_ = [bomb(f"{k}.npy", header, size, size) for k in names[:1]]
        rest = [m for m in members() if m[0].removesuffix(".npy") not in names[:1]]
        out = hand_zip([*bombs_, *rest])
    elif how == "shape":  # a header declaring another shape or type, with or without data
        name = data.draw(st.sampled_from(sorted(arrays)))
        shape = tuple(data.draw(st.lists(st.integers(0, 2**40), max_size=4)))
        descr = data.draw(st.sampled_from(["<f4", "<f8", ">f4", "|u1", "<c16", "|O", "<U3"]))
        body = npy_header(shape, descr) + bytes(data.draw(st.integers(0, 4096)))
        out = hand_zip([*members(skip=name), stored(f"{name}.npy", body)])
    else:  # the metadata member itself: another type, shape or size
        text = json.dumps(meta)
        value = data.draw(st.sampled_from([
            np.array([text]), np.array(text.encode()), np.zeros(3), np.array(text, ">U"),
            np.array(""), np.array("x" * 9_000_000), np.array(" " * 7_000_000 + text),
        ]))  # fmt: skip
        out = hand_zip(members(meta_value=value))
    path = folder / "f.npz"
    path.write_bytes(out)
    return path


@FUZZ
@given(data=st.data())
def test_model_files(worker, good, case, data):
    path = model_variant(data, good["model"], case(), bombs=2**31)
    check(worker, "model", path)
    check(worker, "runs", path)


@FUZZ
@given(data=st.data())
def test_checkpoints(worker, good, case, data):
    path = model_variant(data, good["checkpoint"], case(), bombs=2**31)
    check(worker, "checkpoint", path)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_model_files_and_checkpoints_with_big_bombs(worker, good, case, data):
    kind = data.draw(st.sampled_from(["model", "checkpoint"]))
    path = model_variant(data, good[kind], case(), bombs=2**31)
    check(worker, "checkpoint" if kind == "checkpoint" else "model", path)


# ----------------------------------------------------------------------------- metrics
@FUZZ
@given(data=st.data())
def test_metrics_files(worker, good, case, data):
    lines = good["metrics"].decode().splitlines()
    how = data.draw(st.sampled_from(["mutate", "field", "raw", "line", "long", "binary"]))
    if how == "mutate":
        out = mutate(good["metrics"], data.draw(EDITS))
    elif how == "field":
        row = json.loads(lines[0])
        key = data.draw(st.sampled_from([*row, "extra_loss", "other"]))
        row[key] = data.draw(JSON_VALUES)
        out = "\n".join([json.dumps(row), *lines[1:]]).encode()
    elif how == "raw":
        key = data.draw(st.sampled_from(["epoch", "train_loss", "lr", "x"]))
        out = f'{{"epoch": 1, "{key}": {data.draw(RAW_JSON)}}}\n'.encode()
    elif how == "line":
        out = (data.draw(RAW_JSON) + "\n").encode()
    elif how == "long":
        out = b'{"epoch": 1, "note": "' + b"x" * data.draw(st.integers(0, 9_000_000)) + b'"}\n'
    else:
        out = data.draw(st.binary(max_size=200))
    path = case() / "m.jsonl"
    path.write_bytes(out)
    check(worker, "metrics", path)


# ----------------------------------------------------------------------------- IDX
@FUZZ
@given(data=st.data())
def test_idx_files(worker, good, case, data):
    how = data.draw(st.sampled_from(["mutate", "mutate-gz", "header", "bomb"]))
    raw = good["idx"]
    if how == "mutate":
        out = mutate(raw, data.draw(EDITS))
    elif how == "mutate-gz":
        out = mutate(gzip_of(raw, 0), data.draw(EDITS))
    elif how == "header":
        dims = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=5))
        code = data.draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x0A]))
        header = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
        out = header + bytes(data.draw(st.integers(0, 1 << 16)))
        if data.draw(st.booleans()):
            out = gzip_of(out, 0)
    else:  # a small gzip whose stream inflates to up to 2 GiB, whatever it declares
        dims = data.draw(st.lists(st.integers(1, 70000), min_size=1, max_size=3))
        header = bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
        out = gzip_of(header, data.draw(st.integers(0, 1 << 31)))
    path = case() / "t.gz"
    path.write_bytes(out)
    check(worker, "idx", path)


@pytest.mark.slow
@settings(FUZZ, max_examples=10)
@given(declared=st.sampled_from([60000 * 784, 1 << 28, 1 << 31]), inflates=st.just(1 << 31))
def test_idx_gzip_bombs_of_gigabytes(worker, case, declared, inflates):
    header = bytes([0, 0, 8, 1]) + struct.pack(">I", min(declared, 2**32 - 1))
    path = case() / "t.gz"
    path.write_bytes(gzip_of(header, inflates))
    check(worker, "idx", path, ok=False)


# ----------------------------------------------------------------------------- .npy inputs
@FUZZ
@given(data=st.data())
def test_npy_inputs(worker, good, case, data):
    how = data.draw(st.sampled_from(["mutate", "header", "values", "npz"]))
    if how == "mutate":
        out = mutate(good[data.draw(st.sampled_from(["npy", "npy1"]))], data.draw(EDITS))
    elif how == "header":
        shape = tuple(data.draw(st.lists(st.integers(0, 200_000), min_size=0, max_size=4)))
        descr = data.draw(st.sampled_from(
            ["|u1", "<f8", ">f4", "<i8", "|b1", "<c16", "|O", "<U3", "|V8", "<M8[s]", "<f2"]
        ))  # fmt: skip
        fortran = data.draw(st.booleans())
        body = bytes(data.draw(st.integers(0, 1 << 20)))
        out = npy_header(shape, descr, fortran) + body
        if data.draw(st.booleans()):  # exactly the bytes it declares, when that is small
            n = int(np.prod(shape, dtype=object) or 0) * np.dtype(descr).itemsize
            if n <= 1 << 24:
                out = npy_header(shape, descr, fortran) + bytes(n)
    elif how == "values":
        shape = data.draw(st.sampled_from([(28, 28), (784,), (5, 784), (2, 28, 28), (30, 40)]))
        fill = data.draw(st.sampled_from([0.0, 1.0, 255.0, 300.0, -1.0, np.nan, np.inf]))
        a = np.zeros(shape)
        a.reshape(-1)[: a.size // 3] = fill
        out = npy_bytes(a)
    else:
        buf = io.BytesIO()
        np.savez(buf, a=np.zeros((28, 28)))
        out = buf.getvalue()
    path = case() / "x.npy"
    path.write_bytes(out)
    check(worker, "images", path)
    check(worker, "image", path)


# ----------------------------------------------------------------------------- images
@FUZZ
@given(data=st.data())
def test_images(worker, good, case, data):
    names = sorted(k for k in good if k.startswith("image-"))
    how = data.draw(st.sampled_from(["mutate", "header", "bomb"]))
    if how == "mutate":
        out = mutate(good[data.draw(st.sampled_from(names))], data.draw(EDITS))
    elif how == "header":
        w, h = data.draw(st.integers(0, 2**31 - 1)), data.draw(st.integers(0, 2**31 - 1))
        out = png(w, h, data.draw(st.sampled_from([0, 2, 4, 6])))
    else:  # a small PNG that decodes to up to 4 megapixels of zeros (the slow test: 16)
        side = data.draw(st.integers(1, 2000))
        z = zlib.compressobj(9)
        rows = z.compress(bytes((side + 1) * side)) + z.flush()
        out = png(side, side, 0, rows)
    path = case() / "i.png"
    path.write_bytes(out)
    check(worker, "image", path)


@pytest.mark.slow
@settings(FUZZ, max_examples=8)
@given(side=st.sampled_from([4000, 4001, 8000]), mode=st.sampled_from([0, 4, 6]))
def test_image_bombs_of_megapixels(worker, case, side, mode):
    channels = {0: 1, 4: 2, 6: 4}[mode]
    z = zlib.compressobj(9)
    rows = b"".join(z.compress(bytes(side * channels + 1)) for _ in range(side)) + z.flush()
    path = case() / "i.png"
    path.write_bytes(png(side, side, mode, rows))
    check(worker, "image", path, ok=False)
