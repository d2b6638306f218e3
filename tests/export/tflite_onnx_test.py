import io
import json
import subprocess
import sys
import textwrap
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.export import (
    TFLITE_GPU_OPS,
    TFLiteConfig,
    check_gpu_ops,
    conversion_saved_model,
    convert_to_tflite,
    export_onnx,
    export_tflite,
    format_op_table,
    image_segmenter_issues,
    integer_op_fraction,
    model_interface,
    op_counts,
    read_metadata,
    synthetic_images,
    tflite_ops,
)
from keras_deconvnet.export.runtimes import litert_runner
from keras_deconvnet.export.tflite_quantization import calibration_batches, representative_dataset

TFLITE_FORMATS = ("tflite_float32", "tflite_float16", "tflite_dynamic", "tflite_int8")

# Runs in a fresh interpreter with the runtimes only: no TensorFlow, no keras_deconvnet.
RUNTIME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    data_path, onnx_path, *tflite_paths = sys.argv[1:]
    images = np.load(data_path)
    outputs = {}
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    outputs["onnx"] = session.run(None, {"images": images})[0]
    for path in tflite_paths:
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        target = interpreter.get_output_details()[0]
        probs = []
        for image in images:
            # The int8 file takes uint8 pixels as they are (scale 1, zero point 0).
            interpreter.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
            interpreter.invoke()
            output = interpreter.get_tensor(target["index"]).astype(np.float32)
            if target["dtype"] != np.float32:
                scale, zero_point = target["quantization"]
                output = (output - zero_point) * scale
            probs.append(output)
        outputs[path] = np.concatenate(probs)
    np.savez(data_path.replace(".npy", "_out.npz"), **{
        k.rsplit("/", 1)[-1]: v for k, v in outputs.items()})
    print(json.dumps(sorted(m for m in sys.modules
                            if m.split(".")[0] in ("tensorflow", "keras_deconvnet"))))
    """
)


def test_tflite_files_are_builtin_and_gpu_ops_only(exported):
    for fmt in TFLITE_FORMATS:
        ops = tflite_ops(exported.paths[fmt])
        assert ops <= TFLITE_GPU_OPS, (fmt, ops - TFLITE_GPU_OPS)
        assert not any(op.startswith("FLEX") or op == "CUSTOM" for op in ops)
        assert "SOFTMAX" in ops and {"MUL", "ADD"} <= ops  # preprocessing, softmax inside
        check_gpu_ops(exported.paths[fmt])
    sizes = {fmt: exported.paths[fmt].stat().st_size for fmt in TFLITE_FORMATS}
    assert sizes["tflite_int8"] < 0.9 * sizes["tflite_float32"]


def test_int8_file_is_fully_integer_with_uint8_pixels_in(exported):
    path = exported.paths["tflite_int8"]
    assert integer_op_fraction(path) == 1.0
    counts = op_counts(path)
    # The switches are SUB/MUL clamps, not comparisons and selects, and no op
    # leaves the integer domain (no DEQUANTIZE, no float QUANTIZE, no CAST).
    assert not {"EQUAL", "SELECT_V2", "GREATER", "MAXIMUM", "MINIMUM", "CAST",
                "DEQUANTIZE"} & set(counts)
    assert counts["SUB"]["count"] >= 5 and all(c["float"] == 0 for c in counts.values())
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert source["dtype"] == np.uint8 and source["quantization"] == (1.0, 0)
    assert target["dtype"] == np.uint8 and target["quantization"][0] == pytest.approx(1 / 256)
    # The float files use the "arithmetic" switches the GPU delegate runs (no EQUAL).
    assert not {"EQUAL", "SELECT_V2"} & tflite_ops(exported.paths["tflite_float32"])
    table = format_op_table({"float32": exported.paths["tflite_float32"], "int8": path})
    assert "| SUB | 30 (30 float) | 30 | yes |" in table
    assert table.splitlines()[-1].startswith("| integer-only ops | 0/")
    assert "(100%)" in table.splitlines()[-1]


def test_every_tflite_file_carries_mediapipe_metadata(exported):
    for fmt in TFLITE_FORMATS:
        content = exported.paths[fmt].read_bytes()
        assert image_segmenter_issues(content) == [], fmt
        metadata = read_metadata(content)
        assert metadata["packed_files"] == ["labels.txt"]
        assert metadata["name"] == f"deconvnet_{fmt.removeprefix('tflite_')}"
        labels = zipfile.ZipFile(io.BytesIO(content)).read("labels.txt").decode()
        assert labels.splitlines() == ["background", "red", "green", "blue"]


@pytest.mark.parametrize("int8_io", ["int8", "float"])
def test_int8_io_options(trained, tmp_path, int8_io):
    from ai_edge_litert.interpreter import Interpreter

    model, calibration, images, _ = trained
    path = export_tflite(model, tmp_path / "m.tflite", "int8", TFLiteConfig(int8_io=int8_io),
                         representative_data=calibration[:8])
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    metadata = read_metadata(path.read_bytes())
    assert metadata["subgraph_metadata"][0]["input_tensor_metadata"]
    if int8_io == "int8":
        assert detail["dtype"] == np.int8 and detail["quantization"] == (1.0, -128)
        assert integer_op_fraction(path) == 1.0
        # MediaPipe refuses int8 inputs: the metadata is written, the file flagged.
        assert any("INT8" in issue for issue in image_segmenter_issues(path.read_bytes()))
    else:
        assert detail["dtype"] == np.float32
        # Only the QUANTIZE in and the DEQUANTIZE out touch float tensors.
        floats = {name for name, c in op_counts(path).items() if c["float"]}
        assert floats == {"QUANTIZE", "DEQUANTIZE"}
        assert 0.95 < integer_op_fraction(path) < 1.0


def test_int8_conversion_matches_the_tflite_converter(trained, tmp_path):
    """Our int8 steps (float conversion, then TensorFlow's calibrator and MLIR
    quantizer, one process each for big models) give what `TFLiteConverter` gives."""
    model, calibration, images, _ = trained
    ours = convert_to_tflite(model, "int8", representative_data=calibration[:8])
    with conversion_saved_model(model) as directory:
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(directory), signature_keys=["integer_switches"]
        )
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8
        batches = calibration_batches(representative_dataset(calibration[:8], (1, 64, 64, 3)))
        converter.representative_dataset = lambda: ([batch] for batch in batches)
        reference = converter.convert()
    outputs = []
    for index, content in enumerate((ours, reference)):
        path = tmp_path / f"{index}.tflite"
        path.write_bytes(content)
        outputs.append(litert_runner(path)(images))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert op_counts(ours) == op_counts(reference)


def test_isolated_conversion_gives_the_same_file(make_model):
    model = make_model()
    calibration = synthetic_images(4, (64, 64), seed=1)
    in_process = convert_to_tflite(model, "int8", representative_data=calibration)
    isolated = convert_to_tflite(model, "int8", TFLiteConfig(isolate=True),
                                 representative_data=calibration)
    assert isolated == in_process


def test_runtimes_load_without_tensorflow(trained, exported, tmp_path):
    model, _, images, _ = trained
    data_path = tmp_path / "images.npy"
    images = images.round()  # pixels: the int8 file takes them as uint8
    np.save(data_path, images.astype(np.float32))
    tflite_paths = [str(exported.paths[fmt]) for fmt in TFLITE_FORMATS]
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, str(data_path), str(exported.paths["onnx"]),
         *tflite_paths],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    out = np.load(tmp_path / "images_out.npz")
    expected = model_interface.inference_function(model)(images).numpy()
    labels = expected.argmax(-1)
    # Float formats: same labels on every pixel of the test batch.
    for name in ("onnx", "deconvnet_float32.tflite"):
        np.testing.assert_allclose(out[name], expected, atol=1e-4)
        np.testing.assert_array_equal(out[name].argmax(-1), labels)
    # float16 weights: measured 99.95% of pixels (switch flips at near-ties).
    assert np.mean(out["deconvnet_float16.tflite"].argmax(-1) == labels) >= 0.99
    # Quantized: measured 100% (dynamic: this tiny model's weights stay float) and
    # 88% (int8, as the comparison-based switches gave); 25% would be chance.
    assert np.mean(out["deconvnet_dynamic.tflite"].argmax(-1) == labels) >= 0.85
    assert np.mean(out["deconvnet_int8.tflite"].argmax(-1) == labels) >= 0.75


def test_check_gpu_ops_rejects_arg_max():
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def labels(x):
        return tf.argmax(x, axis=-1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [labels.get_concrete_function()]
    )
    flatbuffer = converter.convert()
    assert "ARG_MAX" in tflite_ops(flatbuffer)
    with pytest.raises(ValueError, match="GPU delegate does not support: ARG_MAX"):
        check_gpu_ops(flatbuffer)


def test_tflite_bare_model_and_batch_size(make_model):
    model = make_model()
    flatbuffer = convert_to_tflite(
        model, config=TFLiteConfig(include_preprocessing=False, batch_size=2)
    )
    ops = tflite_ops(flatbuffer)
    # No softmax; the STRIDED_SLICEs are the switches' window slices, one per pooling.
    assert "SOFTMAX" not in ops and op_counts(flatbuffer).get("STRIDED_SLICE", {}).get(
        "count", 0) <= 5
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    assert interpreter.get_input_details()[0]["shape"].tolist() == [2, 64, 64, 3]


def test_representative_data_callable_and_sample_count():
    calls = []

    def data():
        calls.append(1)
        for _ in range(5):
            yield np.zeros((3, 8, 8, 3), np.float32)

    generate = representative_dataset(data, (2, 8, 8, 3), num_samples=7)
    batches = list(generate())
    assert [b[0].shape for b in batches] == [(2, 8, 8, 3)] * 3  # 7 samples -> 3 batches
    with pytest.raises(ValueError, match=r"shape \(N, 8, 8, 3\)"):
        representative_dataset(lambda: [np.zeros((2, 4, 4, 3))], (1, 8, 8, 3))
    with pytest.raises(ValueError, match="representative_samples"):
        representative_dataset(np.zeros((2, 8, 8, 3)), (1, 8, 8, 3), num_samples=0)


@pytest.mark.parametrize(
    "quantization, config, data, match",
    [
        ("int4", {}, None, "`quantization` must be one of"),
        ("int8", {}, None, "needs `representative_data`"),
        ("int8", {}, np.zeros((4, 32, 32, 3)), "must hold images of shape"),
        ("int8", {"include_preprocessing": False}, np.zeros((4, 64, 64, 3)),
         "need `include_preprocessing=True`"),
        ("float32", {"image_shape": (32, 32)}, None, "fixed input size"),
    ],
)
def test_tflite_errors_write_nothing(make_model, tmp_path, quantization, config, data, match):
    path = tmp_path / "out" / "model.tflite"
    with pytest.raises(ValueError, match=match):
        export_tflite(make_model(), path, quantization, TFLiteConfig(**config),
                      representative_data=data)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "`batch_size` must be a positive int"),
        ({"batch_size": True}, "`batch_size` must be a positive int"),
        ({"representative_samples": 0}, "`representative_samples` must be a positive int"),
        ({"int8_io": "int16"}, "`int8_io` must be one of"),
        ({"isolate": 1.0}, "`isolate` must be True, False or None"),
        ({"class_names": "abc"}, "`class_names` must be a sequence of names"),
    ],
)
def test_tflite_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TFLiteConfig(**kwargs)


def test_fully_convolutional_model_needs_image_shape(make_model, tmp_path):
    model = make_model(image_shape=(None, None, 3))
    with pytest.raises(ValueError, match="pass `image_shape"):
        convert_to_tflite(model)
    path = export_onnx(model, tmp_path / "m.onnx", image_shape=(64, 96))
    from keras_deconvnet.export.onnx import onnx_session

    outputs = onnx_session(path).run(None, {"images": np.zeros((2, 64, 96, 3), np.float32)})
    assert outputs[0].shape == (2, 64, 96, 4)


@pytest.mark.parametrize("opset", [12, 19, "17"])
def test_onnx_bad_opset(make_model, tmp_path, opset):
    with pytest.raises(ValueError, match="`opset` must be an int from 13 to 18"):
        export_onnx(make_model(), tmp_path / "m.onnx", opset=opset)
    assert not any(tmp_path.iterdir())


def test_onnx_file_is_valid(exported):
    import onnx

    proto = onnx.load(str(exported.paths["onnx"]))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["probabilities"]
    assert any(o.version == 17 for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    # export_all passes ExportConfig's class names into the ONNX metadata.
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["class_names"] == '["background", "red", "green", "blue"]'


@pytest.mark.slow
def test_edge_preset_all_tflite_variants(tmp_path, capsys):
    """The phone configuration (224x224): every TFLite variant converts, GPU ops only."""
    keras.utils.set_random_seed(0)
    from keras_deconvnet.models import DeconvNetImageSegmenter

    model = DeconvNetImageSegmenter.from_preset("deconvnet_edge")
    calibration = synthetic_images(8, (224, 224))
    sizes = {}
    for quantization in ("float32", "float16", "dynamic", "int8"):
        path = export_tflite(
            model, tmp_path / f"edge_{quantization}.tflite", quantization,
            representative_data=calibration,
        )
        assert tflite_ops(path) <= TFLITE_GPU_OPS
        assert image_segmenter_issues(path.read_bytes()) == []
        sizes[quantization] = path.stat().st_size
    assert integer_op_fraction(tmp_path / "edge_int8.tflite") == 1.0
    with capsys.disabled():
        print("\ndeconvnet_edge TFLite sizes (MB):",
              {k: round(v / 1e6, 2) for k, v in sizes.items()})
    assert sizes["float16"] < 0.55 * sizes["float32"]
    assert sizes["int8"] < 0.3 * sizes["float32"]


def test_onnx_metadata_and_named_dimensions_in_onnxruntime(make_model, tmp_path):
    """Issue 23: metadata_props was empty and the batch axis was named unk__N."""
    import json

    import onnx

    from keras_deconvnet.export.onnx import onnx_session

    model = make_model(class_names=["background", "red", "green", "blue"],
                       palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]])
    path = export_onnx(model, tmp_path / "m.onnx", image_shape=(64, 64))
    session = onnx_session(path)
    meta = session.get_modelmeta()  # what the real runtime reads
    props = meta.custom_metadata_map
    assert json.loads(props["class_names"]) == ["background", "red", "green", "blue"]
    assert json.loads(props["palette"])[1] == [255, 0, 0]
    assert props["input_layout"] == "NHWC" and props["channel_order"] == "RGB"
    assert props["input_value_range"] == "[0, 255]" and props["num_classes"] == "4"
    assert props["Image.BitmapPixelFormat"] == "Rgb8"
    assert props["Image.NominalPixelRange"] == "NominalRange_0_255"
    mean = json.loads(props["mean"])
    assert len(mean) == 3 and all(0 < m < 255 for m in mean)  # VGG's BGR mean, as RGB
    assert "softmax" in meta.description
    [images], [probabilities] = session.get_inputs(), session.get_outputs()
    assert images.shape == ["batch", 64, 64, 3]
    assert probabilities.shape == ["batch", 64, 64, 4]
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto, full_check=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.denotation for d in dims] == ["DATA_BATCH", "DATA_FEATURE", "DATA_FEATURE",
                                            "DATA_CHANNEL"]
    assert proto.graph.input[0].type.denotation == "IMAGE"
    everywhere = [d.dim_param for v in (*proto.graph.input, *proto.graph.output,
                                        *proto.graph.value_info)
                  for d in v.type.tensor_type.shape.dim if d.dim_param]
    assert "batch" in everywhere and not any(p.startswith("unk__") for p in
                                             everywhere[:2])
    out = session.run(None, {"images": np.full((2, 64, 64, 3), 128, np.float32)})[0]
    assert out.shape == (2, 64, 64, 4)
