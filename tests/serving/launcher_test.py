"""The server's options live in the library; the command line imports them, never the
other way round."""

import argparse
import ast
from pathlib import Path

import pytest

import keras_deconvnet.serving
from keras_deconvnet.cli import CommandError
from keras_deconvnet.cli import serve as serve_command
from keras_deconvnet.serving import launcher

SERVING_DIR = Path(keras_deconvnet.serving.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_serving_library_does_not_import_the_command_line():
    # Was: rest_server.main imported keras_deconvnet.cli.serve, which imports serving.
    for path in sorted(SERVING_DIR.glob("*.py")):
        cli = [name for name in _imports(path) if name.startswith("keras_deconvnet.cli")]
        assert not cli, f"{path.name} imports {cli}"
    assert "keras_deconvnet.serving.launcher" in _imports(SERVING_DIR / "rest_server.py")


def _args(*argv):
    return launcher.configure_parser(argparse.ArgumentParser()).parse_args(list(argv))


def test_new_flags_and_defaults(capsys):
    parser = argparse.ArgumentParser(prog="deconvnet")
    serve_command.add_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-rows-per-request", "--max-image-pixels", "--max-request-pixels",
                 "--max-response-values", "--header-timeout", "--body-timeout",
                 "--max-connections", "--file-system-poll-wait-seconds", "--no-load"):
        assert flag in text, flag
    assert "default 40,000,000" in text and "default 10)" in text
    args = _args()
    assert (args.header_timeout, args.body_timeout, args.max_connections) == (10, 60, 256)
    assert args.file_system_poll_wait_seconds == 1.0 and args.max_rows_per_request is None


def test_rows_per_request_follow_the_batch_size(tmp_path):
    from keras_deconvnet.serving.batching import BatchingOptions

    limits = launcher.request_limits(_args(), BatchingOptions(max_batch_size=16))
    assert limits.max_rows_per_request == 16
    assert launcher.request_limits(_args(), None).max_rows_per_request == 8
    assert launcher.request_limits(_args("--max-rows-per-request", "4"),
                                   BatchingOptions()).max_rows_per_request == 4
    with pytest.raises(launcher.UsageError, match="--max-rows-per-request 9 is over the "
                       "batching max_batch_size 8"):
        launcher.request_limits(_args("--max-rows-per-request", "9"), BatchingOptions())
    with pytest.raises(launcher.UsageError, match="--max-request-pixels must be positive"):
        launcher.request_limits(_args("--max-request-pixels", "0"), None)


@pytest.mark.parametrize("argv, message", [
    (["--header-timeout", "0"], "--header-timeout must be positive"),
    (["--file-system-poll-wait-seconds", "-1"], "must be >= 0"),
    (["--max-rows-per-request", "0", "--no-batching"], "--max-rows-per-request must be"),
])
def test_bad_options_are_command_errors(tmp_path, argv, message):
    args = serve_command.configure_parser(argparse.ArgumentParser()).parse_args(
        ["--model-base", str(tmp_path), *argv]
    )
    with pytest.raises(CommandError, match=message):
        serve_command.run(args)
