"""Two worker processes on 127.0.0.1 train with MultiWorkerMirroredStrategy.

`WORKER_ARGS` is the command of the README's multi-worker example. Each worker runs
it with its own `TF_CONFIG`; the test checks that both end with bitwise identical
weights, that the loss falls, that only the chief wrote, and that training equals
one process training the same global batch. Each subprocess is bounded by a timeout
and killed if the test stops early.

How equal, and why not the final weights: the two runs sum the same per-replica
gradients in another order (an all-reduce, then accumulation; or accumulation
alone), which differs by float32 rounding, ~1e-7 relative. This network amplifies
such differences chaotically: BatchNorm over 2 crops per replica, and over 1x1
fc6/fc7 maps, divides by tiny variances. Measured here: after 1 update the weights
of both runs agree to 2e-7; after 3 updates the encoder's BN shifts differ by up to
35%, exactly as one process's own run differs from itself with the initial
weights perturbed by 1e-7 (up to 58%). So the test compares what the first
updates determine, where rounding has not grown yet: epoch 1's loss (the initial
weights on every crop: the data split and the loss normalisation) and epoch 2's
(the weights after one update: gradient averaging, accumulation, the bias
multipliers and momentum), to 1e-5 relative; a wrong split or a missing
all-reduce changes them in the 2nd or 3rd digit.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

# The README's example, on tiny settings: 2 workers x 2 crops = global batch 4, 2
# batches accumulated per update (8 crops), 2 batches (1 update) per epoch.
WORKER_ARGS = [
    "train", "--strategy", "multi_worker", "--crop-size", "96", "--image-size", "128",
    "--num-examples", "8", "--stage1-epochs", "4", "--stage2-epochs", "1",
    "--steps-per-epoch", "2", "--batch-size", "4", "--gradient-accumulation-steps", "2",
    "--learning-rate", "0.05", "--batchnorm-batches", "2", "--batchnorm-batch-size", "4",
]
# One process, the same global batch: batches of 2 accumulated 4 times, 4 per epoch,
# so every update averages the same 4 batches of 2 crops (BatchNorm included: each
# batch of 2 is normalised with its own statistics, as on a worker).
REFERENCE_ARGS = [
    "train", "--strategy", "default", "--crop-size", "96", "--image-size", "128",
    "--num-examples", "8", "--stage1-epochs", "4", "--stage2-epochs", "1",
    "--steps-per-epoch", "4", "--batch-size", "2", "--gradient-accumulation-steps", "4",
    "--learning-rate", "0.05", "--batchnorm-batches", "2", "--batchnorm-batch-size", "4",
]
TIMEOUT_S = 420


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _start(args, log_path, env):
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "keras_deconvnet.cli", *args], stdout=log,
        stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        start_new_session=True,  # its own process group, killed as a whole below
    )
    return process, log


def _wait_all(processes, timeout):
    deadline = time.monotonic() + timeout
    try:
        for process, _ in processes:
            process.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for process, log in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    return [process.returncode for process, _ in processes]


def _tf_config(ports, index):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {"TF_CONFIG": json.dumps({"cluster": cluster,
                                     "task": {"type": "worker", "index": index}})}


def _digest(text):
    return re.search(r"Weights sha256 \((.*?)\): ([0-9a-f]{64})", text).group(1, 2)


@pytest.mark.slow
def test_two_workers_on_localhost_train_as_one(tmp_path):
    out = tmp_path / "two_workers"
    ports = _free_ports(2)
    workers = [_start([*WORKER_ARGS, "--out", str(out)], tmp_path / f"worker{index}.log",
                      _tf_config(ports, index)) for index in range(2)]
    # The single-process reference runs meanwhile (no XLA, as the workers' loop).
    (tmp_path / "reference.json").write_text(json.dumps({"jit_compile": False}))
    reference = _start([*REFERENCE_ARGS, "--out", str(tmp_path / "reference"),
                        "--config", str(tmp_path / "reference.json")],
                       tmp_path / "reference.log", {})
    codes = _wait_all([*workers, reference], TIMEOUT_S)
    logs = [(tmp_path / f"{name}.log").read_text()
            for name in ("worker0", "worker1", "reference")]
    assert codes == [0, 0, 0], "\n\n".join(log[-3000:] for log in logs)

    # Bitwise identical weights on both workers.
    (who0, digest0), (who1, digest1) = _digest(logs[0]), _digest(logs[1])
    assert (who0, who1) == ("worker 0 of 2", "worker 1 of 2")
    assert digest0 == digest1
    # The chief wrote everything, the other worker nothing of its own.
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["workers"] == 2
    assert (out / "stage2" / "batchnorm" / "COMPLETE.json").exists()
    assert not (out / "workers").exists()
    assert "Validation" in logs[0] and "Validation" not in logs[1]
    # The loss falls (stage 1: the same crops every epoch).
    losses = summary["history"]["stage1"]["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    # The same training as one process with the same global batch (see the module
    # docstring for why the first two epochs).
    reference = json.loads((tmp_path / "reference" / "train_summary.json").read_text())
    expected = reference["history"]["stage1"]["loss"]
    print(f"\nstage-1 losses, 2 workers: {losses}\n             1 process: {expected}")
    np.testing.assert_allclose(losses[:2], expected[:2], rtol=1e-5)


@pytest.mark.slow
def test_a_killed_worker_and_a_restart_resume_the_stage(tmp_path):
    out = tmp_path / "run"
    args = [*WORKER_ARGS, "--stage1-epochs", "12", "--out", str(out)]  # last flag wins
    backup = out / "stage1" / "backup"
    ports = _free_ports(2)
    workers = [_start(args, tmp_path / f"first{index}.log", _tf_config(ports, index))
               for index in range(2)]
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(backup.glob("ckpt-*.json")) and time.monotonic() < deadline:
            assert all(p.poll() is None for p, _ in workers), "a worker stopped early"
            time.sleep(0.2)
        assert not (out / "stage1" / "COMPLETE.json").exists()
        os.killpg(workers[1][0].pid, signal.SIGKILL)  # the non-chief, mid stage 1
    finally:
        codes = _wait_all(workers, 120)
    # The chief does not hang: its all-reduce fails, with a one-line hint.
    assert codes[0] == 1, (tmp_path / "first0.log").read_text()[-3000:]
    first = (tmp_path / "first0.log").read_text()
    assert "restart every worker" in first and "Traceback" not in first

    ports = _free_ports(2)
    codes = _wait_all([_start(args, tmp_path / f"second{index}.log", _tf_config(ports, index))
                       for index in range(2)], TIMEOUT_S)
    logs = [(tmp_path / f"second{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)
    # Resumed from the chief's backup (not from epoch 1), every epoch run.
    first_epoch = int(re.search(r"Epoch (\d+)/12", logs[0]).group(1))
    assert first_epoch > 1
    summary = json.loads((out / "train_summary.json").read_text())
    assert len(summary["history"]["stage1"]["loss"]) == 12
    assert _digest(logs[0])[1] == _digest(logs[1])[1]
