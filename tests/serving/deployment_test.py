"""The deployment files for the real TF Serving: docker-run.sh, models.config, batching."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import keras_deconvnet.serving
from keras_deconvnet.serving.batching import read_batching_parameters
from keras_deconvnet.serving.layout import read_model_config

SERVING_DIR = Path(keras_deconvnet.serving.__file__).parent


def test_example_files_parse():
    options = read_batching_parameters(SERVING_DIR / "batching_parameters.txt")
    assert options.max_batch_size == 8 and options.num_batch_threads == 2
    entries = read_model_config(SERVING_DIR / "models.config")
    assert entries == [{"name": "deconvnet", "base_path": "/models/deconvnet",
                        "model_platform": "tensorflow"}]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_docker_run_dry_run_writes_a_container_config(export_base, tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "SKIP_CHECK": "1", "REST_PORT": "9501"}
    result = subprocess.run(
        ["bash", str(SERVING_DIR / "docker-run.sh"), str(export_base), "--flag=x"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config, command = result.stdout.rsplit("}\n", 1)
    config_file = tmp_path / "models.config"
    config_file.write_text(config + "}\n")
    assert read_model_config(config_file) == [
        {"name": "deconvnet", "base_path": "/models/deconvnet", "model_platform": "tensorflow"}
    ]
    assert command.startswith("docker run")
    for part in ("127.0.0.1:9501:8501", "127.0.0.1:8500:8500", "--rest_api_port=8501",
                 "--enable_batching", "--model_config_file=/config/models.config",
                 "target=/models", "--flag=x"):
        assert part in command
    empty = subprocess.run(["bash", str(SERVING_DIR / "docker-run.sh"), str(tmp_path)],
                           capture_output=True, text=True, env=env, timeout=60)
    assert empty.returncode == 1 and "no model" in empty.stderr
