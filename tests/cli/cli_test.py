import json
import subprocess
import sys

import pytest

from keras_deconvnet.cli import COMMANDS, main


def _deconvnet(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "keras_deconvnet.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def test_help_lists_the_commands():
    result = _deconvnet("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "Examples:" in capsys.readouterr().out


def test_presets_json(capsys):
    assert main(["presets", "--json"]) == 0
    presets = json.loads(capsys.readouterr().out)
    assert presets["deconvnet_vgg16_voc"]["metadata"]["params"] > 250_000_000


def test_bad_input_is_one_line_without_traceback():
    result = _deconvnet("summary", "no_such_preset")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Unknown DeconvNet preset" in result.stderr.strip().splitlines()[-1]


def test_quickstart_end_to_end(tmp_path):
    out = tmp_path / "qs"
    result = _deconvnet("quickstart", "--out", str(out), "--steps", "4", "--image-size", "96")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    for path in summary["artefacts"].values():
        assert (tmp_path / path).exists() or __import__("pathlib").Path(path).exists()
    assert "Artefacts:" in result.stdout
