"""`deconvnet convert-caffe`, then the preset through keras-hub and `deconvnet predict`."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from models.caffe.caffe_nets import as_folding_script_saved_it, renamed
from models.caffe.caffe_oracle import deconvnet_layers
from models.caffe.caffemodel_writer import write_caffemodel
from PIL import Image

from keras_deconvnet.cli import main

WIDTHS = (4, 8, 16, 32, 32)


@pytest.fixture(scope="module")
def net_layers():
    return as_folding_script_saved_it(
        deconvnet_layers(np.random.default_rng(0), widths=WIDTHS, fc=64))


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory, net_layers):
    path = tmp_path_factory.mktemp("caffe") / "DeconvNet_trainval_inference.caffemodel"
    write_caffemodel(path, net_layers, form="V1", inputs={"data": (1, 3, 224, 224)})
    return path


def write_photo(path):
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((160, 120), Image.BILINEAR).save(path)
    return path


def test_convert_then_predict(tmp_path, caffemodel, capsys):
    out = tmp_path / "preset"
    assert main(["convert-caffe", str(caffemodel), "--arch", "deconvnet",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Loading 59 layers" in printed and "59/59" in printed  # the progress bar
    # The two counts agree (issue 23: "322,049 values in the file", then "(323,369
    # values)"): what is loaded from the file plus what is unused is the file's count.
    in_file = int(re.search(r"\(([\d,]+) values in the file\)", printed)[1].replace(",", ""))
    loading = re.search(r"Loading 59 layers: ([\d,]+) values from the file(?:, plus "
                        r"([\d,]+) set by the conversion)?(?:.*; ([\d,]+) of the file's "
                        r"values are not used)?", printed)
    from_file, unused = (int((g or "0").replace(",", "")) for g in loading.group(1, 3))
    assert from_file + unused == in_file
    assert "note: BN: folded scale/shift" in printed
    assert "Wrote DeconvNetImageSegmenter" in printed
    metadata = json.loads((out / "metadata.json").read_text())["keras_deconvnet"]
    assert metadata["training_data"]["batch_norm"] == "folded scale/shift, exact"
    assert metadata["class_names"][1] == "aeroplane"

    photo = write_photo(tmp_path / "photo.png")
    preds = tmp_path / "preds"
    assert main(["predict", str(photo), "--model", str(out), "--out", str(preds),
                 "--method", "whole"]) == 0
    labels = np.asarray(Image.open(preds / "photo_labels.png"))
    assert labels.shape == (120, 160) and labels.max() < 21
    result = json.loads((preds / "predictions.json").read_text())
    assert result["failures"] == [] and len(result["predictions"]) == 1


def test_errors_are_one_line_and_write_nothing(tmp_path, caffemodel, net_layers, capsys):
    bad = tmp_path / "bad.caffemodel"
    write_caffemodel(bad, renamed(net_layers, "fc6-deconv", "fc6_deconv"), form="V1")
    out = tmp_path / "never"
    assert main(["convert-caffe", str(bad), "--arch", "deconvnet", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert "no layer 'fc6-deconv' with weights" in err[0] and "'fc6_deconv'" in err[0]
    assert not out.exists()

    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(caffemodel.read_bytes()[: caffemodel.stat().st_size // 2])
    assert main(["convert-caffe", str(cut), "--arch", "deconvnet", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "truncated" in err[0] and str(cut) in err[0]

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(["convert-caffe", str(caffemodel), "--arch", "fcn8s", "--out",
                 str(full)]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["convert-caffe", str(caffemodel), "--arch", "fcn8s", "--out",
                 str(out)]) == 1
    assert "not an FCN-8s caffemodel" in capsys.readouterr().err
    assert main(["convert-caffe", str(caffemodel), "--out", str(out)]) == 1
    assert "give --arch" in capsys.readouterr().err
    assert main(["convert-caffe", str(caffemodel), "--arch", "deconvnet", "--target",
                 "fcn8s", "--out", str(out)]) == 1
    assert "--target applies to --arch vgg16 only" in capsys.readouterr().err
    assert not out.exists()


def test_describe_lists_the_layers(caffemodel, capsys):
    assert main(["convert-caffe", str(caffemodel), "--describe"]) == 0
    printed = capsys.readouterr().out
    assert "V1 NetParameter" in printed
    assert "fc6-deconv" in printed and "DECONVOLUTION" in printed and "64x32x7x7" in printed
    assert "unpool_size=56" in printed


@pytest.mark.slow
def test_fresh_processes_convert_load_and_predict(tmp_path, caffemodel):
    """The issue's check: three fresh processes, as a user runs them."""
    def run(*args):
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                timeout=600, cwd=tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return result.stdout

    preset = tmp_path / "P"
    run("-m", "keras_deconvnet.cli", "convert-caffe", str(caffemodel), "--arch", "deconvnet",
        "--out", str(preset))
    loaded = run("-c", "import keras_deconvnet, keras_hub; m = keras_hub.models.ImageSegmenter"
                 f".from_preset({str(preset)!r}); print(type(m).__name__, m.num_classes)")
    assert loaded.split() == ["DeconvNetImageSegmenter", "21"]
    photo = write_photo(tmp_path / "photo.png")
    run("-m", "keras_deconvnet.cli", "predict", str(photo), "--model", str(preset), "--out",
        str(tmp_path / "preds"), "--top-n", "3")
    assert (tmp_path / "preds" / "photo_overlay.png").is_file()


@pytest.mark.slow
def test_converted_preset_exports_like_any_other(tmp_path, caffemodel, capsys):
    preset = tmp_path / "preset"
    assert main(["convert-caffe", str(caffemodel), "--arch", "deconvnet",
                 "--out", str(preset)]) == 0
    out = tmp_path / "exported"
    assert main(["export", "--model", str(preset), "--out", str(out),
                 "--formats", "saved_model,tflite_float32"]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert (out / "deconvnet_float32.tflite").is_file()
    assert "saved_model" in json.dumps(parity) and "tflite_float32" in json.dumps(parity)
