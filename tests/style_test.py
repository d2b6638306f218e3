"""The codebase stays `ruff` clean, and CI runs exactly the README's test command."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it comes with the `test` extra)")
    result = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m venv \.venv && .*$", readme, flags=re.M)
    assert len(commands) >= 2
    main_job, tests = commands[:2]
    assert '".[all]"' in main_job and "deconvnet quickstart" in main_job
    assert '".[test]"' in tests and tests.endswith(".venv/bin/pytest")
    assert "tensorflow-serving-api" in tests  # the gRPC tests run in CI too
    # .ci/run takes that same line from the README: run its extraction and compare.
    ci = (ROOT / ".ci" / "run").read_text()
    extraction = re.search(r"^cmd=\$\((.*)\)$", ci, flags=re.M).group(1)
    result = subprocess.run(["bash", "-c", extraction], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.stdout.strip() == tests
