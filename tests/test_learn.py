"""The learn view's API: a run trained live in a child process, watched and commanded.

One server (no model file) for the module; runs train a tiny network on a small subset of
the real MNIST, so that each takes a few seconds at most.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.apps.learn import (
    MAX_BATCH_WORK,
    LearnHub,
    check_engine,
    check_save_name,
    engine_work,
    parse_request,
    saturation,
    weight_images,
)
from nnet.apps.serve import Server
from nnet.data.datasets import load, one_hot, to_inputs
from nnet.errors import NnetError
from nnet.training.loop import Split, evaluate
from nnet.training.presets import settings_for

TINY = {"sizes": [784, 16, 10], "train_samples": 2000, "batch_size": 100, "epochs": 3}


# --------------------------------------------------------------------------- helpers


class Events:
    """An SSE client in a thread: every event's JSON object, in order."""

    def __init__(self, port: int) -> None:
        self.items: list[dict] = []
        self.lock = threading.Lock()
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.request("GET", "/api/train/events")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith("text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    with self.lock:
                        self.items.append(json.loads(line[6:]))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # hung up (AttributeError: http.client reading a closed response)

    def of(self, kind: str, run: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.items if e["type"] == kind and run in (None, e.get("run"))]

    def wait(self, test, what: str, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [e for e in self.items if test(e)]
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {what} within {timeout} s; got {self.items[-5:]}")

    def close(self) -> None:
        """Hang up: the reader's recv returns at once (close() alone would wait for it)."""
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
        self.conn.close()


def call(port: int, path: str, body: object = None, method: str = "POST") -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    conn.close()
    return resp.status, answer


@pytest.fixture(scope="module")
def served(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from nnet.apps.learn import LearnHub

    save_dir = tmp_path_factory.mktemp("learn")
    hub = LearnHub(data=mnist_dir, save_dir=save_dir, threads=1)
    srv = Server(None, port=0, log="none", learn=hub)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, save_dir
    srv.shutdown()
    srv.server_close()  # stops the training processes too
    thread.join(5)
    runs = hub.old + [hub.run]
    assert len(runs) == 2 and not any(r.process.is_alive() for r in runs)
    assert [r.process.exitcode for r in runs] == [0, 0]


def state_of(events: Events, run: str, state: str) -> dict:
    return events.wait(
        lambda e: e["type"] == "state" and e.get("run") == run and e["state"] == state, state
    )[-1]


# --------------------------------------------------------------------------- pure functions


def test_requests_are_checked_like_nnet_train():
    request = parse_request({"preset": "seed", "lr": 2.5, "train_samples": 600})
    assert request.settings == settings_for("seed", {"lr": 2.5, "train_samples": 600})
    assert request.held_out == 1000 and request.eval_every == 3  # 1000 / (3 * 0.1 * 1000)
    with pytest.raises(NnetError, match="setting lr: expected a positive number, got -1"):
        parse_request({"lr": -1})
    as_text = parse_request({"sizes": "784-32-10", "lr": "0.5", "dropout": "0.2"}).settings
    assert (as_text.sizes, as_text.lr, as_text.dropout) == ((784, 32, 10), 0.5, (0.2,))
    with pytest.raises(NnetError, match="setting sizes: not a list of integers like 784"):
        parse_request({"sizes": "784-x"})
    with pytest.raises(NnetError, match="unknown setting 'learning_rate'"):
        parse_request({"learning_rate": 1})
    with pytest.raises(NnetError, match="unknown preset 'fast'"):
        parse_request({"preset": "fast"})
    with pytest.raises(NnetError, match="trains classifiers"):
        parse_request({"preset": "autoencoder"})
    with pytest.raises(NnetError, match="eval_every must be an integer from 1"):
        parse_request({"eval_every": 0})


def test_slow_engines_are_refused_for_large_networks():
    seed = settings_for("seed")
    check_engine("matrix", seed)  # the notes' network: the literal A tensors are allowed
    check_engine("frontprop", seed)
    with pytest.raises(NnetError, match="recursive engine .* far too slowly"):
        check_engine("recursive", seed)
    best = settings_for("best")
    check_engine("backprop", best)
    assert engine_work("frontprop", best.sizes, best.batch_size) > MAX_BATCH_WORK
    with pytest.raises(NnetError, match=r"frontprop engine would take about 1\.3e\+11"):
        check_engine("frontprop", best)
    with pytest.raises(NnetError, match="use backprop, or nnet train"):
        check_engine("matrix", best)
    with pytest.raises(NnetError, match="unknown engine 'fast'"):
        check_engine("fast", seed)


def test_save_names_stay_in_the_folder(tmp_path: Path):
    assert check_save_name("run-1.npz", tmp_path) == tmp_path / "run-1.npz"
    for bad in ("../x.npz", "/tmp/x.npz", ".hidden.npz", "a/b.npz", "..npz", "", None, "x.txt"):
        with pytest.raises(NnetError):
            check_save_name(bad, tmp_path)


def test_saturation_and_weight_images():
    net = nnet.Network([784, 3, 2], "sigmoid", seed=0)
    w = np.zeros_like(net.weights[0])
    w[-1] = [10.0, 0.0, -10.0]  # biases: neuron 0 and 2 saturate, neuron 1 sits at 0.5
    w[5, 1] = -2.0  # one weight of neuron 1, its largest
    net.weights = [w, net.weights[1]]
    x = np.zeros((4, 784), net.dtype)
    assert saturation(net, x)[0] == pytest.approx(2 / 3)
    images = weight_images(net)
    assert (images["neurons"], images["shown"], images["side"]) == (3, 3, 28)
    q = np.frombuffer(base64.b64decode(images["data"]), np.uint8).reshape(3, 784)
    assert q[1, 5] == 1 and q[1, 4] == 128 and (q[0] == 128).all()  # -max -> 1, 0 -> 128
    assert images["scale"] == [0.0, 2.0, 0.0]


# --------------------------------------------------------------------------- a live run


def test_a_run_live_pause_step_switch_save(served, mnist_dir: Path):
    srv, save_dir = served
    port = srv.server_address[1]
    events = Events(port)
    try:
        status, started = call(port, "/api/train", {**TINY, "eval_every": 2, "held_out": 500})
        assert status == 202, started
        run = started["run"]
        assert started["settings"]["sizes"] == [784, 16, 10]
        status, again = call(port, "/api/train", TINY)
        assert status == 409 and "already" in again["error"]

        events.wait(lambda e: e["type"] == "batch" and e.get("run") == run, "a batch")
        assert call(port, "/api/train/pause")[0] == 200
        paused = state_of(events, run, "paused")
        batches = events.of("batch", run)
        last = batches[-1]
        assert last["step"] == paused["step"] and last["epoch"] >= 1
        assert 0 < last["loss"] and 0 <= last["accuracy"] <= 1
        held = [b for b in batches if "held_out_loss" in b]
        assert held and all(b["step"] % 2 == 0 for b in held)
        assert len(held[-1]["saturation"]) == 2 and 0 <= held[-1]["saturation"][0] <= 1
        assert events.of("weights", run)[-1]["shown"] == 16

        # the draw view's prediction comes from the network being trained
        status, answer = call(port, "/api/predict", {"pixels": [[0.0] * 28] * 28})
        assert status == 200 and len(answer["probabilities"]) == 10
        picture = np.zeros((140, 140))
        picture[30:110, 60:75] = 0.987  # a 1, as the page sends a drawing (over 64 KiB)
        request = {"pixels": picture.tolist(), "preprocess": True}
        status, drawn = call(port, "/api/train/predict", request)
        assert status == 200 and np.array(drawn["input"]).shape == (28, 28)

        # switch while paused: the next batch's gradient by both engines, the same to rounding
        status, switched = call(port, "/api/train/switch", {"engine": "frontprop"})
        assert status == 200, switched
        assert (switched["from"], switched["to"]) == ("backprop", "frontprop")
        assert switched["samples"] == 100
        assert 0 <= switched["relative"] < 1e-5
        status, refused = call(port, "/api/train/switch", {"engine": "recursive"})
        assert status == 400 and "far too slowly" in refused["error"]

        step_before = paused["step"]
        assert call(port, "/api/train/step")[0] == 200
        stepped = events.wait(
            lambda e: e["type"] == "batch" and e.get("run") == run and e["step"] == step_before + 1,
            "the stepped batch",
        )[0]
        assert stepped["engine"] == "frontprop"
        time.sleep(0.3)
        assert max(b["step"] for b in events.of("batch", run)) == step_before + 1  # paused again

        assert call(port, "/api/train/resume")[0] == 200
        events.wait(
            lambda e: e["type"] == "batch" and e.get("run") == run and e["step"] > step_before + 2,
            "batches after resuming",
        )
        assert call(port, "/api/train/stop")[0] == 200
        state_of(events, run, "stopped")
        final = events.wait(lambda e: e["type"] == "held_out" and e.get("run") == run, "final")[-1]

        status, refused = call(port, "/api/train/save", {"name": "../escape.npz"})
        assert status == 400
        status, saved = call(port, "/api/train/save", {"name": "live.npz"})
        assert status == 200, saved
        model = nnet.load(save_dir / "live.npz")
        assert model.meta["training"]["engine"] == "frontprop"
        data = load("mnist", mnist_dir, download=False, progress=False)
        x, y = to_inputs(data.x_test[:500]), data.y_test[:500]
        loss, acc = evaluate(model, Split(x, one_hot(y), y))
        assert acc == saved["held_out_accuracy"] == final["held_out_accuracy"]
        assert loss == pytest.approx(final["held_out_loss"], rel=1e-6)

        # a late viewer gets the run so far, then a new run may start
        late = Events(port)
        try:
            late.wait(lambda e: e["type"] == "saved", "the backlog")
            assert len(late.of("batch", run)) == len(events.of("batch", run))
            assert len(late.of("weights")) == 1
        finally:
            late.close()
        status, second = call(port, "/api/train", {**TINY, "epochs": 1})
        assert status == 202
        state_of(events, second["run"], "finished")
        epochs = events.of("epoch", second["run"])
        assert [r["epoch"] for r in epochs] == [1] and "test_accuracy" in epochs[0]
    finally:
        events.close()


def test_bad_settings_and_commands_without_a_run_are_refused(served):
    srv, _ = served
    port = srv.server_address[1]
    status, answer = call(port, "/api/train", {"sizes": [784, 16, 9]})
    assert status == 400 and answer["error"].startswith("Mnist") is False
    assert "10" in answer["error"]
    status, answer = call(port, "/api/train", {"batch_size": "big"})
    assert status == 400 and "batch_size" in answer["error"]
    status, answer = call(port, "/api/train", {"engine": "matrix", "preset": "best"})
    assert status == 400 and "matrix engine would take" in answer["error"]
    status, answer = call(port, "/api/model", method="GET")
    assert status == 404 and "learn view" in answer["error"]
    status, answer = call(port, "/api/train", method="GET")
    assert status == 200 and set(answer["presets"]) == {"seed", "best", "distorted"}
    assert answer["presets"]["seed"]["lr"] == 10.0
    assert "recursive" not in answer["choices"]["engine"]


# --------------------------------------------------------------------------- under load


def run_clients(port: int, path: str, clients: int, seconds: float) -> tuple[np.ndarray, list]:
    """``clients`` pages drawing at once for ``seconds``: each posts a 28x28 digit to
    ``path``, waits for the answer, and sends the next about 100 ms after the last (the
    page's pace, 50 to 150 ms at random). The latencies (ms) and the failures."""
    rng = np.random.default_rng(0)
    bodies = []
    for _ in range(clients):
        x = rng.random((28, 28)) * (rng.random((28, 28)) < 0.3)
        bodies.append(json.dumps({"pixels": x.round(3).tolist()}).encode())
    waits = rng.uniform(0.05, 0.15, size=(clients, 1000))
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    end = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, bodies[i], {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                failures.append(f"client {i}: {exc!r}")
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            latencies[i].append(time.perf_counter() - t0)
            if resp.status != 200 or not data.startswith(b'{"digit":'):
                failures.append(f"client {i}: {resp.status} {data[:100]!r}")
            wait = waits[i, len(latencies[i]) % waits.shape[1]]
            time.sleep(max(0.0, wait - (time.perf_counter() - t0)))
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return np.concatenate([np.array(lat) for lat in latencies]) * 1000, failures


@pytest.mark.slow
@pytest.mark.parametrize(
    "threads",
    [
        None,
        pytest.param(
            "all",
            marks=pytest.mark.skipif(
                not os.environ.get("NNET_COMPARE_THREADS"),
                reason="the comparison with every core runs with NNET_COMPARE_THREADS=1",
            ),
        ),
    ],
)
def test_predictions_stay_fast_while_an_mlp800_trains(
    mnist_dir: Path, tmp_path: Path, threads: str | None
):
    """nnet serve MODEL as a process of its own, a 784-800-800-10 run (preset best) training
    in its child: 10 clients drawing at the page's pace, first on /api/predict (the model
    file), then on /api/train/predict (the network being trained). p99 < 250 ms for the
    model file's predictions with the child's default threads (one core fewer than the
    machine has); with as many threads as cores ("all", $NNET_THREADS; only with
    NNET_COMPARE_THREADS=1) only printed, to compare. Both printed with the batches trained
    meanwhile."""
    import subprocess
    import sys

    model = tmp_path / "model.npz"
    nnet.save(nnet.Network([784, 64, 10], "relu", loss="cross_entropy", seed=0), model,
              {"task": "classifier", "dataset": "mnist"})  # fmt: skip
    command = [sys.executable, "-m", "nnet", "serve", str(model), "--port", "0"]
    command += ["--data", str(mnist_dir), "--save-dir", str(tmp_path)]
    err = open(tmp_path / "serve.err", "w")  # noqa: SIM115 (closed below)
    env = dict(os.environ)
    env.pop("NNET_THREADS", None)
    if threads == "all":
        env["NNET_THREADS"] = str(len(os.sched_getaffinity(0)))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        port = int(proc.stdout.readline().split()[2].rstrip("/").rsplit(":", 1)[1])
        events = Events(port)
        status, started = call(port, "/api/train", {"preset": "best"})  # 16 epochs: all along
        assert status == 202, started
        run = started["run"]
        events.wait(lambda e: e["type"] == "batch", "the first batch", timeout=120)
        clients, seconds = 10, 15.0
        figures = {}
        for path in ("/api/predict", "/api/train/predict"):
            before = len(events.of("batch", run))
            ms, failures = run_clients(port, path, clients, seconds)
            trained = len(events.of("batch", run)) - before
            assert not failures, failures[:5]
            figures[path] = np.percentile(ms, [50, 90, 99])
            p50, p90, p99 = figures[path]
            print(
                f"\n{path}, {clients} clients, {seconds:g} s, while 784-800-800-10 trains "
                f"with {env.get('NNET_THREADS', 'cores - 1')} threads: "
                f"{len(ms)} predictions, p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, "
                f"max {ms.max():.1f} ms; {trained} batch events meanwhile "
                f"(last step {events.of('batch', run)[-1]['step']})"
            )
            assert trained > 0  # the run kept training
            if threads is None:
                assert len(ms) > clients * seconds  # at least 1 a second each
        if threads is None:
            assert figures["/api/predict"][2] < 250, figures
        assert call(port, "/api/train/stop")[0] == 200
        events.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        err.close()


def test_the_run_ends_with_its_server_even_when_killed(mnist_dir: Path, tmp_path: Path):
    """Ctrl-C stops the server and its run (the child ignores the terminal's SIGINT; the
    server tells it to exit); a server killed outright leaves no training process behind."""
    import subprocess
    import sys

    def start() -> tuple[subprocess.Popen, int, int]:
        command = [sys.executable, "-m", "nnet", "serve", "--port", "0", "--data", str(mnist_dir)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = int(proc.stdout.readline().split()[2].rstrip("/").rsplit(":", 1)[1])
        status, _ = call(port, "/api/train", {**TINY, "epochs": 100})
        assert status == 202
        deadline = time.monotonic() + 30  # running: past its imports, which a signal would cut
        while call(port, "/api/train", method="GET")[1]["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        tasks = Path(f"/proc/{proc.pid}/task").glob("*/children")  # each thread's children
        children = [c for task in tasks for c in task.read_text().split()]
        child = next(int(c) for c in children if "spawn_main" in child_name(int(c)))
        return proc, port, child

    def child_name(pid: int) -> str:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")

    def gone(pid: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().split()[2]
            except FileNotFoundError:
                return True
            if state == "Z":  # ended, not yet reaped
                return True
            time.sleep(0.05)
        return False

    proc, port, child = start()
    os.killpg(os.getpgid(proc.pid), 0)  # the group exists
    proc.send_signal(signal.SIGINT)
    os.kill(child, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "stopped." in out, err
    assert "Traceback" not in err and gone(child, 5)

    proc, port, child = start()
    proc.kill()
    proc.wait(10)
    assert gone(child, 10)  # it noticed that its server is gone
    proc.communicate(timeout=10)  # its pipes, which the child held too, are closed


def test_with_a_model_both_views_are_served(tmp_path: Path):
    """With a model file, / is the draw page and /learn the learn view; /api/predict stays
    the model's, /api/train/predict needs a run."""
    net = nnet.Network([784, 8, 10], "sigmoid", seed=0)
    srv = Server(net, port=0, log="none", learn=LearnHub(save_dir=tmp_path))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    port = srv.server_address[1]
    try:
        pages = {}
        for path in ("/", "/learn"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            pages[path] = conn.getresponse().read().decode()
            conn.close()
        assert "draw a digit</h1>" in pages["/"] and "watch it learn</h1>" in pages["/learn"]
        digit = {"pixels": [[0.0] * 28] * 28}
        status, answer = call(port, "/api/predict", digit)
        assert status == 200 and answer["hidden"][0] == pytest.approx(
            net.forward_pass(np.zeros((1, 784), net.dtype)).a[1][0, :-1].tolist()
        )
        status, answer = call(port, "/api/train/predict", digit)
        assert status == 409 and answer["error"] == (
            "No network is training: start a run in the learn view (/learn)."
        )
        status, answer = call(port, "/api/train/pause")
        assert status == 409 and "start one first" in answer["error"]
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)

    bare = Server(None, port=0, log="none", learn=LearnHub(save_dir=tmp_path))
    thread = threading.Thread(target=bare.serve_forever, daemon=True)
    thread.start()
    try:
        status, answer = call(bare.server_address[1], "/api/predict", digit)
        assert status == 409 and answer["error"].startswith("No model yet: start a run")
    finally:
        bare.shutdown()
        bare.server_close()
        thread.join(5)


def test_a_viewer_that_does_not_read_is_dropped(monkeypatch):
    """A viewer whose events pile up past MAX_VIEWER_BACKLOG is dropped (its stream ends,
    the page reconnects and gets the run again) instead of holding memory without end."""
    import asyncio

    from nnet.apps import learn

    monkeypatch.setattr(learn, "MAX_VIEWER_BACKLOG", 5)

    async def main() -> list:
        viewer = learn._Viewer(asyncio.get_running_loop())
        for i in range(8):
            viewer.deliver(f"event {i}")
        await asyncio.sleep(0.05)
        return [viewer.queue.get_nowait() for _ in range(viewer.queue.qsize())], viewer.dropped

    got, dropped = asyncio.run(main())
    assert got == [f"event {i}" for i in range(5)] + [None] and dropped


@pytest.mark.slow
def test_the_notes_experiment_live_is_nnet_trains(mnist_dir: Path, tmp_path: Path):
    """The notes' experiment (preset seed, whole MNIST) trained in the learn view reports
    per epoch exactly the metrics nnet train's own loop gives (same settings, one thread),
    and shows when its sigmoid units saturate: printed, step by step."""
    from nnet.experiment import build
    from nnet.experiment import run as run_training
    from nnet.training.threads import limited

    hub = LearnHub(data=mnist_dir, save_dir=tmp_path, threads=1)
    srv = Server(None, port=0, log="none", learn=hub)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    port = srv.server_address[1]
    events = Events(port)
    try:
        status, started = call(port, "/api/train", {"preset": "seed", "eval_every": 30})
        assert status == 202
        state_of(events, started["run"], "finished")
        live = events.of("epoch")
        measured = [b for b in events.of("batch") if "saturation" in b]
        final = events.of("held_out")[-1]
    finally:
        events.close()
        srv.shutdown()
        srv.server_close()
        thread.join(5)
    exp = build(settings_for("seed"), data=mnist_dir, download=False, progress=False)
    with limited(1):
        run_training(exp)
    timing = {"seconds", "train_seconds", "engine_seconds"}
    assert len(live) == len(exp.trainer.history) == 16
    for got, want in zip(live, exp.trainer.history, strict=True):
        assert {k: v for k, v in got.items() if k not in timing | {"type", "run"}} == {
            k: v for k, v in want.items() if k not in timing
        }
    print("\nstep  held-out accuracy  saturated share of layers 1, 2, 3 (a < 0.02 or a > 0.98)")
    shown = measured[1::2] + ([final] if final["step"] != measured[-1]["step"] else [])
    for b in shown:
        shares = "  ".join(f"{100 * s:5.1f} %" for s in b["saturation"])
        print(f"{b['step']:4d}  {100 * b['held_out_accuracy']:6.2f} %           {shares}")
    flat = [b for b in measured if b["step"] <= 120]  # the flat start: 2 epochs near 11 %
    assert flat and all(b["held_out_accuracy"] < 0.15 for b in flat)
    assert all(s == 0 for b in flat for s in b["saturation"])  # nothing saturated yet
    assert final["saturation"][0] > 0.3  # a third of layer 1 saturated by the end
