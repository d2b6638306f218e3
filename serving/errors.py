"""Errors of the serving stack, with TF Serving's status codes and their HTTP statuses.

The local server answers every failure the way TF Serving does: a JSON body
`{"error": "..."}` with the HTTP status TF Serving maps the canonical error code to
(`INVALID_ARGUMENT` -> 400, `NOT_FOUND` -> 404, ...), and the same code on gRPC. The
clients raise the same `ServingError` for an error answer.
"""

from __future__ import annotations

# Canonical (gRPC) error codes -> HTTP statuses, as TF Serving's REST API maps them.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
_CODE_OF_STATUS = {
    400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED",
    411: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 501: "UNIMPLEMENTED",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}


class ServingError(Exception):
    """An error answer of a TF Serving API (local server, TF Serving, or a client).

    Args:
        message: the error message, TF Serving's `"error"` field.
        code: the canonical error code, e.g. `"INVALID_ARGUMENT"` or `"NOT_FOUND"`.
        http_status: the HTTP status; defaults to TF Serving's mapping of `code`.

    Example:

    >>> error = ServingError("Servable not found for request: Latest(foo)", "NOT_FOUND")
    >>> error.http_status
    404
    """

    def __init__(
        self, message: str, code: str = "INVALID_ARGUMENT", http_status: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status or HTTP_STATUS.get(code, 500)

    @classmethod
    def from_http(cls, status: int, message: str) -> ServingError:
        """The error for an HTTP error answer (`status`, the `"error"` message)."""
        code = _CODE_OF_STATUS.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        return cls(message, code, status)

    def __str__(self) -> str:
        return f"{self.code} ({self.http_status}): {self.message}"


class ServingConnectionError(ServingError, ConnectionError):
    """The server could not be reached (refused, reset, DNS), after every retry."""

    def __init__(self, message: str):
        super().__init__(message, "UNAVAILABLE")


class ServingTimeoutError(ServingError, TimeoutError):
    """The server did not answer within the timeout."""

    def __init__(self, message: str):
        super().__init__(message, "DEADLINE_EXCEEDED")


def not_found(name: str, version: int | None = None) -> ServingError:
    """TF Serving's error for an unknown model or version."""
    request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return ServingError(f"Servable not found for request: {request}", "NOT_FOUND")
