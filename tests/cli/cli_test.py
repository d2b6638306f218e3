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
    assert "neither a named configuration" in result.stderr.strip().splitlines()[-1]


def test_loading_saved_models_needs_only_the_package_import(tmp_path):
    from model_fixtures import tiny_deconvnet

    segmenter = tiny_deconvnet()
    segmenter.save(tmp_path / "m.keras")
    segmenter.save_to_preset(tmp_path / "preset")
    code = ("import keras, keras_hub, keras_deconvnet; "
            f"print(type(keras.saving.load_model({str(tmp_path / 'm.keras')!r})).__name__, "
            "type(keras_hub.models.ImageSegmenter.from_preset("
            f"{str(tmp_path / 'preset')!r})).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "DeconvNetImageSegmenter DeconvNetImageSegmenter", \
        result.stderr[-2000:]


def test_commands_run_without_tensorflow_noise(tmp_path):
    result = _deconvnet("presets")
    assert result.returncode == 0
    assert "oneDNN" not in result.stderr and "I0000" not in result.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from keras_deconvnet.version import __version__

    out = capsys.readouterr().out
    assert out.startswith(f"deconvnet {__version__} (TensorFlow ") and "keras-hub" in out


def test_verbose_is_accepted_before_and_after_the_command():
    from keras_deconvnet.cli import build_parser

    parser = build_parser()
    for argv in (["--verbose", "presets"], ["presets", "--verbose"]):
        assert parser.parse_args(argv).verbose is True
    assert parser.parse_args(["presets"]).verbose is False


@pytest.mark.parametrize("command, option, default", [
    ("quickstart", "--out", "runs/quickstart"),
    ("evaluate", "--methods", "whole proposals"),
    ("predict", "--method", "proposals"),
])
def test_help_shows_defaults(command, option, default, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index(option + " ", text.index("options:"))  # past the usage line
    assert f"default: {default})" in text[start:start + 300] or \
        f"default: {default}" in text[start:start + 300], text[start:start + 300]


def test_verbose_after_the_command_shows_the_traceback():
    result = _deconvnet("summary", "no_such_preset", "--verbose")
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow
def test_export_hides_converter_chatter_unless_verbose(tmp_path):
    """~35 s: an int8 conversion prints `fully_quantize: ...` from C++ on fd 2."""
    args = ["export", "--preset", "deconvnet_edge_small", "--num-classes", "3",
            "--image-size", "96", "--formats", "tflite_int8",
            "--representative-samples", "2"]
    quiet = _deconvnet(*args, "--out", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "fully_quantize" not in quiet.stderr and "XNNPACK" not in quiet.stderr
    assert "deconvnet: warning: No `representative_data`" in quiet.stderr  # one line
    loud = _deconvnet(*args, "--out", str(tmp_path / "loud"), "--verbose")
    assert loud.returncode == 0 and "fully_quantize" in loud.stderr


def test_summary_keeps_the_parameter_column_in_a_log(capsys):
    """rich crops to 80 columns off a terminal; the Param # column is the third."""
    assert main(["summary", "deconvnet_edge_small", "--num-classes", "6"]) == 0
    out = capsys.readouterr().out
    assert "Param #" in out and "655,280" in out  # the backbone's row
    assert "Total params: 655,334" in out
