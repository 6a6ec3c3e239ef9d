"""Datasets: real MNIST, where data is looked for, downloads from a local server, helpers.

No test touches the network: downloads go to a local HTTP server on 127.0.0.1, and an
autouse guard fails any test that opens another URL.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from nnet.data import datasets
from nnet.data.datasets import (
    DATASETS,
    FILES,
    DatasetSpec,
    DownloadError,
    data_dirs,
    download,
    load,
    locate,
    one_hot,
    split_validation,
    to_inputs,
)
from nnet.data.idx import IdxError, write_idx
from nnet.errors import NnetError

N_TRAIN, N_TEST = 6, 4


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to open a URL other than the local test server."""
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):  # type: ignore[no-untyped-def]
        full = url if isinstance(url, str) else url.full_url
        assert full.startswith("http://127.0.0.1:"), f"test tried to reach {full}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No NNET_DATA, and a user cache inside tmp_path (returned)."""
    monkeypatch.delenv("NNET_DATA", raising=False)
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "nnet"


@pytest.fixture(scope="module")
def mnist(mnist_dir: Path) -> datasets.Dataset:
    return load("mnist", data=mnist_dir, download=False)


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        FILES[0]: rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        FILES[1]: rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        FILES[2]: rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        FILES[3]: rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def make_dataset(
    folder: Path, *, compressed: bool = True, skip: str | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a tiny fake dataset into ``folder``; return its arrays by standard name."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = fake_arrays(seed)
    for name, arr in arrays.items():
        if name != skip:
            write_idx(folder / (name if compressed else name.removesuffix(".gz")), arr)
    return arrays


class Server:
    """A local HTTP server: ``good/``, ``corrupt/`` (wrong md5), ``missing/`` (404), ``slow/``."""

    def __init__(self, good: dict[str, bytes]) -> None:
        corrupt = {k: v[:-1] + bytes([v[-1] ^ 1]) for k, v in good.items()}
        self.routes = {f"/good/{k}": v for k, v in good.items()}
        self.routes.update({f"/corrupt/{k}": v for k, v in corrupt.items()})
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path.startswith("/slow/"):
                    time.sleep(0.6)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (the timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def fake_gz(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fake")
    make_dataset(folder)
    return {name: (folder / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def md5s(fake_gz: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.md5(v).hexdigest() for k, v in fake_gz.items()}


@pytest.fixture(scope="module")
def server(fake_gz: dict[str, bytes]) -> Iterator[Server]:
    s = Server(fake_gz)
    yield s
    s.close()


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- real MNIST


def test_real_mnist(mnist: datasets.Dataset, mnist_dir: Path) -> None:
    assert mnist.name == "mnist"
    assert mnist.source == mnist_dir / "mnist"
    assert mnist.x_train.shape == (60000, 784) and mnist.x_train.dtype == np.uint8
    assert mnist.y_train.shape == (60000,) and mnist.y_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 784) and mnist.y_test.shape == (10000,)
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.x_train.min() == 0 and mnist.x_train.max() == 255
    assert mnist.x_test.min() == 0 and mnist.x_test.max() == 255
    assert set(np.unique(mnist.y_train).tolist()) == set(range(10))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_real_mnist_inputs(mnist: datasets.Dataset, dtype: str) -> None:
    x = to_inputs(mnist.x_test, dtype)
    assert x.dtype == np.dtype(dtype) and x.shape == (10000, 784)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x[:1000] * 255, mnist.x_test[:1000], atol=1e-4)


# --------------------------------------------------------------------------- locating


def test_data_dirs_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNET_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dirs(tmp_path / "arg") == [tmp_path / "arg"]  # an explicit folder alone
    assert data_dirs(str(tmp_path / "arg"))[0] == tmp_path / "arg"
    assert data_dirs() == [tmp_path / "env", tmp_path / "xdg/nnet"]
    monkeypatch.setenv("NNET_DATA", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dirs() == [tmp_path / "home/.cache/nnet"]
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_dirs(tmp_path / "home/.cache/nnet") == [tmp_path / "home/.cache/nnet"]


def test_locate_order(tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arg, nnet_data = tmp_path / "arg", tmp_path / "env"
    for d in (arg, nnet_data, env):
        make_dataset(d / "mnist")
    monkeypatch.setenv("NNET_DATA", str(nnet_data))
    assert locate("mnist", arg) == arg / "mnist"
    assert locate("mnist") == nnet_data / "mnist"
    monkeypatch.delenv("NNET_DATA")
    assert locate("mnist") == env / "mnist"
    assert locate("fashion-mnist", arg) is None
    with pytest.raises(NnetError, match="unknown dataset 'emnist'.*fashion-mnist, mnist"):
        locate("emnist")


def test_incomplete_folder_is_skipped(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path / "env" / "mnist", skip=FILES[3])
    make_dataset(env / "mnist", seed=1)
    monkeypatch.setenv("NNET_DATA", str(tmp_path / "env"))
    assert locate("mnist") == env / "mnist"
    ds = load("mnist", download=False)
    assert ds.source == env / "mnist"
    np.testing.assert_array_equal(ds.y_test, fake_arrays(1)[FILES[3]])


def test_an_explicit_folder_is_never_replaced_by_another(
    tmp_path: Path, env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path / "arg" / "mnist", skip=FILES[3])
    make_dataset(tmp_path / "env" / "mnist", seed=1)
    monkeypatch.setenv("NNET_DATA", str(tmp_path / "env"))
    assert locate("mnist", tmp_path / "arg") is None
    with pytest.raises(DownloadError, match=f"{tmp_path / 'arg' / 'mnist'} lacks {FILES[3]}"):
        load("mnist", tmp_path / "arg", download=False)


def test_uncompressed_and_mixed_files(tmp_path: Path, env: Path) -> None:
    arrays = make_dataset(tmp_path / "d" / "fashion-mnist", compressed=False)
    assert locate("fashion-mnist", tmp_path / "d") == tmp_path / "d" / "fashion-mnist"
    ds = load("fashion-mnist", tmp_path / "d", download=False)
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (N_TRAIN, 784) and ds.x_test.shape == (N_TEST, 784)
    np.testing.assert_array_equal(ds.x_train, arrays[FILES[0]].reshape(N_TRAIN, 784))
    np.testing.assert_array_equal(ds.y_train, arrays[FILES[1]])
    np.testing.assert_array_equal(ds.x_test, arrays[FILES[2]].reshape(N_TEST, 784))
    np.testing.assert_array_equal(ds.y_test, arrays[FILES[3]])
    write_idx(tmp_path / "d" / "fashion-mnist" / FILES[1], arrays[FILES[1]])  # gz too
    assert load("fashion-mnist", tmp_path / "d", download=False).y_train.shape == (N_TRAIN,)


def test_not_found_without_download(tmp_path: Path, env: Path) -> None:
    make_dataset(tmp_path / "arg" / "mnist", skip=FILES[2])
    with pytest.raises(DownloadError) as info:
        load("mnist", tmp_path / "arg", download=False)
    msg = str(info.value)
    assert f"{tmp_path / 'arg' / 'mnist'} lacks {FILES[2]}" in msg
    assert f"{env / 'mnist'}" not in msg  # an explicit --data is the only folder
    assert all(f in msg for f in FILES)
    assert "--data DIR" in msg and "NNET_DATA" in msg and "mnist/" in msg
    assert isinstance(info.value, NnetError)


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("file", "array", "words"),
    [
        (FILES[0], np.zeros((N_TRAIN, 28, 27), np.uint8), ["28x28 images", "(6, 28, 27)"]),
        (FILES[0], np.zeros((N_TRAIN, 28, 28), np.int16), ["28x28 images", "int16"]),
        (FILES[0], np.zeros((0, 28, 28), np.uint8), ["no images"]),
        (FILES[1], np.zeros((N_TRAIN, 1), np.uint8), ["labels", "(6, 1)"]),
        (FILES[1], np.zeros(N_TRAIN - 1, np.uint8), ["5 labels", "6 images", FILES[0]]),
        (FILES[3], np.full(N_TEST, 10, np.uint8), ["label 10", "0..9"]),
    ],
)
def test_structure_errors(
    tmp_path: Path, env: Path, file: str, array: np.ndarray, words: list[str]
) -> None:
    folder = tmp_path / "d" / "mnist"
    make_dataset(folder)
    write_idx(folder / file, array)
    with pytest.raises(IdxError) as info:
        load("mnist", tmp_path / "d", download=False)
    msg = str(info.value)
    assert str(folder / file) in msg
    for w in words:
        assert w in msg, (w, msg)


def test_damaged_file_is_idx_error(tmp_path: Path, env: Path) -> None:
    folder = tmp_path / "d" / "mnist"
    make_dataset(folder)
    (folder / FILES[2]).write_bytes((folder / FILES[2]).read_bytes()[:-30])
    with pytest.raises(IdxError, match="damaged gzip") as info:
        load("mnist", tmp_path / "d", download=False)
    assert str(folder / FILES[2]) in str(info.value)


# --------------------------------------------------------------------------- downloading


def test_download_falls_back_to_next_mirror(
    tmp_path: Path, server: Server, md5s: dict[str, str], fake_gz: dict[str, bytes]
) -> None:
    mirrors = [server.url("missing"), server.url("corrupt"), server.url("good")]
    folder = download("mnist", tmp_path, mirrors=mirrors, files=md5s, progress=False)
    assert folder == tmp_path / "mnist"
    assert names(folder) == sorted(FILES)  # no temp files left
    for name in FILES:
        data = (folder / name).read_bytes()
        assert data == fake_gz[name]
        assert hashlib.md5(data).hexdigest() == md5s[name]


def test_download_fetches_only_missing_files(
    tmp_path: Path, server: Server, md5s: dict[str, str]
) -> None:
    folder = tmp_path / "mnist"
    make_dataset(folder, skip=FILES[1], seed=5)
    write_idx(folder / FILES[3].removesuffix(".gz"), fake_arrays(5)[FILES[3]])
    (folder / FILES[3]).unlink()  # present uncompressed only: still counts as present
    before = len(server.requests)
    download("mnist", tmp_path, mirrors=[server.url("good")], files=md5s, progress=False)
    assert server.requests[before:] == [f"/good/{FILES[1]}"]
    assert FILES[3] not in names(folder)


def test_download_all_mirrors_fail(
    tmp_path: Path, server: Server, md5s: dict[str, str], closed_port: int
) -> None:
    unreachable = f"http://127.0.0.1:{closed_port}/"
    mirrors = [server.url("missing"), server.url("corrupt"), unreachable]
    with pytest.raises(DownloadError) as info:
        download("mnist", tmp_path / "data", mirrors=mirrors, files=md5s, progress=False)
    msg = str(info.value)
    first = FILES[0]
    assert f"{server.url('missing')}{first}: HTTP 404" in msg
    assert f"{server.url('corrupt')}{first}: md5 " in msg and md5s[first] in msg
    assert f"{unreachable}{first}: cannot connect (Connection refused)" in msg
    folder = tmp_path / "data" / "mnist"
    assert str(folder) in msg and "--data DIR" in msg and "NNET_DATA" in msg
    assert all(f in msg for f in FILES)  # every file is still missing
    assert "\n" not in msg
    assert names(folder) == []  # no final file, no temp file


def test_download_timeout(tmp_path: Path, server: Server, md5s: dict[str, str]) -> None:
    with pytest.raises(DownloadError, match=r"slow/train-images-idx3-ubyte.gz: timed out"):
        download(
            "mnist",
            tmp_path,
            mirrors=[server.url("slow")],
            files=md5s,
            progress=False,
            timeout=0.2,
        )
    assert names(tmp_path / "mnist") == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, md5s: dict[str, str]
) -> None:
    class Response:
        headers = {"Content-Length": "1000"}
        calls = 0

        def read(self, n: int) -> bytes:
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return b"x" * 100

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Response())
    with pytest.raises(KeyboardInterrupt):
        download("mnist", tmp_path, mirrors=["http://127.0.0.1:1/"], files=md5s, progress=False)
    assert names(tmp_path / "mnist") == []


def test_progress_bar_on_stderr(
    tmp_path: Path, server: Server, md5s: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    files = {FILES[1]: md5s[FILES[1]]}
    download("mnist", tmp_path, mirrors=[server.url("good")], files=files, progress=True)
    captured = capsys.readouterr()
    assert FILES[1] in captured.err and captured.out == ""


def test_load_downloads_into_first_data_dir(
    tmp_path: Path,
    env: Path,
    server: Server,
    md5s: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = DatasetSpec(
        "mnist", md5s, (server.url("missing"), server.url("good")), DATASETS["mnist"].classes
    )
    monkeypatch.setitem(DATASETS, "mnist", spec)
    monkeypatch.setenv("NNET_DATA", str(tmp_path / "env"))
    ds = load("mnist", tmp_path / "arg", progress=False)
    assert ds.source == tmp_path / "arg" / "mnist"
    assert names(ds.source) == sorted(FILES)
    arrays = fake_arrays(0)
    np.testing.assert_array_equal(ds.x_train, arrays[FILES[0]].reshape(N_TRAIN, 784))
    np.testing.assert_array_equal(ds.y_test, arrays[FILES[3]])
    assert not (tmp_path / "env").exists() and not env.exists()
    # Without --data, NNET_DATA is the most specific place.
    ds = load("mnist", progress=False)
    assert ds.source == tmp_path / "env" / "mnist"


# --------------------------------------------------------------------------- helpers


def test_to_inputs() -> None:
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(to_inputs(x, "float64"), [[0.0, 0.2, 1.0]])
    assert to_inputs(x).dtype == np.float32
    with pytest.raises(NnetError, match="uint8"):
        to_inputs(x.astype(np.int32), "float32")
    with pytest.raises(NnetError, match="dtype"):
        to_inputs(x, "int32")


def test_one_hot() -> None:
    y = np.array([2, 0, 9], dtype=np.uint8)
    t = one_hot(y, 10, "float64")
    assert t.shape == (3, 10) and t.dtype == np.float64
    np.testing.assert_array_equal(t.argmax(axis=1), y)
    np.testing.assert_array_equal(t.sum(axis=1), 1)
    with pytest.raises(NnetError, match="0..2"):
        one_hot(y, 3)
    with pytest.raises(NnetError, match="1-D"):
        one_hot(y.reshape(3, 1), 10)


def test_split_validation() -> None:
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    xt, yt, xv, yv = split_validation(x, y, 3, np.random.default_rng(7))
    assert xt.shape == (7, 2) and xv.shape == (3, 2)
    assert sorted(yt.tolist() + yv.tolist()) == list(range(10))
    np.testing.assert_array_equal(xt[:, 0] // 2, yt)
    np.testing.assert_array_equal(xv[:, 0] // 2, yv)
    again = split_validation(x, y, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(again[3], yv)
    assert split_validation(x, y, 0, np.random.default_rng(0))[2].shape == (0, 2)
    for bad in (-1, 10, 11):
        with pytest.raises(NnetError, match="validation size"):
            split_validation(x, y, bad, np.random.default_rng(0))
    with pytest.raises(NnetError, match="as many samples"):
        split_validation(x, y[:-1], 1, np.random.default_rng(0))
