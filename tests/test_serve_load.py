"""nnet serve under load and against slow or hostile clients, on 127.0.0.1 only.

Every test bounds its requests in count and time and stops by itself: sockets have
timeouts, loops a deadline, and a server run as a process is stopped (then killed) at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.apps.serve import (
    BODIES_IN_FLIGHT,
    MAX_BODY,
    OVERFLOW,
    SMALL_BODY,
    SMALL_RESERVE,
    TIMEOUT_ENV,
    BodyBudget,
    Server,
)

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = nnet.Network([784, 64, 10], "relu", loss="cross_entropy", seed=0)
    path = tmp_path_factory.mktemp("load") / "model.npz"
    nnet.save(net, path, {"task": "classifier", "dataset": "mnist"})
    return path


def predict_body(seed: int = 0) -> bytes:
    """A 28x28 request, as the page sends a random test digit."""
    rng = np.random.default_rng(seed)
    x = rng.random((28, 28)) * (rng.random((28, 28)) < 0.3)
    return json.dumps({"pixels": x.round(3).tolist()}).encode()


def strict_json(data: bytes):
    """Parse ``data`` as strict JSON: NaN and Infinity are not JSON."""

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the server's JSON: {data[:200]!r}")

    return json.loads(data, parse_constant=refuse)


@contextlib.contextmanager
def served(model: Path, tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python -m nnet serve MODEL --port 0`` as a process of its own: (process, port).
    Stopped with Ctrl-C (SIGINT) at the end, killed if it has not stopped 10 s later."""
    empty = tmp_path / "nodata"
    empty.mkdir(exist_ok=True)
    environ = {**os.environ, "NNET_DATA": str(empty), "XDG_CACHE_HOME": str(empty), **env}
    with open(tmp_path / "serve.err", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nnet", "serve", str(model), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=environ,
        )
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"nnet serve: http://{HOST}:"), line
        yield proc, int(line.split()[2].rstrip("/").rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid``, in MB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def post(port: int, body: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/api/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def read_until_closed(socks: list[socket.socket], limit: float) -> list[tuple[bytes, float]]:
    """What each socket receives until the server closes it, and when it closed (monotonic
    seconds); ``limit`` seconds at most in all. A reset counts as closed."""
    got = [b""] * len(socks)
    closed = [float("inf")] * len(socks)
    with selectors.DefaultSelector() as sel:
        for i, s in enumerate(socks):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        end = time.monotonic() + limit
        while sel.get_map() and (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                i = key.data
                try:
                    chunk = socks[i].recv(1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    got[i] += chunk
                else:
                    closed[i] = time.monotonic()
                    sel.unregister(socks[i])
    return list(zip(got, closed, strict=True))


def status_of(reply: bytes) -> int | None:
    head = reply.split(b"\r\n", 1)[0].split()
    return int(head[1]) if len(head) > 1 and head[1].isdigit() else None


@contextlib.contextmanager
def in_thread(net: nnet.Network, **kw) -> Iterator[Server]:
    server = Server(net, host=HOST, port=0, **{"log": "none", **kw})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --------------------------------------------------------------------------- a classroom


@pytest.mark.slow
def test_fifty_clients_for_twenty_seconds(model_path: Path, tmp_path: Path):
    """50 clients, as 50 pages drawing at once: all connect together, then each sends a
    prediction, waits for the answer and sends the next about 100 ms after the last (the
    page's THROTTLE_MS, 50 to 150 ms at random: people do not draw in step), on a kept-alive
    connection that it opens anew every 20 requests. No connection is reset or refused,
    every answer is 200, and 99% of them come within 250 ms."""
    clients, seconds, pace, per_connection = 50, 20.0, 0.1, 20
    bodies = [predict_body(i) for i in range(clients)]
    waits = np.random.default_rng(0).uniform(0.5 * pace, 1.5 * pace, size=(clients, 1000))
    with served(model_path, tmp_path) as (proc, port):
        start = threading.Barrier(clients + 1, timeout=30)
        latencies: list[list[float]] = [[] for _ in range(clients)]
        failures: list[str] = []
        end = [0.0]

        def client(i: int) -> None:
            conn = None
            start.wait()
            while time.monotonic() < end[0]:
                t0 = time.perf_counter()
                try:
                    if conn is None or len(latencies[i]) % per_connection == 0:
                        if conn is not None:
                            conn.close()
                        conn = http.client.HTTPConnection(HOST, port, timeout=10)
                    conn.request(
                        "POST", "/api/predict", bodies[i], {"Content-Type": "application/json"}
                    )
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError as exc:  # a reset, a refusal, a timeout
                    failures.append(f"client {i}: {exc!r}")
                    conn = None
                    continue
                latencies[i].append(time.perf_counter() - t0)
                if resp.status != 200 or not data.startswith(b'{"digit":'):
                    failures.append(f"client {i}: {resp.status} {data[:100]!r}")
                wait = waits[i, len(latencies[i]) % waits.shape[1]]
                time.sleep(max(0.0, wait - (time.perf_counter() - t0)))
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        end[0] = time.monotonic() + seconds
        start.wait()
        for t in threads:
            t.join(seconds + 30)
        assert not any(t.is_alive() for t in threads)
        peak = rss_mb(proc.pid)
    ms = np.concatenate([np.array(lat) for lat in latencies]) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    print(
        f"\n{clients} clients, {seconds:g} s: {len(ms)} predictions ({len(ms) / seconds:.0f}/s), "
        f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {ms.max():.1f} ms; "
        f"{len(failures)} failures; server RSS {peak:.0f} MB"
    )
    assert not failures, failures[:5]
    assert len(ms) > clients * seconds  # at least 1 a second each: nobody was starved
    assert p99 < 250, f"p99 {p99:.1f} ms"
    err = (tmp_path / "serve.err").read_text().splitlines()
    assert all("no test digits" in line for line in err), err


# --------------------------------------------------------------------------- slow uploads


def test_stalled_uploads_hold_little_memory(model_path: Path, tmp_path: Path):
    """100 clients each declare a 4 MiB body, send half of it and stall. The server holds
    at most BODIES_IN_FLIGHT of bodies (the others are answered 503 from their headers),
    stays under 150 MB, answers another client at once, and closes every stalled one at
    the deadline: 408 for those whose body it was reading."""
    deadline = 3.0
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY}\r\n\r\n"
    ).encode()
    half = (b"[" + b"0.5," * MAX_BODY)[: MAX_BODY // 2]
    with served(model_path, tmp_path, **{TIMEOUT_ENV: str(deadline)}) as (proc, port):
        time.sleep(0.3)
        before = rss_mb(proc.pid)
        socks, opened = [], []
        try:
            for _ in range(100):
                s = socket.create_connection((HOST, port), timeout=10)
                socks.append(s)
                opened.append(time.monotonic())
                s.sendall(head)
                s.sendall(half)
            peak = 0.0
            for _ in range(5):
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.05)
            t0 = time.monotonic()
            status, _, data = post(port, predict_body(), timeout=1)
            answered = time.monotonic() - t0
            replies = read_until_closed(socks, limit=deadline + 10)
        finally:
            for s in socks:
                s.close()
        after = rss_mb(proc.pid)
    print(
        f"\nserver RSS: {before:.0f} MB at rest, {peak:.0f} MB with 100 stalled uploads, "
        f"{after:.0f} MB after; another client answered in {1000 * answered:.1f} ms"
    )
    assert peak < 150, f"{peak:.0f} MB"
    assert status == 200 and strict_json(data)["digit"] in range(10)
    assert answered < 1
    statuses = [status_of(reply) for reply, _ in replies]
    assert set(statuses) == {408, 503}, statuses
    in_flight = statuses.count(408)  # the bodies the server was reading
    assert 0 < in_flight <= (BODIES_IN_FLIGHT - SMALL_RESERVE) // MAX_BODY
    for (reply, closed), t_open in zip(replies, opened, strict=True):
        assert deadline - 0.5 < closed - t_open < deadline + 3, (reply[:100], closed - t_open)
        head_part, _, body = reply.partition(b"\r\n\r\n")
        assert b"Content-Type: application/json" in head_part
        assert "error" in strict_json(body)
        if status_of(reply) == 503:
            assert b"Retry-After: " in head_part


def test_body_budget_keeps_room_for_small_bodies():
    budget = BodyBudget()
    large = MAX_BODY
    n_large = 0
    while budget.take(large):
        n_large += 1
    assert n_large == (BODIES_IN_FLIGHT - SMALL_RESERVE) // large
    assert budget.take(SMALL_BODY)  # the page's requests still fit
    taken = 1
    while budget.take(SMALL_BODY):
        taken += 1
    assert budget.used <= BODIES_IN_FLIGHT
    assert not budget.take(1)
    for _ in range(taken):
        budget.give(SMALL_BODY)
    for _ in range(n_large):
        budget.give(large)
    assert budget.used == 0


def test_a_half_sent_request_gets_408_after_the_deadline(model_path: Path):
    deadline = 1.0
    body = predict_body()
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    net = nnet.load(model_path)
    with in_thread(net, request_timeout=deadline) as server:
        port = server.server_address[1]
        parts = {
            "half the headers": head[: len(head) // 2],
            "the headers and half the body": head + body[: len(body) // 2],
            "nothing": b"",
        }
        socks = [socket.create_connection((HOST, port), timeout=5) for _ in parts]
        t0 = time.monotonic()
        for s, data in zip(socks, parts.values(), strict=True):
            s.sendall(data)
        # a slow client that still sends its whole request in time is answered
        slow = socket.create_connection((HOST, port), timeout=5)
        request = head + body
        for i in range(4):
            slow.sendall(request[i * len(request) // 4 : (i + 1) * len(request) // 4])
            time.sleep(deadline / 8)
        replies = read_until_closed(socks, limit=deadline + 5)
        slow.settimeout(5)
        answer = slow.recv(1 << 16)
        slow.close()
        for s in socks:
            s.close()
        for name, (reply, closed) in zip(parts, replies, strict=True):
            assert deadline - 0.2 < closed - t0 < deadline + 2, (name, closed - t0)
            if name == "nothing":
                assert reply == b"", reply  # an idle connection just closes
                continue
            assert status_of(reply) == 408, (name, reply)
            head_part, _, text = reply.partition(b"\r\n\r\n")
            assert b"Connection: close" in head_part
            assert "did not arrive whole within 1 second" in strict_json(text)["error"]
        assert status_of(answer) == 200, answer[:200]
        # the server is still fine
        status, _, data = post(port, body)
        assert status == 200 and strict_json(data)["digit"] in range(10)


def test_the_deadline_starts_again_with_each_request(model_path: Path):
    """On a kept-alive connection, the next request's time starts with its first bytes."""
    deadline = 1.0
    body = predict_body()
    request = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with in_thread(nnet.load(model_path), request_timeout=deadline) as server:
        with socket.create_connection((HOST, server.server_address[1]), timeout=5) as s:
            for _ in range(3):  # idle, then whole: answered each time
                time.sleep(deadline * 0.7)
                s.sendall(request)
                reply = b""
                while not reply.endswith(b"}"):
                    reply += s.recv(1 << 16)
                assert status_of(reply) == 200
            s.sendall(request[:100])
            t0 = time.monotonic()
            [(reply, closed)] = read_until_closed([s], limit=deadline + 5)
        assert status_of(reply) == 408 and deadline - 0.2 < closed - t0 < deadline + 2


def test_a_refused_body_is_read_and_dropped_before_closing(model_path: Path, capfd):
    """A body refused from its headers, by a client that asked to close: the server answers,
    then reads and drops the body until the client closes, so that the answer is not reset
    away by unread data; one log line, nothing else."""
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\nConnection: close\r\n\r\n"
    ).encode()
    with in_thread(nnet.load(model_path), log="errors") as server:
        capfd.readouterr()
        with socket.create_connection(server.server_address[:2], timeout=10) as s:
            s.sendall(head)
            s.sendall(b" " * (MAX_BODY + 1))  # a reset would raise here, or lose the answer
            s.shutdown(socket.SHUT_WR)
            [(reply, _)] = read_until_closed([s], limit=10)
    assert status_of(reply) == 413, reply[:200]
    assert "over the 4 MiB limit" in strict_json(reply.partition(b"\r\n\r\n")[2])["error"]
    assert capfd.readouterr().err.splitlines() == ["nnet serve: POST /api/predict 413"]


def test_connections_over_the_cap_are_refused(model_path: Path, monkeypatch):
    monkeypatch.setattr("nnet.apps.serve.MAX_CONNECTIONS", 4)
    with in_thread(nnet.load(model_path)) as server:
        address = server.server_address[:2]
        held = [socket.create_connection(address, timeout=5) for _ in range(4)]
        try:
            with socket.create_connection(address, timeout=5) as extra:
                [(reply, _)] = read_until_closed([extra], limit=5)
            assert status_of(reply) == 503 and b"Retry-After: " in reply
            assert "too many connections" in strict_json(reply.partition(b"\r\n\r\n")[2])["error"]
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)  # the server sees them closed
        status, _, data = post(address[1], predict_body())
        assert status == 200


# --------------------------------------------------------------------------- enormous weights


def test_outputs_that_overflow_are_422(tmp_path: Path):
    """Finite but enormous weights: the outputs overflow to infinities and NaN, which JSON
    cannot hold; the answer is a clear 422, and every JSON the server writes is valid."""
    net = nnet.Network([784, 16, 10], "relu", loss="cross_entropy", seed=0)
    rng = np.random.default_rng(0)
    net.weights = [(np.sign(rng.normal(size=w.shape)) * 1e37).astype(w.dtype) for w in net.weights]
    path = tmp_path / "huge.npz"
    nnet.save(net, path, {"task": "classifier", "history": [{"epoch": 1, "test_loss": np.inf}]})
    with in_thread(nnet.load(path)) as server:
        port = server.server_address[1]
        status, headers, data = post(port, predict_body())
        assert status == 422 and headers["Content-Type"] == "application/json"
        assert strict_json(data) == {"error": OVERFLOW[:1].upper() + OVERFLOW[1:]}
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request("GET", "/api/model")
            resp = conn.getresponse()
            info = strict_json(resp.read())
        finally:
            conn.close()
        assert resp.status == 200 and info["summary"]["test_loss"] is None
