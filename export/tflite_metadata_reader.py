"""Reads a TFLite model's metadata back, as flatc's JSON output would show it.

The reader follows `metadata_schema.fbs` (and MediaPipe's
`image_segmenter_metadata_schema.fbs` for the `SEGMENTER_METADATA` custom metadata)
with this package's own flatbuffer reader: no tflite-support, no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras_deconvnet.export.tflite_flatbuffer import (
    ACTIVATIONS,
    ASSOCIATED_FILE_TYPES,
    BOUNDING_BOX_TYPES,
    COLOR_SPACES,
    CONTENT_AUDIO_PROPERTIES,
    CONTENT_BOUNDING_BOX_PROPERTIES,
    CONTENT_IMAGE_PROPERTIES,
    CONTENT_PROPERTIES,
    COORDINATE_TYPES,
    MALFORMED_ERRORS,
    METADATA_BUFFER_NAME,
    METADATA_FILE_IDENTIFIER,
    OPTIONS_NORMALIZATION,
    OPTIONS_SCORE_CALIBRATION,
    OPTIONS_SCORE_THRESHOLDING,
    PROCESS_UNIT_OPTIONS,
    SCORE_TRANSFORMATIONS,
    SEGMENTER_METADATA_NAME,
    SEGMENTER_OPTIONS_FILE_IDENTIFIER,
    FlatbufferTable,
    buffer_data,
    load_model,
    metadata_entries,
    root_table,
)


def _enum(names: Sequence[str], value: int) -> str | int:
    return names[value] if 0 <= value < len(names) else value


def _drop_none(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value is not None}


def _read_associated_file(table: FlatbufferTable) -> dict:
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "type": _enum(ASSOCIATED_FILE_TYPES, table.scalar(2, "b")),
            "locale": table.string(3),
            "version": table.string(4),
        }
    )


def _read_associated_files(table: FlatbufferTable, slot: int) -> list[dict] | None:
    files = table.tables(slot)
    return None if files is None else [_read_associated_file(f) for f in files]


def _read_content(table: FlatbufferTable) -> dict:
    kind = table.scalar(0, "B")
    properties = table.table(1)
    content: dict[str, Any] = {"content_properties_type": _enum(CONTENT_PROPERTIES, kind)}
    if properties is not None:
        if kind == CONTENT_IMAGE_PROPERTIES:  # ImageProperties: color_space 0, default_size 1.
            size = properties.table(1)
            content["content_properties"] = _drop_none(
                {
                    "color_space": _enum(COLOR_SPACES, properties.scalar(0, "b")),
                    "default_size": None
                    if size is None
                    else {"width": size.scalar(0, "I"), "height": size.scalar(1, "I")},
                }
            )
        elif kind == CONTENT_BOUNDING_BOX_PROPERTIES:
            # BoundingBoxProperties: index 0, type 1, coordinate_type 2.
            content["content_properties"] = _drop_none(
                {
                    "index": properties.scalars(0, "I"),
                    "type": _enum(BOUNDING_BOX_TYPES, properties.scalar(1, "b")),
                    "coordinate_type": _enum(COORDINATE_TYPES, properties.scalar(2, "b")),
                }
            )
        elif kind == CONTENT_AUDIO_PROPERTIES:  # AudioProperties: sample_rate 0, channels 1.
            content["content_properties"] = {
                "sample_rate": properties.scalar(0, "I"),
                "channels": properties.scalar(1, "I"),
            }
        else:  # FeatureProperties has no fields.
            content["content_properties"] = {}
    value_range = table.table(2)
    if value_range is not None:  # ValueRange: min 0, max 1.
        content["range"] = {"min": value_range.scalar(0, "i"), "max": value_range.scalar(1, "i")}
    return content


def _read_process_unit(table: FlatbufferTable) -> dict:
    kind = table.scalar(0, "B")
    options = table.table(1)
    unit: dict[str, Any] = {"options_type": _enum(PROCESS_UNIT_OPTIONS, kind)}
    if options is None:
        return unit
    if kind == OPTIONS_NORMALIZATION:  # NormalizationOptions: mean 0, std 1.
        unit["options"] = _drop_none(
            {"mean": options.scalars(0, "f"), "std": options.scalars(1, "f")}
        )
    elif kind == OPTIONS_SCORE_CALIBRATION:
        # ScoreCalibrationOptions: score_transformation 0, default_score 1.
        unit["options"] = {
            "score_transformation": _enum(SCORE_TRANSFORMATIONS, options.scalar(0, "b")),
            "default_score": options.scalar(1, "f", 0.0),
        }
    elif kind == OPTIONS_SCORE_THRESHOLDING:  # ScoreThresholdingOptions: global_score_threshold 0.
        unit["options"] = {"global_score_threshold": options.scalar(0, "f", 0.0)}
    # Tokenizer options are reported by type only.
    return unit


def _read_process_units(table: FlatbufferTable, slot: int) -> list[dict] | None:
    units = table.tables(slot)
    return None if units is None else [_read_process_unit(u) for u in units]


def _read_tensor_metadata(table: FlatbufferTable) -> dict:
    content = table.table(3)
    stats = table.table(5)
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "dimension_names": table.strings(2),
            "content": None if content is None else _read_content(content),
            "process_units": _read_process_units(table, 4),
            # Stats: max 0, min 1.
            "stats": None
            if stats is None
            else _drop_none({"max": stats.scalars(0, "f"), "min": stats.scalars(1, "f")}),
            "associated_files": _read_associated_files(table, 6),
        }
    )


def _read_custom_metadata(table: FlatbufferTable) -> dict:
    name = table.string(0)
    data = table.byte_vector(1)
    custom: dict[str, Any] = _drop_none({"name": name})
    if data is None:
        return custom
    if name == SEGMENTER_METADATA_NAME and data[4:8] == SEGMENTER_OPTIONS_FILE_IDENTIFIER:
        options = root_table(
            memoryview(data), SEGMENTER_OPTIONS_FILE_IDENTIFIER, "segmenter options"
        )
        custom["data"] = _drop_none(
            {
                "activation": _enum(ACTIVATIONS, options.scalar(0, "b")),
                "min_parser_version": options.string(1),
            }
        )
    else:
        custom["data_size"] = len(data)
    return custom


def _read_subgraph_metadata(table: FlatbufferTable) -> dict:
    def tensors(slot):
        items = table.tables(slot)
        return None if items is None else [_read_tensor_metadata(t) for t in items]

    def groups(slot):  # TensorGroup: name 0, tensor_names 1.
        items = table.tables(slot)
        return (
            None
            if items is None
            else [_drop_none({"name": g.string(0), "tensor_names": g.strings(1)}) for g in items]
        )

    custom = table.tables(9)
    return _drop_none(
        {
            "name": table.string(0),
            "description": table.string(1),
            "input_tensor_metadata": tensors(2),
            "output_tensor_metadata": tensors(3),
            "associated_files": _read_associated_files(table, 4),
            "input_process_units": _read_process_units(table, 5),
            "output_process_units": _read_process_units(table, 6),
            "input_tensor_groups": groups(7),
            "output_tensor_groups": groups(8),
            "custom_metadata": None
            if custom is None
            else [_read_custom_metadata(c) for c in custom],
        }
    )


def _metadata_table(model: FlatbufferTable) -> FlatbufferTable | None:
    for entry_name, index in metadata_entries(model):
        if entry_name == METADATA_BUFFER_NAME:
            data = buffer_data(model, index)
            if data:
                return root_table(
                    memoryview(data), METADATA_FILE_IDENTIFIER, "TFLite metadata buffer"
                )
    return None


def read_metadata(tflite_model: bytes | bytearray | memoryview) -> dict:
    """Reads a TFLite model's metadata as a JSON-friendly dict.

    The keys are the `metadata_schema.fbs` field names and enums are given by name,
    as flatc's JSON output does; absent fields are left out. The `SEGMENTER_METADATA`
    custom metadata is decoded (`{"activation": "NONE"}`); other custom metadata is
    given by size. `packed_files` lists the files in the zip archive appended to the
    model.

    Args:
        tflite_model: a `.tflite` file's bytes.

    Returns:
        The metadata, `{}` if the model has no `TFLITE_METADATA`.

    Raises:
        ValueError: if `tflite_model` is not a TFLite flatbuffer, or its metadata
            buffer has not the metadata file identifier `M001`, or is malformed.

    Example:

    >>> import tensorflow as tf
    >>> relu = tf.function(tf.nn.relu, input_signature=[tf.TensorSpec([4], tf.float32)])
    >>> read_metadata(tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [relu.get_concrete_function()], tf.Module()).convert())
    {}
    """
    try:
        model, files = load_model(tflite_model)
        table = _metadata_table(model)
        if table is None:
            return {}
        subgraphs = table.tables(3)
        metadata = _drop_none(
            {
                "name": table.string(0),
                "description": table.string(1),
                "version": table.string(2),
                "subgraph_metadata": None
                if subgraphs is None
                else [_read_subgraph_metadata(s) for s in subgraphs],
                "author": table.string(4),
                "license": table.string(5),
                "associated_files": _read_associated_files(table, 6),
                "min_parser_version": table.string(7),
            }
        )
    except MALFORMED_ERRORS as error:
        raise ValueError(f"The TFLite model or its metadata is malformed: {error}") from error
    if files:
        metadata["packed_files"] = sorted(files)
    return metadata
