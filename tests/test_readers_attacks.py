"""Each attack found on nnet's readers so far, as a unit test: refused in one line naming the
file and the field, before anything of the size it declares is allocated (peak memory
measured with tracemalloc, which sees NumPy's allocations too), and, for the worst, through
the command line in a process limited to 1 GiB of address space (exit status 2, one line).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_readers_support import (
    MiB,
    bomb,
    gzip_of,
    hand_zip,
    npy_bytes,
    npy_header,
    npz_bytes,
    rewrite,
    small_checkpoint,
    small_model,
    special,
    split,
    stored,
)

import nnet
from nnet.apps.plots import read_metrics, read_runs
from nnet.data.idx import read_idx, write_idx
from nnet.data.preprocess import load_image, load_images
from nnet.errors import NnetError
from nnet.files import schema
from nnet.files.checkpoint import read_checkpoint
from nnet.files.model_file import ModelFileError

PEAK = 16 * MiB  # no refusal may allocate more than this


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("good")
    small_model(folder / "model.npz")
    small_checkpoint(folder / "ck.npz")
    return folder


@pytest.fixture
def model(files, tmp_path) -> Path:
    path = tmp_path / "model.npz"
    path.write_bytes((files / "model.npz").read_bytes())
    return path


@pytest.fixture
def checkpoint(files, tmp_path) -> Path:
    path = tmp_path / "ck.npz"
    path.write_bytes((files / "ck.npz").read_bytes())
    return path


def refused(
    read: Callable[[Path], Any], path: Path, *words: str, error=NnetError, peak: int = PEAK
) -> str:
    """Read ``path``: ``error`` in one line naming it and ``words``, within ``peak`` bytes
    and a few seconds (an alarm fails a reader that hangs)."""
    old = signal.signal(signal.SIGALRM, lambda *a: pytest.fail(f"reading {path} hung"))
    signal.alarm(20)
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            read(path)
        _, most = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    message = str(info.value)
    assert "\n" not in message and path.name in message, message
    for word in words:
        assert word in message, (word, message)
    assert most < peak, f"{most} bytes allocated to refuse {path}"
    return message


def load_checkpoint(path: Path) -> None:
    read_checkpoint(path)


# ----------------------------------------------------------------------------- declared sizes
def test_a_model_whose_sizes_outgrow_its_arrays_is_refused_before_reading_them(model):
    rewrite(model, lambda m: m.update(sizes=[12, 100000, 4]))
    refused(nnet.load, model, "member w0 has shape (13, 6)", "need (13, 100000)",
            error=ModelFileError)  # fmt: skip


def test_headers_that_agree_with_huge_sizes_but_not_with_the_zip_are_refused(model):
    arrays, meta = split(model.read_bytes())
    meta["sizes"] = [12, 100000, 4]
    header = npy_header((13, 100000))  # what the sizes imply, stored in a few bytes
    model.write_bytes(hand_zip([
        stored("w0.npy", header + bytes(64)), stored("w1.npy", npy_header((100001, 4))),
        stored("meta.npy", npy_bytes(np.array(json.dumps(meta)))),
    ]))  # fmt: skip
    refused(nnet.load, model, "member w0", "does not match its stored size", error=ModelFileError)


def test_a_network_beyond_the_parameter_limit_is_refused_from_its_metadata(model):
    rewrite(model, lambda m: m.update(sizes=[784, 200_000, 10]))
    refused(nnet.load, model, "field sizes", str(schema.MAX_PARAMETERS), error=ModelFileError)


def test_a_checkpoint_whose_settings_declare_a_huge_network_is_refused_before_resuming(
    files, checkpoint
):
    def change(meta):
        meta["sizes"] = meta["settings"]["sizes"] = [12, 100000, 4]

    rewrite(checkpoint, change)
    refused(load_checkpoint, checkpoint, "member", "need (13, 100000)", error=ModelFileError)
    checkpoint.write_bytes((files / "ck.npz").read_bytes())
    rewrite(checkpoint, lambda m: m["settings"].update(sizes=[12, 100000, 4]))
    refused(load_checkpoint, checkpoint, "field sizes: expected the settings'",
            error=ModelFileError)  # fmt: skip


@pytest.mark.parametrize("member", ["opt_m_sum0", "best_w1", "opt_v_sum1"])
def test_every_checkpoint_member_is_checked_against_the_sizes(checkpoint, member):
    arrays, meta = split(checkpoint.read_bytes())
    arrays[member] = np.zeros((3, 3), np.float32)
    checkpoint.write_bytes(npz_bytes(arrays, json.dumps(meta)))
    refused(load_checkpoint, checkpoint, f"member {member} has shape (3, 3)", error=ModelFileError)


# ----------------------------------------------------------------------------- inflating members
def test_a_member_that_inflates_past_its_declared_size_is_refused_by_ratio(model):
    arrays, meta = split(model.read_bytes())
    header = npy_header((13, 6))
    model.write_bytes(hand_zip([
        bomb("w0.npy", header, 1900 * MiB, 1900 * MiB),  # 1.9 GB declared in 1.9 MB
        *[stored(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items() if k != "w0"],
        stored("meta.npy", npy_bytes(np.array(json.dumps(meta)))),
    ]))  # fmt: skip
    assert model.stat().st_size < 2 * MiB
    refused(nnet.load, model, "member w0.npy", "more than 100 times", error=ModelFileError)


def test_a_member_whose_stream_inflates_past_what_the_zip_declares_stops_there(model):
    arrays, meta = split(model.read_bytes())
    header = npy_header((13, 6))
    size = len(header) + 13 * 6 * 4
    model.write_bytes(hand_zip([
        bomb("w0.npy", header, size, 1900 * MiB),  # declares 440 bytes, inflates to 1.9 GB
        *[stored(f"{k}.npy", npy_bytes(v)) for k, v in arrays.items() if k != "w0"],
        stored("meta.npy", npy_bytes(np.array(json.dumps(meta)))),
    ]))  # fmt: skip
    start = time.perf_counter()
    refused(nnet.load, model, "w0", error=ModelFileError)
    assert time.perf_counter() - start < 2  # 1.9 GB were not inflated


def test_a_consistent_network_in_a_deflated_bomb_is_refused_before_inflating(model):
    arrays, meta = split(model.read_bytes())
    meta["sizes"] = [12, 5_000_000, 4]  # 65 M weights: within the limit, 260 MB per copy
    header = npy_header((13, 5_000_000))
    w1 = npy_header((5_000_001, 4))
    model.write_bytes(hand_zip([
        bomb("w0.npy", header, len(header) + 13 * 5_000_000 * 4, len(header) + 13 * 5_000_000 * 4),
        bomb("w1.npy", w1, len(w1) + 5_000_001 * 16, len(w1) + 5_000_001 * 16),
        stored("meta.npy", npy_bytes(np.array(json.dumps(meta)))),
    ]))  # fmt: skip
    refused(nnet.load, model, "decompression bomb", error=ModelFileError)


def test_a_zip_directory_of_many_members_is_refused_before_it_is_parsed(model):
    members = [stored(f"m{k}.npy", b"") for k in range(schema.MAX_MEMBERS + 1)]
    model.write_bytes(hand_zip(members))
    refused(nnet.load, model, f"at most {schema.MAX_MEMBERS} members", error=ModelFileError)


# ----------------------------------------------------------------------------- .npy inputs
def test_a_192_byte_npy_declaring_ten_billion_pixels_is_refused_by_its_header(tmp_path):
    path = tmp_path / "big.npy"
    path.write_bytes(npy_header((100000, 100000), "<f8"))
    assert path.stat().st_size <= 192
    refused(load_image, path, "(100000, 100000)", "megapixels")
    refused(load_images, path, "(100000, 100000)")


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((10**9, 784), "1 to 10000 images"),
        ((20_000, 28, 28), "1 to 10000 images"),
        ((0, 784), "1 to 10000 images"),
        ((28, 28, 3), "has shape (28, 28, 3)"),
        ((2, 2, 2, 2), "has shape"),
        ((784, 2), "but the file holds"),  # a picture: its data must be in the file
    ],
)
def test_npy_inputs_are_checked_by_shape_before_reading(tmp_path, shape, words):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_header(shape, "|u1") + bytes(100))
    refused(load_images, path, words)


def test_npy_inputs_of_several_images_are_read_by_load_images_only(tmp_path):
    images = np.zeros((3, 784), np.uint8)
    images[:, 300:310] = 255
    path = tmp_path / "three.npy"
    np.save(path, images)
    out = load_images(path)
    assert out.shape == (3, 28, 28) and out.max() == 1.0
    refused(load_image, path, "holds 3 images")
    images[1] = 0
    np.save(path, images)
    refused(load_images, path, "image 1 (from 0) is all black")


# ----------------------------------------------------------------------------- IDX
def test_a_small_gzip_idx_declaring_gigabytes_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + np.array([10_000_000, 28, 28], ">u4").tobytes()
    path.write_bytes(gzip_of(header, 1900 * MiB))  # 1.9 MB inflating to 1.9 GB
    refused(read_idx, path, "more than the 268435456 bytes")


def test_a_gzip_idx_inflating_far_more_than_its_size_is_refused_by_ratio(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + np.array([60000, 28, 28], ">u4").tobytes()
    path.write_bytes(gzip_of(header, 60000 * 28 * 28))  # 47 MB of zeros in 47 kB
    refused(read_idx, path, "more than 100 times its size")


def test_a_gzip_idx_inflating_to_gigabytes_is_read_only_to_its_declared_size(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    header = bytes([0, 0, 8, 3]) + np.array([60000, 28, 28], ">u4").tobytes()
    path.write_bytes(gzip_of(header, 1900 * MiB))  # 1.9 MB that would inflate to 1.9 GB
    start = time.perf_counter()
    refused(read_idx, path, "trailing data", peak=60 * MiB)  # the 47 MB declared, no more
    assert time.perf_counter() - start < 5


def test_a_gzip_idx_stream_longer_than_its_header_stops_one_byte_past_it(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    header = bytes([0, 0, 8, 1]) + np.array([1000], ">u4").tobytes()
    path.write_bytes(gzip_of(header, 1900 * MiB))  # declares 1000 bytes, inflates to 1.9 GB
    start = time.perf_counter()
    refused(read_idx, path, "trailing data", "at least 1 more bytes")
    assert time.perf_counter() - start < 2


def test_idx_files_still_round_trip(tmp_path):
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "a.gz", x)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), x)


# ----------------------------------------------------------------------------- special files
READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "model": ("m.npz", nnet.load),
    "checkpoint": ("c.npz", read_checkpoint),
    "idx": ("t10k-images-idx3-ubyte.gz", read_idx),
    "image": ("digit.png", load_image),
    "npy": ("digit.npy", load_image),
    "metrics": ("m.jsonl", read_metrics),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "fifo", "socket"])
def test_only_regular_files_are_read(tmp_path, reader, kind):
    name, read = READERS[reader]
    path = special(tmp_path, kind, name)
    refused(read, path, "not a regular file")


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_folder_is_refused_in_one_line(tmp_path, reader):
    name, read = READERS[reader]
    path = special(tmp_path, "folder", name)
    refused(read, path, "folder" if reader != "idx" else "directory")


# ----------------------------------------------------------------------------- wrong types
MODEL_FIELDS = [
    ({"activations": 5}, "field activations: unknown activation 5"),
    ({"activations": ["relu"] * 5}, "field activations: expected one name or 2"),
    ({"dataset": {"a": 1}}, "field dataset: expected a dataset name"),
    ({"classes": 5}, "field classes: expected a list of class names"),
    ({"classes": [["a"]]}, "field classes[0]"),
    ({"task": ["classifier"]}, "field task"),
    ({"sizes": [12, 10**400, 4]}, "field sizes[1]: expected a positive integer, got an integer"),
    ({"sizes": [12, True, 4]}, "field sizes[1]"),
    ({"format_version": "1"}, 'field format_version: expected an integer, got "1"'),
    ({"format_version": True}, "field format_version: expected an integer, got true"),
    ({"training": {"lr": "fast"}}, "field training.lr: expected a positive number"),
    ({"training": [1]}, "field training: expected a JSON object"),
    ({"history": [1]}, "field history[0]: expected an object of one epoch's metrics"),
    ({"history": [{"epoch": "one"}]}, "field history[0].epoch"),
    ({"best_epoch": -1}, "field best_epoch"),
    ({"seconds": "x"}, "field seconds"),
    ({"nnet_version": "x" * 5000}, "field nnet_version: expected a version of at most 1000"),
]


@pytest.mark.parametrize(("change", "words"), MODEL_FIELDS, ids=[w for _, w in MODEL_FIELDS])
def test_model_metadata_of_the_wrong_type_or_range_is_one_line(model, change, words):
    rewrite(model, lambda m: m.update(change))
    refused(nnet.load, model, words, error=ModelFileError)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "JSON nested 100001 levels deep"),
        ("9" * 5000, "not valid JSON"),
        ('{"a": 1, "a": 2}', 'field meta: the key "a" appears twice'),
        ("1e999", None),  # infinity in a key nnet does not read: kept
    ],
)
def test_model_metadata_json_is_bounded(model, raw, words):
    arrays, meta = split(model.read_bytes())
    text = json.dumps(meta)
    model.write_bytes(npz_bytes(arrays, f'{text[:-1]}, "extra": {raw}}}'))
    if words is None:
        assert nnet.load(model).meta["extra"] == float("inf")
    else:
        refused(nnet.load, model, words, error=ModelFileError)


def test_duplicate_keys_in_metadata_are_refused(model):
    arrays, meta = split(model.read_bytes())
    text = json.dumps(meta)
    model.write_bytes(npz_bytes(arrays, text[:-1] + ', "dtype": "float64"}'))
    refused(nnet.load, model, 'field meta: the key "dtype" appears twice', error=ModelFileError)


CHECKPOINT_FIELDS: list[tuple[Callable[[dict], Any], str]] = [
    (lambda m: m["trainer"]["progress"].update(batch="x"), "field trainer.progress.batch"),
    (lambda m: m["trainer"]["progress"].update(loss_sum=float("inf")),
     "field trainer.progress.loss_sum"),
    (lambda m: m["trainer"]["progress"].update(seen=-5), "field trainer.progress.seen"),
    (lambda m: m["trainer"]["progress"].update(seen=13), "expected 3 batches of 4 samples"),
    (lambda m: m["trainer"]["progress"].update(correct=99), "field trainer.progress.correct"),
    (lambda m: m["trainer"]["progress"].pop("rng_start"),
     "field trainer.progress.rng_start: missing"),
    (lambda m: m["trainer"]["progress"].update(extra=1), "field trainer.progress.extra"),
    (lambda m: m["optimizer"].update(t=-1), "field optimizer.t"),
    (lambda m: m["optimizer"].update(t="many"), "field optimizer.t"),
    (lambda m: m["optimizer"].update(name="sgd"), "field optimizer.name: expected the settings'"),
    (lambda m: m["trainer"].update(rng={"bit_generator": "nope"}), "field trainer.rng"),
    (lambda m: m["trainer"]["rng"]["state"].update(state=2**200), "field trainer.rng.state.state"),
    (lambda m: m["trainer"]["rng"].update(has_uint32=True), "field trainer.rng.has_uint32"),
    (lambda m: m["trainer"].pop("epoch"), "field trainer.epoch: missing"),
    (lambda m: m["trainer"].update(epoch=-1), "field trainer.epoch"),
    (lambda m: m["trainer"].update(epoch=2), "field trainer.history: expected 2 epochs"),
    (lambda m: m["trainer"].update(best=[0.5]), "field trainer.best"),
    (lambda m: m["trainer"].update(best=[0.5, 7]), "field trainer.best: expected"),
    (lambda m: m["trainer"].update(train_seconds=-1), "field trainer.train_seconds"),
    (lambda m: m["trainer"].update(early_stopped=0), "field trainer.early_stopped"),
    (lambda m: m.pop("settings"), "field settings: missing"),
    (lambda m: m["settings"].update(batch_size=2.5), "field settings.batch_size"),
    (lambda m: m["settings"].update(epochs=10**30), "field settings.epochs"),
    (lambda m: m["settings"].update(colour="blue"), "unknown setting 'colour'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "words"), CHECKPOINT_FIELDS, ids=[w for _, w in CHECKPOINT_FIELDS]
)
def test_checkpoint_fields_of_the_wrong_type_or_range_are_one_line(checkpoint, change, words):
    rewrite(checkpoint, change)
    refused(load_checkpoint, checkpoint, words, error=ModelFileError)


def test_the_good_checkpoint_still_restores(checkpoint):
    ck = read_checkpoint(checkpoint)
    assert ck.state["progress"]["batch"] == 3 and ck.opt_meta["t"] > 0
    assert type(ck.state["epoch"]) is int and ck.state["best"] is not None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"epoch": 1, "train_loss": 1e999}\n', "field train_loss: expected a number in"),
        ('{"epoch": 1, "train_loss": 1e300}\n', "field train_loss"),
        ('{"epoch": 1, "lr": ' + "9" * 5000 + "}\n", "not valid JSON"),
        ('{"epoch": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}\n", "nested 50001 levels"),
        ('{"epoch": 1e20}\n', "field epoch"),
        ('{"epoch": 1, "epoch": 2}\n', 'the key "epoch" appears twice'),
        ('{"epoch": 1, "early_stop": "yes"}\n', "field early_stop: expected true or false"),
        ('{"epoch": 1, "note": [1, 2]}\n', "field note"),
    ],
)
def test_metrics_files_are_bounded(tmp_path, text, words):
    path = tmp_path / "run.jsonl"
    path.write_text(text)
    refused(read_metrics, path, "line 1", words)


def test_a_model_history_is_checked_like_a_metrics_file_before_plotting(model):
    rewrite(model, lambda m: m["history"][0].update(train_loss=float("inf")))
    assert nnet.load(model).meta["history"][0]["train_loss"] == float("inf")  # kept in a model
    refused(lambda p: read_runs([p]), model, "history entry 1: field train_loss")


def test_an_oversized_metrics_file_is_refused_unread(tmp_path):
    path = tmp_path / "run.jsonl"
    with open(path, "wb") as f:
        f.truncate(schema.MAX_METRICS_BYTES + 1)  # sparse: costs no disk
    refused(read_metrics, path, f"larger than {schema.MAX_METRICS_BYTES} bytes")


# ----------------------------------------------------------------------------- silent surprises
def test_two_members_of_one_name_are_refused(model):
    with zipfile.ZipFile(model) as zf:
        members = [stored(i.filename, zf.read(i)) for i in zf.infolist()]
    model.write_bytes(hand_zip([*members, members[0]]))
    refused(nnet.load, model, "member w0.npy appears twice", error=ModelFileError)


def test_files_of_nnet_0_1_still_load():
    data = Path(__file__).parent / "data"
    assert nnet.load(data / "v0.1-model.npz").sizes == [784, 16, 16, 10]
    assert nnet.load(data / "v0.1-uninterrupted.npz").sizes == [784, 32, 10]
    ck = read_checkpoint(data / "v0.1-checkpoint.npz")
    assert ck.settings.preset == "best" and ck.state["progress"]["batch"] == 209


# ----------------------------------------------------------------------------- the command line
def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, files) -> Iterator[Path]:
    """A folder of the worst files, for the command line."""
    ws = tmp_path_factory.mktemp("hostile")
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    np.save(ws / "digit.npy", digit)
    net = nnet.Network([784, 8, 10], seed=0)
    nnet.save(net, ws / "model.npz", {"task": "classifier", "dataset": "mnist"})
    arrays, meta = split((ws / "model.npz").read_bytes())
    (ws / "sizes-huge.npz").write_bytes(npz_bytes(arrays, json.dumps(
        {**meta, "sizes": [784, 100000, 10]})))  # fmt: skip
    header = npy_header((785, 8))
    (ws / "bomb.npz").write_bytes(hand_zip([
        bomb("w0.npy", header, 1900 * MiB, 1900 * MiB),
        stored("w1.npy", npy_bytes(arrays["w1"])),
        stored("meta.npy", npy_bytes(np.array(json.dumps(meta)))),
    ]))  # fmt: skip
    (ws / "big.npy").write_bytes(npy_header((100000, 100000), "<f8"))
    (ws / "ck-huge.npz").write_bytes((files / "ck.npz").read_bytes())

    def huge(meta):
        meta["sizes"] = meta["settings"]["sizes"] = [12, 100000, 4]

    rewrite(ws / "ck-huge.npz", huge)
    os.symlink("/dev/zero", ws / "zero.npz")
    os.symlink("/dev/zero", ws / "zero.jsonl")
    (ws / "nested.jsonl").write_text("[" * 100000 + "]" * 100000 + "\n")
    data = ws / "data" / "mnist"
    data.mkdir(parents=True)
    header = bytes([0, 0, 8, 3]) + np.array([60000, 28, 28], ">u4").tobytes()
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(gzip_of(header, 1900 * MiB))
    yield ws


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["evaluate", "sizes-huge.npz"], "need (785, 100000)"),
        (["evaluate", "bomb.npz"], "decompression bomb"),
        (["predict", "model.npz", "big.npy"], "big.npy"),
        (["plot", "nested.jsonl"], "nested 100000 levels"),
        (["inspect", "zero.npz"], "zero.npz"),
        (["train", "--resume", "ck-huge.npz"], "need (13, 100000)"),
    ],
)
def test_the_command_line_refuses_them_in_one_line_within_1_gib(hostile, argv, words):
    out = subprocess.run(
        [sys.executable, "-m", "nnet", *argv], cwd=hostile, capture_output=True, text=True,
        timeout=60, preexec_fn=limit_memory,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith("nnet") and words in lines[0], out.stderr
