"""The codebase stays `ruff` clean, its imports follow the layering the README draws,
no module grows past ~600 lines, and CI runs exactly the README's test command."""

import ast
import configparser
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
    assert "--no-deps" not in main_job + tests
    # The gRPC, CRF and MediaPipe tests run in CI too: the test extra brings them.
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    assert "serving" in extras["all"] and "tensorflow-serving-api" in extras["serving"]
    assert "all,crf" in extras["test"] and "mediapipe" in extras["test"]
    # .ci/run takes that same line from the README: run its extraction and compare.
    ci = (ROOT / ".ci" / "run").read_text()
    extraction = re.search(r"^cmd=\$\((.*)\)$", ci, flags=re.M).group(1)
    result = subprocess.run(["bash", "-c", extraction], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.stdout.strip() == tests


# Where each source folder installs, and the layers of the README's import graph: a
# module may import its own layer and the layers below it, never one above.
INSTALLED_AS = {"keras_deconvnet": "keras_deconvnet", "export": "keras_deconvnet.export",
                "serving": "keras_deconvnet.serving", "benchmarks": "keras_deconvnet.benchmarks"}
LAYERS = (
    ("keras_deconvnet.version", 0), ("keras_deconvnet.tensorflow_startup", 0),
    ("keras_deconvnet.labels", 0), ("keras_deconvnet.atomic_io", 0),
    ("keras_deconvnet.private_apis", 0), ("keras_deconvnet.backends", 0),
    ("keras_deconvnet.layers", 1), ("keras_deconvnet.metrics", 1),
    ("keras_deconvnet.models", 2),
    ("keras_deconvnet.data", 3), ("keras_deconvnet.training", 3),
    ("keras_deconvnet.inference", 3),
    ("keras_deconvnet.evaluation", 4), ("keras_deconvnet.recipes", 4),
    ("keras_deconvnet.visualize", 4),
    ("keras_deconvnet.export", 5), ("keras_deconvnet.serving", 6),
    ("keras_deconvnet.benchmarks.__main__", 8), ("keras_deconvnet.benchmarks", 7),
    ("keras_deconvnet.cli", 8), ("keras_deconvnet", 9),
)


def _layer(module: str) -> int | None:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    return None


def _source_modules():
    for folder, package in INSTALLED_AS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            name = ".".join((package, *relative.parts)).removesuffix(".__init__")
            yield name, path


def test_imports_follow_the_layers():
    upward = []
    for module, path in _source_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("keras_deconvnet.") and (
                    _layer(target) or 0) > (_layer(module) or 0):
                    upward.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert not upward, "\n".join(sorted(set(upward)))


def test_no_module_over_600_lines():
    long = [f"{path.relative_to(ROOT)}: {n}" for _, path in _source_modules()
            if (n := len(path.read_text().splitlines())) > 600]
    assert not long, long
