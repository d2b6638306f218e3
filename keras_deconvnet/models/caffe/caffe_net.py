"""What a caffemodel holds, once read: `CaffeNet`, its `CaffeLayer`s and their blobs.

`keras_deconvnet.models.caffe.caffemodel.read_caffemodel` builds these from a file; the
converters map them onto Keras layers. V1 layer types are enums whose names depend on the
Caffe fork that wrote the file: `BVLC_V1_LAYER_TYPES` holds the values every Caffe agrees
on, `FORK_V1_LAYER_TYPES` the additions of HyeonwooNoh/caffe (DeconvNet's).

Example:

>>> import numpy as np
>>> layer = CaffeLayer("conv1_1", 4, ("data",), ("conv1_1",),
...                    (np.zeros((64, 3, 3, 3), np.float32), np.zeros(64, np.float32)))
>>> layer.type_name, layer.blob_shapes
('CONVOLUTION', ((64, 3, 3, 3), (64,)))
>>> net = CaffeNet("<bytes>", "tiny", "V1", (layer,), ("data",), ((1, 3, 224, 224),))
>>> "conv1_1" in net, len(net), net.num_parameters
(True, 1, 1792)
"""

from __future__ import annotations

import mmap
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
    "MAX_MESSAGE_CHARS",
    "short_text",
]

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



# Error messages are one line of at most this many characters: a hostile file can hold
# a 16 MB name or list, and the message must stay readable.
MAX_MESSAGE_CHARS = 400


def short_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` on one line, cut to `limit` characters with the number left out.

    Example:

    >>> short_text("a\\nb" + "c" * 500, 40)
    'a bccccccccccccccccccc…(+481 characters)'
    """
    text = " ".join(str(text).splitlines())
    if len(text) <= limit:
        return text
    keep = limit - len(f"…(+{len(text):,} characters)")
    return text[: max(0, keep)] + f"…(+{len(text) - max(0, keep):,} characters)"


class CaffeModelError(ValueError):
    """A file is not a readable binary Caffe NetParameter (truncated, foreign, corrupt).

    The message is kept to one line of at most `MAX_MESSAGE_CHARS` characters.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(short_text(str(message)))


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
                known = ", ".join(short_text(repr(layer.name), 40)
                                  for layer in self.layers[:40])
                raise KeyError(short_text(
                    f"{self.path}: no layer named {short_text(repr(name), 80)}. "
                    f"Layers: {known}"))
            raise KeyError(short_text(
                f"{self.path}: {len(found)} layers are named {short_text(repr(name), 80)}; "
                "use layers_named()"))
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
