"""Reads binary Caffe `.caffemodel` files (a serialized `NetParameter`) without Caffe.

The file is memory-mapped and parsed with a small protobuf wire-format reader, so a 1 GB
model costs no more memory than the pages its blobs touch: blobs are read-only NumPy views
into the mapping, never copies.

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
- BlobProto: num 1, channels 2, height 3, width 4, data 5 (packed float), diff 6 (fork
  and BVLC); shape 7 (BlobShape: dim 1, packed int64), double_data 8, double_diff 9
  (BVLC only).
- V1 type enum (BVLC `V1LayerParameter.LayerType`, same values in the fork):
  CONVOLUTION 4, DROPOUT 6, INNER_PRODUCT 14, POOLING 17, RELU 18, SOFTMAX 20,
  ELTWISE 25, DECONVOLUTION 39. Fork only: CROP 40, UNPOOLING 42, BN 43 (and 41, 44-53
  for its data, loss and accuracy layers).
"""

from __future__ import annotations

import math
import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "BVLC_V1_LAYER_TYPES",
    "FORK_V1_LAYER_TYPES",
    "CaffeLayer",
    "CaffeModelError",
    "CaffeNet",
    "describe_caffemodel",
    "read_caffemodel",
]

# BVLC `V1LayerParameter.LayerType`: the only enum values every Caffe agrees on.
BVLC_V1_LAYER_TYPES: dict[int, str] = {
    0: "NONE", 1: "ACCURACY", 2: "BNLL", 3: "CONCAT", 4: "CONVOLUTION", 5: "DATA",
    6: "DROPOUT", 7: "EUCLIDEAN_LOSS", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT",
    11: "IM2COL", 12: "IMAGE_DATA", 13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT", 15: "LRN",
    16: "MULTINOMIAL_LOGISTIC_LOSS", 17: "POOLING", 18: "RELU", 19: "SIGMOID",
    20: "SOFTMAX", 21: "SOFTMAX_LOSS", 22: "SPLIT", 23: "TANH", 24: "WINDOW_DATA",
    25: "ELTWISE", 26: "POWER", 27: "SIGMOID_CROSS_ENTROPY_LOSS", 28: "HINGE_LOSS",
    29: "MEMORY_DATA", 30: "ARGMAX", 31: "THRESHOLD", 32: "DUMMY_DATA", 33: "SLICE",
    34: "MVN", 35: "ABSVAL", 36: "SILENCE", 37: "CONTRASTIVE_LOSS", 38: "EXP",
    39: "DECONVOLUTION",
}
# HyeonwooNoh/caffe additions (values above 39 are not portable: other forks reuse them).
# The stage_* files, saved from training nets, also hold the fork's data and loss layers.
FORK_V1_LAYER_TYPES: dict[int, str] = {
    40: "CROP", 41: "ELTWISE_ACCURACY", 42: "UNPOOLING", 43: "BN", 44: "RED_SOFTMAX_LOSS",
    45: "RED_ACCURACY", 46: "IMAGE_SEG_DATA", 47: "WINDOW_SEG_DATA",
    48: "WINDOW_INST_SEG_DATA", 49: "BIN_ACCURACY", 50: "WINDOW_CLS_DATA",
    51: "WINDOW_SEG_BINARY", 52: "SELECT_SEG_BINARY", 53: "DROPOUT_CHANNEL",
}

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_NAMES = {0: "varint", 1: "fixed64", 2: "length-delimited", 3: "start-group",
               4: "end-group", 5: "fixed32"}

# Top-level NetParameter fields and their wire types (fork + BVLC). Anything else at the
# top level means the file is not a NetParameter: Caffe never writes other fields there.
_NET_FIELDS: dict[int, tuple[int, ...]] = {
    1: (_LEN,), 2: (_LEN,), 3: (_LEN,), 4: (_VARINT, _LEN), 5: (_VARINT,), 6: (_LEN,),
    7: (_VARINT,), 8: (_LEN,), 100: (_LEN,),
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


class CaffeModelError(ValueError):
    """A file is not a readable binary Caffe NetParameter (truncated, foreign, corrupt)."""


@dataclass(frozen=True, eq=False)  # identity equality: `==` on arrays is ambiguous
class CaffeLayer:
    """One layer of a caffemodel: its name, raw type, connections and parameter blobs.

    Attributes:
        name: the layer name (e.g. `"conv1_1"`). Names need not be unique: the FCN-8s
            file has several `"crop"` and `"fuse"` layers.
        type: the raw type: an `int` enum in V1 files (values above 39 depend on the
            fork that wrote the file, so map layers by name and blob shapes), a `str`
            in V2 and V0 files (e.g. `"Convolution"`, `"conv"`).
        bottoms: names of the input blobs.
        tops: names of the output blobs.
        blobs: the parameter blobs, read-only arrays in the blob's Caffe shape: the
            legacy 4-D (num, channels, height, width) when the file uses it (a bias is
            `(1, 1, 1, out)` in old files), else `shape.dim`. float32 from `data`,
            float64 from `double_data` (kept lossless; cast them yourself). They are
            views into the memory-mapped file: call `np.array(blob)` to own a copy.
        params: decoded layer parameters, e.g. `params["convolution_param"]["pad"]`.
            Only the messages and fields listed in this module are decoded; enums stay
            ints (pooling `pool`: 0 MAX, 1 AVE; fork `bn_mode`: 0 LEARN, 1 INFERENCE).
            `pad`, `kernel_size`, `stride`, `dilation` of a convolution are tuples (they
            are repeated in BVLC's proto), other fields are scalars.
        offset: byte offset of the layer message in the file, for error messages.
    """

    name: str
    type: int | str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    blobs: tuple[np.ndarray, ...]
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    offset: int = -1

    @property
    def type_name(self) -> str:
        """The type as a readable string: V1 enums by BVLC's names, then the fork's."""
        if isinstance(self.type, str):
            return self.type
        return BVLC_V1_LAYER_TYPES.get(
            self.type, FORK_V1_LAYER_TYPES.get(self.type, f"V1_ENUM_{self.type}")
        )

    @property
    def blob_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shapes of `blobs`."""
        return tuple(tuple(int(d) for d in blob.shape) for blob in self.blobs)


class CaffeNet:
    """A parsed caffemodel: the net name, inputs and layers in file order.

    Holds the memory map the blobs view; `close()` it (or use `with`) when done. Blobs
    still referenced after `close()` keep the mapping alive until they are freed.
    Not thread-safe to close while another thread reads it.

    Attributes:
        path: the file read (or `"<bytes>"`).
        name: `NetParameter.name` (empty if absent).
        format: `"V1"` (`layers`, enum types), `"V2"` (`layer`, string types) or `"V0"`
            (V1 `layers` wrapping the 2014 `V0LayerParameter`).
        layers: the layers in file order.
        inputs: `NetParameter.input` names.
        input_shapes: their shapes, from `input_dim` (4 per input) or `input_shape`.
    """

    def __init__(
        self,
        path: str,
        name: str,
        format: Literal["V0", "V1", "V2"],
        layers: tuple[CaffeLayer, ...],
        inputs: tuple[str, ...],
        input_shapes: tuple[tuple[int, ...], ...],
        mapping: mmap.mmap | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self.format = format
        self.layers = layers
        self.inputs = inputs
        self.input_shapes = input_shapes
        self._mapping = mapping

    def layer(self, name: str) -> CaffeLayer:
        """Returns the layer called `name`.

        Raises:
            KeyError: no layer has that name, or several do (use `layers_named`).
        """
        found = self.layers_named(name)
        if len(found) != 1:
            if not found:
                known = ", ".join(repr(layer.name) for layer in self.layers[:40])
                raise KeyError(f"{self.path}: no layer named {name!r}. Layers: {known}")
            raise KeyError(
                f"{self.path}: {len(found)} layers are named {name!r}; use layers_named()"
            )
        return found[0]

    def layers_named(self, name: str) -> list[CaffeLayer]:
        """All layers called `name`, in file order."""
        return [layer for layer in self.layers if layer.name == name]

    def __iter__(self) -> Iterator[CaffeLayer]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __contains__(self, name: object) -> bool:
        return any(layer.name == name for layer in self.layers)

    @property
    def num_parameters(self) -> int:
        """Total number of values in all blobs."""
        return sum(int(blob.size) for layer in self.layers for blob in layer.blobs)

    def close(self) -> None:
        """Releases the memory map and empties `layers`.

        Blobs taken out before closing stay valid: they keep the mapping alive until the
        last of them is freed, and the file is unmapped then.
        """
        mapping, self._mapping = self._mapping, None
        self.layers = ()
        if mapping is not None:
            try:
                mapping.close()
            except BufferError:
                # Blob views still export the buffer; the mapping is unmapped when the
                # last of them is freed.
                pass

    def __enter__(self) -> CaffeNet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CaffeNet(path={self.path!r}, name={self.name!r}, format={self.format!r}, "
            f"layers={len(self.layers)}, parameters={self.num_parameters})"
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
        return _Parser(buffer, path).net(mapping)
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


class _Parser:
    """Wire-format walker over one buffer; every error names the file and an offset."""

    def __init__(self, buffer: Any, path: str) -> None:
        self.buffer = buffer
        self.view = memoryview(buffer)
        self.size = len(self.view)
        self.path = path

    # -- errors -----------------------------------------------------------------------

    def error(self, message: str, where: str = "", offset: int | None = None) -> CaffeModelError:
        parts = [self.path + ":"]
        if where:
            parts.append(where + ":")
        parts.append(message)
        if offset is not None:
            parts.append(f"(at byte offset {offset})")
        return CaffeModelError(" ".join(parts))

    def overrun(self, what: str, needed_end: int, end: int, where: str, at: int) -> CaffeModelError:
        if end >= self.size:
            return self.error(
                f"truncated file: {what} needs bytes up to offset {needed_end} but the "
                f"file ends at {self.size} (an incomplete download?)", where, at)
        return self.error(
            f"corrupt message: {what} runs to offset {needed_end}, past the end of its "
            f"enclosing message at {end}", where, at)

    # -- wire primitives --------------------------------------------------------------

    def varint(self, pos: int, end: int, where: str) -> tuple[int, int]:
        view = self.view
        start = pos
        result = 0
        shift = 0
        while True:
            if pos >= end:
                raise self.overrun("a varint", pos + 1, end, where, start)
            byte = view[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.error("corrupt varint longer than 10 bytes", where, start)

    def fields(self, start: int, end: int, where: str) -> Iterator[tuple[int, int, int, int, int]]:
        """Yields (field, wire type, value or payload start, payload end, tag offset)."""
        pos = start
        while pos < end:
            tag_at = pos
            key, pos = self.varint(pos, end, where)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise self.error("corrupt message: field number 0", where, tag_at)
            if wire == _VARINT:
                value, pos = self.varint(pos, end, where)
                yield number, wire, value, pos, tag_at
            elif wire in (_I64, _I32):
                width = 8 if wire == _I64 else 4
                if pos + width > end:
                    raise self.overrun(f"field {number}", pos + width, end, where, tag_at)
                yield number, wire, pos, pos + width, tag_at
                pos += width
            elif wire == _LEN:
                length, pos = self.varint(pos, end, where)
                if pos + length > end:
                    raise self.overrun(
                        f"field {number} of {length} bytes", pos + length, end, where, tag_at)
                yield number, wire, pos, pos + length, tag_at
                pos += length
            else:
                raise self.error(
                    f"corrupt message: field {number} has wire type {wire} "
                    f"({_WIRE_NAMES.get(wire, 'invalid')}), which Caffe never writes",
                    where, tag_at)

    def string(self, start: int, end: int, where: str) -> str:
        try:
            return bytes(self.view[start:end]).decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("a name is not UTF-8 text", where, start) from None

    def packed_varints(self, start: int, end: int, where: str) -> list[int]:
        values = []
        pos = start
        while pos < end:
            value, pos = self.varint(pos, end, where)
            values.append(value)
        return values

    # -- NetParameter -----------------------------------------------------------------

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
        name = ""
        inputs: list[str] = []
        input_dims: list[int] = []
        input_shapes: list[tuple[int, ...]] = []
        v1_layers: list[tuple[int, int]] = []
        v2_layers: list[tuple[int, int]] = []
        where = "NetParameter"
        pos = 0
        while pos < self.size:
            at = pos
            key, pos = self.varint(pos, self.size, where)
            number, wire = key >> 3, key & 7
            if number not in _NET_FIELDS or wire not in _NET_FIELDS[number]:
                raise self.error(
                    f"not a Caffe NetParameter: unexpected top-level field {number} "
                    f"({_WIRE_NAMES.get(wire, wire)})", "", at)
            if wire == _VARINT:
                a, pos = self.varint(pos, self.size, where)
                b = pos
            else:
                length, pos = self.varint(pos, self.size, where)
                a, b = pos, pos + length
                if b > self.size:
                    context = where
                    if number in (2, 100):  # a layer cut short: say which one
                        context = f"layer #{len(v1_layers) + len(v2_layers)}"
                        layer_name = self.peek_layer_name(a, 4 if number == 2 else 1)
                        context += f" {layer_name!r}" if layer_name else ""
                    raise self.overrun(
                        f"field {number} of {length} bytes", b, self.size, context, at)
                pos = b
            if number == 1:
                name = self.string(a, b, where)
            elif number == 2:
                v1_layers.append((a, b))
            elif number == 3:
                inputs.append(self.string(a, b, where))
            elif number == 4:
                input_dims.extend(
                    [_signed(a)] if wire == _VARINT else
                    [_signed(v) for v in self.packed_varints(a, b, where)])
            elif number == 8:
                input_shapes.append(self.blob_shape(a, b, where))
            elif number == 100:
                v2_layers.append((a, b))
        if v1_layers and v2_layers:
            raise self.error(
                "has both V1 `layers` (field 2) and V2 `layer` (field 100); Caffe refuses "
                "such files too")
        if not v1_layers and not v2_layers:
            raise self.error(
                "not a Caffe model: the NetParameter has no layers (an empty or "
                "weightless file?)")
        if input_dims and not input_shapes:
            input_shapes = [tuple(input_dims[i:i + 4]) for i in range(0, len(input_dims), 4)]

        layers: list[CaffeLayer] = []
        format_: Literal["V0", "V1", "V2"] = "V2" if v2_layers else "V1"
        for index, (start, end) in enumerate(v2_layers or v1_layers):
            if v2_layers:
                layer = self.v2_layer(start, end, index)
            else:
                layer, is_v0 = self.v1_layer(start, end, index)
                if is_v0:
                    format_ = "V0"
            layers.append(layer)
        return CaffeNet(self.path, name, format_, tuple(layers), tuple(inputs),
                        tuple(input_shapes), mapping)

    def peek_layer_name(self, start: int, name_field: int) -> str:
        """The name of a layer whose message runs past the end of the file, if readable."""
        try:
            for number, wire, a, b, _ in self.fields(start, self.size, ""):
                if number == name_field and wire == _LEN:
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

    def v1_layer(self, start: int, end: int, index: int) -> tuple[CaffeLayer, bool]:
        where = f"layer #{index}"
        bottoms: list[str] = []
        tops: list[str] = []
        name = ""
        type_: int | str = 0
        blob_spans: list[tuple[int, int]] = []
        param_spans: list[tuple[int, int, int]] = []
        v0_span: tuple[int, int] | None = None
        for number, wire, a, b, _ in self.fields(start, end, where):
            if wire == _LEN and number == 1:
                v0_span = (a, b)
            elif wire == _LEN and number == 2:
                bottoms.append(self.string(a, b, where))
            elif wire == _LEN and number == 3:
                tops.append(self.string(a, b, where))
            elif wire == _LEN and number == 4:
                name = self.string(a, b, where)
                where = f"layer #{index} {name!r}"
            elif wire == _VARINT and number == 5:
                type_ = a
            elif wire == _LEN and number == 6:
                blob_spans.append((a, b))
            elif wire == _LEN and (number in _V1_PARAMS or number in _FORK_PARAMS):
                param_spans.append((number, a, b))
        params: dict[str, dict[str, Any]] = {}
        for number, a, b in param_spans:
            if number in _V1_PARAMS:
                key, schema = _V1_PARAMS[number]
            else:
                key, schema, fork_type = _FORK_PARAMS[number]
                if type_ != fork_type:
                    continue
            params[key] = self.param_message(a, b, schema, where)
        if v0_span is not None:
            # 2014 files: name, type and blobs live in the nested V0LayerParameter.
            v0_blobs: list[tuple[int, int]] = []
            for number, wire, a, b, _ in self.fields(*v0_span, where):
                if wire == _LEN and number == 1:
                    name = self.string(a, b, where)
                    where = f"layer #{index} {name!r}"
                elif wire == _LEN and number == 2:
                    type_ = self.string(a, b, where)
                elif wire == _LEN and number == 50:
                    v0_blobs.append((a, b))
            params["v0_layer_param"] = self.param_message(*v0_span, _V0, where)
            blob_spans = v0_blobs + blob_spans
        blobs = tuple(
            self.blob(a, b, f"{where} blob {i}") for i, (a, b) in enumerate(blob_spans))
        layer = CaffeLayer(name, type_, tuple(bottoms), tuple(tops), blobs, params, start)
        return layer, v0_span is not None

    def v2_layer(self, start: int, end: int, index: int) -> CaffeLayer:
        where = f"layer #{index}"
        bottoms: list[str] = []
        tops: list[str] = []
        name = ""
        type_ = ""
        blob_spans: list[tuple[int, int]] = []
        param_spans: list[tuple[int, int, int]] = []
        for number, wire, a, b, _ in self.fields(start, end, where):
            if wire != _LEN:
                continue
            if number == 1:
                name = self.string(a, b, where)
                where = f"layer #{index} {name!r}"
            elif number == 2:
                type_ = self.string(a, b, where)
            elif number == 3:
                bottoms.append(self.string(a, b, where))
            elif number == 4:
                tops.append(self.string(a, b, where))
            elif number == 7:
                blob_spans.append((a, b))
            elif number in _V2_PARAMS:
                param_spans.append((number, a, b))
        params = {
            _V2_PARAMS[number][0]: self.param_message(a, b, _V2_PARAMS[number][1], where)
            for number, a, b in param_spans
        }
        blobs = tuple(
            self.blob(a, b, f"{where} blob {i}") for i, (a, b) in enumerate(blob_spans))
        return CaffeLayer(name, type_, tuple(bottoms), tuple(tops), blobs, params, start)

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
                if wire == _I32:
                    items = [float(np.frombuffer(self.view, "<f4", 1, a)[0])]
                elif wire == _LEN and (b - a) % 4 == 0:
                    items = np.frombuffer(self.view, "<f4", (b - a) // 4, a).tolist()
                else:
                    continue  # another fork's message under this number: not ours to read
            elif wire == _VARINT:
                items = [a]
            elif wire == _LEN:
                items = self.packed_varints(a, b, where)
            else:
                continue
            if base == "i":
                items = [_signed(v) for v in items]
            elif base == "b":
                items = [bool(v) for v in items]
            if kind.endswith("*"):
                repeated.setdefault(key, []).extend(items)
            elif items:
                values[key] = items[-1]  # proto2 optional: the last occurrence wins
        values.update({key: tuple(items) for key, items in repeated.items()})
        return values

    # -- blobs ------------------------------------------------------------------------

    def blob_shape(self, start: int, end: int, where: str) -> tuple[int, ...]:
        dims: list[int] = []
        for number, wire, a, b, at in self.fields(start, end, where):
            if number != 1:
                continue
            if wire == _VARINT:
                dims.append(_signed(a))
            elif wire == _LEN:
                dims.extend(_signed(v) for v in self.packed_varints(a, b, where))
            else:
                raise self.error(f"corrupt BlobShape: dim has wire type {wire}", where, at)
        if any(d < 0 for d in dims):
            raise self.error(f"negative blob dimension in {tuple(dims)}", where, start)
        return tuple(dims)

    def blob(self, start: int, end: int, where: str) -> np.ndarray:
        legacy: dict[int, int] = {}
        shape: tuple[int, ...] | None = None
        pieces: dict[int, list[np.ndarray]] = {5: [], 8: []}
        pos = start
        while pos < end:
            tag_at = pos
            key, pos = self.varint(pos, end, where)
            number, wire = key >> 3, key & 7
            if wire in (_I32, _I64):
                width = 4 if wire == _I32 else 8
                if pos - tag_at == 1:
                    # An unpacked repeated float/double field (one tag per value, as some
                    # old writers do): gather the whole run of equal tags at once.
                    count, pos = self.unpacked_run(tag_at, end, key, width, where)
                    if (number, wire) in ((5, _I32), (8, _I64)):
                        records = np.frombuffer(
                            self.view, np.uint8, count * (1 + width), tag_at
                        ).reshape(count, 1 + width)
                        dtype = "<f4" if width == 4 else "<f8"
                        run = np.ascontiguousarray(records[:, 1:]).view(dtype).reshape(count)
                        pieces[number].append(run)
                else:
                    if pos + width > end:
                        raise self.overrun(f"field {number}", pos + width, end, where, tag_at)
                    pos += width
            elif wire == _VARINT:
                value, pos = self.varint(pos, end, where)
                if number in (1, 2, 3, 4):
                    legacy[number] = _signed(value)
            elif wire == _LEN:
                length, pos = self.varint(pos, end, where)
                a, b = pos, pos + length
                if b > end:
                    raise self.overrun(f"field {number} of {length} bytes", b, end, where, tag_at)
                pos = b
                if number == 7:
                    shape = self.blob_shape(a, b, where)
                elif number in (5, 8):
                    width = 4 if number == 5 else 8
                    if length % width:
                        raise self.error(
                            f"packed {'float' if width == 4 else 'double'} data of {length} "
                            f"bytes is not a multiple of {width}", where, tag_at)
                    dtype = "<f4" if width == 4 else "<f8"
                    pieces[number].append(np.frombuffer(self.view, dtype, length // width, a))
            else:
                raise self.error(
                    f"corrupt blob: field {number} has wire type {wire}", where, tag_at)
            # diff (6), double_diff (9) and unknown fields are skipped unread.

        if legacy:
            # BVLC Blob::FromProto: any legacy dim present means a 4-D legacy blob.
            dims = tuple(legacy.get(i, 0) for i in (1, 2, 3, 4))
            if any(d < 0 for d in dims):
                raise self.error(f"negative blob dimension in {dims}", where, start)
            shape = dims
        elif shape is None:
            shape = ()
        # Caffe reads double_data when present, else data.
        values = pieces[8] or pieces[5]
        dtype = np.dtype("<f8" if pieces[8] else "<f4")
        count = sum(int(piece.size) for piece in values)
        expected = math.prod(shape)
        if count != expected:
            raise self.error(
                f"blob of shape {shape} needs {expected} values but the file holds {count}",
                where, start)
        if not values:
            array = np.zeros(shape, dtype)
        elif len(values) == 1:
            array = values[0]
        else:
            array = np.concatenate(values)
        array = array.reshape(shape)
        array.flags.writeable = False
        return array

    def unpacked_run(
        self, tag_at: int, end: int, key: int, width: int, where: str
    ) -> tuple[int, int]:
        """Counts the records `key, value` repeated from `tag_at`; returns (count, end)."""
        record = 1 + width
        available = (end - tag_at) // record
        if available == 0:
            raise self.overrun(f"field {key >> 3}", tag_at + record, end, where, tag_at)
        records = np.frombuffer(self.view, np.uint8, available * record, tag_at)
        records = records.reshape(available, record)
        mismatched = np.flatnonzero(records[:, 0] != key)
        count = int(mismatched[0]) if mismatched.size else available
        return count, tag_at + count * record


def _signed(value: int) -> int:
    """Two's-complement int64 of a decoded varint (negative int32s take 10 bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value
