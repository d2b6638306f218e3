"""The deployment files for the real TF Serving: docker-run.sh, models.config, batching.

`models.config` is parsed with TF Serving's own `ModelServerConfig` proto
(tensorflow-serving-api) and its paths are resolved through the mounts of the
`docker run` command that serving/docker-run.sh prints, as the container would.
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

import keras_deconvnet.serving
from keras_deconvnet.serving.batching import read_batching_parameters
from keras_deconvnet.serving.layout import check_layout, read_model_config

SERVING_DIR = Path(keras_deconvnet.serving.__file__).parent
ALL = {"name": "deconvnet", "base_path": "/models/deconvnet", "model_platform": "tensorflow",
       "model_version_policy": "all"}


def test_example_files_parse():
    options = read_batching_parameters(SERVING_DIR / "batching_parameters.txt")
    assert options.max_batch_size == 8 and options.num_batch_threads == 2
    assert read_model_config(SERVING_DIR / "models.config") == [ALL]


def _model_server_config(path: Path):
    """models.config parsed by TF Serving's proto, as tensorflow_model_server does."""
    text_format = pytest.importorskip("google.protobuf.text_format")
    config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2",
        reason="tensorflow-serving-api (the test extra) has TF Serving's config proto")
    config = config_pb2.ModelServerConfig()
    text_format.Parse(path.read_text(), config)  # strict: unknown fields raise
    return config


def _mounts(command: list[str]) -> dict[str, Path]:
    """`{container path: host path}` of the command's `--mount type=bind,...` flags."""
    mounts = {}
    for flag, value in zip(command, command[1:]):
        if flag == "--mount":
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            assert fields["type"] == "bind"
            mounts[fields["target"]] = Path(fields["source"])
    return mounts


def _on_host(container_path: str, mounts: dict[str, Path]) -> Path:
    """The host path the container sees at `container_path`."""
    for target, source in mounts.items():
        if container_path == target or container_path.startswith(target + "/"):
            return source / container_path[len(target):].lstrip("/")
    raise AssertionError(f"{container_path} is in no mount of {mounts}")


def _check_served_layout(config, mounts: dict[str, Path]) -> None:
    """Every model of `config` resolves to BASE/NAME with integer SavedModel versions."""
    assert len(config.model_config_list.config) >= 1
    for model in config.model_config_list.config:
        assert model.model_platform == "tensorflow"
        # Every version, as `deconvnet serve` serves them (TF Serving's default: newest).
        assert model.model_version_policy.WhichOneof("policy_choice") == "all"
        host = _on_host(model.base_path, mounts)
        versions = [p for p in host.iterdir() if p.name.isdigit()]
        assert versions and all((v / "saved_model.pb").is_file() for v in versions)


def test_exported_models_config_works_inside_the_container_layout(export_base):
    """The models.config written by the export, as is, with BASE mounted at /models."""
    config = _model_server_config(export_base / "models.config")
    assert [m.base_path for m in config.model_config_list.config] == ["/models/deconvnet"]
    _check_served_layout(config, {"/models": export_base})
    report = check_layout(export_base)
    assert report.ok, report.format()
    assert not [p for p in report.warnings if "models.config" in p.path]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_docker_run_dry_run_prints_a_command_that_runs_again(export_base, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(export_base, base)
    env = {**os.environ, "DRY_RUN": "1", "SKIP_CHECK": "1", "REST_PORT": "9501"}
    result = subprocess.run(
        ["bash", str(SERVING_DIR / "docker-run.sh"), str(base), "--flag=x"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config_text, command_line = result.stdout.rsplit("}\n", 1)
    command = shlex.split(command_line)
    assert command[:2] == ["docker", "run"]
    for part in ("127.0.0.1:9501:8501", "127.0.0.1:8500:8500", "--rest_api_port=8501",
                 "--enable_batching", "--model_config_file=/config/models.config",
                 "--flag=x"):
        assert part in command_line
    # The script has exited: every mounted directory and file the command names still
    # exists (the old script mounted a temporary directory it deleted on exit).
    mounts = _mounts(command)
    assert mounts["/models"] == base.resolve()
    assert all(source.exists() for source in mounts.values()), mounts
    config_file = _on_host("/config/models.config", mounts)
    assert config_file.read_text() == config_text + "}\n"
    batching = _on_host("/config/batching_parameters.txt", mounts)
    assert read_batching_parameters(batching).max_batch_size == 8
    _check_served_layout(_model_server_config(config_file), mounts)
    # TF Serving ignores the hidden config directory, and so does the layout check.
    assert check_layout(base).ok

    again = subprocess.run(
        ["bash", str(SERVING_DIR / "docker-run.sh"), str(base), "--flag=x"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert again.stdout == result.stdout  # the same command, the same files

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = subprocess.run(["bash", str(SERVING_DIR / "docker-run.sh"), str(empty)],
                             capture_output=True, text=True, env=env, timeout=60)
    assert nothing.returncode == 1 and "no model" in nothing.stderr
