"""Slow and idle connections cannot starve the REST server (no model: a stub repository).

Every deadline here is 1-2 s and every assertion allows 10 s or more, so nothing
depends on timing finer than seconds.
"""

import contextlib
import json
import socket
import time
import urllib.request

import pytest

from keras_deconvnet.serving.connections import ConnectionLimits
from keras_deconvnet.serving.errors import not_found
from keras_deconvnet.serving.rest_server import RestServer

STATUS = {"model_version_status": [
    {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
]}


class StubRepository:
    """Answers the status of model `m`; nothing else."""

    def status(self, name, version=None):
        if name != "m":
            raise not_found(name, version)
        return STATUS

    def get(self, name, version=None):
        raise not_found(name, version)


@contextlib.contextmanager
def serving(**options):
    server = RestServer(StubRepository(), port=0, connections=ConnectionLimits(**options))
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def _status(server, timeout=10):
    with urllib.request.urlopen(f"{server.url}/v1/models/m", timeout=timeout) as response:
        return response.status, json.loads(response.read())


def _connect(server, payload=b""):
    sock = socket.create_connection((server.host, server.port), timeout=15)
    if payload:
        sock.sendall(payload)
    return sock


def _read_all(sock) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


HALF_SENT = b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Le"


def test_idle_half_sent_connections_do_not_lock_out_other_clients():
    # Was: 260 idle half-sent connections held all 256 slots for their 120 s timeout.
    # Here 12 hold 4 slots with a 60 s header deadline: only eviction lets a client in.
    with serving(max_connections=4, header_timeout=60, body_timeout=60) as server:
        idle = [_connect(server, HALF_SENT) for _ in range(12)]
        try:
            start = time.monotonic()
            for _ in range(3):
                assert _status(server) == (200, STATUS)
            assert time.monotonic() - start < 30
        finally:
            for sock in idle:
                sock.close()


def test_headers_must_arrive_within_the_header_timeout():
    with serving(header_timeout=1, body_timeout=30) as server:
        # Half-sent headers: a 408 naming the limit, then the connection closes.
        with _connect(server, HALF_SENT) as sock:
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert "headers not received within the limit of 1 s (--header-timeout)" in error
        # One byte every 0.2 s does not extend the deadline: it is for all the headers.
        with _connect(server) as sock:
            start = time.monotonic()
            with contextlib.suppress(OSError):
                for byte in HALF_SENT * 10:
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
            assert time.monotonic() - start < 15
        # An idle connection (nothing sent) is closed without an answer.
        with _connect(server) as sock:
            assert _read_all(sock) == b""
        assert _status(server) == (200, STATUS)


def test_body_must_arrive_within_the_body_timeout():
    with serving(header_timeout=10, body_timeout=1) as server:
        head = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 100\r\n\r\n{\"inputs\"")
        with _connect(server, head) as sock:
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"--body-timeout" in answer
        assert _status(server) == (200, STATUS)


def test_keep_alive_connections_serve_several_requests():
    with serving(header_timeout=5) as server, _connect(server) as sock:
        request = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(3):
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "option", ["max_request_bytes", "header_timeout", "body_timeout", "max_connections"]
)
def test_options_must_be_positive(option):
    with pytest.raises(ValueError, match=option):
        ConnectionLimits(**{option: 0})
