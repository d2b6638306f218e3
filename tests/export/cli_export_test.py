import argparse
import json

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli import export as export_command
from keras_deconvnet.export import read_metadata


def _run(argv):
    parser = argparse.ArgumentParser(prog="deconvnet")
    export_command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", *argv])
    return args.func(args)


def test_cli_exports_a_keras_file(trained, tmp_path, capsys):
    model, calibration, images, labels = trained
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    np.save(tmp_path / "calib.npy", calibration[:8])
    np.savez(tmp_path / "val.npz", images=images, labels=labels)
    photo = tmp_path / "photo.png"
    Image.fromarray(images[0].round().astype(np.uint8)).resize((90, 70)).save(photo)
    out = tmp_path / "exported"
    code = _run([
        "--model", str(model_path), "--out", str(out),
        "--formats", "saved_model,tflite_int8,onnx", "--representative-data",
        str(tmp_path / "calib.npy"), "--representative-samples", "8",
        "--validation-data", str(tmp_path / "val.npz"),
        "--thresholds", "tflite_int8=50,saved_model_bytes=99",
        "--class-names", "background,red,green,blue", "--runs", "1",
        "--original-images", str(photo), "--int8-io", "int8",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "agree %" in printed and "tflite_int8" in printed and "int ops" in printed
    rows = json.loads((out / "parity.json").read_text())["rows"]
    assert [row["format"] for row in rows] == [
        "keras", "saved_model", "tflite_int8", "onnx", "saved_model_bytes",
        "saved_model_jpeg"]
    assert rows[1]["label_agreement"] == 100.0 and rows[2]["threshold"] == 50.0
    assert rows[0]["miou_vs_labels"] is not None
    assert rows[4]["images"] == [[70, 90]] and rows[4]["threshold"] == 99.0
    assert (out / "saved_model" / "deconvnet" / "1" / "saved_model.pb").is_file()
    config = json.loads((out / "export_config.json").read_text())
    assert config["class_names"][1] == "red" and config["tflite"]["int8_io"] == "int8"
    from ai_edge_litert.interpreter import Interpreter

    int8 = Interpreter(model_path=str(out / "deconvnet_int8.tflite"))
    assert int8.get_input_details()[0]["dtype"] == np.int8
    assert read_metadata((out / "deconvnet_int8.tflite").read_bytes())["packed_files"] == [
        "labels.txt"]
    assert "| SUB |" in (out / "tflite_ops.md").read_text()


def test_cli_no_metadata(tmp_path):
    out = tmp_path / "bare"
    assert _run([
        "--preset", "deconvnet_edge_small", "--num-classes", "3", "--image-size", "96",
        "--out", str(out), "--formats", "tflite_float32", "--runs", "1", "--no-metadata",
    ]) == 0
    assert read_metadata((out / "deconvnet_float32.tflite").read_bytes()) == {}


def test_cli_preset_holds_only_float_formats(tmp_path, capsys):
    out = tmp_path / "edge"
    code = _run([
        "--preset", "deconvnet_edge_small", "--num-classes", "3", "--image-size", "96",
        "--out", str(out), "--formats", "tflite_float32,tflite_dynamic", "--runs", "1",
    ])
    assert code == 0
    assert "untrained" in capsys.readouterr().out
    rows = json.loads((out / "parity.json").read_text())["rows"]
    assert rows[1]["threshold"] == 95.0 and rows[2]["threshold"] == 0.0
    assert (out / "deconvnet_float32.tflite").is_file()


@pytest.mark.parametrize(
    "argv, error, match",
    [
        (["--formats", "saved_model,coreml"], ValueError, "`formats` must be"),
        (["--thresholds", "onnx=101"], CommandError, "--thresholds must be"),
        (["--thresholds", "tflite=5"], CommandError, "--thresholds must be"),
        (["--original-images", "missing.png"], CommandError, "--original-images"),
        (["--image-size", "64x"], CommandError, "--image-size must be"),
        (["--image-size", "64"], ValueError, "network input is too small"),
        (["--image-size", "256"], ValueError, "`image_shape` must match"),
    ],
)
def test_cli_errors(tmp_path, argv, error, match):
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        _run(["--preset", "deconvnet_edge", "--out", str(out), "--formats", "onnx", *argv])
    assert not out.exists()


def test_cli_refuses_non_empty_out_and_missing_model(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(CommandError, match="not empty"):
        _run(["--preset", "deconvnet_edge_small", "--out", str(tmp_path / "out")])
    # The loader's one-line error (a ValueError the CLI prints without a traceback).
    with pytest.raises(ValueError, match="No preset named .*missing.keras"):
        _run(["--model", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
