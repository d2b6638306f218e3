"""`deconvnet benchmark --sections soak --quick`: mixed good and bad requests, no wrong answer."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_quick_soak_has_no_wrong_or_unexpected_answer(export_base, tmp_path, util):
    report_path = tmp_path / "soak.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "keras_deconvnet.benchmarks", "--sections", "soak", "--quick",
         "--requests", "160", "--model-base", str(export_base), "--model-name", util.MODEL,
         "--json", str(report_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads(report_path.read_text())["soak"]
    outcomes = report["outcomes"]
    assert set(outcomes) <= {"ok", "refused_as_expected"}, report["examples"]
    assert outcomes["ok"] > 0 and outcomes["refused_as_expected"] > 0
    assert sum(outcomes.values()) == 160 and report["server_alive"] and report["passed"]
    assert report["slot_pinning"]["passed"], report["slot_pinning"]
    assert "slot pinning: status 200 in" in result.stdout
    rss = report["rss_mb"]
    assert 0 < rss["start"] <= rss["peak"]
    assert {"25%", "50%", "75%", "100%"} <= set(rss)
    assert "## Soak: 160 requests" in result.stdout
