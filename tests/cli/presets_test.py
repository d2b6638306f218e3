"""`deconvnet presets`: the minimum input sizes it states are the ones the models take,
and a preset's two parameter counts say what each counts."""

import json

import numpy as np
from model_fixtures import tiny_deconvnet

from keras_deconvnet.cli import main
from keras_deconvnet.cli.presets import named_minimum_input_size
from keras_deconvnet.inference.whole_image import minimum_input_size
from keras_deconvnet.models import DeconvNetImageSegmenter


def test_the_stated_minimum_is_computed_and_true(capsys):
    assert main(["presets"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines()
                if x.startswith("deconvnet_edge_small "))
    model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    smallest = minimum_input_size(model)
    assert smallest == named_minimum_input_size("deconvnet_edge_small") == 65
    assert f">= {smallest} px" in line and f"any input of {smallest} pixels" in line
    # 65 runs; 64 is what the check refuses (the network itself would fail on it).
    assert model.predict(np.zeros((1, 65, 65, 3)), verbose=0).shape[1] == 65
    assert main(["presets", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["deconvnet_edge_small"]["minimum_input_size"] == 65
    assert listed["fcn8s_edge_small"]["minimum_input_size"] == 1


def test_a_preset_labels_its_backbone_and_total_counts(tmp_path, capsys):
    model = tiny_deconvnet(6)
    model.save_to_preset(tmp_path / "preset")
    assert main(["presets", str(tmp_path / "preset"), "--check"]) == 0
    out = capsys.readouterr().out
    backbone, total = model.backbone.count_params(), model.count_params()
    assert backbone != total
    assert f"parameters   {backbone:,} in the backbone" in out
    assert f"({total:,} parameters in all: backbone and class layer)" in out


def test_export_under_the_minimum_size_is_one_line(tmp_path, capsys):
    code = main(["export", "--preset", "deconvnet_edge_small", "--num-classes", "3",
                 "--image-size", "64", "--formats", "tflite_float32",
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "at least 65x65 pixels" in err[0] and "Received: 64x64" in err[0]
    assert not (tmp_path / "x").exists()
