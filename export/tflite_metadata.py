"""TFLite model metadata for MediaPipe Tasks' ImageSegmenter, without tflite-support.

MediaPipe Tasks (`mediapipe.tasks.python.vision.ImageSegmenter`) and the TFLite Task
Library read *TFLite model metadata*: a `ModelMetadata` flatbuffer (schema
`metadata_schema.fbs`, file identifier `M001`) stored in one of the model's buffers and
named by a `Metadata{name: "TFLITE_METADATA", buffer: i}` entry of the TFLite `Model`
table, plus associated files (here `labels.txt`) packed as an uncompressed zip archive
appended to the flatbuffer. The usual writer, `tflite-support`, pins protobuf<4 and
cannot be installed next to TensorFlow 2.21; the writer inside the `mediapipe` wheel
(1.2.3) imports a native module the wheel does not ship. This package writes the few
tables an image segmenter needs with the `flatbuffers` Python runtime, following the
published schemas, and never imports TensorFlow to do so:

- `tflite_flatbuffer`: the schemas' identifiers, enums and field slots, a minimal
  flatbuffer reader, the model's tensors and packed files;
- `tflite_metadata_builder`: `ImageSegmenterMetadata` and the `ModelMetadata`
  flatbuffer it becomes;
- `tflite_metadata_populator`: `populate_metadata`, which stores it (and
  `labels.txt`) in the model;
- `tflite_metadata_reader`: `read_metadata`, which reads it back;
- `mediapipe_compatibility`: what MediaPipe's ImageSegmenter requires of the model
  and its metadata, and `image_segmenter_issues`, which checks a file against it;
- this module: `add_image_segmenter_metadata`, all of the above in one call.

Example:

>>> import zipfile, io
>>> import tensorflow as tf
>>> from keras_deconvnet.export import ImageSegmenterMetadata, read_metadata
>>> softmax = tf.function(
...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
>>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
...     [softmax.get_concrete_function()], tf.Module()).convert()
>>> model = add_image_segmenter_metadata(
...     flatbuffer, ImageSegmenterMetadata(labels=["sky", "sea", "sand"]))
>>> read_metadata(model)["subgraph_metadata"][0]["custom_metadata"][0]["data"]
{'activation': 'NONE', 'min_parser_version': '1.0.0'}
>>> zipfile.ZipFile(io.BytesIO(model)).read("labels.txt")
b'sky\\nsea\\nsand\\n'
"""

from __future__ import annotations

from keras_deconvnet.export.mediapipe_compatibility import DeclaredMetadata, segmenter_issues
from keras_deconvnet.export.tflite_flatbuffer import (
    COLOR_RGB,
    LABELS_FILE_NAME,
    MALFORMED_ERRORS,
    TFLITE_FILE_IDENTIFIER,
    ModelInfo,
    model_info,
    root_table,
    split_packed_files,
)
from keras_deconvnet.export.tflite_metadata_builder import (
    ACTIVATION_FOR_OUTPUT,
    ImageSegmenterMetadata,
    build_segmenter_metadata,
)
from keras_deconvnet.export.tflite_metadata_populator import populate_metadata


def _check_segmenter_shape(info: ModelInfo, metadata: ImageSegmenterMetadata) -> None:
    """One input, one output, and one label per output channel."""
    # The metadata lists one TensorMetadata per subgraph input and output, in order.
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ValueError(
            "An image segmenter has one input and one output; the model has "
            f"{len(info.inputs)} inputs and {len(info.outputs)} outputs."
        )
    output = info.outputs[0]
    if not metadata.category_mask:
        channels = output.shape[-1] if len(output.shape) >= 3 else 1
        if channels != len(metadata.labels):
            raise ValueError(
                f"{len(metadata.labels)} labels for an output of shape "
                f"{list(output.shape)} ({channels} classes)."
            )


def _check_mediapipe(info: ModelInfo, metadata: ImageSegmenterMetadata) -> None:
    declared = DeclaredMetadata(
        mean=metadata.input_mean,
        std=metadata.input_std,
        color_space=COLOR_RGB,
        num_labels=None if metadata.category_mask else len(metadata.labels),
        activation=ACTIVATION_FOR_OUTPUT.get(metadata.output_type),
        category_mask_output=metadata.category_mask,
    )
    issues = segmenter_issues(info, declared)
    if issues:
        raise ValueError(
            "The model cannot be used by MediaPipe's ImageSegmenter: " + " ".join(issues)
        )


def add_image_segmenter_metadata(
    tflite_model: bytes | bytearray | memoryview,
    metadata: ImageSegmenterMetadata,
    *,
    check_mediapipe: bool = True,
) -> bytes:
    """Adds the image segmenter metadata MediaPipe Tasks and the Task Library read.

    Writes, for subgraph 0: input 0 as an RGB image (`ImageProperties`, its size when
    static) with `NormalizationOptions{input_mean, input_std}` and its value range as
    `Stats`; the output as per-class grayscale masks (`ImageProperties` GRAYSCALE,
    content dimensions 1..2) with `labels.txt` as its `TENSOR_AXIS_LABELS` file; and
    the `SEGMENTER_METADATA` custom metadata whose activation tells MediaPipe what the
    output holds: NONE for `"probabilities"` (used as they are), SOFTMAX for
    `"logits"`. `labels.txt` is packed in the file.

    Args:
        tflite_model: the `.tflite` file's bytes; metadata and packed files it already
            has are replaced.
        metadata: the labels, normalisation, names and output type to write (see
            `ImageSegmenterMetadata`).
        check_mediapipe: `True` (default): raise if MediaPipe's ImageSegmenter would
            refuse or misread the result (see `image_segmenter_issues`). `False`
            writes the metadata anyway, e.g. for an int8-input file meant for other
            runtimes.

    Returns:
        The `.tflite` file's bytes with metadata and `labels.txt` (see
        `populate_metadata`).

    Raises:
        ValueError: on a model that is not a TFLite flatbuffer or has several inputs
            or outputs, a label count that does not match the output channels, or
            (with `check_mediapipe`) a model MediaPipe cannot run.

    Example:

    >>> import tensorflow as tf
    >>> softmax = tf.function(
    ...     tf.nn.softmax, input_signature=[tf.TensorSpec([1, 8, 8, 2], tf.float32)])
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [softmax.get_concrete_function()], tf.Module()).convert()
    >>> add_image_segmenter_metadata(
    ...     flatbuffer, ImageSegmenterMetadata(labels=["a", "b"]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: The model cannot be used by MediaPipe's ImageSegmenter: input shape [1, 8, 8, 2]...
    """
    flatbuffer, _ = split_packed_files(tflite_model)
    try:
        info = model_info(root_table(flatbuffer, TFLITE_FILE_IDENTIFIER, "TFLite model"))
    except MALFORMED_ERRORS as error:
        raise ValueError(f"The TFLite model's flatbuffer is malformed: {error}") from error
    _check_segmenter_shape(info, metadata)
    if check_mediapipe:
        _check_mediapipe(info, metadata)
    return populate_metadata(
        flatbuffer,
        build_segmenter_metadata(metadata, info.inputs[0]),
        {LABELS_FILE_NAME: metadata.labels_file()},
    )
