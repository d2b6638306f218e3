"""Every `>>>` example in the package's docstrings runs, as `pytest --doctest-modules`
would, but imported by their installed names (`export/` and `serving/` install as
`keras_deconvnet.export` and `keras_deconvnet.serving`)."""

import doctest
import importlib
import os
import pkgutil

import pytest

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.IGNORE_EXCEPTION_DETAIL


def _modules() -> list[str]:
    import keras_deconvnet.export
    import keras_deconvnet.serving

    names = []
    for package in (keras_deconvnet, keras_deconvnet.export, keras_deconvnet.serving):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.append(info.name)
    return sorted(set(names))


def _has_examples(name: str) -> bool:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return any(test.examples for test in finder.find(module, name))


MODULES = [name for name in _modules() if not name.endswith("__main__")]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    os.environ.setdefault("KERAS_HOME", str(tmp_path / "keras_home"))
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(module, name) if t.examples]
    if not tests:
        pytest.skip("no docstring examples")
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples failed"
