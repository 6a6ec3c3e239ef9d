"""``nnet serve``: a local web page where you draw a digit and watch the network answer.

The server is the standard library's :class:`http.server.ThreadingHTTPServer`; the page is
three static files in ``nnet/web/`` (no framework, no CDN: it works offline). Routes:

- ``GET /`` — the page; ``GET /static/<name>`` — a file of ``nnet/web/``, from an allow-list
  built when the server starts (anything else, ``..`` and encoded slashes included, is 404);
- ``GET /api/model`` — the model: sizes, activations, loss, dtype, task, dataset, classes,
  a training summary, and whether random test digits are available;
- ``POST /api/predict`` — ``{"pixels": ..., "preprocess": false|true}``: 28x28 (or a flat
  784) numbers in [0, 1], white on black, used as they are; or, with ``"preprocess": true``,
  a 2-D grayscale picture from 8x8 to 512x512 that goes through
  :func:`nnet.data.preprocess.to_mnist`, exactly as ``nnet predict`` converts an image file.
  Returns the digit, its class name, the 10 probabilities, every hidden layer's activations
  and the 28x28 input the network saw;
- ``GET /api/random`` — a random test digit ``{"pixels", "label", "index"}`` (404 when the
  server has no test data).

Every error is a JSON object ``{"error": "one sentence"}`` with the fitting status (400 bad
input, 403 wrong host or origin, 404, 405, 411, 413 body over :data:`MAX_BODY`, 415 not
JSON, 500 without details); nothing ever sends a traceback. The network's forward pass
reuses shared buffers, so it runs under a lock.

The server refuses requests whose ``Host`` header is not a loopback name when it listens on
a loopback address (a defence against DNS rebinding) and POSTs from another ``Origin``.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import math
import re
import signal
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from nnet.core.network import Network
from nnet.errors import NnetError

Array = np.ndarray

WEB_DIR = Path(__file__).resolve().parent / "web"
SIDE = 28  # MNIST images are SIDE x SIDE
N_INPUTS = SIDE * SIDE
N_CLASSES = 10
MIN_SIDE, MAX_SIDE = 8, 512  # sides of a picture sent with "preprocess": true
MAX_BODY = 4 * 1024 * 1024  # bytes: a 512x512 picture with 6 decimals per value fits
VALUE_SLACK = 1e-6  # tolerated rounding outside [0, 1] (clipped)
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversized body read and discarded before closing
TIMEOUT = 30.0  # seconds a connection may sit idle or take to send its request
LOG_LEVELS = ("errors", "all", "none")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
ROUTES = {  # path -> allowed methods (HEAD comes with GET)
    "/": ("GET", "HEAD"),
    "/api/model": ("GET", "HEAD"),
    "/api/random": ("GET", "HEAD"),
    "/api/predict": ("POST",),
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LOOPBACK_NAMES = {"localhost", "localhost.", "127.0.0.1", "::1"}


class RequestError(Exception):
    """A request the server refuses: an HTTP status and one sentence for the client."""

    def __init__(
        self, status: int, message: str, *, close: bool = False, allow: str | None = None
    ) -> None:
        message = message[:1].upper() + message[1:]
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close  # close the connection after answering
        self.allow = allow  # the Allow header of a 405


# ----------------------------------------------------------------------------- the model


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


def class_names(net: Network) -> list[str]:
    """The model's class names: from its metadata, else its dataset's, else "0" ... "9"."""
    classes = net.meta.get("classes")
    if isinstance(classes, list) and len(classes) == N_CLASSES:
        return [str(c) for c in classes]
    from nnet.data.datasets import DATASETS

    spec = DATASETS.get(net.meta.get("dataset", "mnist"))
    return list(spec.classes) if spec is not None else [str(d) for d in range(N_CLASSES)]


def _finite(value: Any) -> Any:
    """A JSON value with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """json.dumps's fallback for metadata set in code: NumPy scalars and arrays, else str."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)


def model_info(net: Network, *, random_available: bool) -> dict[str, Any]:
    """What ``GET /api/model`` answers: the architecture and a summary of the training."""
    from nnet.version import __version__

    meta = net.meta
    info: dict[str, Any] = {
        "sizes": net.sizes,
        "activations": net.activations,
        "loss": net.loss.name,
        "dtype": net.dtype.name,
        "parameters": net.n_params,
        "task": meta.get("task", "classifier"),
        "dataset": meta.get("dataset", "mnist"),
        "classes": class_names(net),
        "hidden_layers": [
            {"layer": l, "size": net.sizes[l], "activation": net.activations[l - 1]}
            for l in range(1, net.L)
        ],
        "random_available": random_available,
        "nnet_version": __version__,
    }
    history = meta.get("history")
    if isinstance(history, list) and history and all(isinstance(r, dict) for r in history):
        row = history[-1]
        best = meta.get("best_epoch")
        if best is not None:  # the model file holds the best epoch's weights
            row = next((r for r in history if r.get("epoch") == best), row)
        keys = ("epoch", "test_accuracy", "test_loss", "val_accuracy", "train_accuracy")
        info["summary"] = {k: row[k] for k in keys if k in row}
        info["summary"]["epochs"] = len(history)
    training = meta.get("training")
    if isinstance(training, dict):
        keys = ("preset", "trainer", "optimizer", "lr", "batch_size", "epochs", "seed", "engine")
        info["training"] = {k: training[k] for k in keys if k in training}
    if isinstance(meta.get("seconds"), (int, float)):
        info["seconds"] = meta["seconds"]
    return _finite(info)


# ----------------------------------------------------------------------------- requests


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a number"


def _numbers_only(values: list[Any], where: Callable[[int], str]) -> None:
    """RequestError naming the first entry of ``values`` that is not an int or a float."""
    if not {type(v) for v in values} <= {int, float}:
        for j, v in enumerate(values):
            if type(v) not in (int, float):
                raise RequestError(400, f"pixels must hold only numbers; {where(j)} is {_kind(v)}.")


def _grid(pixels: Any, preprocess: bool) -> Array:
    """The ``pixels`` of a request as a float64 array, its shape and values checked."""
    if not isinstance(pixels, list) or not pixels:
        raise RequestError(
            400, f"pixels must be a non-empty list of numbers or of rows; got {_kind(pixels)}."
        )
    flat = not isinstance(pixels[0], list)
    if flat:
        if preprocess:
            raise RequestError(
                400,
                f"with preprocess, pixels must be a 2-D list of rows from {MIN_SIDE}x{MIN_SIDE} "
                f"to {MAX_SIDE}x{MAX_SIDE}; got a flat list.",
            )
        if len(pixels) != N_INPUTS:
            raise RequestError(
                400,
                f"pixels must be a 28x28 list of rows or a flat list of {N_INPUTS} numbers; "
                f"got a flat list of {len(pixels)}.",
            )
        _numbers_only(pixels, lambda j: f"entry {j}")
        rows = [pixels]
    else:
        h = len(pixels)
        if preprocess and not MIN_SIDE <= h <= MAX_SIDE:
            raise RequestError(
                400,
                f"with preprocess, pixels must have {MIN_SIDE} to {MAX_SIDE} rows; got {h}.",
            )
        if not preprocess and h != SIDE:
            raise RequestError(
                400, f"pixels must be 28 rows of 28 numbers (or 784 numbers); got {h} rows."
            )
        w = None
        for i, row in enumerate(pixels):
            if not isinstance(row, list):
                raise RequestError(
                    400, f"pixels must be a list of rows; row {i} is {_kind(row)}, not a list."
                )
            if w is None:
                w = len(row)
                if preprocess and not MIN_SIDE <= w <= MAX_SIDE:
                    raise RequestError(
                        400,
                        f"with preprocess, rows must hold {MIN_SIDE} to {MAX_SIDE} numbers; "
                        f"row 0 holds {w}.",
                    )
                if not preprocess and w != SIDE:
                    raise RequestError(
                        400, f"pixels must be 28 rows of 28 numbers; row 0 holds {w}."
                    )
            elif len(row) != w:
                raise RequestError(
                    400,
                    f"pixels must be a rectangular grid; row {i} holds {len(row)} numbers "
                    f"but row 0 holds {w}.",
                )
            _numbers_only(row, lambda j, i=i: f"row {i}, column {j}")
        rows = pixels
    try:
        a = np.array(rows, dtype=np.float64)
    except (OverflowError, ValueError):
        raise RequestError(400, "pixels must lie in [0, 1]; a value is far out of range.") from None
    if not np.isfinite(a).all():  # json.loads is told to refuse NaN; be safe anyway
        raise RequestError(400, "pixels must be finite numbers in [0, 1].")
    lo, hi = float(a.min()), float(a.max())
    if lo < -VALUE_SLACK or hi > 1 + VALUE_SLACK:
        raise RequestError(
            400,
            f"pixels must lie in [0, 1] (0 black, 1 white); got values from {lo:g} to {hi:g}.",
        )
    np.clip(a, 0.0, 1.0, out=a)
    return a.reshape(SIDE, SIDE) if flat else a


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_predict_body(body: bytes) -> tuple[Array, bool]:
    """The 28x28 float64 input and the preprocess flag of a ``/api/predict`` request body.

    The input is either the pixels as sent (white on black, [0, 1]) or, with
    ``"preprocess": true``, :func:`nnet.data.preprocess.to_mnist` of the picture sent. Raises
    :class:`RequestError` (400) naming the problem.
    """
    try:
        request = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise RequestError(400, "the request body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise RequestError(
            400, f'the request must be a JSON object like {{"pixels": ...}}; got {_kind(request)}.'
        )
    unknown = sorted(set(request) - {"pixels", "preprocess"})
    if unknown:
        raise RequestError(
            400, f"unknown key {unknown[0]!r} in the request; expected pixels and preprocess."
        )
    if "pixels" not in request:
        raise RequestError(400, 'the request needs a "pixels" key.')
    preprocess = request.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise RequestError(400, f"preprocess must be true or false; got {_kind(preprocess)}.")
    grid = _grid(request["pixels"], preprocess)
    if not preprocess:
        return grid, False
    from nnet.data.preprocess import to_mnist

    try:
        return to_mnist(grid), True
    except NnetError as exc:
        raise RequestError(400, str(exc).replace("cannot use the image: ", "", 1)) from None


# ----------------------------------------------------------------------------- the server


class App:
    """What the handlers share: the network (under a lock), the files, the test digits."""

    def __init__(
        self,
        net: Network,
        *,
        test_images: Any = None,
        test_labels: Any = None,
        web_dir: Path | None = None,
        log: str = "errors",
        seed: int | None = None,
    ) -> None:
        check_servable(net)
        if log not in LOG_LEVELS:
            raise NnetError(f"log must be one of {', '.join(LOG_LEVELS)}; got {log!r}.")
        self.net = net
        self.classes = class_names(net)
        self.lock = threading.Lock()
        self.log = log
        self.images, self.labels, self.scale = _test_digits(test_images, test_labels)
        self.rng = np.random.default_rng(seed)
        self.rng_lock = threading.Lock()
        self.files = static_files(WEB_DIR if web_dir is None else Path(web_dir))
        if "index.html" not in self.files:
            raise NnetError(f"the page is missing: no index.html in {web_dir or WEB_DIR}.")
        info = model_info(net, random_available=self.images is not None)
        self.info = json.dumps(_finite(json.loads(json.dumps(info, default=_plain)))).encode()

    def predict(self, x28: Array) -> dict[str, Any]:
        net = self.net
        x = x28.reshape(1, N_INPUTS).astype(net.dtype)
        with self.lock:  # forward() fills net.a / net.h, shared by every thread
            O = net.forward(x)
            hidden = [net.a[l][0, :-1].tolist() for l in range(1, net.L)]
        p = net.loss.probabilities(O)[0]
        digit = int(np.argmax(p))
        return {
            "digit": digit,
            "label": self.classes[digit],
            "probabilities": p.tolist(),
            "outputs": O[0].tolist(),
            "hidden": hidden,
            "input": x.reshape(SIDE, SIDE).tolist(),
        }

    def random_digit(self) -> dict[str, Any]:
        if self.images is None or self.labels is None:
            raise RequestError(
                404,
                "the server has no test digits (the dataset was not found); draw a digit instead.",
            )
        with self.rng_lock:
            i = int(self.rng.integers(len(self.images)))
        label = int(self.labels[i])
        pixels = self.images[i].reshape(SIDE, SIDE) / self.scale
        return {
            "pixels": pixels.tolist(),
            "label": label,
            "class": self.classes[label] if 0 <= label < N_CLASSES else str(label),
            "index": i,
        }


def _test_digits(images: Any, labels: Any) -> tuple[Array | None, Array | None, float]:
    """Test images (N, 784), labels (N,) and the scale (255 for uint8, else 1) of the
    pixels; (None, None, 1) without test data."""
    if images is None and labels is None:
        return None, None, 1.0
    if images is None or labels is None:
        raise NnetError("test_images and test_labels go together; give both or neither.")
    x = np.asarray(images)
    y = np.asarray(labels)
    if x.ndim == 3 and x.shape[1:] == (SIDE, SIDE):
        x = x.reshape(len(x), N_INPUTS)
    if x.ndim != 2 or x.shape[1] != N_INPUTS or len(x) < 1:
        raise NnetError(f"test_images must have shape (N, 784) with N >= 1; got {x.shape}.")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise NnetError(f"test_labels must be {len(x)} integers; got {y.dtype} {y.shape}.")
    if x.dtype == np.uint8:
        return x, y.astype(np.int64), 255.0  # kept as bytes; scaled per request
    if x.dtype.kind not in "iuf":
        raise NnetError(f"test_images must be uint8 or floats in [0, 1]; got {x.dtype}.")
    x = x.astype(np.float64)
    if not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise NnetError("test_images must be uint8 or floats in [0, 1].")
    return x, y.astype(np.int64), 1.0


def static_files(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The allow-list: name -> (contents, Content-Type) of the files directly in ``folder``.

    Only plain names (letters, digits, ``_.-``, not hidden) with a known type are served; a
    symbolic link is followed only if it stays inside ``folder``. Read once, at startup.
    """
    files: dict[str, tuple[bytes, str]] = {}
    if not folder.is_dir():
        return files
    root = folder.resolve()
    for path in sorted(folder.iterdir()):
        ctype = CONTENT_TYPES.get(path.suffix.lower())
        if ctype is None or not _NAME.fullmatch(path.name):
            continue
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.parent != root or not real.is_file():
            continue
        files[path.name] = (real.read_bytes(), ctype)
    return files


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with the app attached, and no reverse DNS lookup when binding."""

    daemon_threads = True
    app: App

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's also calls getfqdn (slow)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of socketserver's traceback (none for lost clients)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        print(
            f"nnet serve: error with a request from {client_address[0]}: "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
            file=sys.stderr,
            flush=True,
        )

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Server6(Server):
    address_family = socket.AF_INET6


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in _LOOPBACK_NAMES


class _Handled(Exception):
    """The response was already sent (413): nothing more to do."""


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "nnet-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    # ------------------------------------------------------------------ dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        self._sent = False
        self._body_done = False
        self._logged = False
        try:
            self._route(method)
        except _Handled:
            pass
        except RequestError as exc:
            if exc.close:
                self.close_connection = True
            self._discard_body()
            self._json(exc.status, {"error": exc.message}, allow=exc.allow)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # never a traceback to the client; one line on stderr
            self.close_connection = True
            self._logged = True  # this line replaces the request's own log line
            print(
                f"nnet serve: internal error on {method} {self._path_for_log()}: "
                f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                file=sys.stderr,
                flush=True,
            )
            if not self._sent:
                self._json(500, {"error": "Internal server error; see the server's log."})

    def _route(self, method: str) -> None:
        app = self.server.app
        self._check_host()
        path = self._request_path()
        if path.startswith("/static/"):
            allowed: tuple[str, ...] = ("GET", "HEAD")
            name = path[len("/static/") :]
            if name not in app.files:  # raw, undecoded: ".." and "%2f" never match a name
                raise RequestError(404, f"no such file: {path[:100]}.")
        elif path in ROUTES:
            allowed = ROUTES[path]
        else:
            raise RequestError(404, f"no such page or API route: {path[:100]}.")
        if method not in allowed:
            raise RequestError(
                405,
                f"{method} is not allowed on {path}; use {' or '.join(allowed)}.",
                allow=", ".join(allowed),
            )
        head = method == "HEAD"
        if path == "/" or path.startswith("/static/"):
            body, ctype = app.files["index.html" if path == "/" else path[len("/static/") :]]
            self._send(200, body, ctype, csp=PAGE_CSP, cache="no-cache", head=head)
        elif path == "/api/model":
            self._send(200, app.info, "application/json", head=head)
        elif path == "/api/random":
            self._json(200, app.random_digit(), head=head)
        else:  # POST /api/predict
            body = self._read_body()
            ctype = self.headers.get("Content-Type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":
                raise RequestError(
                    415, "send the request as JSON with Content-Type: application/json."
                )
            x28, _ = parse_predict_body(body)
            self._json(200, app.predict(x28))

    # ------------------------------------------------------------------ checks
    def _check_host(self) -> None:
        """Refuse DNS-rebinding (wrong Host) and cross-origin POSTs on a loopback server."""
        bound = str(self.server.server_address[0])
        host = self.headers.get("Host", "")
        try:
            name = (urlsplit("//" + host).hostname or "") if host else ""
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            name = "?"
        if _is_loopback(bound) and host and not _is_loopback(name):
            raise RequestError(
                403, "this server answers only requests addressed to localhost.", close=True
            )
        origin = self.headers.get("Origin")
        if self.command == "POST" and origin is not None:
            if origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
                raise RequestError(403, "cross-origin requests are not allowed.", close=True)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the body with a Content-Length, not chunked.", close=True)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise RequestError(411, "the request needs a Content-Length header.", close=True)
        try:
            length = int(length_text)
            if length < 0 or not length_text.strip().isdigit():
                raise ValueError
        except ValueError:
            raise RequestError(
                400, "the Content-Length header is not a number.", close=True
            ) from None
        self._body_done = True
        if length > MAX_BODY:
            self.close_connection = True
            self._json(
                413,
                {"error": f"The request body is over the {MAX_BODY // (1024 * 1024)} MiB limit."},
            )
            self._drain(length)
            raise _Handled
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(400, "the request body is shorter than its Content-Length.")
        return body

    def _discard_body(self) -> None:
        """Read the body of a refused request (if small), so the connection stays usable
        and closing it does not reset the answer away."""
        if self._body_done:
            return
        self._body_done = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if 0 <= length <= MAX_BODY and not self.headers.get("Transfer-Encoding"):
            self.rfile.read(length)
        else:
            self.close_connection = True

    def _drain(self, length: int) -> None:
        """Read (and drop) an oversized body after answering, so closing sends no reset."""
        try:
            self.wfile.flush()
            self.connection.settimeout(2.0)
            left = min(length, DRAIN_LIMIT)
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 16))  # type: ignore[attr-defined]
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    # ------------------------------------------------------------------ responses
    def _json(self, status: int, obj: Any, *, head: bool = False, allow: str | None = None) -> None:
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json", head=head, allow=allow)

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        *,
        csp: str = API_CSP,
        cache: str = "no-store",
        head: bool = False,
        allow: str | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", csp)
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", cache)
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._sent = True
        if not head:
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (bad request line, unknown method, ...) as JSON too."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        text = f"{phrase.lower()}." if message is None else " ".join(str(message).split())[:200]
        body = json.dumps({"error": text[:1].upper() + text[1:]}).encode()
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # a bad request line still gets a status line
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", API_CSP)
        self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    # ------------------------------------------------------------------ logging
    def _request_path(self) -> str:
        """The request target without its query: taken as it is, never decoded or
        normalised (so "//host/x" is not read as a URL with a host, unlike urlsplit)."""
        return (getattr(self, "path", "") or "").partition("?")[0].partition("#")[0]

    def _path_for_log(self) -> str:
        path = self._request_path()
        return "".join(c if c.isprintable() else "?" for c in path)[:100]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        level = self.server.app.log
        if getattr(self, "_logged", False):
            return
        status = int(code) if str(code).isdigit() else 0
        if level == "all" or (level == "errors" and status >= 400):
            method = "".join(c if c.isprintable() else "?" for c in str(self.command or "-"))
            print(
                f"nnet serve: {method[:10]} {self._path_for_log()} {code}",
                file=sys.stderr,
                flush=True,
            )

    def log_error(self, format: str, *args: Any) -> None:
        pass  # send_error's message is logged by log_request; nothing else is worth a line

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(
    net: Network,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    test_images: Any = None,
    test_labels: Any = None,
    log: str = "errors",
    seed: int | None = None,
    web_dir: str | Path | None = None,
) -> Server:
    """A ThreadingHTTPServer for ``net`` listening on ``host``:``port`` (0: any free port).

    ``test_images`` (N, 784) or (N, 28, 28), uint8 or floats in [0, 1], and ``test_labels``
    (N,) feed ``/api/random`` (the page's Random test digit button); without them it is
    404. ``log``: "errors" (one stderr line per failed request), "all" or "none". ``seed``
    seeds the choice of random digits. Call ``serve_forever()`` on the result, then
    ``shutdown()`` and ``server_close()``. Raises NnetError if ``net`` is not a 784 -> 10
    classifier or the address cannot be used.
    """
    app = App(
        net,
        test_images=test_images,
        test_labels=test_labels,
        web_dir=None if web_dir is None else Path(web_dir),
        log=log,
        seed=seed,
    )
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise NnetError(f"port must be an integer from 0 to 65535; got {port!r}.")
    cls = Server6 if ":" in host else Server
    try:
        server = cls((host, port), Handler)
    except socket.gaierror as exc:
        raise NnetError(f"cannot listen on {host}: unknown host ({exc.strerror}).") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise NnetError(
                f"cannot listen on {host}:{port}: the port is in use; pass another --port "
                f"(0 picks a free one)."
            ) from None
        reason = exc.strerror or str(exc)
        raise NnetError(f"cannot listen on {host}:{port}: {reason}.") from None
    server.app = app
    return server


def load_test_digits(net: Network, data: str | Path | None = None) -> tuple[Array, Array] | None:
    """The test images and labels of the model's dataset, or None (one line on stderr why).

    Never downloads: ``data`` (``--data DIR``), ``$NNET_DATA`` and the user cache are
    searched as by :func:`nnet.data.datasets.load`.
    """
    from nnet.data.datasets import load

    name = net.meta.get("dataset", "mnist")
    try:
        ds = load(name, data, download=False, progress=False)
    except NnetError as exc:
        reason = " ".join(str(exc).split())
        cut = reason.find(" (")  # the folders searched: long, and said again by nnet train
        reason = reason[:cut] if cut > 0 else reason.rstrip(".")
        print(
            f"nnet serve: no test digits ({reason}); the Random test digit button is disabled.",
            file=sys.stderr,
            flush=True,
        )
        return None
    return ds.x_test, ds.y_test


def serve(
    model_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data: str | Path | None = None,
    log: str = "errors",
) -> int:
    """Load the model at ``model_path`` and serve the page until Ctrl-C; returns 0.

    Raises NnetError (before listening) for a model that is not a 784 -> 10 classifier,
    a port in use or an unknown host.
    """
    from nnet.files.model_file import load as load_model

    net = load_model(model_path)
    check_servable(net, str(model_path))
    digits = load_test_digits(net, data)
    images, labels = digits if digits is not None else (None, None)
    server = make_server(net, host=host, port=port, test_images=images, test_labels=labels, log=log)
    print(f"nnet serve: {server.url}  (Ctrl-C stops)", flush=True)
    if str(server.server_address[0]) in ("0.0.0.0", "::"):
        print("nnet serve: listening on every network interface.", file=sys.stderr, flush=True)
    main = threading.current_thread() is threading.main_thread()
    old_term = None
    if main:
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("nnet serve: stopped.", flush=True)
    finally:
        server.server_close()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
