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
