"""Connection deadlines and slots of the local REST server.

Slow or idle clients cannot starve the others: a connection must deliver its request
line and headers within `header_timeout` seconds (counted from its accept or its
previous answer: idle keep-alive connections are closed then) and its body within
`body_timeout` seconds (`DeadlineReader`: one deadline per phase, not per `recv`). An
answer must keep moving: each piece of it must be taken by the client within
`send_timeout` seconds, so a client that never reads its answer loses its connection
within seconds (not `body_timeout`). When every connection slot is taken, the
connection that has been waiting longest for a request is closed to make room for a
new one, else the one whose answer has been stalled longest (for at least
`STALL_SECONDS`) (`SlottedHTTPServer`; connections whose answer is being computed,
or is moving, are never closed). Request bodies in flight share one memory budget,
`max_inflight_bytes`: a body that does not fit waits for others to finish (up to
`header_timeout`, then 503); a body alone always fits.
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import logging
import math
import socket
import threading
import time

logger = logging.getLogger("keras_deconvnet.serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_SEND_TIMEOUT = 5.0
DEFAULT_MAX_INFLIGHT_BYTES = 128 * 1024 * 1024
# An answer that has not moved for this long may be closed for a new connection when
# every slot is taken.
STALL_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """The limits on the REST server's connections (see the module docstring).

    Args:
        max_request_bytes: larger request bodies are answered 413. Defaults to 64 MiB.
        max_connections: connections served at once; when all are taken, the one
            waiting longest for its request is closed for a new one. Defaults to 256.
        header_timeout: seconds a connection has to send its request line and headers,
            from its accept or its previous answer (so also the keep-alive idle time).
            Defaults to 10.
        body_timeout: seconds a connection has to send its body once the headers are
            in; also the time it has to take the whole answer. Defaults to 60.
        send_timeout: seconds the client has to take each piece (64 KiB) of its
            answer: a client that stops reading is closed after this. Defaults to 5.
        max_inflight_bytes: request bodies being read or answered, all connections
            together (a JSON body costs about 13 times its size in memory once
            parsed); a body that does not fit waits for others, up to
            `header_timeout`, then is answered 503. A body alone always fits.
            Defaults to 128 MiB.

    Example:

    >>> ConnectionLimits(header_timeout=5).body_timeout
    60.0
    >>> ConnectionLimits(max_connections=0)
    Traceback (most recent call last):
    ...
    ValueError: `max_connections` must be positive. Received: 0
    """

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ValueError(f"`{field.name}` must be positive. Received: {value}")


class DeadlineExpired(TimeoutError):
    """A read passed the connection's deadline."""


class DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read bounded by one deadline for the whole phase
    (headers, or body), not per `recv`: a client sending one byte a second still
    runs out of time.

    Args:
        sock: the connection's socket.

    Example:

    >>> import socket
    >>> left, right = socket.socketpair()
    >>> reader = DeadlineReader(left)
    >>> reader.start(0.05)
    >>> try:
    ...     reader.read(1)
    ... except DeadlineExpired:
    ...     print("expired:", reader.expired)
    expired: True
    >>> left.close(); right.close()
    """

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
            raise DeadlineExpired("deadline passed")
        self._sock.settimeout(remaining)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise DeadlineExpired("deadline passed") from None
        self.received += count
        return count


class SlottedHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server with at most `limits.max_connections` connections.

    Handlers report their phase: `track` on setup, `set_phase(handler, "reading")`
    while waiting for or reading a request (such a connection may be evicted for a
    new one), `set_phase(handler, "working")` while its answer is computed (never
    evicted), `set_phase(handler, "sending")` while the answer is written, with
    `progress(handler)` after each piece (evicted when stalled for `STALL_SECONDS`
    and no connection waits for a request), `untrack` on finish; `is_evicted` tells a
    handler not to answer any more. `reserve_body` / `release_body` keep the bodies in
    flight within `limits.max_inflight_bytes`.

    Args:
        address: `(host, port)` to bind.
        handler_class: the request handler.
        limits: the `ConnectionLimits`.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler_class, limits: ConnectionLimits):
        self.limits = limits
        # The connections holding a slot (their sockets): a slot is taken and given
        # back once per connection, whatever path its thread takes.
        self._holders: set = set()
        self._slots = threading.Condition()
        # handler -> [phase, since, evicted]: "reading" (waiting for or reading a
        # request: may be evicted) or "working" (being answered: never evicted).
        self._connections: dict = {}
        self._connections_lock = threading.Lock()
        self._budget = threading.Condition()
        self.inflight_bytes = 0
        super().__init__(address, handler_class)

    def reserve_body(self, size: int, timeout: float) -> bool:
        """Takes `size` bytes of the in-flight budget, waiting up to `timeout` seconds
        for other bodies to finish; `False` if they did not."""
        budget = self.limits.max_inflight_bytes
        with self._budget:
            if not self._budget.wait_for(
                lambda: self.inflight_bytes == 0 or self.inflight_bytes + size <= budget,
                timeout,
            ):
                return False
            self.inflight_bytes += size
            return True

    def release_body(self, size: int) -> None:
        """Gives back what `reserve_body` took."""
        if size:
            with self._budget:
                self.inflight_bytes -= size
                self._budget.notify_all()

    def progress(self, handler) -> None:
        """A piece of `handler`'s answer was taken: it is not stalled."""
        with self._connections_lock:
            entry = self._connections.get(handler)
            if entry is not None:
                entry[1] = time.monotonic()

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
        """Closes the connection that has waited longest for its request, else the one
        whose answer has been stalled longest, unless an evicted one has not released
        its slot yet."""
        with self._connections_lock:
            if any(entry[2] for entry in self._connections.values()):
                return
            waiting = [(entry[1], id(h), h) for h, entry in self._connections.items()
                       if entry[0] == "reading"]
            if not waiting:
                stalled_since = time.monotonic() - STALL_SECONDS
                waiting = [(entry[1], id(h), h) for h, entry in self._connections.items()
                           if entry[0] == "sending" and entry[1] <= stalled_since]
            if not waiting:
                return
            _, _, victim = min(waiting)
            self._connections[victim][2] = True
        logger.debug("every connection slot is taken: closed the one idle or stalled longest")
        try:
            victim.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _take_slot(self, request, timeout: float) -> bool:
        limit = self.limits.max_connections
        with self._slots:
            if not self._slots.wait_for(lambda: len(self._holders) < limit, timeout):
                return False
            self._holders.add(request)
            return True

    def _give_slot(self, request) -> None:
        with self._slots:
            if request in self._holders:
                self._holders.remove(request)
                self._slots.notify()

    def process_request(self, request, client_address):
        # Back-pressure: at most max_connections handler threads. When they are all
        # taken, make room by closing the connection idle (else stalled) for longest.
        while not self._take_slot(request, 0):
            self._evict_one()
            if self._take_slot(request, 0.25):
                break
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_slot(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_slot(request)

    def handle_error(self, request, client_address):
        logger.debug("connection error from %s", client_address, exc_info=True)
