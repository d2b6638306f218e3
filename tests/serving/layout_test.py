"""The TF Serving layout check (`check_layout`, `deconvnet serve --check`)."""

import argparse
import json
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli import serve as serve_command
from keras_deconvnet.serving.layout import check_layout, read_model_config


@pytest.fixture
def base(export_base, tmp_path):
    """A private copy of the good export (two versions and models.config)."""
    copy = tmp_path / "models"
    shutil.copytree(export_base, copy)
    return copy


def _messages(report):
    return " | ".join(str(p) for p in report.errors)


def test_good_export_passes(base):
    report = check_layout(base)
    assert report.ok, report.format()
    assert report.models == {"deconvnet": [1, 2]}
    assert report.signatures["deconvnet/2"] == ["predict_image_bytes", "serving_default"]
    assert "OK" in report.format()
    assert check_layout(base / "deconvnet").ok  # a model directory works too
    assert check_layout(base, name="deconvnet").ok
    assert [e["name"] for e in read_model_config(base / "models.config")] == ["deconvnet"]


def test_missing_variables_is_an_error(base):
    shutil.rmtree(base / "deconvnet" / "2" / "variables")
    report = check_layout(base)
    assert not report.ok
    assert "missing variables/" in _messages(report) and "deconvnet/2" in _messages(report)


def test_only_non_integer_version_is_an_error(base):
    shutil.rmtree(base / "deconvnet" / "2")
    (base / "deconvnet" / "1").rename(base / "deconvnet" / "v1")
    report = check_layout(base / "deconvnet")
    assert not report.ok
    assert "not an integer" in _messages(report)
    assert "no version directory" in _messages(report)


def test_missing_signature_is_an_error(base):
    class Labels(tf.Module):
        def __init__(self):
            super().__init__()
            self.offset = tf.Variable(0)

        @tf.function(input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.float32, "images")])
        def serve(self, images):
            return {"labels": tf.zeros(tf.shape(images)[:3], tf.int32) + self.offset}

    module = Labels()
    tf.saved_model.save(module, str(base / "deconvnet" / "3"),
                        signatures={"serving_default": module.serve})
    report = check_layout(base)
    assert not report.ok
    messages = _messages(report)
    assert "deconvnet/3: missing signature 'predict_image_bytes'" in messages
    assert "has no output 'probabilities'" in messages
    assert "deconvnet/2" not in messages


def test_version_dir_unknown_config_entry_and_partial_exports(base):
    report = check_layout(base / "deconvnet" / "1")
    assert not report.ok and "this is a SavedModel (version) directory" in _messages(report)
    config = base / "models.config"
    config.write_text(config.read_text().replace('name: "deconvnet"', 'name: "other"'))
    (base / "deconvnet" / ".3.partial-x").mkdir()
    report = check_layout(base)
    assert "model 'other' is listed but" in _messages(report)
    assert any("leftover partial export" in str(p) for p in report.warnings)
    assert not check_layout(base / "nope").ok


def _check_args(*argv):
    parser = serve_command.configure_parser(argparse.ArgumentParser())
    return parser.parse_args(list(argv))


def test_check_command(base, capsys):
    assert serve_command.run(_check_args("--check", str(base))) == 0
    assert "OK" in capsys.readouterr().out
    shutil.rmtree(base / "deconvnet" / "1" / "variables")
    assert serve_command.run(_check_args("--check", str(base), "--json")) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["models"] == {"deconvnet": [1, 2]}
    with pytest.raises(CommandError, match="not found"):
        serve_command.run(_check_args("--check", str(base / "missing")))
    with pytest.raises(CommandError, match="--model-base"):
        serve_command.run(_check_args())


def test_check_from_the_command_line(base):
    (base / "deconvnet" / "2" / "saved_model.pb").unlink()
    command = [sys.executable, "-m", "keras_deconvnet.serving.rest_server", "--check"]
    bad = subprocess.run([*command, str(base)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stderr[-2000:]
    assert "no saved_model.pb" in bad.stdout and "version 1" in bad.stdout


def test_serve_help_has_examples(capsys):
    parser = argparse.ArgumentParser(prog="deconvnet")
    serve_command.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    assert "Examples:" in capsys.readouterr().out


def test_registered_cli_command(base, capsys):
    from keras_deconvnet import cli

    if "serve" not in cli.COMMANDS:
        pytest.skip("`serve` is not registered in keras_deconvnet.cli.COMMANDS yet")
    assert cli.main(["serve", "--check", str(base)]) == 0


def _warnings(report):
    return " | ".join(str(p) for p in report.warnings)


def test_files_other_users_cannot_read_are_reported(base, capsys):
    """A version written with the old 0600/0700 modes: TF Serving as another user fails."""
    from keras_deconvnet.atomic_io import current_umask

    if current_umask() & 0o055 == 0:  # exported with the umask's modes: readable by all
        assert "cannot read" not in _warnings(check_layout(base))
    weights = base / "deconvnet" / "2" / "variables" / "variables.index"
    weights.chmod(0o600)
    (base / "deconvnet" / "1").chmod(0o700)
    report = check_layout(base)
    assert "2 file(s) or directories other users cannot read" in _warnings(report)
    assert "variables.index (0600)" in _warnings(report) and "chmod -R a+rX" in _warnings(report)
    assert serve_command.run(_check_args("--check", str(base))) == 0  # a warning only
    assert "other users cannot read" in capsys.readouterr().out


def test_models_config_policy_and_container_paths(base):
    config = base / "models.config"
    text = config.read_text()
    assert "model_version_policy { all {} }" in text and '"/models/deconvnet"' in text
    config.write_text(text.replace("model_version_policy { all {} }", ""))
    entry, = read_model_config(config)
    assert entry["model_version_policy"] == ""
    assert "serves only the newest of its 2 versions" in _warnings(check_layout(base))
    config.write_text(text.replace('"/models/deconvnet"', '"/models/gone/deconvnet"'))
    assert "maps to" in _messages(check_layout(base))
    config.write_text(text.replace('"/models/deconvnet"', '"/nowhere/deconvnet"'))
    assert "does not exist here and is not under /models" in _warnings(check_layout(base))
