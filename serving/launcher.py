"""The options and start-up of the local server, shared by `deconvnet serve` and
`python -m keras_deconvnet.serving.rest_server`.

This module is the library side: it knows nothing of the `deconvnet` command line
(which imports it, never the other way round) and reports a bad option as
`UsageError`, a `ValueError` the command line prints as one line.

`run(args)` loads every version under `--model-base` in isolation (a version that fails
is reported as `END` with its error in `GET /v1/models/NAME`, the others serve), polls
the base directory every `--file-system-poll-wait-seconds` for new and removed
versions, and serves TF Serving's REST API (and gRPC with `--grpc-port`) with the
request limits below. `--check DIR` checks a directory against TF Serving's layout and
loads each version (`--no-load`: the structure only).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from keras_deconvnet.serving import connections, rest_server
from keras_deconvnet.serving import limits as limits_module
from keras_deconvnet.serving.servables import DEFAULT_LOAD_TIMEOUT

EXAMPLES = """\
Examples:
  deconvnet serve --model-base exported
  deconvnet serve --model-base exported --name deconvnet --port 8501 --grpc-port 8500
  deconvnet serve --model-base exported --batching-parameters-file serving/batching_parameters.txt
  deconvnet serve --model-base exported --max-request-pixels 20000000 --header-timeout 5
  deconvnet serve --check exported
  deconvnet serve --check exported/deconvnet --json

  curl http://127.0.0.1:8501/v1/models/deconvnet
  curl -d '{"signature_name": "predict_image_bytes",
           "instances": [{"b64": "'$(base64 -w0 cat.jpg)'"}]}' \\
      http://127.0.0.1:8501/v1/models/deconvnet:predict
"""

DEFAULT_POLL_SECONDS = 1.0

logger = logging.getLogger("keras_deconvnet.serving")


class UsageError(ValueError):
    """A bad option or option combination; the message is one line for the user."""


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the server's options to `parser` (`deconvnet serve` and `-m ...rest_server`).

    Example:

    >>> parser = configure_parser(argparse.ArgumentParser())
    >>> parser.parse_args(["--model-base", "exported", "--port", "0"]).port
    0
    """
    _add_model_options(parser)
    _add_address_options(parser)
    _add_limit_options(parser.add_argument_group(
        "request limits", "refused with 400 (413 for the body size) naming the limit"
    ))
    _add_batching_options(parser)
    _add_check_options(parser)
    parser.set_defaults(func=run)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-base", metavar="DIR",
                        help="TF Serving base directory holding NAME/VERSION/ exports")
    parser.add_argument("--name", action="append", metavar="NAME",
                        help="model to serve (repeatable; default: every model in DIR)")
    parser.add_argument("--versions", choices=("all", "latest"), default="all",
                        help="serve every version (default) or only the newest that loads")
    parser.add_argument("--file-system-poll-wait-seconds", type=float,
                        default=DEFAULT_POLL_SECONDS, metavar="SECONDS",
                        help="rescan DIR this often for new and removed versions, as TF "
                             "Serving's --file_system_poll_wait_seconds (default "
                             f"{DEFAULT_POLL_SECONDS:g}; 0 = scan once at start-up)")


def _add_address_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=rest_server.DEFAULT_HOST,
                        help=f"address to bind (default {rest_server.DEFAULT_HOST}; 0.0.0.0 "
                             "for all)")
    parser.add_argument("--port", type=int, default=rest_server.DEFAULT_REST_PORT,
                        help=f"REST port (default {rest_server.DEFAULT_REST_PORT}; 0 = any "
                             "free port)")
    parser.add_argument("--grpc-port", type=int, default=None,
                        help="also serve gRPC PredictionService on this port (TF Serving "
                             "uses 8500; needs tensorflow-serving-api)")


def _add_limit_options(group) -> None:
    limits = limits_module
    group.add_argument("--max-request-bytes", type=int,
                       default=connections.DEFAULT_MAX_REQUEST_BYTES, metavar="BYTES",
                       help="larger request bodies (and gRPC messages) are refused "
                            "(default 64 MiB)")
    group.add_argument("--max-rows-per-request", type=int, default=None, metavar="ROWS",
                       help="rows (batch size) of one request; at most the batching "
                            "max_batch_size, as TF Serving (default: max_batch_size, "
                            f"{limits.DEFAULT_MAX_ROWS_PER_REQUEST} without a batching file)")
    group.add_argument("--max-image-pixels", type=int,
                       default=limits.DEFAULT_MAX_IMAGE_PIXELS, metavar="PIXELS",
                       help="width x height x frames of one encoded image, read from its "
                            f"header (default {limits.DEFAULT_MAX_IMAGE_PIXELS:,})")
    group.add_argument("--max-request-pixels", type=int,
                       default=limits.DEFAULT_MAX_REQUEST_PIXELS, metavar="PIXELS",
                       help="decoded pixels of one request: largest height x largest width "
                            "(label maps are padded to it) x all frames (default "
                            f"{limits.DEFAULT_MAX_REQUEST_PIXELS:,})")
    group.add_argument("--max-response-values", type=int,
                       default=limits.DEFAULT_MAX_RESPONSE_VALUES, metavar="VALUES",
                       help="values (elements) of one answer, all outputs together "
                            f"(default {limits.DEFAULT_MAX_RESPONSE_VALUES:,})")
    group.add_argument("--header-timeout", type=float,
                       default=connections.DEFAULT_HEADER_TIMEOUT, metavar="SECONDS",
                       help="a connection must send its request line and headers within "
                            "this, from its accept or previous answer; idle keep-alive "
                            "connections close then (default "
                            f"{connections.DEFAULT_HEADER_TIMEOUT:g})")
    group.add_argument("--body-timeout", type=float, default=connections.DEFAULT_BODY_TIMEOUT,
                       metavar="SECONDS",
                       help="a request body must arrive within this, and the answer be "
                            f"taken within it (default {connections.DEFAULT_BODY_TIMEOUT:g})")
    group.add_argument("--max-connections", type=int,
                       default=connections.DEFAULT_MAX_CONNECTIONS, metavar="N",
                       help="REST connections served at once; when all are taken, the one "
                            "idle longest (else the one whose answer is stalled longest) "
                            "is closed for a new one (default "
                            f"{connections.DEFAULT_MAX_CONNECTIONS})")
    group.add_argument("--send-timeout", type=float, default=connections.DEFAULT_SEND_TIMEOUT,
                       metavar="SECONDS",
                       help="each 64 KiB piece of an answer must be taken within this: a "
                            "client that stops reading is closed (default "
                            f"{connections.DEFAULT_SEND_TIMEOUT:g})")
    group.add_argument("--max-inflight-bytes", type=int,
                       default=connections.DEFAULT_MAX_INFLIGHT_BYTES, metavar="BYTES",
                       help="request bodies in flight, all connections together; more "
                            "wait, then get 503 (default "
                            f"{connections.DEFAULT_MAX_INFLIGHT_BYTES // 2**20} MiB)")
    group.add_argument("--load-timeout", type=float, default=DEFAULT_LOAD_TIMEOUT,
                       metavar="SECONDS",
                       help="a version taking longer to load is END with DEADLINE_EXCEEDED "
                            f"and the others serve (default {DEFAULT_LOAD_TIMEOUT:g})")


def _add_batching_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batching-parameters-file", metavar="FILE",
                        help="TF Serving batching parameters (text proto)")
    parser.add_argument("--no-batching", action="store_true",
                        help="run each request on its own instead of batching "
                             "concurrent ones")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def _add_check_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", metavar="DIR",
                        help="only check DIR (base or model directory) against TF "
                             "Serving's layout, loading every version, and exit: 0 if "
                             "fine, 1 if not")
    parser.add_argument("--no-load", action="store_true",
                        help="--check reads the protos only, without loading the versions")
    parser.add_argument("--signatures", nargs="+", default=None, metavar="NAME",
                        help="signatures --check requires (default: serving_default "
                             "predict_image_bytes)")
    parser.add_argument("--json", action="store_true", help="--check prints JSON")


def check(args: argparse.Namespace) -> int:
    """`--check DIR`: prints the layout report; 0 if fine, 1 if not."""
    from pathlib import Path

    from keras_deconvnet.serving.layout import DECONVNET_SIGNATURES, check_layout, report_json

    path = Path(args.check)
    if not path.exists():
        raise UsageError(f"directory not found: {path}")
    names = args.name or [None]
    if len(names) > 1:
        raise UsageError("--check takes at most one --name")
    required = args.signatures if args.signatures is not None else tuple(DECONVNET_SIGNATURES)
    report = check_layout(path, name=names[0], required_signatures=required,
                          load=not getattr(args, "no_load", False))
    print(report_json(report) if args.json else report.format())
    return 0 if report.ok else 1


def request_limits(args: argparse.Namespace, options) -> limits_module.RequestLimits:
    """The `RequestLimits` of the parsed options (`options`: the `BatchingOptions`)."""
    rows = args.max_rows_per_request
    batch_size = options.max_batch_size if options is not None else None
    if rows is None:
        rows = batch_size or limits_module.DEFAULT_MAX_ROWS_PER_REQUEST
    elif batch_size is not None and rows > batch_size:
        raise UsageError(
            f"--max-rows-per-request {rows} is over the batching max_batch_size "
            f"{batch_size}: TF Serving refuses a task larger than its batch size"
        )
    values = {
        "--max-rows-per-request": rows,
        "--max-image-pixels": args.max_image_pixels,
        "--max-request-pixels": args.max_request_pixels,
        "--max-response-values": args.max_response_values,
    }
    for flag, value in values.items():
        if value < 1:
            raise UsageError(f"{flag} must be positive, not {value}")
    return limits_module.RequestLimits(*values.values())


def connection_limits(args: argparse.Namespace) -> connections.ConnectionLimits:
    """The REST server's `ConnectionLimits` of the parsed options.

    Example:

    >>> args = configure_parser(argparse.ArgumentParser()).parse_args(["--body-timeout", "5"])
    >>> connection_limits(args).body_timeout
    5.0
    """
    return connections.ConnectionLimits(
        max_request_bytes=args.max_request_bytes, max_connections=args.max_connections,
        header_timeout=args.header_timeout, body_timeout=args.body_timeout,
        send_timeout=args.send_timeout, max_inflight_bytes=args.max_inflight_bytes,
    )


def _check_options(args: argparse.Namespace) -> None:
    for flag, port in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        if port is not None and not 0 <= port <= 65535:
            raise UsageError(f"{flag} must be in 0..65535, not {port}")
    for flag, value in (("--max-request-bytes", args.max_request_bytes),
                        ("--header-timeout", args.header_timeout),
                        ("--body-timeout", args.body_timeout),
                        ("--send-timeout", args.send_timeout),
                        ("--max-inflight-bytes", args.max_inflight_bytes),
                        ("--load-timeout", args.load_timeout),
                        ("--max-connections", args.max_connections)):
        if not value > 0:
            raise UsageError(f"{flag} must be positive, not {value}")
    if args.file_system_poll_wait_seconds < 0:
        raise UsageError("--file-system-poll-wait-seconds must be >= 0, not "
                         f"{args.file_system_poll_wait_seconds}")
    if args.no_batching and args.batching_parameters_file:
        raise UsageError("--no-batching and --batching-parameters-file exclude each other")


def _log_to_stderr() -> None:
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run(args: argparse.Namespace) -> int:
    """Serves until SIGTERM or Ctrl-C (or runs `--check`); returns the exit status.

    Raises:
        UsageError: a bad option.
        FileNotFoundError, ValueError: no model to serve under `--model-base`.
    """
    if args.check:
        return check(args)
    if not args.model_base:
        raise UsageError("give --model-base DIR to serve, or --check DIR")
    _check_options(args)
    options = batching_options(args)
    limits = request_limits(args, options)
    if args.grpc_port is not None:
        from keras_deconvnet.serving.grpc_server import require_grpc

        require_grpc()  # fail before loading anything
    _log_to_stderr()
    repository = _open_repository(args, options, limits)
    server = grpc = None
    try:
        server = rest_server.RestServer(
            repository, host=args.host, port=args.port,
            connections=connection_limits(args), access_log=args.access_log,
        )
        grpc_port = None
        if args.grpc_port is not None:
            from keras_deconvnet.serving.grpc_server import start_grpc_server

            grpc, grpc_port = start_grpc_server(
                repository, host=args.host, port=args.grpc_port,
                max_message_bytes=args.max_request_bytes,
            )
        _announce(args, server, repository, grpc_port)
        _serve_until_interrupted(server)
    finally:
        if server is not None:
            server.shutdown()
        if grpc is not None:
            grpc.stop(grace=1)
        repository.close()
    return 0


def batching_options(args: argparse.Namespace):
    """The `BatchingOptions` of the parsed options, or `None` with `--no-batching`.

    Example:

    >>> args = configure_parser(argparse.ArgumentParser()).parse_args([])
    >>> batching_options(args).max_batch_size
    8
    """
    from keras_deconvnet.serving import batching

    if args.no_batching:
        return None
    if args.batching_parameters_file:
        return batching.read_batching_parameters(args.batching_parameters_file)
    return batching.BatchingOptions()


def _open_repository(args: argparse.Namespace, options, limits):
    """Loads the models under `--model-base`, with batching and polling as asked."""
    from keras_deconvnet.serving.repository import ModelRepository

    repository = ModelRepository.from_base_dir(
        args.model_base, args.name, args.versions, limits=limits,
        load_timeout=args.load_timeout,
    )
    if options is not None:
        repository.enable_batching(options)
    if args.file_system_poll_wait_seconds > 0:
        repository.start_polling(args.file_system_poll_wait_seconds)
    return repository


def _announce(args: argparse.Namespace, server, repository, grpc_port: int | None) -> None:
    """Prints what is served and where, warns of failed versions, and prints the ports
    as one JSON line (read by the benchmarks and the tests)."""
    models = "; ".join(
        f"{name} (versions {', '.join(map(str, sorted(versions)))})"
        for name, versions in repository.models.items()
    ) or "no available version yet"
    print(f"Serving REST API at {server.url}/v1/models/NAME for {models}", flush=True)
    for name, status in repository.failures():
        print(f"warning: model {name!r} version {status.version} failed to load "
              f"({status.error_code}); see GET /v1/models/{name}", file=sys.stderr,
              flush=True)
    if grpc_port is not None:
        print(f"Serving gRPC PredictionService at {args.host}:{grpc_port}", flush=True)
    print(json.dumps({"rest_port": server.port, "grpc_port": grpc_port}), flush=True)


def _serve_until_interrupted(server) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt
