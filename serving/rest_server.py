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
`ConnectionLimits.max_request_bytes`). The server binds to 127.0.0.1 unless told
otherwise, serves each connection in its own thread (at most `max_connections`),
batches concurrent requests when batching is enabled and keeps serving after any bad
request.

Slow or idle clients cannot starve the others: each connection has deadlines for its
headers and its body, its answer must keep moving (`send_timeout` per piece), the
bodies in flight share one memory budget, and when every connection slot is taken,
the connection waiting longest for a request (else the one whose answer is stalled
longest) is closed for a new one (`connections.ConnectionLimits`). A request with two
Content-Length headers is refused (400), a version that is not 1 to 18 ASCII digits
is not found (404), and JSON nested deeper than any tensor is refused (400).

Run it with `deconvnet serve --model-base DIR` or
`python -m keras_deconvnet.serving.rest_server --model-base DIR`.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import re
import sys
import threading
import time
from urllib.parse import unquote, urlsplit

from keras_deconvnet.serving import rest_api
from keras_deconvnet.serving.connections import (
    ConnectionLimits,
    DeadlineExpired,
    DeadlineReader,
    SlottedHTTPServer,
)
from keras_deconvnet.serving.errors import ServingError
from keras_deconvnet.serving.repository import ModelRepository
from keras_deconvnet.serving.servables import is_version_name

logger = logging.getLogger("keras_deconvnet.serving")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_REST_PORT = 8501
_MAX_DRAIN_BYTES = 256 * 1024 * 1024
_DRAIN_SECONDS = 5.0
_PIECE_BYTES = 64 * 1024  # the answer is written in pieces of this, each within send_timeout

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+))?"
    r"(?P<suffix>/metadata|:[A-Za-z]+)?$"
)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "keras-deconvnet-serving"
    protocol_version = "HTTP/1.1"

    # -- plumbing -----------------------------------------------------------------
    def setup(self):
        super().setup()
        self._reader = DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader, 65536)
        self._answered = False
        self._reserved = 0
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
        self._reader.start(server.limits.header_timeout)
        server.set_phase(self, "reading")
        # What an answer needs before the request line is parsed (a partial request
        # line that times out is answered 408, not dropped).
        self.requestline, self.command = "", None
        self.request_version = "HTTP/1.1"
        try:
            super().handle_one_request()  # closes the connection on a read timeout
        finally:
            server.release_body(self._reserved)
            self._reserved = 0
        if self._reader.expired and self._reader.received and not self._answered:
            # A request started but its headers did not arrive in time: say so, close.
            # (An idle keep-alive connection, nothing received, is closed silently.)
            self._send_error(self._timeout_error("headers"), close=True)

    def _timeout_error(self, phase: str) -> ServingError:
        limits = self.server.limits
        seconds = limits.body_timeout if phase == "body" else limits.header_timeout
        flag = "--body-timeout" if phase == "body" else "--header-timeout"
        return ServingError(
            f"Request {phase} not received within the limit of {seconds:g} s ({flag})",
            "DEADLINE_EXCEEDED", http_status=408,
        )

    def log_message(self, format, *args):  # noqa: A002 (BaseHTTPRequestHandler's name)
        if self.server.access_log:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def _write(self, chunks) -> None:
        """Writes the answer in pieces, each taken within `send_timeout` and all within
        `body_timeout`: a client that stops reading is dropped within seconds."""
        limits = self.server.limits
        deadline = time.monotonic() + limits.body_timeout
        for chunk in chunks:
            view = memoryview(chunk)
            for start in range(0, len(view), _PIECE_BYTES):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the client did not take the answer in time")
                self.connection.settimeout(min(remaining, limits.send_timeout))
                self.wfile.write(view[start:start + _PIECE_BYTES])
                self.server.progress(self)

    def _send_json(self, status: int, payload, close: bool = False) -> None:
        """Sends `payload` (bytes, or a list of byte chunks) as a JSON answer."""
        if self.server.is_evicted(self):
            self.close_connection = True
            return
        chunks = [payload] if isinstance(payload, bytes) else payload
        close = close or self.close_connection
        self._answered = True
        try:
            self.server.set_phase(self, "sending")
            self.connection.settimeout(self.server.limits.send_timeout)
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
        except DeadlineExpired:
            self._send_error(self._timeout_error("body"), close=True)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except RecursionError:  # nesting no signature has: bounded, and said so
            self._send_error(ServingError("The request is nested too deeply"), close=True)
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
            if not is_version_name(version):
                shown = path if len(path) <= 200 else path[:200] + "..."
                raise ServingError(
                    f"Malformed request: {self.command} {shown} (a version is an integer "
                    "of 1 to 18 ASCII digits)",
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
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            self.close_connection = True
            raise ServingError(
                f"Several Content-Length headers ({len(lengths)}): send exactly one",
                http_status=400,
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
        limit = self.server.limits.max_request_bytes
        self._reader.start(self.server.limits.body_timeout)
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
        limits = self.server.limits
        if not self.server.reserve_body(length, min(limits.header_timeout, limits.body_timeout)):
            self.close_connection = True
            raise ServingError(
                f"The server is busy: {self.server.inflight_bytes} bytes of request "
                f"bodies in flight, and {length} more would exceed the limit of "
                f"{self.server.limits.max_inflight_bytes} (--max-inflight-bytes); retry",
                "UNAVAILABLE",
            )
        self._reserved = length
        self._reader.start(self.server.limits.body_timeout)  # from now, not the wait
        try:
            body = self.rfile.read(length)
        except DeadlineExpired:
            self.close_connection = True
            raise self._timeout_error("body") from None
        if len(body) != length:
            self.close_connection = True
            raise ServingError("Incomplete request body")
        self.server.set_phase(self, "working")
        return body

    def _drain(self, length: int) -> None:
        try:
            self._reader.start(min(_DRAIN_SECONDS, self.server.limits.body_timeout))
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 20))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:  # DeadlineExpired included
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


class _Server(SlottedHTTPServer):
    def __init__(self, address, repository, limits: ConnectionLimits, access_log: bool):
        self.repository = repository
        self.access_log = access_log
        super().__init__(address, _Handler, limits)


class RestServer:
    """TF Serving's REST API over a `ModelRepository`.

    Args:
        repository: the loaded models.
        host: the address to bind; `"127.0.0.1"` (default) serves this machine only,
            `"0.0.0.0"` every interface.
        port: the port; `0` picks a free one (see `port` after construction).
            Defaults to 8501, TF Serving's REST port.
        connections: the `ConnectionLimits` (request size, connections at once,
            header and body deadlines); defaults to `ConnectionLimits()`.
        access_log: print one line per request to stderr.

    Example:

    >>> with RestServer(ModelRepository(), port=0).start() as server:
    ...     print(server.url)
    http://127.0.0.1:...
    >>> repository = ModelRepository.from_base_dir("exported")  # doctest: +SKIP
    >>> limits = ConnectionLimits(header_timeout=5, max_connections=64)
    >>> server = RestServer(repository, port=0, connections=limits)  # doctest: +SKIP
    """

    def __init__(
        self,
        repository: ModelRepository,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_REST_PORT,
        connections: ConnectionLimits | None = None,
        access_log: bool = False,
    ):
        self.repository = repository
        self.connections = connections or ConnectionLimits()
        self._server = _Server((host, port), repository, self.connections, access_log)
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
