"""The README's Python examples run as written, in a fresh directory.

The keras-hub example loads `runs/quickstart/preset`, which a tiny model stands in for;
the recipe example trains, evaluates and exports for real (slow), and the MediaPipe
example then runs on the int8 file it exported.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import tiny_deconvnet
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section (`## ...` or `### ...`) `heading`."""
    readme = (ROOT / "README.md").read_text()
    section = re.split(rf"^#+ {re.escape(heading)}\n", readme, flags=re.M)[1]
    section = re.split(r"^## ", section, flags=re.M)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_keras_hub_example_runs(workdir):
    tiny_deconvnet(6).save_to_preset(workdir / "runs/quickstart/preset")
    namespace = {}
    exec(python_blocks("Python API")[0], namespace)
    assert namespace["logits"].shape[0] == 2
    assert (workdir / "my_preset" / "task.json").exists()
    assert type(namespace["backbone"]).__name__ == "DeconvNetBackbone"


@pytest.mark.slow
def test_the_recipe_export_and_mediapipe_examples_run(workdir, capsys):
    namespace = {}
    exec(python_blocks("Python API")[1], namespace)
    assert 0 <= namespace["result"].evaluation["proposals"]["mean_iou"] <= 1
    assert namespace["labels"].shape == namespace["image"].shape[:2]
    assert "tflite_int8" in capsys.readouterr().out

    pytest.importorskip("mediapipe.tasks.python.vision")
    export = workdir / "runs/quickstart/export"
    export.mkdir(parents=True)
    shutil.copy(workdir / "runs/api-export/deconvnet_int8.tflite", export)
    Image.fromarray(namespace["image"]).save(workdir / "photo.jpg")
    mediapipe = {}
    exec(python_blocks("Phones and edge GPUs")[0], mediapipe)
    assert mediapipe["labels"].shape[:2] == namespace["image"].shape[:2]
    assert np.isin(mediapipe["labels"], np.arange(6)).all()


def test_the_preset_file_list_is_what_a_save_writes(tmp_path):
    readme = " ".join((ROOT / "README.md").read_text().split())
    sentence = readme.split("A preset directory is what keras-hub writes:", 1)[1]
    sentence = sentence.split(". ", 1)[0]
    listed = set(re.findall(r"`([\w.]+\.(?:json|h5))`", sentence))
    tiny_deconvnet(3).save_to_preset(tmp_path / "preset")
    assert listed == {p.name for p in (tmp_path / "preset").iterdir()}


def test_the_models_table_states_what_the_program_computes():
    from keras_deconvnet.cli.presets import named_minimum_input_size
    from keras_deconvnet.models import named_configs

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Models", 1)[1].split("```", 1)[0]
    presets = named_configs()
    rows = re.findall(r"^\| `(\w+)` \| ([\d,]*) \| (.*) \|$", table, re.M)
    assert {name for name, _, _ in rows} >= {"deconvnet_vgg16_voc", "deconvnet_edge",
                                              "deconvnet_edge_small", "fcn8s_vgg16_voc"}
    for name, params, what in rows:
        if params:
            assert int(params.replace(",", "")) == presets[name]["metadata"]["params"], name
        stated = re.search(r">= (\d+) px", what)
        if stated:
            assert int(stated.group(1)) == named_minimum_input_size(name), name
            assert f"{stated.group(1)} pixels" in presets[name]["metadata"]["description"]
    assert any(">= " in what for _, _, what in rows)
