import argparse
import json

import numpy as np
import pytest

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli import export as export_command


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
    out = tmp_path / "exported"
    code = _run([
        "--model", str(model_path), "--out", str(out),
        "--formats", "saved_model,tflite_int8,onnx", "--representative-data",
        str(tmp_path / "calib.npy"), "--representative-samples", "8",
        "--validation-data", str(tmp_path / "val.npz"), "--thresholds", "tflite_int8=50",
        "--class-names", "background,red,green,blue", "--runs", "1",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "agree %" in printed and "tflite_int8" in printed
    rows = json.loads((out / "parity.json").read_text())["rows"]
    assert [row["format"] for row in rows] == ["keras", "saved_model", "tflite_int8", "onnx"]
    assert rows[1]["label_agreement"] == 100.0 and rows[2]["threshold"] == 50.0
    assert rows[0]["miou_vs_labels"] is not None
    assert (out / "saved_model" / "deconvnet" / "1" / "saved_model.pb").is_file()
    assert json.loads((out / "export_config.json").read_text())["class_names"][1] == "red"


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
        (["--image-size", "64x"], CommandError, "--image-size must be"),
        (["--image-size", "64"], ValueError, "`image_shape` must match"),
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
    with pytest.raises(CommandError, match="must be a .keras file"):
        _run(["--model", str(tmp_path / "missing.keras"), "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
