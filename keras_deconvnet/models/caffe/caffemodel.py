"""Reads binary Caffe `.caffemodel` files (a serialized `NetParameter`) without Caffe.

The file is memory-mapped and parsed with a small protobuf wire-format reader
(`protobuf_wire`), so a 1 GB model costs no more memory than the pages its blobs touch:
blobs are read-only NumPy views into the mapping, never copies (`blob_proto`). The result
is a `CaffeNet` (`caffe_net`). These four modules need only NumPy.

Field numbers (all checked against the two `caffe.proto` files named below):

- "fork" is HyeonwooNoh/caffe `src/caffe/proto/caffe.proto`, the Caffe that wrote the
  DeconvNet models; "BVLC" is BVLC/caffe master (9b89154, 2020) `src/caffe/proto/caffe.proto`.
- NetParameter (fork and BVLC): name 1, layers 2 (V1 layers), input 3, input_dim 4,
  force_backward 5, state 6. BVLC only: debug_info 7, input_shape 8 (BlobShape),
  layer 100 (V2 layers).
- V1 layer (the fork's `LayerParameter`, BVLC's `V1LayerParameter`): layer 1 (the V0
  message), bottom 2, top 3, name 4, type 5 (enum), blobs 6, blobs_lr 7,
  weight_decay 8, convolution_param 10, dropout_param 12, inner_product_param 17,
  pooling_param 19, eltwise_param 24, relu_param 30. Fork only: unpooling_param 44,
  bn_param 45.
- V2 layer (BVLC `LayerParameter`): name 1, type 2 (string), bottom 3, top 4, param 6,
  blobs 7, convolution_param 106, dropout_param 108, eltwise_param 110,
  inner_product_param 117, pooling_param 121, relu_param 123, crop_param 144.
- V0 layer (`V0LayerParameter`, fork and BVLC): name 1, type 2 (string), num_output 3,
  biasterm 4, pad 7, kernelsize 8, group 9, stride 10, pool 11, dropout_ratio 12,
  blobs 50.
- BlobProto: see `keras_deconvnet.models.caffe.blob_proto`.
- V1 type enum (BVLC `V1LayerParameter.LayerType`, same values in the fork):
  CONVOLUTION 4, DROPOUT 6, INNER_PRODUCT 14, POOLING 17, RELU 18, SOFTMAX 20,
  ELTWISE 25, DECONVOLUTION 39. Fork only: CROP 40, UNPOOLING 42, BN 43 (and 41, 44-53
  for its data, loss and accuracy layers).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from keras_deconvnet.models.caffe.blob_proto import read_blob, read_blob_shape
from keras_deconvnet.models.caffe.caffe_net import (
    CaffeLayer,
    CaffeModelError,
    CaffeNet,
    short_text,
)
from keras_deconvnet.models.caffe.protobuf_wire import (
    I32,
    LEN,
    VARINT,
    WIRE_NAMES,
    WireReader,
    signed_varint,
)

__all__ = ["MAX_BLOBS", "MAX_LAYERS", "MAX_REPEATED", "describe_caffemodel", "read_caffemodel"]

_Format = Literal["V0", "V1", "V2"]

# Top-level NetParameter fields and their wire types (fork + BVLC). Anything else at the
# top level means the file is not a NetParameter: Caffe never writes other fields there.
_NET_FIELDS: dict[int, tuple[int, ...]] = {
    1: (LEN,), 2: (LEN,), 3: (LEN,), 4: (VARINT, LEN), 5: (VARINT,), 6: (LEN,),
    7: (VARINT,), 8: (LEN,), 100: (LEN,),
}

# Parameter sub-messages worth decoding: {field: (name, kind)}. Kinds: "u" unsigned
# varint, "i" signed varint, "b" bool, "f" float, "u*"/"f*" repeated (always a tuple).
_CONV = {1: ("num_output", "u"), 2: ("bias_term", "b"), 3: ("pad", "u*"),
         4: ("kernel_size", "u*"), 5: ("group", "u"), 6: ("stride", "u*"),
         9: ("pad_h", "u"), 10: ("pad_w", "u"), 11: ("kernel_h", "u"), 12: ("kernel_w", "u"),
         13: ("stride_h", "u"), 14: ("stride_w", "u"), 18: ("dilation", "u*")}
_POOL = {1: ("pool", "u"), 2: ("kernel_size", "u"), 3: ("stride", "u"), 4: ("pad", "u"),
         5: ("kernel_h", "u"), 6: ("kernel_w", "u"), 7: ("stride_h", "u"),
         8: ("stride_w", "u"), 9: ("pad_h", "u"), 10: ("pad_w", "u"),
         12: ("global_pooling", "b"), 13: ("round_mode", "u")}
# Fork only (HyeonwooNoh/caffe UnpoolingParameter, BNParameter).
_UNPOOL = {**{k: v for k, v in _POOL.items() if 2 <= k <= 10}, 1: ("unpool", "u"),
           12: ("unpool_size", "u"), 13: ("unpool_h", "u"), 14: ("unpool_w", "u")}
_BN = {3: ("bn_mode", "u")}
_ELTWISE = {1: ("operation", "u"), 2: ("coeff", "f*")}
_DROPOUT = {1: ("dropout_ratio", "f")}
_INNER = {1: ("num_output", "u"), 2: ("bias_term", "b")}
_RELU = {1: ("negative_slope", "f")}
_CROP = {1: ("axis", "i"), 2: ("offset", "u*")}
_V0 = {3: ("num_output", "u"), 4: ("biasterm", "b"), 7: ("pad", "u"), 8: ("kernelsize", "u"),
       9: ("group", "u"), 10: ("stride", "u"), 11: ("pool", "u"), 12: ("dropout_ratio", "f")}

_V1_PARAMS = {10: ("convolution_param", _CONV), 12: ("dropout_param", _DROPOUT),
              17: ("inner_product_param", _INNER), 19: ("pooling_param", _POOL),
              24: ("eltwise_param", _ELTWISE), 30: ("relu_param", _RELU)}
# Fork fields, decoded only on the fork's own layer types: another fork may give the
# same field numbers to other messages.
_FORK_PARAMS = {44: ("unpooling_param", _UNPOOL, 42), 45: ("bn_param", _BN, 43)}
_V2_PARAMS = {106: ("convolution_param", _CONV), 108: ("dropout_param", _DROPOUT),
              110: ("eltwise_param", _ELTWISE), 117: ("inner_product_param", _INNER),
              121: ("pooling_param", _POOL), 123: ("relu_param", _RELU),
              144: ("crop_param", _CROP)}

# Budgets that bound the work and memory a hostile file can cause (with the reader's
# `MAX_FIELDS`). Real nets are far below them: DeconvNet has 85 layers and 62 blobs.
MAX_LAYERS = 100_000
MAX_BLOBS = 200_000
# Values of one repeated field: packed `input_dim`, a parameter's `pad`, `coeff`, ...
MAX_REPEATED = 4096

# Signatures of files people mistake for caffemodels, for a clearer error message.
_FOREIGN_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 weights?)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"PK\x03\x04", "a zip archive (.keras / .npz?)"),
    (b"\x93NUMPY", "a NumPy .npy file"),
    (b"\x1f\x8b", "a gzip file (decompress it first)"),
    (b"<", "an HTML/XML page (a failed download?)"),
)



def read_caffemodel(source: str | os.PathLike[str] | bytes | bytearray | memoryview) -> CaffeNet:
    """Parses a binary Caffe `.caffemodel` (any of V0, V1 and V2 layer formats).

    The file is memory-mapped; blobs are read-only views into it (unpacked repeated
    values, written by some old tools, are the exception: they are gathered into one
    copy). Parsing touches only message headers, so it takes milliseconds even for
    the 1 GB DeconvNet model.

    Args:
        source: path of the file, or its bytes.

    Returns:
        A `CaffeNet`; close it (or use it as a context manager) to release the map.

    Raises:
        CaffeModelError: the file is empty, truncated, not a NetParameter (e.g. a PNG,
            an HDF5 file, a text prototxt) or a blob's value count does not match its
            shape. The message names the file and, where known, the layer and the byte
            offset.
        FileNotFoundError: `source` is a path that does not exist.

    Example:

    >>> with read_caffemodel(  # doctest: +SKIP
    ...         "DeconvNet_trainval_inference.caffemodel") as net:
    ...     weights, bias = net.layer("conv1_1").blobs
    ...     weights.shape
    (64, 3, 3, 3)
    """
    mapping: mmap.mmap | None = None
    if isinstance(source, bytes | bytearray | memoryview):
        path = "<bytes>"
        buffer: Any = bytes(source) if isinstance(source, memoryview) else source
    else:
        path = os.fspath(source)
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise CaffeModelError(f"{path}: the file is empty, not a Caffe NetParameter")
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        buffer = mapping
    try:
        return _NetParser(buffer, path).net(mapping)
    except BaseException:
        if mapping is not None:
            try:
                mapping.close()
            except BufferError:
                pass
        raise


def describe_caffemodel(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
) -> list[dict[str, Any]]:
    """Summarizes a caffemodel layer by layer (for a `--describe` CLI and error messages).

    Args:
        source: path of the file, or its bytes.

    Returns:
        One dict per layer in file order, with keys `name`, `type` (raw), `type_name`,
        `bottoms`, `tops`, `blob_shapes` (list of tuples), `blob_dtypes` (list of
        strings) and `params`.

    Raises:
        CaffeModelError: as `read_caffemodel`.

    Example:

    >>> for row in describe_caffemodel("fcn-8s-pascal.caffemodel"):  # doctest: +SKIP
    ...     print(row["name"], row["type_name"], row["blob_shapes"])
    """
    with read_caffemodel(source) as net:
        return [
            {
                "name": layer.name,
                "type": layer.type,
                "type_name": layer.type_name,
                "bottoms": list(layer.bottoms),
                "tops": list(layer.tops),
                "blob_shapes": list(layer.blob_shapes),
                "blob_dtypes": [str(blob.dtype) for blob in layer.blobs],
                "params": {key: dict(value) for key, value in layer.params.items()},
            }
            for layer in net.layers
        ]

@dataclass
class _NetFields:
    """The top-level NetParameter fields, with the layer messages as `(start, end)` spans."""

    name: str = ""
    inputs: list[str] = field(default_factory=list)
    input_dims: list[int] = field(default_factory=list)
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)
    v1_layers: list[tuple[int, int]] = field(default_factory=list)
    v2_layers: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _LayerFields:
    """One layer's fields as its message is walked; `where` names it in errors."""

    index: int
    type: int | str
    name: str = ""
    bottoms: list[str] = field(default_factory=list)
    tops: list[str] = field(default_factory=list)
    blob_spans: list[tuple[int, int]] = field(default_factory=list)
    param_spans: list[tuple[int, int, int]] = field(default_factory=list)
    where: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.where = f"layer #{self.index}"

    def named(self, name: str) -> None:
        self.name = name
        self.where = f"layer #{self.index} {short_text(repr(name), 80)}"


class _NetParser(WireReader):
    """Reads a NetParameter: its top-level fields, then each layer and its blobs."""

    # -- NetParameter -----------------------------------------------------------------

    blobs_left = MAX_BLOBS

    def net(self, mapping: mmap.mmap | None) -> CaffeNet:
        try:
            return self.parse_net(mapping)
        except CaffeModelError:
            # Only after a failure, so that a valid file can never be rejected by a guess.
            kind = self.foreign_kind()
            if kind:
                raise self.error(f"not a binary Caffe NetParameter: this is {kind}") from None
            raise

    def parse_net(self, mapping: mmap.mmap | None) -> CaffeNet:
        fields = self.top_level_fields()
        if fields.v1_layers and fields.v2_layers:
            raise self.error(
                "has both V1 `layers` (field 2) and V2 `layer` (field 100); Caffe refuses "
                "such files too")
        if not fields.v1_layers and not fields.v2_layers:
            raise self.error(
                "not a Caffe model: the NetParameter has no layers (an empty or "
                "weightless file?)")
        input_shapes, dims = fields.input_shapes, fields.input_dims
        if dims and not input_shapes:
            input_shapes = [tuple(dims[i:i + 4]) for i in range(0, len(dims), 4)]
        layers, format_ = self.layers(fields)
        return CaffeNet(self.path, fields.name, format_, layers, tuple(fields.inputs),
                        tuple(input_shapes), mapping)

    def top_level_fields(self) -> _NetFields:
        fields = _NetFields()
        where = "NetParameter"
        pos = 0
        while pos < self.size:
            layer_index = len(fields.v1_layers) + len(fields.v2_layers)
            if layer_index > MAX_LAYERS:
                raise self.too_many_layers(pos)
            self.spend(1, where, pos)
            number, wire, a, b, pos = self.top_level_field(pos, layer_index)
            if number == 1:
                fields.name = self.string(a, b, where)
            elif number == 2:
                fields.v1_layers.append((a, b))
            elif number == 3:
                fields.inputs.append(self.string(a, b, where))
            elif number == 4:
                fields.input_dims.extend(
                    [signed_varint(a)] if wire == VARINT else
                    [signed_varint(v) for v in self.packed_varints(
                        a, b, where, MAX_REPEATED, "input dimensions")])
                if len(fields.input_dims) > MAX_REPEATED:
                    raise self.error(f"more than {MAX_REPEATED:,} input dimensions", where)
            elif number == 8:
                fields.input_shapes.append(read_blob_shape(self, a, b, where))
            elif number == 100:
                fields.v2_layers.append((a, b))
        if len(fields.v1_layers) + len(fields.v2_layers) > MAX_LAYERS:
            raise self.too_many_layers(self.size)
        return fields

    def too_many_layers(self, offset: int) -> CaffeModelError:
        return self.error(
            f"more than {MAX_LAYERS:,} layers; real Caffe nets have at most a few "
            "thousand (a corrupt or hostile file?)", "", offset)

    def top_level_field(self, pos: int, layer_index: int) -> tuple[int, int, int, int, int]:
        """(field, wire type, value or payload start, payload end, next position) at `pos`.

        Top-level fields are checked against `_NET_FIELDS` before their payload is read,
        and a layer cut short is named (`layer_index` is the layer it would be).
        """
        where = "NetParameter"
        at = pos
        key, pos = self.varint(pos, self.size, where)
        number, wire = key >> 3, key & 7
        if number not in _NET_FIELDS or wire not in _NET_FIELDS[number]:
            raise self.error(
                f"not a Caffe NetParameter: unexpected top-level field {number} "
                f"({WIRE_NAMES.get(wire, wire)})", "", at)
        if wire == VARINT:
            value, pos = self.varint(pos, self.size, where)
            return number, wire, value, pos, pos
        length, pos = self.varint(pos, self.size, where)
        a, b = pos, pos + length
        if b > self.size:
            context = where
            if number in (2, 100):  # a layer cut short: say which one
                context = f"layer #{layer_index}"
                layer_name = self.peek_layer_name(a, 4 if number == 2 else 1)
                context += f" {short_text(repr(layer_name), 80)}" if layer_name else ""
            raise self.overrun(f"field {number} of {length} bytes", b, self.size, context, at)
        return number, wire, a, b, b

    def peek_layer_name(self, start: int, name_field: int) -> str:
        """The name of a layer whose message runs past the end of the file, if readable."""
        try:
            for number, wire, a, b, _ in self.fields(start, self.size, ""):
                if number == name_field and wire == LEN:
                    return self.string(a, b, "")
        except CaffeModelError:
            pass
        return ""

    def foreign_kind(self) -> str:
        """What the file looks like when it is not a NetParameter ("" when unknown)."""
        head = bytes(self.view[:256])
        for signature, what in _FOREIGN_SIGNATURES:
            if head.startswith(signature):
                return what
        if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
            return "text (a .prototxt? the binary .caffemodel holds the weights)"
        return ""

    # -- layers -----------------------------------------------------------------------

    def layers(self, fields: _NetFields) -> tuple[tuple[CaffeLayer, ...], _Format]:
        """The layers in file order and the format: V2, V1, or V0 if any layer is V0."""
        layers: list[CaffeLayer] = []
        format_: _Format = "V2" if fields.v2_layers else "V1"
        for index, (start, end) in enumerate(fields.v2_layers or fields.v1_layers):
            if fields.v2_layers:
                layer = self.v2_layer(start, end, index)
            else:
                layer, is_v0 = self.v1_layer(start, end, index)
                if is_v0:
                    format_ = "V0"
            layers.append(layer)
        return tuple(layers), format_

    def v1_layer(self, start: int, end: int, index: int) -> tuple[CaffeLayer, bool]:
        layer = _LayerFields(index, type=0)
        v0_span: tuple[int, int] | None = None
        for number, wire, a, b, _ in self.fields(start, end, layer.where):
            if wire == LEN and number == 1:
                v0_span = (a, b)
            elif wire == LEN and number == 2:
                layer.bottoms.append(self.string(a, b, layer.where))
            elif wire == LEN and number == 3:
                layer.tops.append(self.string(a, b, layer.where))
            elif wire == LEN and number == 4:
                layer.named(self.string(a, b, layer.where))
            elif wire == VARINT and number == 5:
                layer.type = a
            elif wire == LEN and number == 6:
                layer.blob_spans.append((a, b))
            elif wire == LEN and (number in _V1_PARAMS or number in _FORK_PARAMS):
                layer.param_spans.append((number, a, b))
        params = self.v1_params(layer)
        if v0_span is not None:
            # 2014 files: name, type and blobs live in the nested V0LayerParameter.
            self.read_v0_layer(*v0_span, layer)
            params["v0_layer_param"] = self.param_message(*v0_span, _V0, layer.where)
        return self.caffe_layer(layer, params, start), v0_span is not None

    def v1_params(self, layer: _LayerFields) -> dict[str, dict[str, Any]]:
        """The V1 layer's parameter messages (the fork's only on the fork's layer types)."""
        params: dict[str, dict[str, Any]] = {}
        for number, a, b in layer.param_spans:
            if number in _V1_PARAMS:
                key, schema = _V1_PARAMS[number]
            else:
                key, schema, fork_type = _FORK_PARAMS[number]
                if layer.type != fork_type:
                    continue
            params[key] = self.param_message(a, b, schema, layer.where)
        return params

    def read_v0_layer(self, start: int, end: int, layer: _LayerFields) -> None:
        """Takes the name, type and blobs (first) of the nested V0LayerParameter."""
        v0_blobs: list[tuple[int, int]] = []
        for number, wire, a, b, _ in self.fields(start, end, layer.where):
            if wire == LEN and number == 1:
                layer.named(self.string(a, b, layer.where))
            elif wire == LEN and number == 2:
                layer.type = self.string(a, b, layer.where)
            elif wire == LEN and number == 50:
                v0_blobs.append((a, b))
        layer.blob_spans = v0_blobs + layer.blob_spans

    def v2_layer(self, start: int, end: int, index: int) -> CaffeLayer:
        layer = _LayerFields(index, type="")
        for number, wire, a, b, _ in self.fields(start, end, layer.where):
            if wire != LEN:
                continue
            if number == 1:
                layer.named(self.string(a, b, layer.where))
            elif number == 2:
                layer.type = self.string(a, b, layer.where)
            elif number == 3:
                layer.bottoms.append(self.string(a, b, layer.where))
            elif number == 4:
                layer.tops.append(self.string(a, b, layer.where))
            elif number == 7:
                layer.blob_spans.append((a, b))
            elif number in _V2_PARAMS:
                layer.param_spans.append((number, a, b))
        params = {
            _V2_PARAMS[number][0]: self.param_message(a, b, _V2_PARAMS[number][1], layer.where)
            for number, a, b in layer.param_spans
        }
        return self.caffe_layer(layer, params, start)

    def caffe_layer(
        self, layer: _LayerFields, params: dict[str, dict[str, Any]], offset: int
    ) -> CaffeLayer:
        """The `CaffeLayer` of the fields read, with its blobs."""
        self.blobs_left -= len(layer.blob_spans)
        if self.blobs_left < 0:
            raise self.error(
                f"more than {MAX_BLOBS:,} blobs; real Caffe nets have at most a few "
                "thousand (a corrupt or hostile file?)", layer.where, offset)
        blobs = tuple(read_blob(self, a, b, f"{layer.where} blob {i}")
                      for i, (a, b) in enumerate(layer.blob_spans))
        return CaffeLayer(layer.name, layer.type, tuple(layer.bottoms), tuple(layer.tops),
                          blobs, params, offset)

    def param_message(
        self, start: int, end: int, schema: Mapping[int, tuple[str, str]], where: str
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        repeated: dict[str, list[Any]] = {}
        for number, wire, a, b, _ in self.fields(start, end, where):
            if number not in schema:
                continue
            key, kind = schema[number]
            base = kind.rstrip("*")
            if base == "f":
                if wire == I32:
                    items = [float(np.frombuffer(self.view, "<f4", 1, a)[0])]
                elif wire == LEN and (b - a) % 4 == 0:
                    items = np.frombuffer(self.view, "<f4", (b - a) // 4, a).tolist()
                else:
                    continue  # another fork's message under this number: not ours to read
            elif wire == VARINT:
                items = [a]
            elif wire == LEN:
                items = self.packed_varints(a, b, where, MAX_REPEATED, f"values of {key}")
            else:
                continue
            if base == "i":
                items = [signed_varint(v) for v in items]
            elif base == "b":
                items = [bool(v) for v in items]
            if kind.endswith("*"):
                repeated.setdefault(key, []).extend(items)
                if len(repeated[key]) > MAX_REPEATED:
                    raise self.error(f"more than {MAX_REPEATED:,} values of {key}", where, a)
            elif items:
                values[key] = items[-1]  # proto2 optional: the last occurrence wins
        values.update({key: tuple(items) for key, items in repeated.items()})
        return values
