"""A local server speaking TF Serving's REST API, for development and tests.

Endpoints (the same paths, request formats, response JSON and error JSON as
`tensorflow_model_server --rest_api_port=8501`):

- `GET /v1/models/NAME`: the status of every known version,
  `{"model_version_status": [{"version": "2", "state": "AVAILABLE", "status":
  {"error_code": "OK", "error_message": ""}}, ...]}`; a version that failed to load
  is `"END"` with its error (e.g. `"DATA_LOSS"` and the message).
- `GET /v1/models/NAME/versions/N`: the status of version `N`.
- `GET /v1/models/NAME[/versions/N]/metadata`: the signature defs.
- `POST /v1/models/NAME[/versions/N]:predict`: `{"instances": ...}` ->
  `{"predictions": ...}` or `{"inputs": ...}` -> `{"outputs": ...}`, with an optional
  `"signature_name"` (default `serving_default`) and `{"b64": ...}` for bytes.

Errors answer `{"error": "..."}` with TF Serving's HTTP status (400 for a malformed
request, a wrong shape or dtype, bad base64, bytes that are not an image, or a request
over one of the `RequestLimits`; 404 for an unknown model, version or path; 408 for a
request whose headers or body did not arrive in time; 413 for a body over
`max_request_bytes`). The server binds to 127.0.0.1 unless told otherwise, serves each
connection in its own thread (at most `max_connections`), batches concurrent requests
when batching is enabled and keeps serving after any bad request.

Slow or idle clients cannot starve the others: a connection must deliver its request
line and headers within `header_timeout` seconds (counted from its accept or its
previous answer: idle keep-alive connections are closed then) and its body within
`body_timeout` seconds, and when every connection slot is taken, the connection that
has been waiting longest for a request is closed to make room for a new one
(connections whose request is being answered are never closed).

Run it with `deconvnet serve --model-base DIR` or
`python -m keras_deconvnet.serving.rest_server --model-base DIR`.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from urllib.parse import unquote, urlsplit

from keras_deconvnet.serving import rest_api
from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.servables import ModelRepository

logger = logging.getLogger("keras_deconvnet.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
_MAX_DRAIN_BYTES = 256 * 1024 * 1024
_DRAIN_SECONDS = 5.0

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+))?"
    r"(?P<suffix>/metadata|:[A-Za-z]+)?$"
)


class _Expired(TimeoutError):
    """A read passed the connection's deadline."""


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read bounded by one deadline for the whole phase
    (headers, or body), not per `recv`: a client sending one byte a second still
    runs out of time."""

    def __init__(self, sock: socket.socket):
        super().__init__()
        self._sock = sock
        self.deadline = math.inf
        self.received = 0
        self.expired = False

    def readable(self) -> bool:
        return True

    def start(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise _Expired("deadline passed")
        self._sock.settimeout(remaining)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise _Expired("deadline passed") from None
        self.received += count
        return count


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "keras-deconvnet-serving"
    protocol_version = "HTTP/1.1"

    # -- plumbing -----------------------------------------------------------------
    def setup(self):
        super().setup()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 65536)
        self._answered = False
        self.server.track(self)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.untrack(self)

    def handle_one_request(self):
        server = self.server
        self._reader.received = 0
        self._answered = False
        self._reader.start(server.header_timeout)
        server.set_phase(self, "reading")
        super().handle_one_request()  # closes the connection on a read timeout
        if self._reader.expired and self._reader.received and not self._answered:
            # A request started but its headers did not arrive in time: say so, close.
            # (An idle keep-alive connection, nothing received, is closed silently.)
            self._send_error(self._timeout_error("headers"), close=True)

    def _timeout_error(self, phase: str) -> ServingError:
        seconds = self.server.body_timeout if phase == "body" else self.server.header_timeout
        flag = "--body-timeout" if phase == "body" else "--header-timeout"
        return ServingError(
            f"Request {phase} not received within the limit of {seconds:g} s ({flag})",
            "DEADLINE_EXCEEDED", http_status=408,
        )

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name)
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _write(self, chunks) -> None:
        deadline = time.monotonic() + self.server.body_timeout
        for chunk in chunks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not take the answer in time")
            self.connection.settimeout(remaining)
            self.wfile.write(chunk)

    def _send_json(self, status: int, payload, close: bool = False) -> None:
        """Sends `payload` (bytes, or a list of byte chunks) as a JSON answer."""
        if self.server.is_evicted(self):
            self.close_connection = True
            return
        chunks = [payload] if isinstance(payload, bytes) else payload
        close = close or self.close_connection
        self._answered = True
        try:
            self.connection.settimeout(self.server.body_timeout)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self._write(chunks)
        except OSError:  # the client went away or does not read: drop the connection
            self.close_connection = True

    def _send_error(self, error: ServingError, close: bool = False) -> None:
        self._send_json(error.http_status, rest_api.encode_json({"error": error.message}), close)

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, unsupported method, ...) as JSON.
        try:
            self.close_connection = True
            text = message or http.HTTPStatus(code).phrase
            self._send_json(code, rest_api.encode_json({"error": text}), close=True)
        except OSError:
            pass

    def _guarded(self, handler) -> None:
        try:
            handler()
        except ServingError as e:
            self._send_error(e)
        except _Expired:
            self._send_error(self._timeout_error("body"), close=True)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug must not take the server down
            logger.exception("internal error on %s %s", self.command, self.path)
            try:
                self._send_error(ServingError(f"Internal error: {e}", "INTERNAL"), close=True)
            except OSError:
                self.close_connection = True

    def _route(self):
        path = unquote(urlsplit(self.path).path)
        match = _PATH.match(path)
        if match is None:
            raise ServingError(f"Malformed request: {self.command} {path}", "NOT_FOUND")
        version = match["version"]
        if version is not None:
            if not version.isdigit():
                raise ServingError(
                    f"Malformed request: {self.command} {path} (a version is an integer)",
                    "NOT_FOUND",
                )
            version = int(version)
        return match["name"], version, match["suffix"] or ""

    # -- methods ------------------------------------------------------------------
    def do_GET(self):  # noqa: N802 (http.server's name)
        self._guarded(self._get)

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self):  # noqa: N802
        self._guarded(self._post)

    def _get(self):
        self.server.set_phase(self, "working")
        name, version, suffix = self._route()
        repository = self.server.repository
        if suffix == "":
            body = repository.status(name, version)
        elif suffix == "/metadata":
            body = repository.get(name, version).metadata()
        else:
            raise ServingError(
                f"Malformed request: GET {self.path} (use POST for {suffix})", "NOT_FOUND"
            )
        self._send_json(200, json.dumps(body, indent=2).encode("utf-8"))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ServingError(
                "Chunked requests are not supported: send a Content-Length", http_status=411
            )
        length = self.headers.get("Content-Length")
        try:
            length = int(length)
            if length < 0:
                raise ValueError
        except (TypeError, ValueError):
            self.close_connection = True
            raise ServingError(
                f"Missing or invalid Content-Length: {length!r}", http_status=411
            ) from None
        limit = self.server.max_request_bytes
        self._reader.start(self.server.body_timeout)
        if length > limit:
            # Read and drop a moderately large body so the client, still sending,
            # gets the answer instead of a reset connection; close after it anyway.
            self.close_connection = True
            if length <= _MAX_DRAIN_BYTES:
                self._drain(length)
            raise ServingError(
                f"Request body of {length} bytes exceeds the limit of {limit} bytes",
                "RESOURCE_EXHAUSTED",
                http_status=413,
            )
        try:
            body = self.rfile.read(length)
        except _Expired:
            self.close_connection = True
            raise self._timeout_error("body") from None
        if len(body) != length:
            self.close_connection = True
            raise ServingError("Incomplete request body")
        self.server.set_phase(self, "working")
        return body

    def _drain(self, length: int) -> None:
        try:
            self._reader.start(min(_DRAIN_SECONDS, self.server.body_timeout))
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:  # _Expired included
            return

    def _post(self):
        try:
            name, version, suffix = self._route()
        except ServingError:
            self.close_connection = True  # the body is left unread
            raise
        body = self._read_body()
        if suffix != ":predict":
            if suffix in (":classify", ":regress"):
                raise ServingError(
                    f"{suffix[1:]} is not supported by this server: the DeconvNet "
                    "signatures are predict signatures; use :predict",
                    "UNIMPLEMENTED",
                )
            raise ServingError(f"Malformed request: POST {self.path}", "NOT_FOUND")
        request = rest_api.decode_json(body)
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise ServingError("'signature_name' must be a string")
        repository = self.server.repository
        signature = repository.get(name, version).signature(signature_name)
        inputs, row_format = rest_api.parse_predict_request(request, signature)
        _, _, outputs = repository.predict(name, version, signature_name, inputs)
        response = rest_api.format_predict_response(outputs, row_format, arrays=True)
        self._send_json(200, rest_api.encode_json_chunks(response))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, repository, max_request_bytes, max_connections, access_log,
                 header_timeout, body_timeout):
        self.repository = repository
        self.max_request_bytes = max_request_bytes
        self.access_log = access_log
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        # handler -> [phase, since, evicted]: "reading" (waiting for or reading a
        # request: may be evicted) or "working" (being answered: never evicted).
        self._connections: dict = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, handler) -> None:
        with self._connections_lock:
            self._connections[handler] = ["reading", time.monotonic(), False]

    def untrack(self, handler) -> None:
        with self._connections_lock:
            self._connections.pop(handler, None)

    def set_phase(self, handler, phase: str) -> None:
        with self._connections_lock:
            entry = self._connections.get(handler)
            if entry is not None and entry[0] != phase:
                entry[0], entry[1] = phase, time.monotonic()

    def is_evicted(self, handler) -> bool:
        with self._connections_lock:
            entry = self._connections.get(handler)
            return entry is None or entry[2]

    def _evict_one(self) -> None:
        """Closes the connection that has waited longest for its request, unless an
        evicted one has not released its slot yet."""
        with self._connections_lock:
            if any(entry[2] for entry in self._connections.values()):
                return
            waiting = [(entry[1], id(h), h) for h, entry in self._connections.items()
                       if entry[0] == "reading"]
            if not waiting:
                return
            _, _, victim = min(waiting)
            self._connections[victim][2] = True
        logger.debug("every connection slot is taken: closed the one idle longest")
        try:
            victim.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def process_request(self, request, client_address):
        # Back-pressure: at most max_connections handler threads. When they are all
        # taken, make room by closing the connection idle for longest, if any.
        while not self._slots.acquire(blocking=False):
            self._evict_one()
            if self._slots.acquire(timeout=0.25):
                break
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        logger.debug("connection error from %s", client_address, exc_info=True)


class RestServer:
    """TF Serving's REST API over a `ModelRepository`.

    Args:
        repository: the loaded models.
        host: the address to bind; `"127.0.0.1"` (default) serves this machine only,
            `"0.0.0.0"` every interface.
        port: the port; `0` picks a free one (see `port` after construction).
            Defaults to 8501, TF Serving's REST port.
        max_request_bytes: larger request bodies are answered 413. Defaults to 64 MiB.
        max_connections: connections served at once; when all are taken, the one
            waiting longest for its request is closed for a new one (see the module).
        access_log: print one line per request to stderr.
        header_timeout: seconds a connection has to send its request line and headers,
            from its accept or its previous answer (so also the keep-alive idle time).
        body_timeout: seconds a connection has to send its body once the headers are
            in; also the time it has to take the answer.

    Example:

    >>> repository = ModelRepository.from_base_dir("exported")  # doctest: +SKIP
    >>> with RestServer(repository, port=0) as server:  # doctest: +SKIP
    ...     server.start()
    ...     print(server.url)
    http://127.0.0.1:...
    """

    def __init__(
        self,
        repository: ModelRepository,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_REST_PORT,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        access_log: bool = False,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ):
        for name, value in (("max_request_bytes", max_request_bytes),
                            ("max_connections", max_connections),
                            ("header_timeout", header_timeout),
                            ("body_timeout", body_timeout)):
            if not value > 0:
                raise ValueError(f"`{name}` must be positive. Received: {value}")
        self.repository = repository
        self._server = _Server(
            (host, port), repository, max_request_bytes, max_connections, access_log,
            header_timeout, body_timeout,
        )
        self._thread = None

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:8501`."""
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        """Serves in this thread until `shutdown()` (or KeyboardInterrupt)."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> RestServer:
        """Serves in a background (daemon) thread; returns `self`."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        """Stops serving and closes the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> RestServer:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def main(argv: list[str] | None = None) -> int:
    """`python -m keras_deconvnet.serving.rest_server`: `deconvnet serve`'s options."""
    import argparse

    from keras_deconvnet.serving import launcher

    parser = argparse.ArgumentParser(prog="python -m keras_deconvnet.serving.rest_server")
    launcher.configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return launcher.run(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    # Run the imported module's main, so the classes exist once (not also in __main__).
    from keras_deconvnet.serving.rest_server import main as _main

    sys.exit(_main())
