"""``nnet serve``: a local web page where you draw a digit and watch the network answer.

A :class:`http.server.ThreadingHTTPServer` serves the page, its files in ``nnet/apps/web/``
(an allow-list: :func:`static_files`; no CDN, it works offline) and a JSON API:
``GET /api/model`` (:func:`model_info`), ``GET /api/random`` (a random test digit) and
``POST /api/predict`` (:func:`parse_predict_body`, answered by :meth:`Server.predict`).

Every error is ``{"error": "one sentence"}`` with its status (400, 403 wrong Host or Origin,
404, 405, 411, 413 body over :data:`MAX_BODY`, 415 not JSON, 500 without details), never a
traceback. A loopback server refuses a non-loopback ``Host`` (DNS rebinding) and POSTs from
another ``Origin``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from nnet.core.network import Network
from nnet.data.datasets import MNIST, class_names
from nnet.data.datasets import load as load_dataset
from nnet.data.preprocess import to_mnist
from nnet.errors import NnetError
from nnet.files.model_file import load as load_model
from nnet.version import __version__

Array = np.ndarray

WEB_DIR = Path(__file__).resolve().parent / "web"
SIDE, N_INPUTS, N_CLASSES = MNIST.side, MNIST.n_inputs, MNIST.n_classes  # what is served
MIN_SIDE, MAX_SIDE = 8, 512  # sides of a picture sent with "preprocess": true
MAX_BODY = 4 * 1024 * 1024  # bytes: a 512x512 picture with 6 decimals per value fits
VALUE_SLACK = 1e-6  # tolerated rounding outside [0, 1] (clipped)
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversized body read and discarded before closing
LOG_LEVELS = ("errors", "all", "none")

CONTENT_TYPES = {  # the only kinds of file served
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
_GET = ("GET", "HEAD")  # HEAD comes with GET
ROUTES = {"/": _GET, "/api/model": _GET, "/api/random": _GET, "/api/predict": ("POST",)}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LOOPBACK_NAMES = {"localhost", "localhost.", "127.0.0.1", "::1"}
_KINDS = {bool: "a boolean", str: "a string", type(None): "null", dict: "an object", list: "a list"}


@dataclass(eq=False)
class RequestError(Exception):
    """A request the server refuses: an HTTP status and one sentence for the client."""

    status: int
    message: str
    close: bool = False  # close the connection after answering
    allow: str | None = None  # the Allow header of a 405


def _say(line: str) -> None:
    print(f"nnet serve: {line}", file=sys.stderr, flush=True)


def _one_line(text: object, limit: int | None = 200) -> str:
    """``text`` (maybe sent by the client; an exception: its type and message) made one
    printable line of at most ``limit`` characters, fit for a log line or an error message."""
    if isinstance(text, BaseException):
        text = f"{type(text).__name__}: {text}"
    return "".join(c if c.isprintable() else "?" for c in " ".join(str(text).split()))[:limit]


def check_servable(net: Network, where: str = "the model") -> None:
    """NnetError unless ``net`` is a classifier of 28x28 images into 10 classes."""
    task = net.meta.get("task", "classifier")
    if task != "classifier":
        raise NnetError(f"{where} is an {task}, not a classifier; serve needs a classifier.")
    if net.sizes[0] != N_INPUTS or net.sizes[-1] != N_CLASSES:
        raise NnetError(
            f"{where} maps {net.sizes[0]} inputs to {net.sizes[-1]} outputs; serve needs "
            f"{N_INPUTS} inputs (28x28 pixels) and {N_CLASSES} outputs."
        )


def model_info(net: Network, *, random_available: bool) -> dict[str, Any]:
    """What ``GET /api/model`` answers: the architecture and a summary of the training.

    Strict JSON values only: metadata set in code may hold NumPy values (sent as numbers or
    lists) or other objects (sent as text), and NaN or infinities (sent as null).
    """
    meta = net.meta
    info: dict[str, Any] = {
        "sizes": net.sizes,
        "activations": net.activations,
        "loss": net.loss.name,
        "dtype": net.dtype.name,
        "parameters": net.n_params,
        "task": meta.get("task", "classifier"),
        "dataset": meta.get("dataset", "mnist"),
        "classes": class_names(meta, N_CLASSES),
        "hidden_layers": [
            {"layer": l, "size": net.sizes[l], "activation": net.activations[l - 1]}
            for l in range(1, net.L)
        ],
        "random_available": random_available,
        "nnet_version": __version__,
    }
    history = meta.get("history")
    if isinstance(history, list) and history and all(isinstance(r, dict) for r in history):
        best = meta.get("best_epoch")  # if set, the model file holds that epoch's weights
        row = next((r for r in history if best is not None and r.get("epoch") == best), history[-1])
        keys = ("epoch", "test_accuracy", "test_loss", "val_accuracy", "train_accuracy")
        info["summary"] = {k: row[k] for k in keys if k in row} | {"epochs": len(history)}
    training = meta.get("training")
    if isinstance(training, dict):
        keys = ("preset", "trainer", "optimizer", "lr", "batch_size", "epochs", "seed", "engine")
        info["training"] = {k: training[k] for k in keys if k in training}
    if isinstance(meta.get("seconds"), (int, float)):
        info["seconds"] = meta["seconds"]
    text = json.dumps(
        info, default=lambda v: v.tolist() if isinstance(v, (np.generic, Array)) else str(v)
    )
    return json.loads(text, parse_constant=lambda _: None)  # NaN, Infinity -> null


def _kind(value: Any) -> str:
    """How an error message names the JSON type of ``value``."""
    return "an empty list" if value == [] else _KINDS.get(type(value), "a number")


def _grid(pixels: Any, preprocess: bool) -> Array:
    """The ``pixels`` of a request as a float64 array, its shape and values checked."""
    lo, hi = (MIN_SIDE, MAX_SIDE) if preprocess else (SIDE, SIDE)
    shape = (
        f"with preprocess, pixels must be {lo} to {hi} rows of {lo} to {hi} numbers"
        if preprocess
        else f"pixels must be {SIDE} rows of {SIDE} numbers or a flat list of {N_INPUTS}"
    )
    if not isinstance(pixels, list) or not pixels:
        raise RequestError(400, f"{shape}; got {_kind(pixels)}.")
    flat = not isinstance(pixels[0], list)
    rows = [pixels] if flat else pixels
    if flat and (preprocess or len(pixels) != N_INPUTS):
        raise RequestError(400, f"{shape}; got a flat list of {len(pixels)}.")
    if not flat and not lo <= len(rows) <= hi:
        raise RequestError(400, f"{shape}; got {len(rows)} rows.")
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise RequestError(400, f"pixels must be a list of rows; row {i} is {_kind(row)}.")
        if len(row) != len(rows[0]):
            got = f"row {i} holds {len(row)} numbers, row 0 {len(rows[0])}"
            raise RequestError(400, f"pixels must be a rectangular grid; {got}.")
        if not flat and not lo <= len(row) <= hi:  # row 0: the others have its length
            raise RequestError(400, f"{shape}; row {i} holds {len(row)}.")
        j = next((j for j, v in enumerate(row) if type(v) not in (int, float)), None)
        if j is not None:  # np.array would take true as 1 and "0.5" as 0.5
            where = f"entry {j}" if flat else f"row {i}, column {j}"
            raise RequestError(400, f"pixels must hold only numbers; {where} is {_kind(row[j])}.")
    try:
        a = np.array(rows, dtype=np.float64)
    except (OverflowError, ValueError):
        raise RequestError(400, "pixels must lie in [0, 1]; a value is far out of range.") from None
    low, high = float(a.min()), float(a.max())
    if not (-VALUE_SLACK <= low and high <= 1 + VALUE_SLACK):  # NaN (JSON's NaN literal) fails
        raise RequestError(400, f"pixels must lie in [0, 1]; got values from {low:g} to {high:g}.")
    np.clip(a, 0.0, 1.0, out=a)
    return a.reshape(SIDE, SIDE) if flat else a


def parse_predict_body(body: bytes) -> Array:
    """The 28x28 float64 input of a ``/api/predict`` request body: its ``pixels`` as sent
    (28x28 or a flat 784, white on black, in [0, 1]) or, with ``"preprocess": true``,
    :func:`nnet.data.preprocess.to_mnist` of the picture sent (8x8 to 512x512), as ``nnet
    predict`` converts an image file. Raises :class:`RequestError` (400) naming the problem.
    """
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(400, "the request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise RequestError(
            400, f'the request must be a JSON object like {{"pixels": ...}}; got {_kind(request)}.'
        )
    if "pixels" not in request or not set(request) <= {"pixels", "preprocess"}:
        raise RequestError(
            400,
            f"the request needs the key pixels, and may have preprocess; got {sorted(request)}.",
        )
    preprocess = request.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise RequestError(400, f"preprocess must be true or false; got {_kind(preprocess)}.")
    grid = _grid(request["pixels"], preprocess)
    if not preprocess:
        return grid
    try:
        return to_mnist(grid)
    except NnetError as exc:
        raise RequestError(400, str(exc).replace("cannot use the image: ", "", 1)) from None


def _test_digits(images: Any, labels: Any) -> tuple[Array | None, Array | None, float]:
    """Test images (N, 784), labels (N,) and the scale (255 for uint8, else 1) of the
    pixels; (None, None, 1) without test data."""
    if images is None and labels is None:
        return None, None, 1.0
    if images is None or labels is None:
        raise NnetError("test_images and test_labels go together; give both or neither.")
    x, y = np.asarray(images), np.asarray(labels)
    x = x.reshape(len(x), N_INPUTS) if x.shape[1:] == (SIDE, SIDE) else x
    if x.ndim != 2 or x.shape[1] != N_INPUTS or len(x) < 1:
        raise NnetError(f"test_images must have shape (N, 784) with N >= 1; got {x.shape}.")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise NnetError(f"test_labels must be {len(x)} integers; got {y.dtype} {y.shape}.")
    scale = 255.0 if x.dtype == np.uint8 else 1.0  # bytes are kept, and scaled per request
    if x.dtype.kind not in "iuf" or not (np.isfinite(x).all() and 0 <= x.min() <= x.max() <= scale):
        raise NnetError(f"test_images must be uint8 or numbers in [0, 1]; got {x.dtype}.")
    return x, y.astype(np.int64), scale


def static_files(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The allow-list: name -> (contents, Content-Type) of the files directly in ``folder``.

    Only plain names (letters, digits, ``_.-``, not hidden) with a known type are served; a
    symbolic link is followed only if it stays inside ``folder``. Read once, at startup.
    """
    files: dict[str, tuple[bytes, str]] = {}
    root = folder.resolve()
    for path in folder.iterdir() if folder.is_dir() else ():
        real = Path(os.path.realpath(path))  # never raises, even for a loop of links
        ctype = CONTENT_TYPES.get(path.suffix.lower())
        if ctype and _NAME.fullmatch(path.name) and real.parent == root and real.is_file():
            files[path.name] = (real.read_bytes(), ctype)
    return files


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in _LOOPBACK_NAMES


class Server(ThreadingHTTPServer):
    """The server for ``net`` on ``host``:``port`` (0: any free port), holding what its
    request threads share. ``test_images`` (N, 784) or (N, 28, 28), uint8 or floats in
    [0, 1], and ``test_labels`` (N,) feed ``/api/random`` (404 without them); ``seed`` seeds
    its choice. ``log``: "errors" (one stderr line per failed request), "all" or "none".
    Raises NnetError if ``net`` is not a 784 -> 10 classifier or the address cannot be used.
    """

    request_queue_size = 64  # connections waiting for accept(); socketserver's 5 drops bursts

    def __init__(
        self,
        net: Network,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        test_images: Any = None,
        test_labels: Any = None,
        log: str = "errors",
        seed: int | None = None,
        web_dir: str | Path | None = None,
    ) -> None:
        check_servable(net)
        if log not in LOG_LEVELS:
            raise NnetError(f"log must be one of {', '.join(LOG_LEVELS)}; got {log!r}.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise NnetError(f"port must be an integer from 0 to 65535; got {port!r}.")
        web = WEB_DIR if web_dir is None else Path(web_dir)
        self.files = static_files(web)
        if "index.html" not in self.files:
            raise NnetError(f"the page is missing: no index.html in {web}.")
        self.net, self.log, self.classes = net, log, class_names(net.meta, N_CLASSES)
        self.images, self.labels, self.scale = _test_digits(test_images, test_labels)
        self.rng, self.rng_lock = np.random.default_rng(seed), threading.Lock()
        self.info = json.dumps(model_info(net, random_available=self.images is not None)).encode()
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:  # socket.gaierror too: an unknown host
            hint = "; pass another --port (0 picks a free one)" * (exc.errno == errno.EADDRINUSE)
            reason = exc.strerror or exc
            raise NnetError(f"cannot listen on {host}:{port}: {reason}{hint}.") from None

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the host (getfqdn: slow)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of socketserver's traceback (none for lost clients)."""
        if not isinstance(exc := sys.exc_info()[1], (ConnectionError, TimeoutError)):
            _say(f"error with a request from {client_address[0]}: {_one_line(exc)}")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    def predict(self, x28: Array) -> dict[str, Any]:
        """What ``POST /api/predict`` answers for the 28x28 input ``x28``."""
        net = self.net
        x = x28.reshape(1, N_INPUTS).astype(net.dtype)
        fp = net.forward_pass(x)  # a value of this call: predictions run concurrently
        p = net.loss.probabilities(fp.O)[0]
        digit = int(np.argmax(p))
        return {
            "digit": digit,
            "label": self.classes[digit],
            "probabilities": p.tolist(),
            "outputs": fp.O[0].tolist(),
            "hidden": [fp.a[l][0, :-1].tolist() for l in range(1, net.L)],
            "input": x.reshape(SIDE, SIDE).tolist(),
        }

    def random_digit(self) -> dict[str, Any]:
        """What ``GET /api/random`` answers: a random test digit, pixels in [0, 1]."""
        if self.images is None or self.labels is None:
            raise RequestError(404, "the server has no test digits; draw a digit instead.")
        with self.rng_lock:  # a NumPy Generator is not thread-safe
            i = int(self.rng.integers(len(self.images)))
        label = int(self.labels[i])
        return {
            "pixels": (self.images[i].reshape(SIDE, SIDE) / self.scale).tolist(),
            "label": label,
            "class": self.classes[label] if 0 <= label < N_CLASSES else str(label),
            "index": i,
        }


make_server = Server  # the name the tests and older callers use


class Handler(BaseHTTPRequestHandler):
    """One connection's requests: routing, checks, and every answer (errors too) as JSON."""

    server: Server
    server_version = "nnet-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # seconds a connection may sit idle or take to send its request
    _sent = _body_done = _logged = False  # per request; reset by _dispatch

    def _dispatch(self) -> None:
        """Every method goes through the routes: a known path with another method is 405."""
        self._sent = self._body_done = self._logged = False
        try:
            self._route()
        except RequestError as exc:
            unread = 0 if self._body_done else self._content_length()
            if exc.close or not 0 <= unread <= MAX_BODY:
                self.close_connection = True
            self._error(exc.status, exc.message, allow=exc.allow)
            self._skip(unread)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # never a traceback to the client; one line on stderr
            self.close_connection = self._logged = True  # replaces the request's own log line
            request = f"{_one_line(self.command, 10)} {_one_line(self._path, 100)}"
            _say(f"internal error on {request}: {_one_line(exc)}")
            if not self._sent:
                self._error(500, "internal server error; see the server's log.")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    @property
    def _path(self) -> str:
        """The request target without its query, as sent: never decoded or normalised (so
        "//host/x" is not read as a URL with a host, as urlsplit would)."""
        return (getattr(self, "path", "") or "").partition("?")[0].partition("#")[0]

    def _route(self) -> None:
        self._check_host()
        path, server, method = self._path, self.server, self.command
        static = path.startswith("/static/")
        name = path[len("/static/") :] if static else "index.html"
        if static and name not in server.files:  # raw, undecoded: ".." and "%2f" never match
            raise RequestError(404, f"no such file: {path[:100]}.")
        allowed = _GET if static else ROUTES.get(path)
        if allowed is None:
            raise RequestError(404, f"no such page or API route: {path[:100]}.")
        if method not in allowed:
            raise RequestError(
                405,
                f"{method} is not allowed on {path}; use {' or '.join(allowed)}.",
                allow=", ".join(allowed),
            )
        if path == "/api/predict":
            if self.headers.get_content_type() != "application/json":
                raise RequestError(415, "send the body as JSON (Content-Type: application/json).")
            self._json(200, server.predict(parse_predict_body(self._read_body())))
        elif path == "/api/model":
            self._send(200, server.info, "application/json")
        elif path == "/api/random":
            self._json(200, server.random_digit())
        else:
            self._send(200, *server.files[name], page=True)

    def _check_host(self) -> None:
        """Refuse DNS-rebinding (wrong Host) and cross-origin POSTs on a loopback server."""
        host = self.headers.get("Host", "")
        try:
            name = urlsplit("//" + host).hostname or ""
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            name = "?"
        if host and _is_loopback(str(self.server.server_address[0])) and not _is_loopback(name):
            raise RequestError(
                403, "this server answers only requests addressed to localhost.", close=True
            )
        origin = self.headers.get("Origin")
        if self.command == "POST" and origin is not None:
            if origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
                raise RequestError(403, "cross-origin requests are not allowed.", close=True)

    def _content_length(self) -> int:
        """The body length the headers declare: 0 if none, -1 if chunked or not a number."""
        text = self.headers.get("Content-Length", "0")
        if self.headers.get("Transfer-Encoding") or not (text.isascii() and text.strip().isdigit()):
            return -1  # int() would take "1_0" and "-5"
        return int(text)

    def _read_body(self) -> bytes:
        length = self._content_length()
        if self.headers.get("Transfer-Encoding") or "Content-Length" not in self.headers:
            raise RequestError(411, "send the body with a Content-Length, not chunked.", close=True)
        if length < 0:
            raise RequestError(400, "the Content-Length header is not a number.", close=True)
        if length > MAX_BODY:  # answered from the headers; _dispatch then drains the body
            raise RequestError(413, f"the request body is over the {MAX_BODY >> 20} MiB limit.")
        self._body_done = True
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(400, "the request body is shorter than its Content-Length.")
        return body

    def _skip(self, length: int) -> None:
        """Read and drop the unread body of a refused request, after answering: the
        connection then stays usable, or at least closing it (a body over MAX_BODY, read up
        to DRAIN_LIMIT) does not reset the answer away."""
        left = min(length, DRAIN_LIMIT)
        with contextlib.suppress(OSError):
            self.wfile.flush()
            if self.close_connection:
                self.connection.settimeout(2.0)
            while left > 0 and (chunk := self.rfile.read1(min(left, 1 << 16))):  # type: ignore[attr-defined]
                left -= len(chunk)
        if left > 0:
            self.close_connection = True

    def _json(self, status: int, obj: Any, *, allow: str | None = None) -> None:
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json", allow=allow)

    def _error(self, status: int, message: str, *, allow: str | None = None) -> None:
        """``{"error": message}``, the message made one capitalised line."""
        text = _one_line(message)
        self._json(status, {"error": text[:1].upper() + text[1:]}, allow=allow)

    def _send(
        self, status: int, body: bytes, ctype: str, *, page: bool = False, allow: str | None = None
    ) -> None:
        """Send an answer with the security headers; the body unless the request is HEAD."""
        self.send_response(int(status))
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", PAGE_CSP if page else API_CSP)
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-cache" if page else "no-store")
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._sent = True
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's refusals (bad request line, unknown method, ...) as JSON too."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a bad request line still gets a status line
        self._error(code, message or f"{self.responses.get(code, ('error',))[0].lower()}.")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One stderr line per answer, as ``log`` asks ("errors": status 400 and up)."""
        level = self.server.log
        failed = isinstance(code, int) and code >= 400
        if not self._logged and (level == "all" or (level == "errors" and failed)):
            command = _one_line(self.command or "-", 10)
            _say(f"{command} {_one_line(self._path, 100)} {code}")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # log_request writes the only line worth writing (log_error comes here too)


def serve(
    model_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data: str | Path | None = None,
    log: str = "errors",
) -> int:
    """Serve the model at ``model_path`` until Ctrl-C or SIGTERM; returns 0. Raises NnetError
    (before listening) for a model not a 784 -> 10 classifier, a port in use or an unknown host.
    """
    net = load_model(model_path)
    check_servable(net, str(model_path))
    try:  # the test digits: never downloaded, but looked for as nnet.data.datasets.load does
        ds = load_dataset(net.meta.get("dataset", "mnist"), data, download=False, progress=False)
        images, labels = ds.x_test, ds.y_test
    except NnetError as exc:  # the folders searched, after " (": long, and said by nnet train
        reason = _one_line(str(exc), limit=None).partition(" (")[0].rstrip(".")
        _say(f"no test digits ({reason}); the Random test digit button is disabled.")
        images = labels = None
    server = Server(net, host=host, port=port, test_images=images, test_labels=labels, log=log)
    print(f"nnet serve: {server.url}  (Ctrl-C stops)", flush=True)
    if str(server.server_address[0]) in ("0.0.0.0", "::"):
        _say("listening on every network interface.")
    main = threading.current_thread() is threading.main_thread()
    # SIGTERM stops the server as Ctrl-C does
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("nnet serve: stopped.", flush=True)
    finally:
        server.server_close()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    return 0
