"""Slow and idle connections cannot starve the REST server (no model: a stub repository).

Every deadline here is 1-2 s and every assertion allows 10 s or more, so nothing
depends on timing finer than seconds.
"""

import contextlib
import json
import socket
import time
import types
import urllib.error
import urllib.request

import numpy as np
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
    "option", ["max_request_bytes", "header_timeout", "body_timeout", "max_connections",
               "send_timeout", "max_inflight_bytes"]
)
def test_options_must_be_positive(option):
    with pytest.raises(ValueError, match=option):
        ConnectionLimits(**{option: 0})


def test_a_partial_request_line_is_answered_408():
    # Was: closed without an answer (the 408 failed on the missing request line).
    with serving(header_timeout=1) as server, _connect(server, b"GET /v1/mod") as sock:
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"--header-timeout" in answer


def test_two_content_length_headers_are_refused():
    # Was: accepted, the first one winning (a request smuggling vector behind a proxy).
    with serving() as server:
        request = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}")
        with _connect(server, request) as sock:
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"Several Content-Length headers (2)" in answer
        assert _status(server) == (200, STATUS)


@pytest.mark.parametrize("version", ["%C2%B2", "1" * 5000, "12%0A", "-1"])
def test_a_version_that_is_not_ascii_digits_is_not_found(version):
    # Was: 500 for "²" (isdigit() accepts it, int() does not) and for 5000 digits.
    with serving() as server:
        try:
            urllib.request.urlopen(f"{server.url}/v1/models/m/versions/{version}", timeout=10)
        except urllib.error.HTTPError as e:
            status, error = e.code, json.loads(e.read())["error"]
        assert status == 404, error
        assert "1 to 18 ASCII digits" in error and len(error) < 400


def test_request_bodies_in_flight_share_one_budget():
    # Was: no bound across connections (each 64 MiB JSON body cost ~850 MB).
    body = b"x" * 600
    head = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 600\r\n\r\n")
    with serving(max_inflight_bytes=1000, header_timeout=1, body_timeout=10) as server:
        with _connect(server, head + body[:10]) as holder:  # holds 600 bytes of budget
            time.sleep(0.3)
            with _connect(server, head + body) as waiting:
                answer = _read_all(waiting)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"--max-inflight-bytes" in answer
            holder.sendall(body[10:])  # the first body completes: the budget is free
            assert _read_all(holder).startswith(b"HTTP/1.1 400")  # read, parsed
        with _connect(server, head + body) as after:
            assert _read_all(after).startswith(b"HTTP/1.1 400")


class _BigAnswers(StubRepository):
    """Answers any predict with a fixed 8 MB answer (as an 8-row DeconvNet predict's
    ~9 MB), without running a model."""

    def get(self, name, version=None):
        return self

    def signature(self, signature_name):
        import tensorflow as tf

        from keras_deconvnet.serving.tensors import tensor_info

        return types.SimpleNamespace(
            inputs={"x": tensor_info("x", tf.TensorSpec((None,), tf.float32))})

    def predict(self, name, version, signature_name, inputs):
        return None, None, {"probabilities": np.zeros((8, 256, 256, 4), np.float32)}


def test_clients_that_never_read_their_answers_do_not_lock_out_the_others():
    # Was: max-connections clients that never read their ~9 MB answers held every
    # slot until --body-timeout (60 s): a status request timed out.
    import select

    limits = {"max_connections": 4, "body_timeout": 60, "send_timeout": 2}
    server = RestServer(_BigAnswers(), port=0, connections=ConnectionLimits(**limits))
    server.start()
    request = (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: 15\r\n\r\n{\"inputs\": [1]}")
    readers = []
    try:
        for _ in range(4):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect((server.host, server.port))
            sock.sendall(request)
            readers.append(sock)
        waiting, deadline = list(readers), time.monotonic() + 30
        while waiting:  # every answer has started: every slot is held by a non-reader
            assert time.monotonic() < deadline, "the answers never started"
            readable, _, _ = select.select(waiting, [], [], 1.0)
            waiting = [s for s in waiting if s not in readable]
        start = time.monotonic()
        assert _status(server, timeout=10) == (200, STATUS)
        assert time.monotonic() - start < 2.0
        # The send deadline: a stalled answer is cut off (the client gets less than
        # the 8 MB) instead of being held until --body-timeout.
        time.sleep(limits["send_timeout"] + 3)
        for sock in readers:
            sock.settimeout(15)
            assert len(_read_all(sock)) < 8 * 256 * 256 * 4
    finally:
        for sock in readers:
            sock.close()
        server.shutdown()
