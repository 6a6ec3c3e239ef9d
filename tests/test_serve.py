"""nnet serve without a browser: every route, every refusal, the numbers against nnet's own."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.apps.serve import MAX_BODY, WEB_DIR, Server, serve
from nnet.data.preprocess import to_mnist
from nnet.errors import NnetError

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    net = nnet.Network([784, 16, 10], "sigmoid", seed=0)
    # weights of order 1, so that the outputs differ clearly from one input to another
    rng = np.random.default_rng(1)
    net.weights = [rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in net.weights]
    path = tmp_path_factory.mktemp("serve") / "model.npz"
    nnet.save(
        net,
        path,
        {
            "task": "classifier",
            "dataset": "mnist",
            "classes": [str(d) for d in range(10)],
            "history": [{"epoch": 1, "test_accuracy": 0.5, "test_loss": float("nan")}],
        },
    )
    return path


@pytest.fixture(scope="module")
def reference(model_path: Path) -> nnet.Network:
    """A second copy of the served model, to compute the expected answers independently."""
    return nnet.load(model_path)


class Client:
    def __init__(self, server) -> None:
        self.server = server
        self.host, self.port = server.server_address[:2]
        self.base = f"http://{self.host}:{self.port}"

    def request(
        self,
        path: str,
        body: bytes | None = None,
        *,
        method: str | None = None,
        ctype: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None and ctype is not None:
            req.add_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, obj=None, **kw) -> tuple[int, dict]:
        body = None if obj is None else json.dumps(obj).encode()
        status, headers, data = self.request(path, body, **kw)
        assert headers["Content-Type"] == "application/json"
        return status, json.loads(data)

    def predict(self, obj) -> tuple[int, dict]:
        return self.json("/api/predict", obj)


def _start(net: nnet.Network, **kw) -> tuple[Client, threading.Thread]:
    server = Server(net, host="127.0.0.1", port=0, log="none", **kw)
    thread = threading.Thread(target=server.serve_forever)
    thread.daemon = True
    thread.start()
    return Client(server), thread


def _stop(client: Client, thread: threading.Thread) -> None:
    client.server.shutdown()
    client.server.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def client(model_path: Path):
    c, t = _start(nnet.load(model_path))
    yield c
    _stop(c, t)


def expected(net: nnet.Network, x28: np.ndarray) -> np.ndarray:
    x = np.asarray(x28, dtype=np.float64).reshape(1, 784)
    return net.loss.probabilities(net.forward(x))[0]


def check_error(status: int, headers: dict, body: bytes, want: int) -> str:
    """The error sentence of a JSON error response, after checking it is one."""
    assert status == want, body
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    text = body.decode()
    assert "Traceback" not in text and 'File "' not in text
    obj = json.loads(text)
    assert set(obj) == {"error"} and isinstance(obj["error"], str) and obj["error"]
    assert "\n" not in obj["error"]
    return obj["error"]


def digit_picture(side: int = 100) -> np.ndarray:
    """A "1" drawn on a black side x side picture: a thick, slightly slanted stroke."""
    img = np.zeros((side, side))
    for r in range(side // 6, side - side // 6):
        c = side // 2 + (side // 2 - r) // 8
        half = max(1, side // 20)
        img[r, c - half : c + half] = 1.0
    return img


# --------------------------------------------------------------------------- the page


def test_page_is_served_with_a_strict_policy(client: Client):
    status, headers, body = client.request("/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    html = body.decode()
    assert '<canvas id="pad"' in html and 'id="digit"' in html and 'id="random"' in html
    assert "/static/app.js" in html and "/static/style.css" in html
    assert "http://" not in html and "https://" not in html  # nothing from elsewhere


def test_every_page_asset_is_served_with_its_type(client: Client):
    types = {
        "app.js": "text/javascript; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "index.html": "text/html; charset=utf-8",
        "favicon.svg": "image/svg+xml",
    }
    for name, ctype in types.items():
        status, headers, body = client.request(f"/static/{name}")
        assert status == 200, name
        assert headers["Content-Type"] == ctype
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == (WEB_DIR / name).read_bytes()
    for name in ("app.js", "style.css"):  # no CDN, no external fetches
        text = (WEB_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_head_sends_headers_only(client: Client):
    status, headers, body = client.request("/", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == len((WEB_DIR / "index.html").read_bytes())


@pytest.mark.parametrize(
    "path",
    [
        "/static/../serve.py",
        "/static/%2e%2e/serve.py",
        "/static/..%2fserve.py",
        "/static/%2E%2E%2Fserve.py",
        "/static/..%5cserve.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static/app.js/",
        "/static/APP.JS",
        "/static/app.js%00.html",
        "/serve.py",
        "/nnet/serve.py",
        "/index.html",
        "/api",
        "/api/models",
    ],
)
def test_unknown_paths_and_traversal_are_404(client: Client, path: str):
    status, headers, body = client.request(path)
    check_error(status, headers, body, 404)
    assert b"import" not in body


def test_traversal_with_a_raw_request_line(client: Client):
    """urllib might tidy a path; a raw socket sends it exactly."""
    for target in ("/static/../serve.py", "/static/./app.js", "/static/web/../app.js"):
        with socket.create_connection((client.host, client.port), timeout=5) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 404"), target


def test_only_files_inside_the_web_folder_are_served(tmp_path: Path, model_path: Path):
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>x</title>")
    (web / "ok.js").write_text("1;")
    (web / "sub" / "inner.js").write_text("2;")
    (web / ".hidden.js").write_text("3;")
    (web / "notes.py").write_text("4")
    secret = tmp_path / "secret.js"
    secret.write_text("'secret';")
    (web / "leak.js").symlink_to(secret)
    (web / "alias.js").symlink_to(web / "ok.js")
    c, t = _start(nnet.load(model_path), web_dir=web)
    try:
        assert c.request("/static/ok.js")[0] == 200
        assert c.request("/static/alias.js")[0] == 200  # a link that stays inside
        for name in ("leak.js", "sub/inner.js", "sub%2finner.js", ".hidden.js", "notes.py"):
            status, headers, body = c.request(f"/static/{name}")
            check_error(status, headers, body, 404)
            assert b"secret" not in body
    finally:
        _stop(c, t)


# --------------------------------------------------------------------------- the model


def test_api_model_describes_the_network(client: Client, reference: nnet.Network):
    status, info = client.json("/api/model")
    assert status == 200
    assert info["sizes"] == [784, 16, 10]
    assert info["activations"] == reference.activations
    assert info["loss"] == "mse" and info["dtype"] == "float32"
    assert info["task"] == "classifier" and info["dataset"] == "mnist"
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["hidden_layers"] == [{"layer": 1, "size": 16, "activation": "sigmoid"}]
    assert info["parameters"] == reference.n_params
    assert info["summary"]["test_accuracy"] == 0.5
    assert info["summary"]["test_loss"] is None  # NaN in the file: strict JSON has no NaN
    assert info["random_available"] is False


# --------------------------------------------------------------------------- predictions


def check_prediction(res: dict, net: nnet.Network, x28: np.ndarray) -> None:
    p = expected(net, x28)
    assert len(res["probabilities"]) == 10
    np.testing.assert_allclose(res["probabilities"], p, rtol=1e-6, atol=1e-9)
    assert res["digit"] == int(np.argmax(res["probabilities"])) == int(np.argmax(p))
    assert res["label"] == str(res["digit"])
    assert [len(h) for h in res["hidden"]] == net.sizes[1:-1]
    hidden = net.forward_pass(np.reshape(x28, (1, -1))).a[1][0, :-1]
    np.testing.assert_allclose(res["hidden"][0], hidden, rtol=1e-6, atol=1e-9)
    got = np.array(res["input"])
    assert got.shape == (28, 28)
    np.testing.assert_allclose(got, np.asarray(x28).reshape(28, 28), rtol=1e-6, atol=1e-7)


def test_predict_28x28_and_flat(client: Client, reference: nnet.Network):
    rng = np.random.default_rng(0)
    digits = set()
    for _ in range(4):
        x = rng.random((28, 28)) * (rng.random((28, 28)) < 0.3)
        for pixels in (x.tolist(), x.reshape(-1).tolist()):
            status, res = client.predict({"pixels": pixels})
            assert status == 200, res
            check_prediction(res, reference, x)
        digits.add(res["digit"])
    assert len(digits) > 1  # different drawings, different answers: the output is not constant
    status, res = client.predict({"pixels": np.zeros((28, 28)).tolist(), "preprocess": False})
    assert status == 200  # a black input is used as it is
    check_prediction(res, reference, np.zeros((28, 28)))


def test_predict_integers_and_tiny_rounding_are_accepted(client: Client, reference):
    x = np.zeros((28, 28), dtype=int)
    x[5:20, 13:15] = 1
    status, res = client.predict({"pixels": x.tolist()})
    assert status == 200
    check_prediction(res, reference, x)
    y = x.astype(float)
    y[0, 0], y[10, 14] = -1e-9, 1 + 1e-9  # within the tolerance: clipped
    status, res = client.predict({"pixels": y.tolist()})
    assert status == 200
    check_prediction(res, reference, np.clip(y, 0, 1))


def test_predict_with_preprocess_matches_nnet_predict(client: Client, reference):
    for side, polarity in ((100, "white on black"), (37, "dark on light"), (512, "w"), (8, "w")):
        img = digit_picture(side)
        if polarity == "dark on light":
            img = 1.0 - img
        status, res = client.predict({"pixels": img.tolist(), "preprocess": True})
        assert status == 200, res
        x = to_mnist(img)  # what nnet predict does to an image file
        check_prediction(res, reference, x)
    wide = np.zeros((40, 200))
    wide[10:30, 20:180] = 0.8
    status, res = client.predict({"pixels": wide.tolist(), "preprocess": True})
    assert status == 200
    check_prediction(res, reference, to_mnist(wide))


def test_predictions_from_many_threads_agree(client: Client, reference):
    """Concurrent predictions on one network (no lock) give every client its own answer."""
    rng = np.random.default_rng(5)
    xs = [rng.random((28, 28)) for _ in range(8)]
    want = [expected(reference, x) for x in xs]
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(3):
            results[i] = client.predict({"pixels": xs[i].tolist()})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for (status, res), p in zip(results, want, strict=True):
        assert status == 200
        np.testing.assert_allclose(res["probabilities"], p, rtol=1e-6, atol=1e-9)


def _grid(h: int, w: int, v=0.5) -> list:
    return [[v] * w for _ in range(h)]


def _with(pos: tuple[int, int], value) -> list:
    g = _grid(28, 28, 0.0)
    g[pos[0]][pos[1]] = value
    return g


BAD_BODIES = {
    "not JSON": b"{",
    "empty body": b"",
    "NaN literal": b'{"pixels": [' + b",".join([b"NaN"] * 784) + b"]}",
    "Infinity literal": b'{"pixels": [' + b",".join([b"Infinity"] * 784) + b"]}",
    "not UTF-8": b'{"pixels": "\xff\xfe"}',
    "deep nesting": b'{"pixels": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "huge integer": b'{"pixels": [' + b",".join([b"1" + b"0" * 400] * 784) + b"]}",
    "a list": json.dumps([0.5] * 784).encode(),
    "a number": b"3",
}

BAD_REQUESTS = {
    "missing pixels": {"image": _grid(28, 28)},
    "unknown key": {"pixels": _grid(28, 28), "preprocessing": True},
    "pixels a string": {"pixels": "0.5"},
    "pixels a number": {"pixels": 0.5},
    "pixels null": {"pixels": None},
    "pixels empty": {"pixels": []},
    "pixels an object": {"pixels": {"0": 1}},
    "a string value": {"pixels": _with((3, 4), "0.5")},
    "a boolean value": {"pixels": _with((0, 0), True)},
    "a null value": {"pixels": _with((27, 27), None)},
    "a nested value": {"pixels": _with((2, 2), [0.5])},
    "above 1": {"pixels": _with((14, 14), 1.5)},
    "below 0": {"pixels": _with((14, 14), -0.2)},
    "0..255 values": {"pixels": _with((14, 14), 255)},
    "a huge float": {"pixels": _with((1, 1), 1e308)},
    "ragged": {"pixels": _grid(27, 28) + [[0.5] * 27]},
    "27x28": {"pixels": _grid(27, 28)},
    "28x27": {"pixels": _grid(28, 27)},
    "28x29": {"pixels": _grid(28, 29)},
    "flat 783": {"pixels": [0.5] * 783},
    "flat 785": {"pixels": [0.5] * 785},
    "flat with a bool": {"pixels": [0.5] * 783 + [False]},
    "a row not a list": {"pixels": [[0.5] * 28] * 27 + [0.5]},
    "3-D": {"pixels": [_grid(28, 28)] * 28},
    "preprocess not a bool": {"pixels": _grid(28, 28), "preprocess": "yes"},
    "preprocess 1": {"pixels": _grid(28, 28), "preprocess": 1},
    "preprocess flat": {"pixels": [0.5] * 784, "preprocess": True},
    "preprocess 7x7": {"pixels": _grid(7, 7), "preprocess": True},
    "preprocess 8x7": {"pixels": _grid(8, 7), "preprocess": True},
    "preprocess 513x513": {"pixels": _grid(513, 513, 0), "preprocess": True},
    "preprocess 100x513": {"pixels": _grid(100, 513, 0), "preprocess": True},
    "preprocess ragged": {"pixels": _grid(50, 50) + [[0.5] * 49], "preprocess": True},
    "preprocess above 1": {"pixels": _grid(50, 50, 1.01), "preprocess": True},
    "preprocess blank": {"pixels": _grid(50, 50, 0.0), "preprocess": True},
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
def test_bad_bodies_are_400(client: Client, name: str):
    status, headers, body = client.request("/api/predict", BAD_BODIES[name], method="POST")
    check_error(status, headers, body, 400)


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_are_400_with_one_sentence(client: Client, name: str):
    body = json.dumps(BAD_REQUESTS[name]).encode()
    status, headers, data = client.request("/api/predict", body, method="POST")
    message = check_error(status, headers, data, 400)
    assert message[0].isupper() and message.endswith(".")
    assert len(message) < 200


def test_error_messages_say_what_is_wrong(client: Client):
    def message(obj) -> str:
        return client.predict(obj)[1]["error"]

    assert "pixels" in message(BAD_REQUESTS["missing pixels"])
    assert "row 3, column 4 is a string" in message(BAD_REQUESTS["a string value"])
    assert "boolean" in message(BAD_REQUESTS["a boolean value"])
    assert "[0, 1]" in message(BAD_REQUESTS["above 1"])
    assert "27 rows" in message(BAD_REQUESTS["27x28"])
    assert "row 27 holds 27" in message(BAD_REQUESTS["ragged"])
    assert "513" in message(BAD_REQUESTS["preprocess 513x513"])
    assert "no digit" in message(BAD_REQUESTS["preprocess blank"])


def test_a_body_over_the_limit_is_413(client: Client):
    body = b'{"pixels": [' + b" " * MAX_BODY + b"]}"
    status, headers, data = client.request("/api/predict", body, method="POST")
    check_error(status, headers, data, 413)
    # a huge Content-Length is refused from the headers alone, before any body is sent
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        conn.putrequest("POST", "/api/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(10**12))
        conn.endheaders()
        resp = conn.getresponse()
        check_error(resp.status, dict(resp.headers), resp.read(), 413)
    finally:
        conn.close()


def test_length_problems(client: Client):
    for headers, want in (
        ({"Content-Length": "abc"}, 400),
        ({"Content-Length": "-5"}, 400),
        ({"Transfer-Encoding": "chunked"}, 411),
        ({}, 411),
    ):
        conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
        try:
            conn.putrequest("POST", "/api/predict", skip_accept_encoding=True)
            conn.putheader("Content-Type", "application/json")
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            if "Transfer-Encoding" in headers:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            check_error(resp.status, dict(resp.headers), resp.read(), want)
        finally:
            conn.close()


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_post_needs_json_content_type(client: Client, ctype: str | None):
    body = json.dumps({"pixels": _grid(28, 28)}).encode()
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        headers = {"Content-Length": str(len(body))}
        if ctype is not None:
            headers["Content-Type"] = ctype
        conn.request("POST", "/api/predict", body, headers)
        resp = conn.getresponse()
        check_error(resp.status, dict(resp.headers), resp.read(), 415)
    finally:
        conn.close()
    ok = client.request("/api/predict", body, ctype="application/json; charset=utf-8")
    assert ok[0] == 200


def test_wrong_methods_are_405(client: Client):
    for method, path in (
        ("POST", "/api/model"),
        ("POST", "/"),
        ("POST", "/api/random"),
        ("POST", "/static/app.js"),
        ("GET", "/api/predict"),
        ("PUT", "/api/predict"),
        ("DELETE", "/api/model"),
        ("PATCH", "/"),
        ("OPTIONS", "/api/predict"),
    ):
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        status, headers, data = client.request(path, body, method=method)
        check_error(status, headers, data, 405)
        assert headers["Allow"] in ("GET, HEAD", "POST")


def test_unknown_methods_and_garbage_get_json_errors(client: Client):
    for raw, want in (
        (b"BREW /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"501"),
        (b"GET / HTTP/1.1 extra words\r\n\r\n", b"400"),
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET //[x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", b"404"),
        (b"GET //x/api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", b"404"),
        # a header line without a colon is not HTTP: refused (the standard library skipped it)
        (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nbroken line\r\n\r\n", b"400"),
        (b"GET / HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", b"505"),
    ):
        with socket.create_connection((client.host, client.port), timeout=5) as s:
            s.sendall(raw)
            reply = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == want, reply
        assert b"Content-Type: application/json" in head
        assert isinstance(json.loads(body)["error"], str)
        assert b"Traceback" not in reply and b"<html" not in reply.lower()


def test_keep_alive_survives_errors(client: Client, reference):
    """A refused request's body is read, so the next request on the connection works."""
    x = np.full((28, 28), 0.25)
    conn = http.client.HTTPConnection(client.host, client.port, timeout=10)
    try:
        for ctype, want in (("text/plain", 415), ("application/json", 200)):
            conn.request("POST", "/api/predict", json.dumps({"pixels": x.tolist()}), {
                "Content-Type": ctype
            })  # fmt: skip
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == want, data
        conn.request("PUT", "/api/model", b"x" * 1000)
        resp = conn.getresponse()
        assert resp.status == 405
        resp.read()
        conn.request("GET", "/api/model")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["sizes"] == [784, 16, 10]
    finally:
        conn.close()
    np.testing.assert_allclose(json.loads(data)["probabilities"], expected(reference, x), 1e-6)


def test_foreign_host_and_origin_are_refused(client: Client):
    status, headers, body = client.request("/api/model", headers={"Host": "evil.example"})
    check_error(status, headers, body, 403)
    body = json.dumps({"pixels": _grid(28, 28)}).encode()
    status, headers, data = client.request(
        "/api/predict", body, headers={"Origin": "http://evil.example"}
    )
    check_error(status, headers, data, 403)
    for origin in ("null", "http://127.0.0.1:1", "http://[", "garbage"):
        status, headers, data = client.request("/api/predict", body, headers={"Origin": origin})
        check_error(status, headers, data, 403)
    status, headers, data = client.request("/api/model", headers={"Host": "[::1"})
    check_error(status, headers, data, 403)
    same = f"http://127.0.0.1:{client.port}"
    assert client.request("/api/predict", body, headers={"Origin": same})[0] == 200
    assert client.request("/api/model", headers={"Host": f"localhost:{client.port}"})[0] == 200


@pytest.mark.parametrize("log", ["none", "errors", "all"])
def test_an_unexpected_error_is_500_without_details(model_path: Path, capfd, log: str):
    net = nnet.load(model_path)
    server = Server(net, port=0, log=log)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    c = Client(server)

    def broken(x, **kw):
        raise RuntimeError("secret detail\nsecond line")

    net.forward_pass = broken  # type: ignore[method-assign]
    try:
        capfd.readouterr()
        status, headers, body = c.request(
            "/api/predict", json.dumps({"pixels": _grid(28, 28)}).encode()
        )
        message = check_error(status, headers, body, 500)
        assert "secret" not in message and "RuntimeError" not in message
    finally:
        _stop(c, t)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "internal error" in lines[0] and "RuntimeError: secret detail second line" in lines[0]


def test_errors_are_logged_one_line_each(model_path: Path, capfd):
    server = Server(nnet.load(model_path), port=0)  # the default: log errors only
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    c = Client(server)
    try:
        capfd.readouterr()
        c.request("/api/model")
        c.request("/nope")
        c.request("/api/predict", b"{")
    finally:
        _stop(c, t)
    lines = capfd.readouterr().err.splitlines()
    assert lines == ["nnet serve: GET /nope 404", "nnet serve: POST /api/predict 400"]


# --------------------------------------------------------------------------- random digits


def test_random_without_test_data_is_404(client: Client):
    status, headers, body = client.request("/api/random")
    assert "test digits" in check_error(status, headers, body, 404)


def test_random_with_test_data(model_path: Path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 784), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    c, t = _start(nnet.load(model_path), test_images=images, test_labels=labels, seed=0)
    try:
        assert c.json("/api/model")[1]["random_available"] is True
        seen = set()
        for _ in range(20):
            status, d = c.json("/api/random")
            assert status == 200
            i = d["index"]
            seen.add(i)
            assert d["label"] == int(labels[i]) and d["class"] == str(labels[i])
            px = np.array(d["pixels"])
            assert px.shape == (28, 28)
            np.testing.assert_array_equal(px, images[i].reshape(28, 28) / 255.0)
            # what the page then does: send the digit as it is
            status, res = c.predict({"pixels": d["pixels"]})
            assert status == 200 and res["input"] == np.float32(px).tolist()
        assert len(seen) > 1
    finally:
        _stop(c, t)


def test_bad_test_data_is_refused(model_path: Path):
    net = nnet.load(model_path)
    with pytest.raises(NnetError):
        Server(net, port=0, test_images=np.zeros((3, 783), np.uint8), test_labels=[1, 2, 3])
    with pytest.raises(NnetError):
        Server(net, port=0, test_images=np.zeros((3, 784), np.uint8), test_labels=[1, 2])
    with pytest.raises(NnetError):
        Server(net, port=0, test_images=np.full((1, 784), 2.0), test_labels=[1])
    with pytest.raises(NnetError):
        Server(net, port=0, test_images=np.zeros((1, 784), np.uint8))


# --------------------------------------------------------------------------- serve()


def test_serve_refuses_models_that_do_not_fit(tmp_path: Path):
    auto = nnet.Network([784, 8, 784], "sigmoid", seed=0)
    nnet.save(auto, tmp_path / "auto.npz", {"task": "autoencoder"})
    with pytest.raises(NnetError, match="autoencoder"):
        serve(tmp_path / "auto.npz", port=0)
    small = nnet.Network([64, 8, 10], "sigmoid", seed=0)
    nnet.save(small, tmp_path / "small.npz", {"task": "classifier"})
    with pytest.raises(NnetError, match="784"):
        serve(tmp_path / "small.npz", port=0)
    with pytest.raises(NnetError):
        Server(nnet.Network([784, 5], seed=0), port=0)
    with pytest.raises(NnetError, match="port"):
        Server(nnet.Network([784, 10], seed=0), port=70000)


def test_a_port_in_use_is_one_sentence(client: Client, model_path: Path):
    with pytest.raises(NnetError, match="in use"):
        Server(nnet.load(model_path), port=client.port)


def test_serve_prints_the_url_and_stops_on_ctrl_c(tmp_path: Path, model_path: Path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    env = {**os.environ, "NNET_DATA": str(empty), "XDG_CACHE_HOME": str(empty)}
    code = (
        f"from nnet.apps.serve import serve; raise SystemExit(serve({str(model_path)!r}, port=0))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("nnet serve: http://127.0.0.1:"), line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/model", timeout=10) as resp:
            assert json.loads(resp.read())["random_available"] is False
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "stopped" in out
    lines = err.splitlines()
    assert len(lines) == 1, err  # one line: no test digits, the button is disabled
    assert "Random test digit button is disabled" in lines[0] and "Traceback" not in err
