"""Options every `deconvnet` command shares: `--version`, `--verbose` before or after the
command, and `--help` texts that state each option's default."""

from __future__ import annotations

import argparse
from importlib import metadata

VERBOSE_HELP = "show full tracebacks and the native libraries' output (TensorFlow, TFLite)"


def version_line() -> str:
    """`deconvnet X (TensorFlow Y, Keras Z, keras-hub W)`, read without importing them."""
    from keras_deconvnet.version import __version__

    versions = []
    for label, distribution in (("TensorFlow", "tensorflow"), ("Keras", "keras"),
                                ("keras-hub", "keras-hub")):
        try:
            versions.append(f"{label} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{label} not installed")
    return f"deconvnet {__version__} ({', '.join(versions)})"


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """`--version` and `--verbose` on the top-level parser."""
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the versions of deconvnet, TensorFlow, Keras, keras-hub")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def finish_command_parser(parser: argparse.ArgumentParser) -> None:
    """Lets `--verbose` follow the command, and shows every option's default in `--help`.

    The command's `--verbose` has no default of its own (`SUPPRESS`), so it only ever
    sets the flag, never clears one given before the command.
    """
    parser.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=VERBOSE_HELP)
    show_defaults(parser)


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Appends `(default: X)` to the help of every option whose default says something.

    Flags (`store_true`), options without a default and help texts that already state
    theirs are left as they are.

    Example:

    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--out", default="runs/x", help="output directory")
    >>> show_defaults(parser)
    >>> "output directory (default: runs/x)" in " ".join(parser.format_help().split())
    True
    """
    for action in parser._actions:
        default = action.default
        if (not action.option_strings or default is None or default is argparse.SUPPRESS
                or isinstance(default, bool) or action.nargs == 0):
            continue
        text = action.help or ""
        if text is argparse.SUPPRESS or "default" in text.lower():
            continue
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(d) for d in default)
        else:
            shown = str(default)
        if shown == "":
            shown = "''"
        shown = shown.replace("%", "%%")  # help strings are %-formatted
        action.help = f"{text} (default: {shown})" if text else f"default: {shown}"
