"""Atomic writes: the umask's modes (issue 23), and an export another user can read."""

import os
import stat
import subprocess
import tempfile
import warnings
from pathlib import Path

import pytest

from keras_deconvnet import atomic_io


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """`umask(value)` sets the process umask for the test; the old one is restored."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [
    (0o022, 0o644, 0o755), (0o027, 0o640, 0o750), (0o077, 0o600, 0o700),
])
def test_files_and_directories_get_the_umasks_modes(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert atomic_io.current_umask() == mask
    assert mode(atomic_io.write_text(tmp_path / "a.txt", "x")) == file_mode
    assert mode(atomic_io.write_json(tmp_path / "r.json", {"a": 1})) == file_mode
    with atomic_io.replacing(tmp_path / "w.weights.h5") as tmp:
        tmp.write_bytes(b"w")
    assert mode(tmp_path / "w.weights.h5") == file_mode
    target = tmp_path / "export"
    with atomic_io.staged_directory(target) as staging:
        (staging / "sub").mkdir()
        atomic_io.write_text(staging / "sub" / "f.txt", "y")
    assert mode(target) == dir_mode and mode(target / "sub") == dir_mode
    assert mode(target / "sub" / "f.txt") == file_mode
    with atomic_io.staged_directory(target, overwrite=True) as staging:
        atomic_io.write_text(staging / "g.txt", "z")
    assert mode(target) == dir_mode and mode(target / "g.txt") == file_mode


# Reads every file with the base system's tools (uid 65534 cannot run the venv's python
# under /root): prints each file it cannot read; find reports unreadable directories.
_READ_ALL = ('find "$1" -type f | '
             'while IFS= read -r f; do cat -- "$f" > /dev/null || echo "$f"; done')


def _as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="reading as another user needs root to switch to uid 65534")
def test_an_export_and_a_preset_written_under_umask_0022_are_readable_by_another_user(umask):
    from model_fixtures import tiny_deconvnet

    from keras_deconvnet.export import ExportConfig, export_all

    umask(0o022)
    # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, so nobody could enter it.
    top = Path(tempfile.mkdtemp(prefix="deconvnet-other-user-", dir="/tmp"))
    os.chmod(top, 0o755)
    try:
        model = tiny_deconvnet(num_classes=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_all(model, top / "out", ExportConfig(
                formats="saved_model,tflite_float32,onnx", metadata=False,
                representative_samples=2, latency_runs=1))
        model.save_to_preset(str(top / "preset"))
        written = [p for p in top.rglob("*")]
        names = {p.name for p in written}
        for expected in ("saved_model.pb", "models.config", "deconvnet_float32.tflite",
                         "parity.json", "config.json"):
            assert expected in names or any(n.endswith(expected) for n in names), expected
        assert any(n.endswith(".onnx") for n in names)
        for path in written:
            want = 0o755 if path.is_dir() else 0o644
            assert mode(path) & 0o755 == want, f"{path}: {oct(mode(path))}"
        result = subprocess.run(
            ["/bin/sh", "-c", _READ_ALL, "sh", str(top)], preexec_fn=_as_nobody,
            capture_output=True, text=True, timeout=120, cwd="/")
        assert result.returncode == 0 and not result.stderr, result.stderr[-2000:]
        assert result.stdout == "", result.stdout[-2000:]
        print(f"uid 65534 read {sum(p.is_file() for p in written)} files")
    finally:
        import shutil

        shutil.rmtree(top, ignore_errors=True)
