"""`deconvnet serve`: a local TF Serving-compatible server, and a layout check.

`deconvnet serve --model-base DIR` loads every version of the models exported under
`DIR` (TF Serving's `BASE/NAME/VERSION/` layout) and answers TF Serving's REST API
(and its gRPC API with `--grpc-port`, which needs `tensorflow-serving-api`).
`deconvnet serve --check DIR` validates an export directory against what
`tensorflow_model_server` expects, without loading it.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from keras_deconvnet.cli import CommandError

EXAMPLES = """\
Examples:
  deconvnet serve --model-base exported
  deconvnet serve --model-base exported --name deconvnet --port 8501 --grpc-port 8500
  deconvnet serve --model-base exported --batching-parameters-file serving/batching_parameters.txt
  deconvnet serve --check exported
  deconvnet serve --check exported/deconvnet --json

  curl http://127.0.0.1:8501/v1/models/deconvnet
  curl -d '{"signature_name": "predict_image_bytes",
           "instances": [{"b64": "'$(base64 -w0 cat.jpg)'"}]}' \\
      http://127.0.0.1:8501/v1/models/deconvnet:predict
"""


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds `serve`'s options to `parser` (also used by `-m ...serving.rest_server`)."""
    from keras_deconvnet.serving.rest_server import (
        DEFAULT_HOST,
        DEFAULT_MAX_REQUEST_BYTES,
        DEFAULT_REST_PORT,
    )

    parser.add_argument("--model-base", metavar="DIR",
                        help="TF Serving base directory holding NAME/VERSION/ exports")
    parser.add_argument("--name", action="append", metavar="NAME",
                        help="model to serve (repeatable; default: every model in DIR)")
    parser.add_argument("--versions", choices=("all", "latest"), default="all",
                        help="load every version (default) or only the newest")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=DEFAULT_REST_PORT,
                        help=f"REST port (default {DEFAULT_REST_PORT}; 0 = any free port)")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="also serve gRPC PredictionService on this port (TF Serving "
                             "uses 8500; needs tensorflow-serving-api)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="larger request bodies are answered 413 (default 64 MiB)")
    parser.add_argument("--max-image-pixels", type=int, default=40_000_000,
                        help="encoded images larger than this are refused before "
                             "decoding (default 40 million)")
    parser.add_argument("--batching-parameters-file", metavar="FILE",
                        help="TF Serving batching parameters (text proto)")
    parser.add_argument("--no-batching", action="store_true",
                        help="run each request on its own instead of batching "
                             "concurrent ones")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--check", metavar="DIR",
                        help="only check DIR (base or model directory) against TF "
                             "Serving's layout and exit: 0 if fine, 1 if not")
    parser.add_argument("--signatures", nargs="+", default=None, metavar="NAME",
                        help="signatures --check requires (default: serving_default "
                             "predict_image_bytes)")
    parser.add_argument("--json", action="store_true", help="--check prints JSON")
    parser.set_defaults(func=run)
    return parser


def add_parser(subparsers) -> argparse.ArgumentParser:
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


def _check(args) -> int:
    from pathlib import Path

    from keras_deconvnet.serving.layout import DECONVNET_SIGNATURES, check_layout, report_json

    path = Path(args.check)
    if not path.exists():
        raise CommandError(f"directory not found: {path}")
    names = args.name or [None]
    if len(names) > 1:
        raise CommandError("--check takes at most one --name")
    required = args.signatures if args.signatures is not None else tuple(DECONVNET_SIGNATURES)
    report = check_layout(path, name=names[0], required_signatures=required)
    print(report_json(report) if args.json else report.format())
    return 0 if report.ok else 1


def run(args) -> int:
    if args.check:
        return _check(args)
    if not args.model_base:
        raise CommandError("give --model-base DIR to serve, or --check DIR")
    from keras_deconvnet.serving import batching
    from keras_deconvnet.serving.rest_server import RestServer
    from keras_deconvnet.serving.servables import ModelRepository

    if args.no_batching and args.batching_parameters_file:
        raise CommandError("--no-batching and --batching-parameters-file exclude each other")
    options = None
    if not args.no_batching:
        options = (
            batching.read_batching_parameters(args.batching_parameters_file)
            if args.batching_parameters_file else batching.BatchingOptions()
        )
    for flag, port in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        if port is not None and not 0 <= port <= 65535:
            raise CommandError(f"{flag} must be in 0..65535, not {port}")
    grpc_module = None
    if args.grpc_port is not None:
        from keras_deconvnet.serving import grpc_server as grpc_module

        grpc_module.require_grpc()
    if args.max_image_pixels < 1 or args.max_request_bytes < 1:
        raise CommandError("--max-image-pixels and --max-request-bytes must be positive")
    repository = ModelRepository.from_base_dir(
        args.model_base, args.name, args.versions, max_image_pixels=args.max_image_pixels
    )
    if options is not None:
        repository.enable_batching(options)
    server = RestServer(
        repository, host=args.host, port=args.port,
        max_request_bytes=args.max_request_bytes, access_log=args.access_log,
    )
    grpc = None
    try:
        if grpc_module is not None:
            grpc, grpc_port = grpc_module.start_grpc_server(
                repository, host=args.host, port=args.grpc_port,
                max_message_bytes=args.max_request_bytes,
            )
        models = "; ".join(
            f"{name} (versions {', '.join(map(str, sorted(versions)))})"
            for name, versions in repository.models.items()
        )
        print(f"Serving REST API at {server.url}/v1/models/NAME for {models}", flush=True)
        if grpc is not None:
            print(f"Serving gRPC PredictionService at {args.host}:{grpc_port}", flush=True)
        print(json.dumps({"rest_port": server.port,
                          "grpc_port": grpc_port if grpc is not None else None}), flush=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    finally:
        server.shutdown()
        if grpc is not None:
            grpc.stop(grace=1)
        repository.close()
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
