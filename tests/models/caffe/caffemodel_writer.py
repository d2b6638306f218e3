"""Writes synthetic binary Caffe `.caffemodel` files for tests, with its own protobuf encoder.

It shares no code with `keras_deconvnet.models.caffe` (so a reader bug cannot hide behind
a matching writer bug) and streams blob data to disk chunk by chunk, so a 1 GB file needs
no 1 GB bytes object. Field numbers come from HyeonwooNoh/caffe and BVLC/caffe
`src/caffe/proto/caffe.proto`; they are listed in the reader's module docstring.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

import numpy as np

# Caffe type names -> V1 enum (BVLC values, plus HyeonwooNoh/caffe's CROP, UNPOOLING, BN).
V1_TYPES = {
    "CONVOLUTION": 4, "DROPOUT": 6, "INNER_PRODUCT": 14, "POOLING": 17, "RELU": 18,
    "SOFTMAX": 20, "ELTWISE": 25, "DECONVOLUTION": 39, "CROP": 40, "UNPOOLING": 42, "BN": 43,
}
# ... and -> V2 type strings (BVLC's registered names; the fork's names as it spells them).
V2_TYPES = {
    "CONVOLUTION": "Convolution", "DROPOUT": "Dropout", "INNER_PRODUCT": "InnerProduct",
    "POOLING": "Pooling", "RELU": "ReLU", "SOFTMAX": "Softmax", "ELTWISE": "Eltwise",
    "DECONVOLUTION": "Deconvolution", "CROP": "Crop", "UNPOOLING": "Unpooling", "BN": "BN",
}
# ... and -> V0 type strings (2014 Caffe).
V0_TYPES = {"CONVOLUTION": "conv", "POOLING": "pool", "RELU": "relu",
            "INNER_PRODUCT": "innerproduct", "DROPOUT": "dropout", "SOFTMAX": "softmax"}

# Parameter messages: name -> (V1 field, V2 field, {sub-field name: number}).
_PARAMS: dict[str, tuple[int | None, int | None, dict[str, int]]] = {
    "convolution_param": (10, 106, {"num_output": 1, "bias_term": 2, "pad": 3,
                                    "kernel_size": 4, "group": 5, "stride": 6}),
    "pooling_param": (19, 121, {"pool": 1, "kernel_size": 2, "stride": 3, "pad": 4}),
    "eltwise_param": (24, 110, {"operation": 1, "coeff": 2}),
    "dropout_param": (12, 108, {"dropout_ratio": 1}),
    "relu_param": (30, 123, {"negative_slope": 1}),
    "inner_product_param": (17, 117, {"num_output": 1, "bias_term": 2}),
    "crop_param": (None, 144, {"axis": 1, "offset": 2}),
    # HyeonwooNoh/caffe only.
    "unpooling_param": (44, None, {"unpool": 1, "kernel_size": 2, "stride": 3, "pad": 4,
                                   "unpool_size": 12, "unpool_h": 13, "unpool_w": 14}),
    "bn_param": (45, None, {"bn_mode": 3}),
}

_CHUNK = 1 << 22  # values per write: bounds the temporary copy to 16-32 MB


@dataclass(frozen=True)
class WriterOptions:
    """How `write_caffemodel` encodes a net.

    Args:
        form: "V1" (`layers` with enum types, as the DeconvNet files), "V2" (`layer` with
            string types) or "V0" (2014 nested layers). Parameter messages with no field
            number in the form (the fork's `bn_param` and `unpooling_param` in V2,
            `crop_param` in V1) are left out; V0 writes none.
        legacy_dims: blob shapes as 4-D num/channels/height/width (left-padded with 1s),
            else as `shape.dim`.
        double: `double_data` instead of float `data`.
        packed: False writes one tag per value.
        diff: also write a zero `diff`.
        name: `NetParameter.name`.
        inputs: `{input name: dims}`, as `input_dim` (V0/V1) or `input_shape` (V2).
    """

    form: Literal["V0", "V1", "V2"] = "V1"
    legacy_dims: bool = True
    double: bool = False
    packed: bool = True
    diff: bool = False
    name: str = "synthetic"
    inputs: Mapping[str, Sequence[int]] | None = None

    def __post_init__(self) -> None:
        if self.form not in ("V0", "V1", "V2"):
            raise ValueError(f"form must be 'V0', 'V1' or 'V2', got {self.form!r}")


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives: ten bytes, two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


def _scalar(number: int, value: Any) -> bytes:
    if isinstance(value, bool | int | np.integer):
        return _key(number, 0) + _varint(int(value))
    return _key(number, 5) + struct.pack("<f", float(value))


class _ArrayPart:
    """Blob values, written in chunks: packed (raw) or unpacked (a tag before each)."""

    def __init__(self, array: np.ndarray, dtype: str, unpacked_tag: bytes | None) -> None:
        self.flat = np.asarray(array).reshape(-1)
        self.dtype = np.dtype(dtype)
        self.tag = unpacked_tag
        per_value = self.dtype.itemsize + (len(unpacked_tag) if unpacked_tag else 0)
        self.nbytes = self.flat.size * per_value

    def write(self, stream: BinaryIO) -> None:
        for begin in range(0, self.flat.size, _CHUNK):
            chunk = np.ascontiguousarray(self.flat[begin:begin + _CHUNK], dtype=self.dtype)
            if self.tag is None:
                stream.write(memoryview(chunk).cast("B"))
                continue
            records = np.empty(
                chunk.size, [("tag", f"V{len(self.tag)}"), ("value", self.dtype)])
            records["tag"] = np.frombuffer(self.tag, f"V{len(self.tag)}")[0]
            records["value"] = chunk
            stream.write(records.tobytes())


def _size(parts: Sequence[bytes | _ArrayPart]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)


def _blob_parts(blob: Any, options: WriterOptions) -> list[bytes | _ArrayPart]:
    # A blob is an array, or (array, declared shape) to write a shape that lies.
    array, declared = (blob if isinstance(blob, tuple) else (blob, None))
    array = np.asarray(array)
    declared = tuple(array.shape) if declared is None else tuple(declared)
    parts: list[bytes | _ArrayPart] = []
    packed, double = options.packed, options.double
    if options.legacy_dims:
        if len(declared) > 4:
            raise ValueError(f"legacy dims hold at most 4 axes, got shape {declared}")
        dims = (1,) * (4 - len(declared)) + declared  # Caffe pads on the left
        parts.append(b"".join(_key(n, 0) + _varint(d) for n, d in zip((1, 2, 3, 4), dims)))
    else:
        if packed:
            payload = b"".join(_varint(d) for d in declared)
            shape = _length_delimited(1, payload)
        else:
            shape = b"".join(_key(1, 0) + _varint(d) for d in declared)
        parts.append(_length_delimited(7, shape))
    fields = [(8, "<f8", 1) if double else (5, "<f4", 5)]
    if options.diff:
        fields.append((9, "<f8", 1) if double else (6, "<f4", 5))
    for number, dtype, fixed_wire in fields:
        # A zero diff as a broadcast view: no copy of a large blob.
        values = array if number in (5, 8) else np.broadcast_to(np.zeros((), dtype), array.size)
        if array.size == 0:
            continue
        if packed:
            part = _ArrayPart(values, dtype, None)
            parts.append(_key(number, 2) + _varint(part.nbytes))
            parts.append(part)
        else:
            parts.append(_ArrayPart(values, dtype, _key(number, fixed_wire)))
    return parts


def _params(params: Mapping[str, Mapping[str, Any]], form: str) -> bytes:
    out = b""
    for message, fields in params.items():
        v1_number, v2_number, numbers = _PARAMS[message]
        number = v2_number if form == "V2" else v1_number
        if number is None:
            continue  # e.g. the fork's bn_param in V2: no such field exists, drop it
        payload = b""
        for key, value in fields.items():
            values = value if isinstance(value, tuple | list) else (value,)
            payload += b"".join(_scalar(numbers[key], v) for v in values)
        out += _length_delimited(number, payload)
    return out


def _layer_parts(layer: Mapping[str, Any], options: WriterOptions) -> list[bytes | _ArrayPart]:
    name = layer["name"].encode()
    type_ = layer["type"]
    bottoms = [b.encode() for b in layer.get("bottoms", ())]
    tops = [t.encode() for t in layer.get("tops", ())]
    blobs = list(layer.get("blobs", ()))
    params = layer.get("params", {})

    def blob_fields(number: int) -> list[bytes | _ArrayPart]:
        parts: list[bytes | _ArrayPart] = []
        for blob in blobs:
            inner = _blob_parts(blob, options)
            parts.append(_key(number, 2) + _varint(_size(inner)))
            parts.extend(inner)
        return parts

    form = options.form
    if form == "V2":
        type_ = V2_TYPES.get(type_, type_)
        head = (_length_delimited(1, name) + _length_delimited(2, type_.encode())
                + b"".join(_length_delimited(3, b) for b in bottoms)
                + b"".join(_length_delimited(4, t) for t in tops))
        # ParamSpec {lr_mult 3} per blob, as Caffe writes back the training settings.
        specs = b"".join(_length_delimited(6, _scalar(3, 1.0)) for _ in blobs)
        return [head + specs, *blob_fields(7), _params(params, form)]
    if form == "V1":
        type_ = V1_TYPES.get(type_, type_)
        if not isinstance(type_, int):
            raise ValueError(f"V1 layer types are enums: unknown type {layer['type']!r}")
        head = (b"".join(_length_delimited(2, b) for b in bottoms)
                + b"".join(_length_delimited(3, t) for t in tops)
                + _length_delimited(4, name) + _key(5, 0) + _varint(type_))
        # blobs_lr / weight_decay (unpacked repeated floats) follow the blobs in real files.
        tail = b"".join(_scalar(7, 1.0) + _scalar(8, 1.0) for _ in blobs)
        return [head, *blob_fields(6), tail, _params(params, form)]
    type_ = V0_TYPES.get(type_, type_)
    v0_head = _length_delimited(1, name) + _length_delimited(2, type_.encode())
    v0_parts = [v0_head, *blob_fields(50)]
    return [_key(1, 2) + _varint(_size(v0_parts)), *v0_parts,
            b"".join(_length_delimited(2, b) for b in bottoms)
            + b"".join(_length_delimited(3, t) for t in tops)]


def write_caffemodel_to(
    stream: BinaryIO,
    layers: Sequence[Mapping[str, Any]],
    options: WriterOptions | None = None,
) -> int:
    """Writes a NetParameter to `stream` (see `write_caffemodel`); returns bytes written."""
    options = options or WriterOptions()
    head = _length_delimited(1, options.name.encode())
    for input_name, dims in (options.inputs or {}).items():
        head += _length_delimited(3, input_name.encode())
        if options.form == "V2":
            head += _length_delimited(8, _length_delimited(1, b"".join(_varint(d) for d in dims)))
        else:
            head += b"".join(_key(4, 0) + _varint(d) for d in dims)
    written = _write_parts(stream, [head])
    layer_field = 100 if options.form == "V2" else 2
    for layer in layers:
        parts = _layer_parts(layer, options)
        written += _write_parts(stream, [_key(layer_field, 2) + _varint(_size(parts)), *parts])
    return written


def _write_parts(stream: BinaryIO, parts: Sequence[bytes | _ArrayPart]) -> int:
    for part in parts:
        if isinstance(part, bytes):
            stream.write(part)
        else:
            part.write(stream)
    return _size(parts)


def write_caffemodel(
    path: str | os.PathLike[str],
    layers: Sequence[Mapping[str, Any]],
    **options: Any,
) -> int:
    """Writes a synthetic binary caffemodel, blob by blob.

    Args:
        path: the file to write.
        layers: dicts with `name`, `type` (a Caffe type name such as "CONVOLUTION" or
            "BN", mapped to the form's enum or string; or a raw int / str), `bottoms`,
            `tops`, `blobs` (arrays, or `(array, declared_shape)` to write a shape that
            does not match the data) and optionally `params`
            (e.g. `{"convolution_param": {"num_output": 4, "pad": 1}}`).
        **options: the fields of `WriterOptions` (`form`, `legacy_dims`, `double`,
            `packed`, `diff`, `name`, `inputs`).

    Returns:
        The number of bytes written.
    """
    with open(path, "wb") as stream:
        return write_caffemodel_to(stream, layers, WriterOptions(**options))


def encode_caffemodel(layers: Sequence[Mapping[str, Any]], **options: Any) -> bytes:
    """The bytes `write_caffemodel` would write (for small models)."""
    buffer = io.BytesIO()
    write_caffemodel_to(buffer, layers, WriterOptions(**options))
    return buffer.getvalue()
