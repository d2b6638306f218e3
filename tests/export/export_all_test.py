import json

import keras
import numpy as np
import pytest

from keras_deconvnet.export import (
    DEFAULT_THRESHOLDS,
    FORMATS,
    ExportConfig,
    ParityConfig,
    ParityError,
    check_parity,
    confusion_matrix,
    export_all,
    format_table,
    mean_iou,
)
from keras_deconvnet.export.tflite_conversion import model_bytes


def _siblings(path):
    """Everything next to `path` (finds leftover temporary directories)."""
    return sorted(p.name for p in path.parent.iterdir())


def test_layout_and_parity_table(trained, exported):
    out = exported.output_dir
    assert sorted(p.name for p in out.iterdir()) == [
        "deconvnet.onnx", "deconvnet_dynamic.tflite", "deconvnet_float16.tflite",
        "deconvnet_float32.tflite", "deconvnet_int8.tflite", "export_config.json",
        "parity.json", "saved_model", "tflite_ops.md",
    ]
    assert not [p for p in _siblings(out) if "partial" in p]
    models_config = (out / "saved_model" / "models.config").read_text()
    assert 'base_path: "/models/deconvnet"' in models_config  # the container's path
    config = json.loads((out / "export_config.json").read_text())
    assert config["files"]["tflite_int8"] == "deconvnet_int8.tflite"
    assert config["image_shape"] == [64, 64, 3] and config["opset"] == 17
    assert config["tflite"]["int8_io"] == "uint8"

    rows = {row["format"]: row for row in json.loads((out / "parity.json").read_text())["rows"]}
    assert list(rows) == ["keras", *FORMATS, "saved_model_bytes", "saved_model_jpeg"]
    for fmt in ("saved_model", "tflite_float32", "onnx"):
        assert rows[fmt]["label_agreement"] == 100.0, fmt
        assert rows[fmt]["max_prob_diff"] < 1e-4, fmt
        assert rows[fmt]["miou_vs_labels"] == pytest.approx(rows["keras"]["miou_vs_labels"])
    for fmt in FORMATS:
        assert rows[fmt]["label_agreement"] >= DEFAULT_THRESHOLDS[fmt]
        assert rows[fmt]["passed"] and rows[fmt]["size_bytes"] > 0
        assert rows[fmt]["latency_ms"] > 0
    # The int8 file is integer end to end; the float ones not at all.
    assert rows["tflite_int8"]["integer_ops"] == 1.0
    assert rows["tflite_float32"]["integer_ops"] == 0.0
    assert rows["tflite_int8"]["ops"]["SUB"]["float"] == 0
    assert rows["saved_model"]["integer_ops"] is None
    # Served (predict_image_bytes) vs local labels at the images' own sizes.
    served = rows["saved_model_bytes"]
    assert served["label_agreement"] >= 99.9 and served["path"] == "saved_model/deconvnet/1"
    assert [64, 64] in served["images"] and [127, 97] in served["images"]
    # Each variable is stored once (tracking the model in the ExportArchive doubled it).
    variables = sum(p.stat().st_size for p in (out / "saved_model/deconvnet/1/variables").iterdir())
    assert variables < 1.75 * model_bytes(trained[0])  # measured 1.51 (index overhead)
    table = exported.report.table
    assert table.splitlines()[0].startswith("format") and "int ops" in table
    assert all(fmt in table for fmt in FORMATS)
    assert "100.0%" in next(line for line in table.splitlines() if line.startswith("tflite_int8"))
    ops = (out / "tflite_ops.md").read_text()
    assert "| op | float32 | float16 | dynamic | int8 | GPU delegate |" in ops
    assert "**no**" not in ops  # the GPU delegate parses every op of every file


def test_parity_fails_loudly_and_export_all_leaves_nothing(trained, tmp_path):
    model, _, images, _ = trained
    out = tmp_path / "out"
    with pytest.raises(ParityError, match="tflite_float32") as info:
        export_all(
            model, out,
            ExportConfig(formats=["tflite_float32"], thresholds={"tflite_float32": 100.1}),
            parity_images=images,
        )
    assert "agree %" in str(info.value)  # the table is in the message
    assert not info.value.report.rows[1]["passed"]
    assert _siblings(out) == []


def test_check_parity_without_raising_and_ground_truth(trained, exported):
    model, _, images, labels = trained
    config = ParityConfig(
        thresholds={"onnx": 100.1}, runs=1, raise_on_failure=False,
        miou_fn=lambda y_true, y_pred, n: 42.0,
    )
    report = check_parity(model, {"onnx": exported.paths["onnx"]}, images, labels, config)
    assert [row["format"] for row in report.rows] == ["keras", "onnx"]
    assert report.rows[1]["miou_vs_labels"] == 42.0 and not report.rows[1]["passed"]
    assert "NO" in format_table(report.rows)


@pytest.mark.parametrize(
    "config, data, match",
    [
        ({"formats": ["tflite_int8"]}, {"representative_data": np.zeros((4, 32, 32, 3))},
         r"shape \(N, 64, 64, 3\)"),
        ({"image_shape": (32, 48)}, {}, "fixed input size"),
        ({"class_names": ["a"]}, {}, "one name per class"),
    ],
)
def test_bad_arguments_leave_nothing(make_model, tmp_path, config, data, match):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        export_all(make_model(), out, ExportConfig(**config), **data)
    assert _siblings(out) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"formats": ["tflite_int4"]}, "`formats` must be a non-empty list"),
        ({"formats": []}, "`formats` must be a non-empty list"),
        ({"formats": "onnx", "opset": 12}, "`opset` must be an int from 13 to 18"),
        ({"name": "a/b"}, "`name` must be"),
        ({"int8_io": "int4"}, "`int8_io` must be one of"),
        ({"representative_samples": 0}, "`representative_samples` must be a positive int"),
        ({"isolate": "yes"}, "`isolate` must be True, False or None"),
        ({"class_names": "abc"}, "`class_names` must be a sequence of names"),
        ({"latency_runs": 0}, "`latency_runs` must be a positive int"),
        ({"thresholds": {"onnx": "high"}}, "Thresholds must be numbers"),
    ],
)
def test_export_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"runs": 0}, "`runs` must be an int >= 1"),
        ({"warmup": -1}, "`warmup` must be an int >= 0"),
        ({"thresholds": [("onnx", 99.0)]}, "`thresholds` must map format names"),
        ({"miou_fn": 42}, "`miou_fn` must be callable"),
    ],
)
def test_parity_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ParityConfig(**kwargs)


def test_export_config_defaults_and_derived_configs():
    config = ExportConfig(formats="tflite_int8, onnx,onnx", class_names=("a", "b"),
                          int8_io="float", latency_runs=2, thresholds={"onnx": 99.0})
    assert config.formats == ("tflite_int8", "onnx") and config.class_names == ["a", "b"]
    tflite = config.tflite_config((64, 64))
    assert tflite.image_shape == (64, 64) and tflite.int8_io == "float"
    assert tflite.class_names == ["a", "b"] and tflite.metadata
    parity = config.parity_config()
    assert parity.runs == 2 and parity.threshold("onnx") == 99.0
    assert parity.threshold("tflite_int8") == DEFAULT_THRESHOLDS["tflite_int8"]
    assert ExportConfig().formats == FORMATS
    # The opset is only checked when an ONNX file is written.
    assert ExportConfig(formats=["saved_model"], opset=12).opset == 12


def test_existing_output_dir_is_not_touched(make_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_all(make_model(), out, ExportConfig(formats=["onnx"]))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _siblings(out) == ["out"]


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: keras.Sequential([keras.Input((64, 64, 3)), keras.layers.GlobalAveragePooling2D(),
                                   keras.layers.Dense(4)]), "per-pixel class scores"),
        (lambda: keras.Sequential([keras.Input((64, 64, 1)), keras.layers.Conv2D(4, 1)]),
         "RGB images"),
        (lambda: keras.Sequential([keras.Input((64, 64, 3)), keras.layers.MaxPooling2D(),
                                   keras.layers.Conv2D(4, 1)]), "of its input's size"),
        (lambda: "model.keras", "must be a keras.Model"),
    ],
)
def test_not_a_segmentation_model(tmp_path, build, match):
    with pytest.raises(ValueError, match=match):
        export_all(build(), tmp_path / "out", ExportConfig(formats=["onnx"]))
    assert not (tmp_path / "out").exists()


def test_plain_keras_segmentation_model_with_softmax(tmp_path):
    """Any Keras segmentation model exports; a final softmax is not applied twice."""
    model = keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3, padding="same"),
        keras.layers.Conv2D(3, 1, activation="softmax"),
    ])
    config = ExportConfig(formats=["tflite_float32", "onnx"], latency_runs=1)
    result = export_all(model, tmp_path / "out", config)
    assert [row["label_agreement"] for row in result.report.rows] == [100.0] * 3
    assert result.report.rows[1]["max_prob_diff"] < 1e-5


def test_mean_iou_and_confusion_matrix():
    y_true = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    y_pred = np.array([[0, 1, 1, 1], [2, 2, 0, 1]])
    matrix = confusion_matrix(y_true, y_pred, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    # IoU: class 0 1/2, class 1 2/3, class 2 1.
    assert mean_iou(y_true, y_pred, 3) == pytest.approx(100 * (0.5 + 2 / 3 + 1) / 3)
    assert mean_iou([0, 0], [0, 0], 5) == 100.0  # absent classes do not count
    with pytest.raises(ValueError, match="must be in"):
        confusion_matrix([7], [0], 3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix([0, 1], [0], 3)
