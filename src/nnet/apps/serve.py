"""``nnet serve``: a local web page where you draw a digit and watch the network answer.

An ASGI application (Starlette's requests and responses) run by uvicorn serves the page, its
files in ``nnet/apps/web/`` (an allow-list: :func:`static_files`; no CDN, it works offline)
and a JSON API: ``GET /api/model`` (:func:`model_info`), ``GET /api/random`` (a random test
digit) and ``POST /api/predict`` (:func:`parse_predict_body`, answered by
:meth:`Server.predict` in a pool of threads, so that the event loop stays free).

The learn view (``/learn``; ``/`` too when no model file is served) trains a network live:
``POST /api/train`` (settings -> 202 with a run id, 409 while one trains),
``POST /api/train/pause``, ``/resume``, ``/step``, ``/stop``, ``/switch`` (``{"engine": E}``),
``/save`` (``{"name": "F.npz"}``, written in the server's save folder) and ``/predict``,
``GET /api/train`` (the run's state), ``/api/train/model`` (its network, as ``/api/model``
describes a model) and ``/api/train/events`` (Server-Sent Events). The run itself is a
process of its own (:mod:`nnet.apps.learn`); these routes only talk to it
(:meth:`Server._learn`). Without a model file, ``/api/predict`` answers with the network
being trained.

Every error is ``{"error": "one sentence"}`` with its status (400, 403 wrong Host or Origin,
404, 405, 408 a request not whole within :data:`REQUEST_TIMEOUT`, 411, 413 body over
:data:`MAX_BODY`, 415 not JSON, 422 outputs that overflow, 503 busy, 500 without details),
never a traceback. A loopback server refuses a non-loopback ``Host`` (DNS rebinding) and
POSTs from another ``Origin``.

Under load: the event loop reads slow clients without a thread each; a request must arrive
whole within :data:`REQUEST_TIMEOUT` (:class:`_Protocol`); the bodies being read hold at
most :data:`BODIES_IN_FLIGHT` bytes together (:class:`BodyBudget`), the rest are answered
503 before their body is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import ipaddress
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import numpy as np
import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from nnet.apps.learn import Busy, Gone, LearnHub
from nnet.core.network import Network
from nnet.data.datasets import MNIST, class_names
from nnet.data.datasets import load as load_dataset
from nnet.data.preprocess import to_mnist
from nnet.errors import NnetError
from nnet.files.model_file import load as load_model
from nnet.training.settings import Settings
from nnet.version import __version__

Array = np.ndarray

WEB_DIR = Path(__file__).resolve().parent / "web"
SIDE, N_INPUTS, N_CLASSES = MNIST.side, MNIST.n_inputs, MNIST.n_classes  # what is served
MIN_SIDE, MAX_SIDE = 8, 512  # sides of a picture sent with "preprocess": true
VALUE_SLACK = 1e-6  # tolerated rounding outside [0, 1] (clipped)
LOG_LEVELS = ("errors", "all", "none")

# The limits that keep the server up under load (a classroom, or a hostile client).
MAX_BODY = 4 * 1024 * 1024  # bytes of one request body: a 512x512 picture, 6 decimals a value
BODIES_IN_FLIGHT = 64 * 1024 * 1024  # bytes of bodies held at once, all requests together
SMALL_BODY = 256 * 1024  # a body this size or less (the page's, 140x140) is a small one...
SMALL_RESERVE = 16 * 1024 * 1024  # ...and this much of BODIES_IN_FLIGHT is kept for small ones
RETRY_AFTER = 2  # seconds a client refused with 503 is told to wait (Retry-After)
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of a refused body read and dropped so its answer arrives
REQUEST_TIMEOUT = 10.0  # seconds for a request to arrive whole, headers and body (then 408)
KEEP_ALIVE_TIMEOUT = 5.0  # seconds an idle connection is kept open for its next request
MAX_HEADER_BYTES = 64 * 1024  # bytes of a request line and headers held incomplete (then 400)
BACKLOG = 512  # connections waiting to be accepted (the standard library's 5 drops bursts)
MAX_CONNECTIONS = 1024  # open connections; one more is answered 503 and closed
PREDICT_THREADS = 4  # threads that parse, predict and write answers (NumPy frees the GIL)
LARGE_PARSES = 1  # bodies over SMALL_BODY parsed at once (4 MiB of JSON: ~40 MB, 0.4 s)
SHUTDOWN_GRACE = 3.0  # seconds the answers being computed get to finish after Ctrl-C
TIMEOUT_ENV = "NNET_SERVE_REQUEST_TIMEOUT"  # environment variable: serve()'s REQUEST_TIMEOUT

OVERFLOW = "the model's outputs overflow for this input: its weights are too large; retrain it."
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")  # others: 501
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
# The learn view: its page, and the routes that talk to the training process.
LEARN_COMMANDS = ("pause", "resume", "step", "stop", "switch", "save", "predict")
LEARN_ROUTES = {
    "/learn": _GET,
    "/api/train": ("GET", "HEAD", "POST"),
    "/api/train/model": _GET,
    "/api/train/events": ("GET",),
    **{f"/api/train/{name}": ("POST",) for name in LEARN_COMMANDS},
}
ROUTES.update(LEARN_ROUTES)
LEARN_BODY = 64 * 1024  # bytes of a learn request's body (settings, a command)
LEARN_WAIT = 30.0  # seconds a command waits for the training process (a save: longer)
SAVE_WAIT = 300.0
MAX_VIEWERS = 64  # event streams open at once
HEARTBEAT = 15.0  # seconds between two comments on an idle event stream
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
    retry_after: int | None = None  # the Retry-After header of a 503


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


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` and listening; NnetError if it cannot be."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds at once
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:  # socket.gaierror too: an unknown host
        sock.close()
        hint = "; pass another --port (0 picks a free one)" * (exc.errno == errno.EADDRINUSE)
        reason = exc.strerror or exc
        raise NnetError(f"cannot listen on {host}:{port}: {reason}{hint}.") from None
    return sock


class BodyBudget:
    """The bytes of request bodies held at once. A body is read only once its declared length
    is reserved here; bodies over ``small`` share all but ``reserve`` of the ``total``, so
    that large uploads, even stalled ones, cannot keep the page's small requests out. Used
    from the event loop only: no lock."""

    def __init__(
        self, total: int = BODIES_IN_FLIGHT, small: int = SMALL_BODY, reserve: int = SMALL_RESERVE
    ) -> None:
        self.total, self.small, self.reserve, self.used = total, small, reserve, 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` bytes; False (nothing reserved) if they do not fit."""
        limit = self.total if n <= self.small else self.total - self.reserve
        if self.used + n > limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


def _headers(
    ctype: str,
    length: int,
    *,
    page: bool = False,
    allow: str | None = None,
    retry_after: int | None = None,
    close: bool = False,
) -> list[tuple[bytes, bytes]]:
    """The headers of every answer: its type and length, and the security headers."""
    pairs = [
        ("Content-Type", ctype),
        ("Content-Length", str(length)),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", PAGE_CSP if page else API_CSP),
        ("Referrer-Policy", "no-referrer"),
        ("Cross-Origin-Resource-Policy", "same-origin"),
        ("Cache-Control", "no-cache" if page else "no-store"),
        ("Server", "nnet-serve"),
    ]
    pairs += [("Allow", allow)] if allow else []
    pairs += [("Retry-After", str(retry_after))] if retry_after is not None else []
    pairs += [("Connection", "close")] if close else []
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


def _dumps(obj: Any) -> bytes:
    """Strict JSON: a NaN or an infinity raises ValueError instead of writing invalid JSON."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


def _error_body(message: str) -> bytes:
    """``{"error": message}``, the message made one capitalised line."""
    text = _one_line(message)
    return _dumps({"error": text[:1].upper() + text[1:]})


def _raw_answer(status: int, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, for the protocol to write
    itself when no request reached the application (unparsable, timed out, refused)."""
    body = _error_body(message)
    headers = _headers("application/json", len(body), retry_after=retry_after, close=True)
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    head += [name + b": " + value for name, value in headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _target(scope: dict[str, Any]) -> str:
    """The request target without its query, as sent: never decoded or normalised (so
    "/static/%2e%2e/x" stays what it is, and "//host/x" is not read as a URL with a host)."""
    return scope.get("raw_path", b"").decode("latin-1").partition("#")[0]


class _SayLog(logging.Handler):
    """uvicorn's own error messages (its warnings are silenced) as one ``nnet serve:`` line."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(_one_line(record.getMessage()))


@dataclass
class _Exchange:
    """One request as the application sees it."""

    request: Request
    method: str
    path: str
    body_read: bool = False


class Server:
    """The server for ``net`` on ``host``:``port`` (0: any free port), bound and listening
    from construction on; :meth:`serve_forever` runs it (uvicorn, on an event loop of its
    own), :meth:`shutdown` stops it from another thread, :meth:`server_close` frees it.

    ``test_images`` (N, 784) or (N, 28, 28), uint8 or floats in [0, 1], and ``test_labels``
    (N,) feed ``/api/random`` (404 without them); ``seed`` seeds its choice. ``log``: "errors"
    (one stderr line per failed request), "all" or "none". ``request_timeout``: seconds for
    a request to arrive whole. ``net`` None: no model file, the learn view and the network
    it trains only. ``learn``: the learn view's hub (default: one that reads the data as
    nnet train does and saves models in the current folder). Raises NnetError if ``net`` is
    not a 784 -> 10 classifier or the address cannot be used.
    """

    def __init__(
        self,
        net: Network | None,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        test_images: Any = None,
        test_labels: Any = None,
        log: str = "errors",
        seed: int | None = None,
        web_dir: str | Path | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        learn: LearnHub | None = None,
    ) -> None:
        if net is not None:
            check_servable(net)
        if log not in LOG_LEVELS:
            raise NnetError(f"log must be one of {', '.join(LOG_LEVELS)}; got {log!r}.")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise NnetError(f"port must be an integer from 0 to 65535; got {port!r}.")
        if isinstance(request_timeout, bool) or not (
            isinstance(request_timeout, (int, float)) and 0 < request_timeout <= 3600
        ):
            raise NnetError(f"request_timeout must be 0 to 3600 seconds; got {request_timeout!r}.")
        web = WEB_DIR if web_dir is None else Path(web_dir)
        self.files = static_files(web)
        if "index.html" not in self.files:
            raise NnetError(f"the page is missing: no index.html in {web}.")
        meta = net.meta if net is not None else {}
        self.net, self.log, self.classes = net, log, class_names(meta, N_CLASSES)
        self.images, self.labels, self.scale = _test_digits(test_images, test_labels)
        self.rng, self.rng_lock = np.random.default_rng(seed), threading.Lock()
        random_available = self.images is not None
        self.info = (
            None if net is None else _dumps(model_info(net, random_available=random_available))
        )
        self.learn = LearnHub() if learn is None else learn
        self.viewers = 0  # event streams open
        self._trained_info: tuple[str, bytes] | None = None  # (run id, /api/train/model)
        self.budget = BodyBudget()
        self.large_parses = asyncio.Semaphore(LARGE_PARSES)  # bound to the loop on first use
        self.socket = _listen(host, port)
        self.server_address = self.socket.getsockname()
        self.pool = concurrent.futures.ThreadPoolExecutor(PREDICT_THREADS, "nnet-serve")
        protocol = type("Protocol", (_Protocol,), {"site": self, "timeout": float(request_timeout)})
        uvicorn_log = logging.getLogger("uvicorn.error")
        if not any(isinstance(h, _SayLog) for h in uvicorn_log.handlers):
            uvicorn_log.addHandler(_SayLog())
            uvicorn_log.propagate = False
        config = uvicorn.Config(
            self.app,
            http=protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            log_level=logging.ERROR,  # its warnings (bad requests...) are answered, not logged
            access_log=False,  # log_request writes the one line per request
            proxy_headers=False,
            server_header=False,
            backlog=BACKLOG,
            timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
        self._uvicorn = uvicorn.Server(config)
        self._running, self._stopped = threading.Event(), threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(str(host), str(host))
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    # ------------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`; in the main thread, Ctrl-C and SIGTERM also stop it
        (gracefully, then raised again: KeyboardInterrupt with Python's handlers)."""
        self._running.set()
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it has returned."""
        self._uvicorn.should_exit = True
        if self._running.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        """Free the socket and the threads; stop the training process (a save under way
        finishes first)."""
        self.socket.close()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.learn.close()

    # ------------------------------------------------------------------ answers

    def predict(self, x28: Array) -> dict[str, Any]:
        """What ``POST /api/predict`` answers for the 28x28 input ``x28``; RequestError 422 if
        the model's values overflow (finite but enormous weights)."""
        net = self.net
        x = x28.reshape(1, N_INPUTS).astype(net.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below, never warned
            fp = net.forward_pass(x)  # a value of this call: predictions run concurrently
            p = net.loss.probabilities(fp.O)[0]
        hidden = [fp.a[l][0, :-1] for l in range(1, net.L)]
        if not all(np.isfinite(v).all() for v in (fp.O, p, *hidden)):
            raise RequestError(422, OVERFLOW)
        digit = int(np.argmax(p))
        return {
            "digit": digit,
            "label": self.classes[digit],
            "probabilities": p.tolist(),
            "outputs": fp.O[0].tolist(),
            "hidden": [h.tolist() for h in hidden],
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

    def _answer_predict(self, body: bytes | bytearray, trained: bool = False) -> bytes:
        """The JSON answer to a ``/api/predict`` body; run in the pool of threads. The
        network being trained answers if ``trained`` or without a model file."""
        x28 = parse_predict_body(body)
        if trained or self.net is None:
            return _dumps(self._trained_predict(x28, model_wanted=not trained))
        return _dumps(self.predict(x28))

    def log_request(self, method: str, path: str, status: int) -> None:
        """One stderr line per answer, as ``log`` asks ("errors": status 400 and up)."""
        if self.log == "all" or (self.log == "errors" and status >= 400):
            _say(f"{_one_line(method or '-', 10)} {_one_line(path or '-', 100)} {status}")

    # ------------------------------------------------------------------ the application

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application: routing, checks, and every answer (errors too) as JSON."""
        if scope["type"] != "http":
            return
        ex = _Exchange(Request(scope, receive), scope["method"], _target(scope))
        try:
            response = await self._route(ex)
        except RequestError as exc:
            unread = 0 if ex.body_read else _declared_length(ex.request)
            close = exc.close or not 0 <= unread <= DRAIN_LIMIT  # else uvicorn drops the body
            body = _error_body(exc.message)
            response = self._response(
                exc.status, body, allow=exc.allow, retry_after=exc.retry_after, close=close
            )
        except ClientDisconnect:
            return  # the client left, or its request ran out of time (answered 408)
        except Exception as exc:  # never a traceback to the client; one line on stderr
            request = f"{_one_line(ex.method, 10)} {_one_line(ex.path, 100)}"
            _say(f"internal error on {request}: {_one_line(exc)}")
            body = _error_body("internal server error; see the server's log.")
            await self._response(500, body, close=True)(scope, receive, send)
            return
        self.log_request(ex.method, ex.path, response.status_code)
        await response(scope, receive, send)

    @staticmethod
    def _response(
        status: int,
        body: bytes,
        ctype: str = "application/json",
        *,
        page: bool = False,
        allow: str | None = None,
        retry_after: int | None = None,
        close: bool = False,
    ) -> Response:
        response = Response(body, status_code=status)
        response.raw_headers = _headers(
            ctype, len(body), page=page, allow=allow, retry_after=retry_after, close=close
        )
        return response

    async def _route(self, ex: _Exchange) -> Response:
        version = ex.request.scope["http_version"]
        if version not in ("1.0", "1.1"):
            raise RequestError(505, f"invalid HTTP version ({_one_line(version, 10)}).", close=True)
        if ex.method not in METHODS:
            raise RequestError(501, f"unsupported method ({ex.method[:20]!r}).", close=True)
        self._check_host(ex.request)
        path, method = ex.path, ex.method
        static = path.startswith("/static/")
        name = path[len("/static/") :] if static else "index.html"
        if static and name not in self.files:  # raw, undecoded: ".." and "%2f" never match
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
        if path in LEARN_ROUTES:
            return await self._learn(ex)
        if path == "/api/predict":
            return self._response(200, await self._predict(ex))
        if path == "/api/model":
            if self.info is None:
                raise RequestError(
                    404, "no model file is served; train one in the learn view (/learn)."
                )
            return self._response(200, self.info)
        if path == "/api/random":
            return self._response(200, _dumps(self.random_digit()))
        if name == "index.html" and self.net is None and "learn.html" in self.files:
            name = "learn.html"  # no model to draw for: the learn view is the page
        return self._response(200, *self.files[name], page=True)

    # ------------------------------------------------------------------ the learn view

    async def _learn(self, ex: _Exchange) -> Response:
        """The learn view's page and routes (see the module docstring)."""
        path, hub = ex.path, self.learn
        if path == "/learn":
            if "learn.html" not in self.files:
                raise RequestError(404, "the learn view's page is missing.")
            return self._response(200, *self.files["learn.html"], page=True)
        if path == "/api/train/events":
            return self._events()
        if path == "/api/train/model":
            return self._response(200, await self._trained_model())
        if path == "/api/train" and ex.method != "POST":
            return self._response(200, _dumps(hub.status()))
        if path == "/api/train/predict":  # read and parsed as /api/predict's body is
            return self._response(200, await self._predict(ex, trained=True))
        body = await self._small_json(ex)
        name = path.rpartition("/")[2]
        try:
            if path == "/api/train":
                started = await asyncio.get_running_loop().run_in_executor(
                    self.pool, hub.start, body
                )
                return self._response(202, _dumps(started))
            args = body if isinstance(body, dict) else {}
            if name == "save":
                args = {"path": str(hub.save_path(args.get("name")))}
            elif name == "switch" and not isinstance(args.get("engine"), str):
                raise RequestError(400, 'switch needs {"engine": NAME}.')
            future = asyncio.wrap_future(hub.command(name, args))
            result = await asyncio.wait_for(future, SAVE_WAIT if name == "save" else LEARN_WAIT)
        except (Busy, Gone) as exc:
            raise RequestError(409, str(exc)) from None
        except TimeoutError:
            raise RequestError(503, "the training process did not answer in time.") from None
        except NnetError as exc:
            raise RequestError(
                400 if name in ("train", "switch", "save") else 409, str(exc)
            ) from None
        return self._response(200, _dumps(result))

    def _trained_predict(self, x28: Array, *, model_wanted: bool) -> Any:
        """The network being trained's answer for ``x28``, from a thread of the pool."""
        try:
            return self.learn.command("predict", {"pixels": x28.tolist()}).result(LEARN_WAIT)
        except Gone:
            what = "no model yet" if model_wanted else "no network is training"
            raise RequestError(
                409,
                f"{what}: start a run in the learn view (/learn)"
                + (", or serve a model file." if model_wanted else "."),
            ) from None
        except concurrent.futures.TimeoutError:
            raise RequestError(503, "the training process did not answer in time.") from None
        except NnetError as exc:
            raise RequestError(409, str(exc)) from None

    async def _trained_model(self) -> bytes:
        """``/api/train/model``: the run's network as ``/api/model`` describes a model."""
        status = self.learn.status()
        if status["run"] is None:
            raise RequestError(404, "no training run yet; start one in the learn view.")
        cached = self._trained_info
        if cached is not None and cached[0] == status["run"]:
            return cached[1]
        settings = Settings.from_dict(status["settings"])

        def describe() -> bytes:
            net = Network(
                settings.sizes,
                settings.one_or_list("activation"),
                loss=settings.loss,
                dtype=settings.dtype,
                seed=0,
            )
            net.meta = {"task": settings.task, "dataset": settings.dataset}
            return _dumps(model_info(net, random_available=self.images is not None))

        info = await asyncio.get_running_loop().run_in_executor(self.pool, describe)
        self._trained_info = (status["run"], info)
        return info

    async def _small_json(self, ex: _Exchange) -> Any:
        """The JSON body of a learn request (at most LEARN_BODY bytes; none: {})."""
        length = _declared_length(ex.request)
        if length == -2 and ex.method == "POST" and "transfer-encoding" in ex.request.headers:
            raise RequestError(411, "send the body with a Content-Length, not chunked.", close=True)
        if length == -1:
            raise RequestError(400, "the Content-Length header is not a number.", close=True)
        if length <= 0:
            return {}
        content_type = ex.request.headers.get("content-type", "").partition(";")[0]
        if content_type.strip().lower() != "application/json":
            raise RequestError(415, "send the body as JSON (Content-Type: application/json).")
        if length > LEARN_BODY:
            raise RequestError(413, f"the request body is over the {LEARN_BODY >> 10} KiB limit.")
        async with self._body(ex, length) as body:
            pass
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise RequestError(400, "the request body is not valid JSON.") from None

    def _events(self) -> Response:
        """``/api/train/events``: Server-Sent Events, one JSON object each (the events so
        far first), until the client leaves or the server stops."""
        if self.viewers >= MAX_VIEWERS:
            raise RequestError(
                503, "too many event streams are open; try again later.", retry_after=RETRY_AFTER
            )
        if self.learn.closed:
            raise RequestError(503, "the server is stopping.")

        async def stream() -> Any:  # subscribed once streaming (a client gone before: never)
            self.viewers += 1
            viewer, backlog = self.learn.subscribe(asyncio.get_running_loop())
            try:
                yield b"retry: 2000\n\n"
                for text in backlog:
                    yield f"data: {text}\n\n".encode()
                quiet = 0.0
                while not self._uvicorn.should_exit and not viewer.dropped:
                    try:
                        text = await asyncio.wait_for(viewer.queue.get(), 0.5)
                    except TimeoutError:
                        quiet += 0.5
                        if quiet >= HEARTBEAT:
                            quiet = 0.0
                            yield b": still here\n\n"
                        continue
                    if text is None:
                        break
                    quiet = 0.0
                    yield f"data: {text}\n\n".encode()
            finally:
                self.learn.unsubscribe(viewer)
                self.viewers -= 1

        response = StreamingResponse(stream(), status_code=200)
        headers = _headers("text/event-stream; charset=utf-8", 0)
        response.raw_headers = [(k, v) for k, v in headers if k != b"Content-Length"]
        return response

    def _check_host(self, request: Request) -> None:
        """Refuse DNS-rebinding (wrong Host) and cross-origin POSTs on a loopback server."""
        host = request.headers.get("host", "")
        try:
            name = urlsplit("//" + host).hostname or ""
        except ValueError:  # e.g. an unclosed "[" of an IPv6 address
            name = "?"
        if host and _is_loopback(str(self.server_address[0])) and not _is_loopback(name):
            raise RequestError(
                403, "this server answers only requests addressed to localhost.", close=True
            )
        origin = request.headers.get("origin")
        if request.method == "POST" and origin is not None:
            if origin.lower() not in (f"http://{host}".lower(), f"https://{host}".lower()):
                raise RequestError(403, "cross-origin requests are not allowed.", close=True)

    async def _predict(self, ex: _Exchange, *, trained: bool = False) -> bytes:
        """The answer to ``POST /api/predict``: the body read once its length is reserved in
        the budget (503 if it does not fit), then parsed and answered in the pool (by the
        network being trained if ``trained``: ``/api/train/predict``)."""
        content_type = ex.request.headers.get("content-type", "").partition(";")[0]
        if content_type.strip().lower() != "application/json":
            raise RequestError(415, "send the body as JSON (Content-Type: application/json).")
        length = _declared_length(ex.request)
        if length == -2:
            raise RequestError(411, "send the body with a Content-Length, not chunked.", close=True)
        if length < 0:
            raise RequestError(400, "the Content-Length header is not a number.", close=True)
        if length > MAX_BODY:  # answered from the headers; uvicorn then drops the body
            raise RequestError(413, f"the request body is over the {MAX_BODY >> 20} MiB limit.")
        async with self._body(ex, length) as body:  # the budget is held until answered
            work = asyncio.get_running_loop().run_in_executor
            if length <= SMALL_BODY:
                return await work(self.pool, self._answer_predict, body, trained)
            async with self.large_parses:
                return await work(self.pool, self._answer_predict, body, trained)

    @contextlib.asynccontextmanager
    async def _body(self, ex: _Exchange, length: int) -> AsyncIterator[bytearray]:
        """The request's body, read once its ``length`` is reserved in the budget (503 if it
        does not fit); the reservation is given back when the block ends."""
        if not self.budget.take(length):
            raise RequestError(
                503,
                "the server is busy receiving other requests; try again in a moment.",
                retry_after=RETRY_AFTER,
            )
        try:
            ex.body_read = True
            body = bytearray()
            async for chunk in ex.request.stream():
                body += chunk
            yield body
        finally:
            self.budget.give(length)


def _declared_length(request: Request) -> int:
    """The body length the headers declare: 0 if none, -2 if chunked or not given on a POST,
    -1 if not a number."""
    headers = request.headers
    if "transfer-encoding" in headers:
        return -2
    text = headers.get("content-length")
    if text is None:
        return -2 if request.method == "POST" else 0
    if not (text.isascii() and text.strip().isdigit()):  # int() would take "1_0" and "-5"
        return -1
    return int(text)


class _Transport:
    """A connection's transport as uvicorn sees it: the same, except that closing while the
    client is still sending a refused request's body lingers (:meth:`_Protocol.close`)."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport, self._protocol = transport, protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()


class _Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request to arrive whole (then
    408 and close), a cap on open connections, and JSON answers to what h11 cannot parse.

    The deadline starts with the connection and with the first bytes of each later request,
    and ends once the request's body is whole: a slow or stalled client holds no thread,
    and not for long a connection. ``site`` and ``timeout`` are set by :class:`Server`.
    """

    site: Server
    timeout: float = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None
    lingering = False  # answered and closing, but reading (and dropping) the request's body
    _dropped = 0  # bytes dropped while lingering

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._real = transport
        super().connection_made(_Transport(transport, self))  # type: ignore[arg-type]
        if len(self.connections) > MAX_CONNECTIONS:
            message = "the server has too many connections open; try again in a moment."
            self._answer_and_close(503, message, retry_after=RETRY_AFTER)
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self._dropped += len(data)
            if self._dropped > DRAIN_LIMIT:
                self._real.close()
            return
        if self._deadline is None:
            self._arm()
        try:
            super().data_received(data)
        except Exception as exc:  # h11's own errors are answered by send_400_response
            _say(f"internal error on a connection: {_one_line(exc)}")
            self._answer_and_close(500, "internal server error; see the server's log.")
            return
        self._disarm_if_whole()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        pending = self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]
        if pending and self._deadline is None and not self.transport.is_closing():
            self._arm()  # a pipelined request, received in part: its time starts now

    def send_400_response(self, msg: str) -> None:
        self.site.log_request("-", "-", 400)
        self._answer_and_close(400, "the request is not valid HTTP/1.1.")

    def timeout_keep_alive_handler(self) -> None:
        if self._real.get_write_buffer_size():  # a client that does not read its answers
            self._real.abort()
        else:
            super().timeout_keep_alive_handler()

    def close(self) -> None:
        """Close, or, if the client is still sending a body (a request refused from its
        headers, with Connection: close), linger: end our side (the answer, then FIN) and read
        and drop up to DRAIN_LIMIT bytes until the client closes or the deadline, so that
        closing with unread data does not reset the answer away."""
        if self.lingering or self._real.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY and self._real.can_write_eof():
            self.lingering = True
            self._real.write_eof()
            self._real.resume_reading()
        else:
            self._real.close()

    def shutdown(self) -> None:
        """At shutdown: whole requests are answered, those still arriving cut now."""
        if self._deadline is None:
            super().shutdown()
            return
        self._disarm()
        if self._begun():
            self._answer_and_close(503, "the server is stopping.")
        else:
            self._real.close()

    # the deadline

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _disarm_if_whole(self) -> None:
        if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
            self._disarm()

    def _begun(self) -> bool:
        """Whether a request has begun to arrive, and its answer not begun."""
        cycle = self.cycle
        if self.lingering:
            return False
        if cycle is not None and not cycle.response_complete:  # the application has it
            return not cycle.response_started
        return self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _timed_out(self) -> None:
        """The request did not arrive whole in time: 408 if it is not answered yet (a request
        begun, headers or body), then close; a connection idle since it opened, or whose
        answer is sent (its body being dropped), just closes."""
        self._deadline = None
        if self._real.is_closing():
            return
        if not self._begun():
            self._real.close()
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self.site.log_request(cycle.scope["method"], _target(dict(cycle.scope)), 408)
        else:
            self.site.log_request("-", "-", 408)
        seconds = f"{self.timeout:g} second" + "s" * (self.timeout != 1)
        self._answer_and_close(408, f"the request did not arrive whole within {seconds}.")

    def _answer_and_close(self, status: int, message: str, **kw: Any) -> None:
        """Write an error answer and close, taking the request from the application if it
        has it (its receive() then reports a disconnect, its answer is dropped)."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # an answer is under way: it cannot be replaced
                self._real.close()
                return
            cycle.disconnected = True
            cycle.message_event.set()
        self._real.write(_raw_answer(status, message, **kw))
        self._real.close()


def _request_timeout() -> float:
    """REQUEST_TIMEOUT, or the seconds in the environment variable TIMEOUT_ENV."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return REQUEST_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= 3600:  # NaN fails too
        raise NnetError(f"{TIMEOUT_ENV} must be a number of seconds from 0 to 3600; got {text!r}.")
    return seconds


def serve(
    model_path: str | Path | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    data: str | Path | None = None,
    log: str = "errors",
    save_dir: str | Path = ".",
) -> int:
    """Serve the model at ``model_path`` (None: none, the learn view only) until Ctrl-C or
    SIGTERM; returns 0. Models trained in the learn view are saved in ``save_dir``. Raises
    NnetError (before listening) for a model not a 784 -> 10 classifier, a port in use or an
    unknown host.
    """
    timeout = _request_timeout()
    net = None if model_path is None else load_model(model_path)
    if net is not None:
        check_servable(net, str(model_path))
    dataset = net.meta.get("dataset", "mnist") if net is not None else "mnist"
    try:  # the test digits: never downloaded, but looked for as nnet.data.datasets.load does
        ds = load_dataset(dataset, data, download=False, progress=False)
        images, labels = ds.x_test, ds.y_test
    except NnetError as exc:  # the folders searched, after " (": long, and said by nnet train
        reason = _one_line(str(exc), limit=None).partition(" (")[0].rstrip(".")
        _say(f"no test digits ({reason}); the Random test digit button is disabled.")
        images = labels = None
    server = Server(
        net,
        host=host,
        port=port,
        test_images=images,
        test_labels=labels,
        log=log,
        request_timeout=timeout,
        learn=LearnHub(data=data, save_dir=save_dir),
    )
    print(f"nnet serve: {server.url}  (Ctrl-C stops)", flush=True)
    if str(server.server_address[0]) in ("0.0.0.0", "::"):
        _say("listening on every network interface.")
    main = threading.current_thread() is threading.main_thread()
    # SIGTERM stops the server as Ctrl-C does (uvicorn raises it again once stopped)
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("nnet serve: stopped.", flush=True)
    finally:
        server.server_close()
        if main:
            signal.signal(signal.SIGTERM, old_term)
    return 0
