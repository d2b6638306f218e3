"""The README's five-minute tour, run as written but on tiny settings, in a fresh directory.

Each `deconvnet ...` line of the tour block is executed in order with extra arguments that
shrink it (argparse keeps the last value of a repeated option); `serve`, which would run
forever, becomes `serve --check` on the same directory. Slow (about 2 minutes on 2 idle
cores, it trains, exports and converts): the default suite must stay under 15 minutes.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "quickstart": ["--stage1-epochs", "1", "--stage2-epochs", "1", "--steps-per-epoch", "2",
                   "--train-examples", "8", "--val-examples", "3", "--image-size", "96",
                   "--crop-size", "80", "--top-n", "3",
                   "--formats", "saved_model,tflite_float32"],
    "train": ["--stage1-epochs", "1", "--stage2-epochs", "1", "--steps-per-epoch", "2",
              "--num-examples", "8", "--image-size", "96", "--crop-size", "80",
              "--gradient-accumulation-steps", "1", "--batchnorm-batches", "2"],
    "predict": ["--top-n", "3"],
    "evaluate": ["--num-examples", "2", "--image-size", "96", "--top-n", "3"],
    "export": ["--formats", "saved_model,tflite_float32"],
}


def tour_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Five-minute tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands, current = [], ""
    for line in block.splitlines():
        line = line.split("#", 1)[0].rstrip()
        current += " " + line.rstrip("\\")
        if not line.endswith("\\"):
            if current.strip():
                commands.append(shlex.split(current))
            current = ""
    return commands


@pytest.mark.slow
def test_the_tour_runs(tmp_path):
    commands = tour_commands()
    assert [c[1] for c in commands][:3] == ["quickstart", "train", "predict"]
    Image.fromarray(np.full((60, 90, 3), 80, np.uint8)).save(tmp_path / "photo.jpg")
    Image.fromarray(np.full((50, 40), 200, np.uint8)).save(tmp_path / "scan.png")
    for command in commands:
        assert command[0] == "deconvnet"
        name, args = command[1], command[2:]
        if name == "serve":
            args = ["--check", args[args.index("--model-base") + 1]]
        if name == "serve-web":  # also serves until stopped
            args = [*args, "--check"]
        args = args + TINY.get(name, [])
        result = subprocess.run(
            [sys.executable, "-m", "keras_deconvnet.cli", name, *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=900,
        )
        assert result.returncode == 0, (command, result.stderr[-3000:])
        # A log (stdout is a pipe here) gets plain lines, and no converter chatter.
        assert "\x1b[" not in result.stdout and "\b" not in result.stdout, command
        for chatter in ("fully_quantize", "XNNPACK delegate", "I0000 ", "W0000 "):
            assert chatter not in result.stderr, (command, chatter)
    summary = json.loads((tmp_path / "runs/quickstart/summary.json").read_text())
    for path in summary["artefacts"].values():
        assert (tmp_path / path).exists(), path
    assert (tmp_path / "preds/photo_overlay.png").exists()
    assert (tmp_path / "runs/eval/evaluation.json").exists()
    assert (tmp_path / "runs/export/parity.json").exists()
