"""Exact resume (issue 24): a run SIGKILLed anywhere, then started again with the same
command, ends with the same files, bit for bit, as a run that was never interrupted.

Each case runs `kill_driver.py` in a subprocess that kills itself with SIGKILL at one
point (a file appearing or a phase starting, never a delay), runs the same command
again to the end, and compares every weight file (model and optimizer variables),
every history, best-checkpoint record and completion marker with the reference run,
and checks that no temporary file or backup is left. The reference run is made once
per program.

Programs: `small` is `train_two_stage` on a tiny DeconvNet (switches, unpooling,
BatchNorm) with gradient accumulation, the step schedule, validation, shuffled and
randomly augmented repeated data given as functions (as `train_recipe` gives them);
`cli` is `deconvnet train` on the synthetic shapes with the smallest named
configuration, up to its preset and summary.

Durations (-n 0, on the 2-core machine shared with other jobs): the default cases
(one kill point, the comparison's own check) 84 s; `-m slow` runs every kill point
of both programs, mid-epoch backups and two uninterrupted runs against each other
(the small program's 10 points: 19 min; the CLI's take about 2.5 min each).
"""

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

DRIVER = Path(__file__).with_name("kill_driver.py")

CLI_ARGS = [
    "train", "--crop-size", "72", "--image-size", "72", "--num-examples", "8",
    "--steps-per-epoch", "3", "--batch-size", "2", "--stage1-epochs", "2",
    "--stage2-epochs", "2", "--batchnorm-batches", "2", "--batchnorm-batch-size", "2",
    "--val-split", "val", "--gradient-accumulation-steps", "2", "--learning-rate", "0.05",
]

# Where a kill lands; each is reached when a file appears or a phase starts.
KILL_POINTS = {
    "mid_epoch_stage1": "batch:stage1:1:1",
    "mid_epoch_stage2": "batch:stage2:1:2",
    "after_history_row_before_backup": "after:stage1/history.csv:2",
    "after_backup_stage2": "after:stage2/backup/ckpt-000002.json:1",
    "writing_last_weights": "before:stage2/last.weights.h5:2",
    "stage_switch_after_final": "after:stage1/final.weights.h5:1",
    "stage_switch_after_marker": "after:stage1/COMPLETE.json:1",
    "batchnorm_recomputation": "bn:1",
    "writing_batchnorm_weights": "before:batchnorm/final.weights.h5:1",
    "writing_final_weights": "before:/final.weights.h5:4",
}
CLI_ONLY = {
    "writing_preset": "before:/preset:1",
    "writing_summary": "before:/train_summary.json:1",
}


def _run(program, out, kill=None, extra=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               CUDA_VISIBLE_DEVICES="")
    env.pop("KILL_AT", None)
    if kill:
        env["KILL_AT"] = kill
    args = ["small", str(out), *extra] if program == "small" else [
        "cli", *CLI_ARGS, "--out", str(out)]
    return subprocess.run([sys.executable, str(DRIVER), *args], env=env, timeout=900,
                          capture_output=True, text=True)


def _h5_arrays(path):
    arrays = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return arrays


def _compared_files(out: Path) -> dict:
    files = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if path.is_dir() or relative.startswith("logs/") or path.name in (
            ".lock", "train_summary.json", "metadata.json"
        ):
            continue
        files[relative] = path
    return files


def assert_same_run(reference: Path, resumed: Path, ignore=()) -> None:
    expected, actual = _compared_files(reference), _compared_files(resumed)
    for name in ignore:
        expected.pop(name), actual.pop(name)
    assert sorted(actual) == sorted(expected)  # no leftover temporary file or backup
    weights = 0
    for relative, path in expected.items():
        if relative.endswith(".h5"):
            want, got = _h5_arrays(path), _h5_arrays(actual[relative])
            assert sorted(got) == sorted(want), relative  # every variable, optimizer too
            for name, value in want.items():
                assert got[name].dtype == value.dtype and got[name].shape == value.shape
                assert got[name].tobytes() == value.tobytes(), f"{relative}: {name}"
            weights += 1
        else:  # history.csv, best.json, COMPLETE.json, config.json, the preset's JSON
            assert actual[relative].read_bytes() == path.read_bytes(), relative
    assert weights >= 7


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    cache = {}

    def reference(program):
        if program not in cache:
            out = tmp_path_factory.mktemp(f"reference_{program}")
            result = _run(program, out)
            assert result.returncode == 0, result.stderr[-3000:]
            cache[program] = out
        return cache[program]

    return reference


def _killed_then_resumed(program, kill, tmp_path, reference, extra=(), ignore=()):
    out = tmp_path / "run"
    killed = _run(program, out, kill, extra)
    assert killed.returncode == -9, (kill, killed.returncode, killed.stderr[-3000:])
    resumed = _run(program, out, extra=extra)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_run(reference, out, ignore)
    return killed, resumed


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["batch:stage1:1:2", "batch:stage2:2:2"])
def test_mid_epoch_backups_resume_exactly(kill, tmp_path, references):
    # Backups every 3 batches of 4: the run resumes inside an epoch, finishes it with
    # its running metrics restored, and ends as the reference (which made no
    # mid-epoch backups: they change nothing either).
    killed, resumed = _killed_then_resumed("small", kill, tmp_path, references("small"),
                                           extra=["3"], ignore=["config.json"])
    assert ", batch " in resumed.stdout  # resumed inside the epoch


def test_killed_after_a_history_row_resumes_exactly(tmp_path, references):
    killed, resumed = _killed_then_resumed(
        "small", KILL_POINTS["after_history_row_before_backup"], tmp_path,
        references("small"))
    assert "continuing at epoch 2 of 2" in resumed.stdout
    assert "Stage 1 of 2 (stage1" in resumed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_small_run_killed_anywhere_resumes_exactly(point, tmp_path, references):
    _killed_then_resumed("small", KILL_POINTS[point], tmp_path, references("small"))


@pytest.mark.slow
@pytest.mark.parametrize("point", sorted({**KILL_POINTS, **CLI_ONLY}))
def test_deconvnet_train_killed_anywhere_resumes_exactly(point, tmp_path, references):
    kill = {**KILL_POINTS, **CLI_ONLY}[point]
    killed, resumed = _killed_then_resumed("cli", kill, tmp_path, references("cli"))
    if point == "stage_switch_after_marker":
        assert "complete (" in resumed.stdout and "skipped" in resumed.stdout


@pytest.mark.slow
def test_uninterrupted_runs_agree(tmp_path, references):
    # The premise: the same command twice, nothing killed, gives the same bits.
    assert _run("small", tmp_path / "again").returncode == 0
    assert_same_run(references("small"), tmp_path / "again")


def test_h5_comparison_sees_one_changed_value(tmp_path, references):
    reference = references("small")
    copy = tmp_path / "copy"
    for relative, path in _compared_files(reference).items():
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (copy / relative).write_bytes(path.read_bytes())
    with h5py.File(copy / "final.weights.h5", "r+") as f:
        name = next(n for n, v in _h5_arrays(copy / "final.weights.h5").items()
                    if np.asarray(v).size > 1)
        values = f[name][()]
        values.flat[0] = np.nextafter(values.flat[0], np.inf)
        f[name][...] = values
    with pytest.raises(AssertionError, match="final.weights.h5"):
        assert_same_run(reference, copy)
