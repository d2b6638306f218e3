"""Tests of `keras_deconvnet.export.tflite_metadata` (and the modules it writes with):
metadata MediaPipe's ImageSegmenter accepts, written without tflite-support.

The models are a tiny plain Keras network (not the package's models), converted to
float32, float16 and full-int8 TFLite files. Each file gets metadata, then: it still
runs with identical outputs, `read_metadata` and the reference readers (TensorFlow's
generated TFLite schema code, MediaPipe's generated metadata schema code) read back
what was written, `labels.txt` is in the appended zip, and MediaPipe's ImageSegmenter
loads it and segments like our own interpreter.
"""

import io
import json
import warnings
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_deconvnet.export import (
    ImageSegmenterMetadata,
    add_image_segmenter_metadata,
    image_segmenter_issues,
    populate_metadata,
    read_metadata,
)

SIZE = 32
LABELS = ["background", "sky", "road", "car"]
# float32 / float16 weights / int8 with float I/O / int8 with uint8 I/O.
KINDS = ("float32", "float16", "int8", "int8_uint8")


def _calibration(count=16):
    rng = np.random.default_rng(7)
    for _ in range(count):
        image = rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)
        # Pixels 0 and 255 in every sample: calibration then gives a uint8 input the
        # scale 1 / zero point 0 that maps raw pixels to themselves, which MediaPipe
        # (feeding raw pixels to uint8 inputs) needs.
        image[0, 0, 0] = 0.0
        image[0, 0, 1] = 255.0
        yield [image]


def _convert(network, kind):
    function = tf.function(
        lambda images: network(images),
        input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], tf.Module()
    )
    if kind == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif kind.startswith("int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if kind == "int8_uint8":
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        elif kind == "int8_int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # Float input/output of an int8 file is intended, not missing statistics.
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        return converter.convert()


def _network(softmax=True):
    # Like our exports: RGB [0, 255] in, normalisation inside the graph.
    layers = [
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Rescaling(1 / 127.5, offset=-1.0),
        keras.layers.Conv2D(len(LABELS), 3, padding="same"),
    ]
    if softmax:
        layers.append(keras.layers.Softmax())
    return keras.Sequential(layers)


@pytest.fixture(scope="module")
def models():
    """Bare TFLite files by kind, plus `"logits"` (no softmax) and `"int8_int8"`."""
    keras.utils.set_random_seed(3)
    network = _network()
    files = {kind: _convert(network, kind) for kind in (*KINDS, "int8_int8")}
    files["logits"] = _convert(_network(softmax=False), "float32")
    return files


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(11).integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)


def _run(flatbuffer, image):
    """The file's output for one uint8 RGB image, dequantized to float32."""
    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    batch = image[None].astype(np.float32)
    if source["dtype"] != np.float32:
        scale, zero_point = source["quantization"]
        batch = np.round(batch / scale + zero_point).astype(source["dtype"])
    interpreter.set_tensor(source["index"], batch)
    interpreter.invoke()
    output = interpreter.get_tensor(target["index"])
    if target["dtype"] != np.float32:
        scale, zero_point = target["quantization"]
        output = (output.astype(np.float32) - zero_point) * scale
    return output[0]


def _details(flatbuffer):
    interpreter = Interpreter(model_content=flatbuffer)
    keys = ("name", "shape", "dtype", "quantization")
    return [
        {key: np.asarray(d[key]).tolist() for key in keys}
        for d in interpreter.get_input_details() + interpreter.get_output_details()
    ]


def _with_metadata(flatbuffer, check_mediapipe=True, **overrides):
    metadata = ImageSegmenterMetadata(**{"labels": LABELS, **overrides})
    return add_image_segmenter_metadata(flatbuffer, metadata, check_mediapipe=check_mediapipe)


# --- The file still runs, unchanged ---------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_identical_after_adding_metadata(models, image, kind):
    with_metadata = _with_metadata(models[kind])
    assert _details(with_metadata) == _details(models[kind])
    np.testing.assert_array_equal(_run(with_metadata, image), _run(models[kind], image))


@pytest.mark.parametrize("kind", KINDS)
def test_model_tables_and_weights_are_preserved(models, kind):
    # TensorFlow's generated reader of schema.fbs, independent of ours.
    from tensorflow.lite.python import schema_py_generated as schema

    before = schema.ModelT.InitFromPackedBuf(bytearray(models[kind]), 0)
    with_metadata = _with_metadata(models[kind])
    after_model = schema.Model.GetRootAs(bytearray(with_metadata), 0)
    after = schema.ModelT.InitFromObj(after_model)

    assert after.version == before.version
    assert len(after.subgraphs) == len(before.subgraphs) == 1
    assert len(after.buffers) == len(before.buffers) + 1
    for old, new in zip(before.buffers, after.buffers):
        np.testing.assert_array_equal(
            np.asarray(new.data if new.data is not None else []),
            np.asarray(old.data if old.data is not None else []),
        )
    # The converter's entries (min_runtime_version, CONVERSION_METADATA) are kept.
    old_entries = [(m.name, m.buffer) for m in before.metadata]
    new_entries = [(m.name, m.buffer) for m in after.metadata]
    assert new_entries[: len(old_entries)] == old_entries
    assert b"min_runtime_version" in [name for name, _ in old_entries]
    assert new_entries[-1] == (b"TFLITE_METADATA", len(after.buffers) - 1)
    metadata_buffer = bytes(np.asarray(after.buffers[-1].data, np.uint8))
    assert metadata_buffer[4:8] == b"M001"

    # Buffer data keeps its alignment: the weights move by a multiple of 16 bytes (the
    # converter's own file does not align them all to 16, schema.fbs's force_align),
    # and the metadata buffer is aligned.
    before_model = schema.Model.GetRootAs(bytearray(models[kind]), 0)
    positions = [_data_position(before_model, i) for i in range(before_model.BuffersLength())]
    new_positions = [_data_position(after_model, i) for i in range(after_model.BuffersLength())]
    shifts = {new - old for old, new in zip(positions, new_positions) if old is not None}
    assert len(shifts) == 1 and shifts.pop() % 16 == 0
    assert new_positions[-1] % 16 == 0


def _data_position(model, index):
    """Where buffer `index`'s data starts in the file (generated reader's table)."""
    table = model.Buffers(index)._tab
    offset = table.Offset(4)  # Buffer.data, slot 0
    return table.Vector(offset) if offset and table.VectorLen(offset) else None


# --- What was written, read back ------------------------------------------------------


def test_read_metadata_returns_what_was_written(models):
    with_metadata = _with_metadata(
        models["float32"],
        name="DeconvNet tiny",
        description="A test model.",
        version="1.2.3",
        author="keras-deconvnet",
        license="Apache-2.0",
    )
    metadata = read_metadata(with_metadata)
    assert json.loads(json.dumps(metadata)) == metadata  # JSON-friendly
    assert metadata == {
        "name": "DeconvNet tiny",
        "description": "A test model.",
        "version": "1.2.3",
        "author": "keras-deconvnet",
        "license": "Apache-2.0",
        "min_parser_version": "1.5.0",
        "packed_files": ["labels.txt"],
        "subgraph_metadata": [
            {
                "input_tensor_metadata": [
                    {
                        "name": "image",
                        "description": "Input image to be segmented: RGB, pixels 0..255.",
                        "content": {
                            "content_properties_type": "ImageProperties",
                            "content_properties": {
                                "color_space": "RGB",
                                "default_size": {"width": SIZE, "height": SIZE},
                            },
                        },
                        "process_units": [
                            {
                                "options_type": "NormalizationOptions",
                                "options": {"mean": [0.0], "std": [1.0]},
                            }
                        ],
                        "stats": {"max": [255.0], "min": [0.0]},
                    }
                ],
                "output_tensor_metadata": [
                    {
                        "name": "segmentation_masks",
                        "description": "Per-pixel class probabilities (softmax), one "
                        "channel per class.",
                        "content": {
                            "content_properties_type": "ImageProperties",
                            "content_properties": {"color_space": "GRAYSCALE"},
                            "range": {"min": 1, "max": 2},
                        },
                        "associated_files": [
                            {
                                "name": "labels.txt",
                                "description": "Class names, one per line: line i names "
                                "channel i of the output.",
                                "type": "TENSOR_AXIS_LABELS",
                            }
                        ],
                    }
                ],
                "custom_metadata": [
                    {
                        "name": "SEGMENTER_METADATA",
                        "data": {"activation": "NONE", "min_parser_version": "1.0.0"},
                    }
                ],
            }
        ],
    }


def test_read_metadata_of_quantized_and_logit_files(models):
    uint8 = read_metadata(_with_metadata(models["int8_uint8"]))["subgraph_metadata"][0]
    image_metadata = uint8["input_tensor_metadata"][0]
    # Raw pixels reach a uint8 input; the float model's normalisation is recorded.
    assert image_metadata["stats"] == {"max": [255.0], "min": [0.0]}
    assert image_metadata["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}

    per_channel = _with_metadata(
        models["float32"],
        input_mean=[10.0, 20.0, 30.0],
        input_std=[2.0, 4.0, 5.0],
        check_mediapipe=False,
    )
    image_metadata = read_metadata(per_channel)["subgraph_metadata"][0][
        "input_tensor_metadata"
    ][0]
    assert image_metadata["process_units"][0]["options"] == {
        "mean": [10.0, 20.0, 30.0],
        "std": [2.0, 4.0, 5.0],
    }
    assert image_metadata["stats"] == {"max": [122.5, 58.75, 45.0], "min": [-5.0, -5.0, -6.0]}

    logits = read_metadata(_with_metadata(models["logits"], output_type="logits"))
    assert logits["subgraph_metadata"][0]["custom_metadata"][0]["data"]["activation"] == (
        "SOFTMAX"
    )


def test_metadata_matches_the_reference_schema_reader(models):
    # MediaPipe ships code generated from metadata_schema.fbs and
    # image_segmenter_metadata_schema.fbs: an independent check of our field slots.
    generated = pytest.importorskip(
        "mediapipe.tasks.metadata.metadata_schema_py_generated",
        reason="mediapipe has no wheel for this platform",
    )
    segmenter = pytest.importorskip(
        "mediapipe.tasks.metadata.image_segmenter_metadata_schema_py_generated"
    )
    from tensorflow.lite.python import schema_py_generated as schema

    with_metadata = _with_metadata(
        models["logits"], output_type="logits", input_mean=[127.5], input_std=[127.5],
        name="n", description="d", version="v", author="a", license="l",
    )
    model = schema.ModelT.InitFromPackedBuf(bytearray(with_metadata), 0)
    entry = [m for m in model.metadata if m.name == b"TFLITE_METADATA"][0]
    buffer = bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8))
    assert generated.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    metadata = generated.ModelMetadataT.InitFromPackedBuf(buffer, 0)

    assert (metadata.name, metadata.description, metadata.version) == (b"n", b"d", b"v")
    assert (metadata.author, metadata.license) == (b"a", b"l")
    assert metadata.minParserVersion == b"1.5.0"
    (subgraph,) = metadata.subgraphMetadata
    (image,) = subgraph.inputTensorMetadata
    assert image.content.contentPropertiesType == generated.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == generated.ColorSpaceType.RGB
    size = image.content.contentProperties.defaultSize
    assert (size.width, size.height) == (SIZE, SIZE)
    (unit,) = image.processUnits
    assert unit.optionsType == generated.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [127.5] and list(unit.options.std) == [127.5]
    assert list(image.stats.min) == [-1.0] and list(image.stats.max) == [1.0]
    (masks,) = subgraph.outputTensorMetadata
    assert masks.content.contentProperties.colorSpace == generated.ColorSpaceType.GRAYSCALE
    assert (masks.content.range.min, masks.content.range.max) == (1, 2)
    (labels,) = masks.associatedFiles
    assert labels.name == b"labels.txt"
    assert labels.type == generated.AssociatedFileType.TENSOR_AXIS_LABELS
    assert labels.locale is None
    (custom,) = subgraph.customMetadata
    assert custom.name == b"SEGMENTER_METADATA"
    data = bytes(np.asarray(custom.data, np.uint8))
    assert segmenter.ImageSegmenterOptions.ImageSegmenterOptionsBufferHasIdentifier(data, 0)
    options = segmenter.ImageSegmenterOptionsT.InitFromPackedBuf(data, 0)
    assert options.activation == segmenter.Activation.SOFTMAX


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_packed_as_an_uncompressed_zip(models, kind):
    with_metadata = _with_metadata(models[kind])
    with zipfile.ZipFile(io.BytesIO(with_metadata)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["labels.txt"]
        assert archive.getinfo("labels.txt").compress_type == zipfile.ZIP_STORED
        assert archive.read("labels.txt").decode().splitlines() == LABELS
    # Deterministic: the same input gives the same bytes.
    assert _with_metadata(models[kind]) == with_metadata


def test_adding_metadata_again_replaces_it(models, image):
    once = _with_metadata(models["float32"], version="1")
    twice = _with_metadata(once, labels=["a", "b", "c", "d"], version="2")
    from tensorflow.lite.python import schema_py_generated as schema

    first = schema.ModelT.InitFromPackedBuf(bytearray(once), 0)
    second = schema.ModelT.InitFromPackedBuf(bytearray(twice), 0)
    # The TFLITE_METADATA buffer is reused, not appended again.
    assert len(second.buffers) == len(first.buffers)
    assert [m.name for m in second.metadata] == [m.name for m in first.metadata]
    assert read_metadata(twice)["version"] == "2"
    with zipfile.ZipFile(io.BytesIO(twice)) as archive:
        assert archive.namelist() == ["labels.txt"]
        assert archive.read("labels.txt") == b"a\nb\nc\nd\n"
    np.testing.assert_array_equal(_run(twice, image), _run(models["float32"], image))


def test_populate_metadata_packs_the_given_files(models):
    first = _with_metadata(models["float32"])
    files = {"labels.txt": b"x\n", "README.txt": b"hello"}
    again = populate_metadata(first, _metadata_buffer(first), files)
    assert read_metadata(again)["packed_files"] == ["README.txt", "labels.txt"]
    assert _metadata_buffer(again) == _metadata_buffer(first)
    with zipfile.ZipFile(io.BytesIO(again)) as archive:
        assert {name: archive.read(name) for name in archive.namelist()} == files
    with pytest.raises(ValueError, match="M001"):
        populate_metadata(models["float32"], b"\0" * 16)


def _metadata_buffer(flatbuffer):
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(flatbuffer), 0)
    entry = [m for m in model.metadata if m.name == b"TFLITE_METADATA"][0]
    return bytes(np.asarray(model.buffers[entry.buffer].data, np.uint8))


def test_read_metadata_of_a_bare_model_is_empty(models):
    assert read_metadata(models["float32"]) == {}


# --- Validation -----------------------------------------------------------------------


def test_image_segmenter_issues(models):
    assert image_segmenter_issues(models["float32"]) == [
        "a float32 input needs NormalizationOptions metadata."
    ]
    for kind in KINDS:
        assert image_segmenter_issues(_with_metadata(models[kind])) == [], kind
    int8_input = _with_metadata(models["int8_int8"], check_mediapipe=False)
    assert any("input type INT8" in issue for issue in image_segmenter_issues(int8_input))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"labels": LABELS[:3]}, "3 labels for an output"),
        ({"labels": "abcd"}, "sequence of strings"),
        ({"labels": ["a", "b\nc", "d", "e"]}, "one line"),
        ({"labels": ["a", "", "d", "e"]}, "non-empty"),
        ({"input_mean": [0.0, 0.0]}, "1 or 3"),
        ({"input_mean": [0.0, 0.0, 0.0]}, "as many values"),
        ({"input_std": [0.0]}, "must not be 0"),
        ({"input_std": [float("nan")]}, "finite"),
        ({"output_type": "argmax"}, "output_type"),
    ],
)
def test_invalid_arguments(models, overrides, message):
    with pytest.raises(ValueError, match=message):
        _with_metadata(models["float32"], **overrides)


def test_models_mediapipe_cannot_use_are_refused_unless_asked(models):
    # MediaPipe refuses int8 input tensors.
    with pytest.raises(ValueError, match="input type INT8"):
        _with_metadata(models["int8_int8"])
    assert read_metadata(_with_metadata(models["int8_int8"], check_mediapipe=False))
    # MediaPipe's preprocessing has no per-channel normalisation.
    with pytest.raises(ValueError, match="per-channel"):
        _with_metadata(models["float32"], input_mean=[1.0, 2.0, 3.0], input_std=[1.0] * 3)
    # MediaPipe feeds raw pixels to a uint8 input, whose scale 1 / zero point 0 do not
    # make (pixel - 127.5) / 127.5.
    with pytest.raises(ValueError, match="uint8 input quantization"):
        _with_metadata(models["int8_uint8"], input_mean=[127.5], input_std=[127.5])
    # A class-index output is no per-class score map.
    with pytest.raises(ValueError, match="category mask output"):
        _with_metadata(models["float32"], output_type="category_mask")
    written = _with_metadata(models["float32"], output_type="category_mask", check_mediapipe=False)
    files = read_metadata(written)["subgraph_metadata"][0]["output_tensor_metadata"][0][
        "associated_files"
    ]
    assert files[0]["type"] == "TENSOR_VALUE_LABELS"


def test_not_a_tflite_model():
    with pytest.raises(ValueError, match="TFL3"):
        _with_metadata(b"\0" * 64)
    with pytest.raises(ValueError, match="TFL3"):
        read_metadata(b"not a model at all")


# --- MediaPipe Tasks' ImageSegmenter --------------------------------------------------


def _segmenter(flatbuffer):
    vision = pytest.importorskip(
        "mediapipe.tasks.python.vision", reason="mediapipe has no wheel for this platform"
    )
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_buffer=flatbuffer),
        output_category_mask=True,
        output_confidence_masks=True,
    )
    return vision.ImageSegmenter.create_from_options(options)


def _segment(flatbuffer, image):
    import mediapipe as mp

    with _segmenter(flatbuffer) as segmenter:
        result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
        labels = segmenter.labels
        category = np.squeeze(result.category_mask.numpy_view()).copy()
        confidence = np.stack(
            [np.squeeze(mask.numpy_view()) for mask in result.confidence_masks], axis=-1
        )
    return labels, category, confidence


@pytest.mark.parametrize("kind", KINDS)
def test_mediapipe_image_segmenter_segments_like_the_interpreter(models, image, kind):
    with_metadata = _with_metadata(models[kind])
    # The image has the model's size: MediaPipe's resampling is then the identity, and
    # its float normalisation with mean 0 / std 1 too.
    labels, category, confidence = _segment(with_metadata, image)
    scores = _run(with_metadata, image)
    assert labels == LABELS
    assert category.shape == (SIZE, SIZE) and category.dtype == np.uint8
    np.testing.assert_array_equal(category, scores.argmax(-1))
    # Activation NONE: the confidence masks are the (dequantized) probabilities.
    np.testing.assert_allclose(confidence, scores, rtol=0, atol=1e-6)


def test_mediapipe_applies_softmax_to_logits(models, image):
    with_metadata = _with_metadata(models["logits"], output_type="logits")
    labels, category, confidence = _segment(with_metadata, image)
    logits = _run(with_metadata, image)
    np.testing.assert_array_equal(category, logits.argmax(-1))
    np.testing.assert_allclose(confidence, tf.nn.softmax(logits).numpy(), rtol=0, atol=1e-6)


def test_mediapipe_refuses_the_bare_float_model(models):
    # The error this module exists for (MediaPipe maps its kNotFound status to
    # FileNotFoundError).
    with pytest.raises((FileNotFoundError, ValueError, RuntimeError), match="Normalization"):
        _segmenter(models["float32"])


# --- Large models ---------------------------------------------------------------------


@pytest.mark.slow
def test_large_model_round_trips_unchanged():
    # ~150 MB of float32 weights (a dense layer over the whole image): the rewrite keeps
    # them byte for byte and 16-byte aligned.
    hidden = 12
    rng = np.random.default_rng(0)
    dense = tf.constant(
        rng.standard_normal((SIZE * SIZE * 3, SIZE * SIZE * hidden), dtype=np.float32) * 0.01
    )
    project = tf.constant(rng.standard_normal((1, 1, hidden, len(LABELS)), dtype=np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    def network(images):
        features = tf.matmul(tf.reshape(images / 255.0, [1, -1]), dense)
        features = tf.reshape(features, [1, SIZE, SIZE, hidden])
        return tf.nn.softmax(tf.nn.conv2d(features, project, 1, "SAME"))

    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
        [network.get_concrete_function()], tf.Module()
    ).convert()
    assert len(flatbuffer) > 140 * 2**20
    with_metadata = _with_metadata(flatbuffer)
    assert len(with_metadata) - len(flatbuffer) < 4096
    # The original flatbuffer follows the new root table, whole, at a 16-byte boundary.
    start = with_metadata.find(flatbuffer[8 : 8 + 4096]) - 8
    assert start > 0 and start % 16 == 0
    assert with_metadata[start + 8 : start + len(flatbuffer)] == flatbuffer[8:]
    image = rng.integers(0, 256, (SIZE, SIZE, 3)).astype(np.uint8)
    np.testing.assert_array_equal(_run(with_metadata, image), _run(flatbuffer, image))
    assert image_segmenter_issues(with_metadata) == []
