"""ONNX export through tf2onnx, checked with `onnx.checker` and run in onnxruntime.

As Keras 3.15's own `model.export(format="onnx")` does on the TensorFlow backend, the
model is converted from a `tf.function` (here: RGB [0, 255] images -> the segmenter's
image converter -> model -> softmax) with `tf2onnx.convert.from_function`, after
Keras's numpy-2 patch for tf2onnx 1.17. The file has one input `images`, float32
`(batch, height, width, 3)` with a free batch size and the exported height and width,
and one output `probabilities`, float32 `(batch, height, width, num_classes)`.

The free dimension is named `batch` (tf2onnx names it `unk__N`), and every dimension
carries its ONNX denotation (`DATA_BATCH`, `DATA_FEATURE` for height and width,
`DATA_CHANNEL`), the input's type the denotation `IMAGE`. The model's
`metadata_props` (`onnx_metadata`) hold what a user of the file needs without this
package: class names, palette, input layout and channel order, value range, the
mean the graph subtracts, the output's meaning, and the image keys of ONNX's
MetadataProps.md (`Image.BitmapPixelFormat` `Rgb8`, `Image.ColorSpaceGamma` `SRGB`,
`Image.NominalPixelRange` `NominalRange_0_255`). onnxruntime reads them with
`InferenceSession(path).get_modelmeta().custom_metadata_map`.

Memory: tf2onnx freezes variables with `convert_variables_to_constants_v2`, which
holds several copies of every weight (it ran past 11 GB for the paper's 1 GB of
weights). The function is therefore traced with the weights as extra inputs (the
Keras variables mapped to them with `keras.StatelessScope`), converted without any
weight, and the weights are then written as the graph's initializers, one variable
at a time, under their Keras names. Weight layout changes tf2onnx would have folded
(kernel transposes, BatchNorm arithmetic) stay as ops on initializers, which
onnxruntime (and TensorRT, OpenVINO) fold when they load the file.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet import atomic_io
from keras_deconvnet.export import model_interface

# tf2onnx 1.17 supports opsets up to 18; 17 is what onnxruntime and most converters
# downstream (TensorRT, OpenVINO, CoreML tools) read without trouble.
DEFAULT_OPSET = 17
MAX_OPSET = 18
MIN_OPSET = 13


def check_opset(opset: int) -> None:
    """Raises `ValueError` unless `opset` is an int tf2onnx supports (13 to 18)."""
    if isinstance(opset, bool) or not isinstance(opset, int) or not (
        MIN_OPSET <= opset <= MAX_OPSET
    ):
        raise ValueError(
            f"`opset` must be an int from {MIN_OPSET} to {MAX_OPSET} (what tf2onnx 1.17 "
            f"supports). Received: opset={opset!r}"
        )


def export_onnx(
    model: keras.Model,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    image_shape: Sequence[int] | None = None,
    check: bool = True,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Converts `model` to ONNX, checks it and writes `path` atomically.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        path: the `.onnx` file to write; it must not exist.
        opset: the ONNX opset, 13 to 18. Defaults to `17`.
        image_shape: `(height, width)` to export at; needed when the model's input
            size is not fixed.
        check: run `onnx.checker.check_model` and one onnxruntime inference on zeros
            before writing. Defaults to `True`.
        class_names: the names written into the metadata; default `model.class_names`.

    Returns:
        The path written.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=4)
    >>> export_onnx(model, "deconvnet.onnx", image_shape=(96, 96))
    PosixPath('deconvnet.onnx')
    """
    check_opset(opset)
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"The output file already exists. Received: {path}")
    shape, num_classes = model_interface.segmentation_shapes(model, image_shape)
    import onnx
    import tf2onnx

    from keras_deconvnet.private_apis import patch_tf2onnx

    with warnings.catch_warnings():  # its `hasattr(np, "object")` warns on numpy 2
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()  # numpy 2 compatibility, as keras.Model.export(format="onnx")
    probabilities = model_interface.inference_function(model)
    variables = list(model.variables)
    names = _initializer_names(variables)
    spec = (
        tf.TensorSpec((None, *shape), tf.float32, name="images"),
        *(tf.TensorSpec(v.shape, v.dtype, name=n) for v, n in zip(variables, names)),
    )

    @tf.function(input_signature=spec)
    def serve(images, *weights):
        with keras.StatelessScope(state_mapping=list(zip(variables, weights))):
            return {"probabilities": probabilities(images)}

    metadata = onnx_metadata(model, shape, num_classes, class_names)
    with atomic_io.replacing(path) as partial:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
        _weights_to_initializers(proto, dict(zip(names, variables)))
        _name_dimensions(proto)
        onnx.helper.set_model_props(proto, metadata)
        proto.doc_string = metadata["description"]
        onnx.save(proto, str(partial))
        del proto
        if check:
            check_onnx(partial, shape, num_classes)
    return path


def onnx_metadata(
    model: keras.Model,
    image_shape: Sequence[int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, str]:
    """The `metadata_props` of an exported file: string keys to string values.

    JSON values (lists, numbers) are JSON-encoded. `palette` is the model's, or the
    VOC bit-wise palette the package draws with when the model has none.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> meta = onnx_metadata(model, (96, 96, 3), 3)
    >>> json.loads(meta["class_names"]), meta["input_layout"], meta["channel_order"]
    (['background', 'class_1', 'class_2'], 'NHWC', 'RGB')
    """
    import keras_deconvnet
    from keras_deconvnet.labels import bitwise_palette

    names = [str(n) for n in (class_names or getattr(model, "class_names", None)
                              or [f"class_{i}" for i in range(num_classes)])]
    if len(names) != num_classes:
        raise ValueError(f"`class_names` must have one name per class ({num_classes}). "
                         f"Received: {len(names)} names")
    palette = getattr(model, "palette", None)
    palette = [list(map(int, c)) for c in palette] if palette else \
        bitwise_palette()[:num_classes].tolist()
    config = model_interface.preprocessing_config(model) or {}
    scale = float(config.get("scale") or 1.0)
    offset = config.get("offset") or [0.0]
    offset = offset if isinstance(offset, (list, tuple)) else [offset]
    mean = [-float(o) / scale for o in offset]
    height, width = (int(d) for d in image_shape[:2])
    return {
        "description": (
            f"{type(model).__name__}: RGB images -> per-pixel class probabilities "
            f"({num_classes} classes). Input 'images' float32 (batch, {height}, {width}, "
            "3), NHWC, RGB, values 0..255 (not normalised: the graph subtracts the mean "
            "itself). Output 'probabilities' float32 (batch, height, width, classes), "
            "softmax over the last axis; argmax gives the label map."),
        "class_names": json.dumps(names),
        "num_classes": str(num_classes),
        "palette": json.dumps(palette),
        "input_name": "images",
        "input_layout": "NHWC",
        "channel_order": "RGB",
        "input_dtype": "float32",
        "input_value_range": "[0, 255]",
        "image_shape": json.dumps([height, width, 3]),
        "normalization": "inside the graph: (pixel - mean) / std per channel",
        "mean": json.dumps(mean),
        "std": json.dumps([1.0 / scale] * len(mean)),
        "output_name": "probabilities",
        "output_layout": "NHWC (batch, height, width, num_classes)",
        "output": "softmax probabilities; label = argmax over the last axis",
        # ONNX MetadataProps.md image keys (WinML and other image-aware runtimes).
        "Image.BitmapPixelFormat": "Rgb8",
        "Image.ColorSpaceGamma": "SRGB",
        "Image.NominalPixelRange": "NominalRange_0_255",
        "keras_deconvnet_version": str(getattr(keras_deconvnet, "__version__", "")),
    }


# Names and ONNX denotations of the input's and output's four axes.
_AXES = (("batch", "DATA_BATCH"), ("height", "DATA_FEATURE"), ("width", "DATA_FEATURE"),
         (None, "DATA_CHANNEL"))


def _name_dimensions(proto) -> None:
    """Names the free batch axis `batch` (was `unk__N`) everywhere, and denotes axes.

    Fixed axes keep their sizes; a free height or width (none today) would be named
    `height` / `width`. Every `unk__N` that named an input or output axis is renamed
    in the graph's value_info too, so the file uses one name per axis.
    """
    renames: dict[str, str] = {}
    ends = [(v, True) for v in proto.graph.input] + [(v, False) for v in proto.graph.output]
    for value, is_input in ends:
        tensor = value.type.tensor_type
        if len(tensor.shape.dim) != 4:
            continue
        if is_input:
            value.type.denotation = "IMAGE"
        for dim, (name, denotation) in zip(tensor.shape.dim, _AXES):
            dim.denotation = denotation
            if name and dim.HasField("dim_param"):
                renames[dim.dim_param] = name
                dim.dim_param = name
    for value in proto.graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def _initializer_names(variables) -> list[str]:
    """Unique graph-input names from the variables' Keras paths."""
    names, seen = [], set()
    for variable in variables:
        name = re.sub(r"[^A-Za-z0-9_]", "_", getattr(variable, "path", variable.name))
        unique, count = name, 1
        while unique in seen or unique == "images":
            count += 1
            unique = f"{name}_{count}"
        seen.add(unique)
        names.append(unique)
    return names


def _weights_to_initializers(proto, variables: dict) -> None:
    """Turns the weight inputs of `proto`'s graph into initializers holding the
    variables' values (one at a time: one weight copy in memory beyond the proto)."""
    import onnx

    inputs = list(proto.graph.input)
    del proto.graph.input[:]
    for graph_input in inputs:
        variable = variables.get(graph_input.name)
        if variable is None:
            proto.graph.input.append(graph_input)
            continue
        proto.graph.initializer.append(
            onnx.numpy_helper.from_array(np.asarray(variable.numpy()), graph_input.name)
        )


def check_onnx(
    path: str | os.PathLike,
    image_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> None:
    """Runs `onnx.checker` and one onnxruntime inference; raises `ValueError` on failure."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"The ONNX model does not pass onnx.checker: {e}") from e
    session = onnx_session(path)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"The ONNX model must have one input. Received: {len(inputs)}")
    if image_shape is not None:
        outputs = session.run(
            None, {inputs[0].name: np.zeros((1, *image_shape), np.float32)}
        )
        expected = (1, *image_shape[:2], num_classes)
        if outputs[0].shape != expected or not np.all(np.isfinite(outputs[0])):
            raise ValueError(
                f"The ONNX model's output should be finite, of shape {expected}. "
                f"Received: shape={outputs[0].shape}"
            )


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU `InferenceSession` for `path`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
