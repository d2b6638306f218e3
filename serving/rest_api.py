"""TF Serving's REST predict format: JSON requests -> numpy inputs -> JSON responses.

Two request formats, as TF Serving defines them:

- row: `{"signature_name": "...", "instances": [row, row, ...]}`, each row the value
  of the only input or an object `{input_name: value}`; answered with
  `{"predictions": [...]}` (one value, or one `{output_name: value}` object, per row).
- columnar: `{"inputs": value}` or `{"inputs": {input_name: value}}` (values keep
  their batch axis); answered with `{"outputs": value}` (one output) or
  `{"outputs": {output_name: value}}`.

String (bytes) values are sent as `{"b64": "<base64>"}`; string outputs whose name ends
in `_bytes` come back the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_deconvnet.serving.errors import ServingError

_MAX_EXACT_INT_DIGITS = 18


def _parse_int(text: str) -> int | float:
    # Integers beyond 64 bits are read as doubles, as rapidjson (TF Serving's parser)
    # does; Python's int() would refuse over 4300 digits. A huge one becomes inf, which
    # the input check refuses as non-finite.
    digits = len(text) - (text[:1] == "-")
    return int(text) if digits <= _MAX_EXACT_INT_DIGITS else float(text)


def decode_json(body: bytes) -> dict:
    """Parses a JSON request body into an object; `INVALID_ARGUMENT` if malformed."""
    try:
        request = json.loads(body, parse_int=_parse_int)
    except RecursionError:
        raise ServingError("JSON Parse error: the document is nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, number conversions
        message = " ".join(str(e).split())[:300]
        raise ServingError(f"JSON Parse error: {message}") from None
    if not isinstance(request, dict):
        raise ServingError(
            f"JSON Parse error: the request must be a JSON object, not {type(request).__name__}"
        )
    return request


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


# Deepest nesting of a value: numpy's 64 dimensions (TF Serving's parser has a
# similar bound); deeper JSON is refused, not recursed into.
_MAX_DEPTH = 64


def _decode_strings(value, name: str, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ServingError(
            f"Input {name!r} is nested deeper than {_MAX_DEPTH} levels: no tensor has "
            "that many dimensions"
        )
    if _is_b64(value):
        encoded = value["b64"]
        if not isinstance(encoded, str):
            raise ServingError(f"Input {name!r}: the 'b64' value must be a string")
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ServingError(
                f"Unable to base64 decode the value of input {name!r}: {e}"
            ) from None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_decode_strings(v, name, depth + 1) for v in value]
    raise ServingError(
        f"Input {name!r} is a string tensor: send strings or {{\"b64\": ...}} objects, "
        f"not {type(value).__name__}"
    )


def _named(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _string_array(values: Any, name: str) -> np.ndarray:
    decoded = _decode_strings(values, name)
    if isinstance(decoded, bytes):
        array = np.empty((), dtype=object)
        array[()] = decoded
        return array
    try:
        return np.array(decoded, dtype=object)
    except ValueError as e:
        raise ServingError(f"Input {name!r} is not a rectangular array: {e}") from None


def parse_predict_request(
    request: Mapping[str, Any], signature
) -> tuple[dict[str, Any], bool]:
    """Reads the inputs of a predict request for `signature`.

    Args:
        request: the decoded JSON body.
        signature: the `Signature` it is for.

    Returns:
        `(inputs, row_format)`: input name -> array (strings decoded to bytes) or
        nested lists of numbers, and whether the request used `"instances"`.
    """
    has_rows, has_columns = "instances" in request, "inputs" in request
    if has_rows == has_columns:
        raise ServingError(
            "Missing 'inputs' or 'instances' key" if not has_rows
            else "Request must have exactly one of 'inputs' or 'instances', not both"
        )
    names = list(signature.inputs)
    if has_rows:
        instances = request["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServingError("'instances' must be a non-empty JSON list")
        named = [_named(row) for row in instances]
        if all(named):
            keys = set(instances[0])
            if any(set(row) != keys for row in instances):
                raise ServingError(
                    "Every instance must name the same inputs; expected "
                    f"{{{', '.join(sorted(names))}}}"
                )
            values = {k: [row[k] for row in instances] for k in keys}
        elif any(named):
            raise ServingError(
                "Mixed instances: either every instance is an object of named inputs or "
                "none is"
            )
        elif len(names) == 1:
            values = {names[0]: instances}
        else:
            raise ServingError(
                "The signature has several inputs: each instance must be an object "
                f"with keys {{{', '.join(sorted(names))}}}"
            )
    else:
        columns = request["inputs"]
        if _named(columns):
            values = dict(columns)
        elif len(names) == 1:
            values = {names[0]: columns}
        else:
            raise ServingError(
                "The signature has several inputs: 'inputs' must be an object with keys "
                f"{{{', '.join(sorted(names))}}}"
            )
    inputs = {}
    for key, value in values.items():
        info = signature.inputs.get(key)
        inputs[key] = _string_array(value, key) if info is not None and info.is_string else value
    return inputs, has_rows


def _json_value(array: np.ndarray, name: str):
    if array.dtype == np.dtype(object) or array.dtype.kind in "SU":
        if name.endswith("_bytes"):
            flat = [{"b64": base64.b64encode(bytes(x)).decode("ascii")} for x in array.ravel()]
        else:
            flat = [
                x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                for x in array.ravel()
            ]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _leaf(array: np.ndarray, name: str, arrays: bool):
    if arrays and array.dtype.kind in "biuf":
        return array
    return _json_value(array, name)


def format_predict_response(
    outputs: Mapping[str, np.ndarray], row_format: bool, arrays: bool = False
) -> dict:
    """The JSON response for `outputs` (name -> array), in the request's format.

    Args:
        outputs: the signature's outputs.
        row_format: `True` for an `"instances"` request (`{"predictions": ...}`),
            `False` for `"inputs"` (`{"outputs": ...}`).
        arrays: keep numeric outputs as numpy arrays (for `encode_json_chunks`, which
            encodes them row by row instead of building Python lists).

    Returns:
        The response object.
    """
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": _leaf(outputs[names[0]], names[0], arrays)}
        return {"outputs": {k: _leaf(outputs[k], k, arrays) for k in names}}
    sizes = {outputs[k].shape[0] if outputs[k].ndim else None for k in names}
    if len(sizes) != 1 or None in sizes:
        raise ServingError(
            "Tensors have inconsistent batch sizes: use the 'inputs' (columnar) format. "
            + ", ".join(f"{k}: {outputs[k].shape}" for k in names)
        )
    if len(names) == 1:
        return {"predictions": _leaf(outputs[names[0]], names[0], arrays)}
    columns = {k: _leaf(outputs[k], k, arrays) for k in names}
    return {
        "predictions": [
            {k: columns[k][i] for k in names} for i in range(sizes.pop())
        ]
    }


def encode_json(response: Mapping[str, Any]) -> bytes:
    """The JSON bytes of a response (`NaN`/`Infinity` as TF Serving writes them)."""
    return json.dumps(response, separators=(",", ":")).encode("utf-8")


_SMALL_ARRAY = 1 << 16


class _Chunks:
    """Collects encoded pieces into chunks of about `size` bytes."""

    def __init__(self, size: int):
        self.size = size
        self.chunks: list[bytes] = []
        self._pieces: list[str] = []
        self._length = 0

    def add(self, piece: str) -> None:
        self._pieces.append(piece)
        self._length += len(piece)
        if self._length >= self.size:
            self.flush()

    def flush(self) -> None:
        if self._pieces:
            self.chunks.append("".join(self._pieces).encode("utf-8"))
            self._pieces, self._length = [], 0


def _encode(value, out: _Chunks) -> None:
    if isinstance(value, np.ndarray):
        if value.ndim <= 1 or value.size <= _SMALL_ARRAY:
            out.add(json.dumps(value.tolist(), separators=(",", ":")))
        else:  # row by row: no Python list of the whole array
            out.add("[")
            for i, row in enumerate(value):
                if i:
                    out.add(",")
                _encode(row, out)
            out.add("]")
    elif isinstance(value, np.generic):
        out.add(json.dumps(value.item()))
    elif isinstance(value, dict):
        out.add("{")
        for i, (key, item) in enumerate(value.items()):
            out.add(("," if i else "") + json.dumps(str(key)) + ":")
            _encode(item, out)
        out.add("}")
    elif isinstance(value, list | tuple):
        out.add("[")
        for i, item in enumerate(value):
            if i:
                out.add(",")
            _encode(item, out)
        out.add("]")
    else:
        out.add(json.dumps(value, separators=(",", ":")))


def encode_json_chunks(response: Mapping[str, Any], chunk_bytes: int = 1 << 20) -> list[bytes]:
    """The JSON bytes of a response with numpy leaves, as chunks of about `chunk_bytes`.

    The same bytes as `encode_json` of the equivalent lists, but large arrays are
    encoded row by row, so the memory an answer takes is about its own size.
    """
    out = _Chunks(chunk_bytes)
    _encode(response, out)
    out.flush()
    return out.chunks
