"""Versions as TF Serving serves them: each loads in isolation, the base path is polled.

The corrupt versions are copies of the exported ones with a file cut in half.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.serving.client import RestClient
from keras_deconvnet.serving.repository import ModelRepository


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _add_version(model_dir: Path, source: Path, version: int, corrupt: str | None = None):
    """Copies `source` to a staging directory, optionally corrupts it, renames it in."""
    staging = model_dir / f".{version}.partial"
    shutil.copytree(source, staging)
    if corrupt == "saved_model":
        _truncate(staging / "saved_model.pb")
    elif corrupt == "variables":
        _truncate(next((staging / "variables").glob("variables.data-*")))
    os.replace(staging, model_dir / str(version))


@pytest.fixture
def base(export_base, tmp_path, util):
    """A private copy of the export: versions 1 and 2, plus 3 (truncated
    saved_model.pb) and 4 (truncated variables)."""
    copy = tmp_path / "models"
    shutil.copytree(export_base, copy)
    model_dir = copy / util.MODEL
    _add_version(model_dir, model_dir / "2", 3, corrupt="saved_model")
    _add_version(model_dir, model_dir / "1", 4, corrupt="variables")
    return copy


def _states(repository, name):
    return {s.version: (s.state, s.error_code) for s in repository.version_status(name)}


def test_a_corrupt_version_does_not_stop_the_others(base, util):
    # Was: the first corrupt version raised out of from_base_dir (the server exited).
    repository = ModelRepository.from_base_dir(base)
    try:
        states = _states(repository, util.MODEL)
        assert states[1] == states[2] == ("AVAILABLE", "OK")
        assert states[3] == ("END", "DATA_LOSS") and states[4][0] == "END"
        assert states[4][1] != "OK"
        assert repository.get(util.MODEL).version == 2  # the newest available
        status = repository.status(util.MODEL)["model_version_status"]
        assert [s["version"] for s in status] == ["4", "3", "2", "1"]
        assert "/3" in status[1]["status"]["error_message"]
        assert "DecodeError" in status[1]["status"]["error_message"]
        assert repository.status(util.MODEL, 3)["model_version_status"][0]["state"] == "END"
        with pytest.raises(Exception, match=r"Specific\(deconvnet, 3\)"):
            repository.get(util.MODEL, 3)
        assert [(name, s.version) for name, s in repository.failures()] == [
            (util.MODEL, 3), (util.MODEL, 4)
        ]
    finally:
        repository.close()


def test_latest_policy_serves_the_newest_version_that_loads(base, util):
    repository = ModelRepository.from_base_dir(base, versions="latest")
    try:
        assert sorted(repository.models[util.MODEL]) == [2]
        states = _states(repository, util.MODEL)
        assert states[3][0] == states[4][0] == "END" and 1 not in states
    finally:
        repository.close()


def test_polling_loads_new_versions_and_unloads_removed_ones(export_base, tmp_path, util):
    # Was: versions were read once, at start-up.
    base = tmp_path / "models"
    model_dir = base / util.MODEL
    model_dir.mkdir(parents=True)
    shutil.copytree(export_base / util.MODEL / "1", model_dir / "1")
    repository = ModelRepository.from_base_dir(base)
    try:
        assert repository.get(util.MODEL).version == 1
        _add_version(model_dir, export_base / util.MODEL / "2", 2)
        assert repository.poll() == []  # first seen: waits for one more unchanged poll
        assert repository.poll() == [f"loaded model {util.MODEL!r} version 2"]
        assert repository.get(util.MODEL).version == 2
        # A version whose copy is incomplete fails, and is retried once it changes.
        (model_dir / "3").mkdir()
        (model_dir / "3" / "saved_model.pb").write_bytes(b"\x08")
        repository.poll()
        assert "failed to load" in repository.poll()[0]
        assert repository.poll() == []  # unchanged: not retried
        shutil.rmtree(model_dir / "3")
        shutil.copytree(export_base / util.MODEL / "1", model_dir / "3")
        repository.poll()
        assert repository.poll() == [f"loaded model {util.MODEL!r} version 3"]
        # A removed version goes down.
        shutil.rmtree(model_dir / "1")
        assert repository.poll() == [
            f"unloaded model {util.MODEL!r} version 1 (its directory was removed)"
        ]
        assert _states(repository, util.MODEL) == {
            3: ("AVAILABLE", "OK"), 2: ("AVAILABLE", "OK"), 1: ("END", "OK")
        }
        with pytest.raises(Exception, match=r"Specific\(deconvnet, 1\)"):
            repository.get(util.MODEL, 1)
    finally:
        repository.close()


def _start(command, logs: Path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        lines = [line for line in out.read_text().splitlines() if line.startswith("{")]
        if lines:
            return process, json.loads(lines[-1])
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError(f"the server did not start: {err.read_text()[-3000:]}")


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_server_reports_bad_versions_and_follows_the_base_path(base, tmp_path, util, loaded):
    command = [sys.executable, "-m", "keras_deconvnet.serving.rest_server",
               "--model-base", str(base), "--port", "0",
               "--file-system-poll-wait-seconds", "0.5"]
    if util.grpc_available():
        command += ["--grpc-port", "0"]
    process, ports = _start(command, tmp_path)
    try:
        url = f"http://127.0.0.1:{ports['rest_port']}"
        client = RestClient(url, util.MODEL, timeout=60)
        status = {s["version"]: s for s in client.status()}
        assert status["3"]["state"] == "END"
        assert status["3"]["status"]["error_code"] == "DATA_LOSS"
        assert status["4"]["state"] == "END" and status["4"]["status"]["error_message"]
        assert status["2"]["state"] == status["1"]["state"] == "AVAILABLE"
        images = util.random_images(1, seed=21)
        reference = loaded[2].signatures["serving_default"](images=tf.constant(images))
        np.testing.assert_array_equal(client.predict_labels(images),
                                      reference["labels"].numpy())
        if ports["grpc_port"]:
            from keras_deconvnet.serving.client import GrpcClient

            with GrpcClient(f"127.0.0.1:{ports['grpc_port']}", util.MODEL) as grpc_client:
                grpc_status = {s["version"]: s for s in grpc_client.status()}
            assert grpc_status["3"]["state"] == "END"
            assert grpc_status["3"]["status"]["error_code"] == "DATA_LOSS"
            assert grpc_status["2"]["status"] == {"error_code": "OK", "error_message": ""}

        # A new version comes up without a restart, and goes down when removed.
        model_dir = base / util.MODEL
        _add_version(model_dir, model_dir / "1", 5)
        v5 = RestClient(url, util.MODEL, version=5, timeout=60)
        _wait_for(lambda: client.status()[0]["state"] == "AVAILABLE")
        reference = loaded[1].signatures["serving_default"](images=tf.constant(images))
        np.testing.assert_array_equal(v5.predict_labels(images), reference["labels"].numpy())
        assert client.metadata()["model_spec"]["version"] == "5"
        shutil.rmtree(model_dir / "5")
        _wait_for(lambda: client.status()[0]["state"] == "END")
        status, answer = util.http("GET", f"{url}/v1/models/{util.MODEL}/versions/5/metadata")
        assert status == 404 and "Specific(deconvnet, 5)" in answer["error"]
        assert client.metadata()["model_spec"]["version"] == "2"
    finally:
        util.stop_process(process)
    log = (tmp_path / "stderr.txt").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "version 3 failed to load: DATA_LOSS" in log


def test_check_loads_the_versions_it_checks(base, util, capsys):
    import argparse

    from keras_deconvnet.cli import serve as serve_command

    shutil.rmtree(base / util.MODEL / "3")
    parser = serve_command.configure_parser(argparse.ArgumentParser())
    # Was: OK for truncated variables (only the protos were read).
    assert serve_command.run(parser.parse_args(["--check", str(base)])) == 1
    out = capsys.readouterr().out
    assert "deconvnet/4: cannot be loaded" in out and "FAILED (1 error(s))" in out
    assert "version 2: signatures predict_image_bytes, serving_default (loaded)" in out
    assert serve_command.run(parser.parse_args(["--check", str(base), "--no-load"])) == 0


def test_hostile_version_folders_neither_stop_nor_block_the_server(export_base, tmp_path, util):
    # Was: a folder named "²" (isdigit() accepts it, int() does not) made start-up
    # exit and every poll raise; a FIFO named saved_model.pb hung start-up for ever.
    base = tmp_path / "models"
    model_dir = base / util.MODEL
    model_dir.mkdir(parents=True)
    shutil.copytree(export_base / util.MODEL / "1", model_dir / "1")
    shutil.copytree(export_base / util.MODEL / "1", model_dir / "\u00b2")
    (model_dir / ("9" * 30)).mkdir()  # more digits than an int64 holds: not a version
    (model_dir / "7").mkdir()
    os.mkfifo(model_dir / "7" / "saved_model.pb")
    started = time.monotonic()
    repository = ModelRepository.from_base_dir(base)
    try:
        assert time.monotonic() - started < 60  # was: never returned
        states = _states(repository, util.MODEL)
        assert states == {7: ("END", "FAILED_PRECONDITION"), 1: ("AVAILABLE", "OK")}
        message = repository.status(util.MODEL, 7)["model_version_status"][0]["status"]
        assert "saved_model.pb is a FIFO" in message["error_message"]
        # At run time: more of the same, and a valid new version still loads.
        shutil.copytree(export_base / util.MODEL / "2", model_dir / "\u00b3")
        (model_dir / "8").mkdir()
        os.mkfifo(model_dir / "8" / "saved_model.pb")
        _add_version(model_dir, export_base / util.MODEL / "2", 9)
        repository.poll()
        events = repository.poll()
        assert f"loaded model {util.MODEL!r} version 9" in events
        assert any("version 8 failed to load: FAILED_PRECONDITION" in e for e in events)
        assert repository.get(util.MODEL).version == 9
    finally:
        started = time.monotonic()
        repository.close()
        assert time.monotonic() - started < 10  # was: 34 s


def test_a_version_that_loads_too_slowly_is_given_up(export_base, tmp_path, util):
    base = tmp_path / "models"
    shutil.copytree(export_base / util.MODEL / "1", base / util.MODEL / "1")
    repository = ModelRepository.from_base_dir(base, load_timeout=0.001)
    try:
        assert _states(repository, util.MODEL) == {1: ("END", "DEADLINE_EXCEEDED")}
        message = repository.status(util.MODEL)["model_version_status"][0]["status"]
        assert "did not finish within 0.001 s (--load-timeout)" in message["error_message"]
    finally:
        repository.close()


def test_only_ascii_digit_names_are_versions(tmp_path):
    from keras_deconvnet.export.saved_model import next_version
    from keras_deconvnet.serving.servables import is_version_name, version_dirs

    for name in ("3", "\u00b2", "\u0663", "9" * 30, "tmp-4"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a directory")
    assert sorted(version_dirs(tmp_path)) == [3]
    assert next_version(tmp_path) == 4
    assert is_version_name("0042") and not is_version_name("42\n")
