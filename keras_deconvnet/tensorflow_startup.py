"""Quiets TensorFlow's C++ start-up notices, in the `deconvnet` command only.

TensorFlow 2.21 prints oneDNN, CUDA-stub and CPU-feature notices through absl before
any log level applies, so no environment variable hides them. The command line
captures file descriptor 2 while TensorFlow imports, then writes back every captured
line that is not one of those notices (all of them if the import fails): nothing the
user needs can vanish. Library users (`import keras_deconvnet`) see TensorFlow's
output unchanged; `deconvnet --verbose` or `TF_CPP_MIN_LOG_LEVEL=0` show everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

# The start-up notices hidden from the command line; anything else is written back.
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I0000 .*\] (oneDNN custom operations are on|Could not find cuda drivers"
    r"|This TensorFlow binary is optimized)"
    r"|E0000 .*\] failed call to cuInit"
    r"|To enable the following instructions: .*rebuild TensorFlow)"
)


def invoked_as_command_line() -> bool:
    """Whether this process is `deconvnet ...` or `python -m keras_deconvnet.cli ...`."""
    if sys.argv and os.path.basename(sys.argv[0]) in ("deconvnet", "deconvnet.exe"):
        return True
    argv = getattr(sys, "orig_argv", [])
    return any(a == "keras_deconvnet.cli" or a.startswith("keras_deconvnet.cli.")
               for a in argv)


def quiet_when_command_line() -> None:
    """Imports TensorFlow quietly if this process is the command line (see above)."""
    if "tensorflow" in sys.modules or not invoked_as_command_line():
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or "--verbose" in sys.argv:
        return
    # TensorFlow's own INFO/WARNING logs after start-up (converters, sessions), in this
    # process and the child processes of the exporters.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_tensorflow_quietly()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with fd 2 captured; writes back what is not a start-up notice."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (some services)
        import tensorflow  # noqa: F401

        return
    failed = False
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow

            # Device discovery prints CUDA notices on first use: do it here, captured.
            tensorflow.config.list_physical_devices()
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            lines = text.splitlines(keepends=True)
            kept = lines if failed else [line for line in lines if not NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
