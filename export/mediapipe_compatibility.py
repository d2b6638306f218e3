"""What MediaPipe Tasks' ImageSegmenter needs from a TFLite file, checked.

What MediaPipe's ImageSegmenter requires (google-ai-edge/mediapipe,
`tasks/cc/vision/image_segmenter/image_segmenter_graph.cc`,
`tasks/cc/vision/utils/image_tensor_specs.cc`,
`tasks/cc/components/processors/image_preprocessing_graph.cc`,
`tasks/cc/vision/image_segmenter/calculators/tensors_to_segmentation_calculator.cc`,
`tasks/cc/metadata/metadata_extractor.cc`; checked with mediapipe 1.2.3):

- a valid `Model` flatbuffer with one subgraph; input 0 of shape `(1, H, W, 3)` and
  type float32 or uint8 (int8 inputs are refused); if the input metadata has
  `ImageProperties`, their colour space is RGB;
- a float32 input needs `NormalizationOptions` with 1 or 3 values, all channels
  equal (per-channel values are "Unimplemented"): the image is mapped from [0, 255]
  by `(pixel - mean) / std`. A uint8 input gets the raw pixels 0..255 and the
  normalisation options are ignored, so the input's quantization must itself
  encode them: `scale == 1 / std`, `zero_point == mean`;
- the last output holds `(1, h, w, classes)` scores, float32 or uint8/int8 (which
  MediaPipe dequantizes); the first `TENSOR_AXIS_LABELS` file of the last output
  tensor's metadata gives the label names (`segmenter.labels`), one per line;
- the `SEGMENTER_METADATA` custom metadata of subgraph 0 sets the activation: NONE
  (the default, scores used as they are), SIGMOID or SOFTMAX, applied to the
  confidence masks only;
- masks come back at the input image's size: the confidence masks resized with
  OpenCV's bilinear `cv2.resize`, the category mask the argmax of the scores
  interpolated corner-aligned (one channel: 0 where `score > 0.5`, else 255), so
  for an output smaller than the input it is not exactly the argmax of the
  confidence masks;
- associated files are stored uncompressed (`ZIP_STORED`): MediaPipe reads them in
  place.

`image_segmenter_issues` checks a file against these rules; `segmenter_issues`
checks a model against metadata about to be written (`DeclaredMetadata`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from keras_deconvnet.export.tflite_flatbuffer import (
    ACTIVATION_SOFTMAX,
    ACTIVATIONS,
    COLOR_RGB,
    COLOR_SPACES,
    MALFORMED_ERRORS,
    SEGMENTER_METADATA_NAME,
    TENSOR_FLOAT32,
    TENSOR_INT8,
    TENSOR_UINT8,
    ModelInfo,
    TensorInfo,
    load_model,
    model_info,
)
from keras_deconvnet.export.tflite_metadata_reader import read_metadata


@dataclass(frozen=True)
class DeclaredMetadata:
    """What a segmenter's metadata declares, in the terms MediaPipe reads it.

    Args:
        mean: the input's `NormalizationOptions` means; `None` without them.
        std: their standard deviations; `None` without them.
        color_space: the input's `ImageProperties` colour space (`COLOR_SPACES`
            index, -1 for an unknown name); `None` without image properties.
        num_labels: the lines of the output's labels file; `None` without one.
        activation: the `SEGMENTER_METADATA` activation (`ACTIVATIONS` index);
            `None` without segmenter options.
        category_mask_output: the output holds class indices, not per-class scores.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color_space: int | None = None
    num_labels: int | None = None
    activation: int | None = None
    category_mask_output: bool = False


def _normalization_issues(
    image: TensorInfo, mean: tuple[float, ...], std: tuple[float, ...]
) -> list[str]:
    if len(mean) != len(std) or len(mean) not in (1, 3):
        return ["NormalizationOptions need 1 or 3 means and as many stds."]
    if len(set(mean)) > 1 or len(set(std)) > 1:
        return [
            "per-channel normalisation (different mean/std per channel) is "
            "'Unimplemented' in MediaPipe's image preprocessing."
        ]
    if std[0] == 0:
        return ["NormalizationOptions std must not be 0."]
    if image.type != TENSOR_UINT8 or not image.scale:
        return []
    # MediaPipe feeds the raw pixel p as q = p, which the model reads as
    # scale * (p - zero_point); it must equal (p - mean) / std.
    scale, zero_point = image.scale[0], image.zero_point[0] if image.zero_point else 0
    if math.isclose(scale, 1.0 / std[0], rel_tol=1e-3) and abs(zero_point - mean[0]) <= 0.5:
        return []
    return [
        f"uint8 input quantization (scale {scale:g}, zero point "
        f"{zero_point}) does not map pixels 0..255 to (pixel - {mean[0]:g}) "
        f"/ {std[0]:g}: MediaPipe feeds raw pixels to uint8 inputs. "
        f"Expected scale {1.0 / std[0]:g}, zero point {mean[0]:g} (for "
        "int8 conversion, calibrate on data spanning 0..255)."
    ]


def _input_issues(image: TensorInfo, declared: DeclaredMetadata) -> list[str]:
    issues = []
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] != 3:
        issues.append(f"input shape {list(image.shape)}: MediaPipe needs (1, height, width, 3).")
    if image.type not in (TENSOR_FLOAT32, TENSOR_UINT8):
        issues.append(
            f"input type {image.type_name}: MediaPipe takes float32 or uint8 images "
            "(convert int8 models with `inference_input_type=tf.uint8` or float32)."
        )
    if declared.color_space is not None and declared.color_space != COLOR_RGB:
        issues.append("the input's ImageProperties colour space must be RGB.")
    if image.type == TENSOR_FLOAT32 and declared.mean is None:
        issues.append("a float32 input needs NormalizationOptions metadata.")
    if declared.mean is not None and declared.std is not None:
        issues.extend(_normalization_issues(image, declared.mean, declared.std))
    return issues


def _output_issues(scores: TensorInfo, declared: DeclaredMetadata) -> list[str]:
    issues = []
    # MediaPipe's inference runner copies float32 outputs and dequantizes uint8 and
    # int8 ones; it would misread float16 (copied as float32) and refuses the other
    # types.
    if scores.type not in (TENSOR_FLOAT32, TENSOR_UINT8, TENSOR_INT8):
        issues.append(
            f"output type {scores.type_name}: MediaPipe reads float32, uint8 or int8 scores."
        )
    if not 2 <= len(scores.shape) <= 4 or (len(scores.shape) == 4 and scores.shape[0] != 1):
        issues.append(
            f"output shape {list(scores.shape)}: MediaPipe needs (1, height, width, classes)."
        )
    channels = scores.shape[-1] if len(scores.shape) >= 3 else 1
    if declared.num_labels is not None and declared.num_labels != channels:
        issues.append(f"{declared.num_labels} labels for an output of {channels} channels.")
    if declared.activation == ACTIVATION_SOFTMAX and channels == 1:
        issues.append("SOFTMAX activation needs more than one output channel.")
    return issues


def segmenter_issues(info: ModelInfo, declared: DeclaredMetadata) -> list[str]:
    """What would make MediaPipe's ImageSegmenter refuse or misread the model.

    Args:
        info: the model's subgraphs, inputs and outputs.
        declared: what its metadata says (or is about to say).

    Returns:
        One sentence per problem; empty if MediaPipe can use the model.
    """
    issues = []
    if info.num_subgraphs != 1:
        issues.append(f"the model has {info.num_subgraphs} subgraphs; MediaPipe needs exactly 1.")
    if len(info.inputs) != 1:
        issues.append(f"the model has {len(info.inputs)} inputs; an image segmenter takes 1.")
    if info.inputs:
        issues.extend(_input_issues(info.inputs[0], declared))
    if declared.category_mask_output:
        issues.append(
            "MediaPipe's ImageSegmenter needs per-class scores (1, h, w, classes), not a "
            "category mask output."
        )
    elif info.outputs:
        # image_segmenter_graph.cc reads the last output.
        issues.extend(_output_issues(info.outputs[-1], declared))
    return issues


def _declared_input(subgraph: dict) -> dict:
    """`mean`, `std` and `color_space` of the first input's metadata."""
    declared = {}
    inputs = subgraph.get("input_tensor_metadata") or []
    if not inputs:
        return declared
    for unit in inputs[0].get("process_units", []):
        if unit["options_type"] == "NormalizationOptions":
            declared["mean"] = tuple(unit.get("options", {}).get("mean", ()))
            declared["std"] = tuple(unit.get("options", {}).get("std", ()))
    properties = inputs[0].get("content", {})
    if properties.get("content_properties_type") == "ImageProperties":
        space = properties.get("content_properties", {}).get("color_space", "UNKNOWN")
        declared["color_space"] = COLOR_SPACES.index(space) if space in COLOR_SPACES else -1
    return declared


def _declared_labels(subgraph: dict, files: dict[str, bytes]) -> tuple[int | None, list[str]]:
    """The label count of the last output's labels file, and an issue if not packed."""
    outputs = subgraph.get("output_tensor_metadata") or []
    if not outputs:
        return None, []
    for file in outputs[-1].get("associated_files", []):
        if file.get("type") == "TENSOR_AXIS_LABELS":
            if file.get("name") not in files:
                return None, [f"the labels file {file.get('name')!r} is not packed in the model."]
            text = files[file["name"]].decode("utf-8").split("\n")
            return len(text) - (text[-1] == ""), []
    return None, []


def image_segmenter_issues(tflite_model: bytes | bytearray | memoryview) -> list[str]:
    """Lists what would make MediaPipe's ImageSegmenter refuse or misread a model.

    Checks the model and its metadata against what MediaPipe Tasks' image segmenter
    reads (see the module docstring): one subgraph, a `(1, H, W, 3)` float32 or uint8
    input, `NormalizationOptions` equal across channels for a float input (and a uint8
    input's quantization matching them), an RGB colour space, a float32
    `(1, h, w, classes)` last output with as many labels, and that the labels file
    named in the metadata is packed in the file.

    Args:
        tflite_model: a `.tflite` file's bytes.

    Returns:
        One sentence per problem; empty if MediaPipe can use the file.

    Raises:
        ValueError: if `tflite_model` is not a TFLite flatbuffer.

    Example:

    >>> import tensorflow as tf
    >>> from keras_deconvnet.export import ImageSegmenterMetadata, add_image_segmenter_metadata
    >>> softmax = tf.function(
    ...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [softmax.get_concrete_function()], tf.Module()).convert()
    >>> image_segmenter_issues(flatbuffer)
    ['a float32 input needs NormalizationOptions metadata.']
    >>> image_segmenter_issues(add_image_segmenter_metadata(
    ...     flatbuffer, ImageSegmenterMetadata(labels=list("abc"))))
    []
    """
    try:
        model, files = load_model(tflite_model)
        info = model_info(model)
    except MALFORMED_ERRORS as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error
    metadata = read_metadata(tflite_model)
    subgraph = (metadata.get("subgraph_metadata") or [{}])[0]
    num_labels, label_issues = _declared_labels(subgraph, files)
    activation = None
    for custom in subgraph.get("custom_metadata", []):
        if custom.get("name") == SEGMENTER_METADATA_NAME and "data" in custom:
            activation = ACTIVATIONS.index(custom["data"]["activation"])
    declared = DeclaredMetadata(
        **_declared_input(subgraph), num_labels=num_labels, activation=activation
    )
    return segmenter_issues(info, declared) + label_issues
