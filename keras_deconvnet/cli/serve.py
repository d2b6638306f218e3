"""`deconvnet serve`: a local TF Serving-compatible server, and a layout check.

`deconvnet serve --model-base DIR` loads every version of the models exported under
`DIR` (TF Serving's `BASE/NAME/VERSION/` layout, each version in isolation), polls
`DIR` for new and removed versions, and answers TF Serving's REST API (and its gRPC
API with `--grpc-port`, which needs `tensorflow-serving-api`), with limits on the work
one request can cause. `deconvnet serve --check DIR` validates an export directory
against what `tensorflow_model_server` expects and loads each version.

The options and the server live in the library (`keras_deconvnet.serving.launcher`);
this module only adapts them to the `deconvnet` command line.
"""

from __future__ import annotations

import argparse

from keras_deconvnet.cli import CommandError


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `serve`'s options to `parser`."""
    from keras_deconvnet.serving import launcher

    launcher.configure_parser(parser)
    parser.set_defaults(func=run)
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
    from keras_deconvnet.serving.launcher import EXAMPLES

    parser = subparsers.add_parser(
        "serve",
        help="serve exported models over TF Serving's REST/gRPC API, or check an export",
        description=(
            "Serve SavedModels exported in TF Serving's layout (BASE/NAME/VERSION/) "
            "with TF Serving's REST API (GET /v1/models/NAME, .../metadata, POST "
            ".../NAME[/versions/N]:predict) for development and tests, or check an "
            "export directory with --check. Production: run tensorflow/serving on the "
            "same directory (serving/docker-run.sh)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure_parser(parser)


def run(args: argparse.Namespace) -> int:
    from keras_deconvnet.serving import launcher

    try:
        return launcher.run(args)
    except launcher.UsageError as e:
        raise CommandError(str(e)) from None
