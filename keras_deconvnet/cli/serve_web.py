"""`deconvnet serve-web`: the browser demo of an export (MediaPipe's ImageSegmenter on
the TFLite files, on the GPU where there is one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from keras_deconvnet.cli import CommandError

EPILOG = """\
Open the printed address, pick a .tflite file, the GPU or CPU delegate and an image
of your own: the page shows the category mask, the time and the WebGL draw calls
(0 means nothing ran on the GPU). MediaPipe web is served from ./node_modules when
`npm ci` installed it there (nothing leaves the machine), else the browser loads it
from the jsDelivr CDN. The images never leave the browser.

Examples:
  deconvnet export --model runs/quickstart/preset --out exported
  deconvnet serve-web exported
  deconvnet serve-web exported --port 8080 --host 0.0.0.0   # from a phone on the LAN
  deconvnet serve-web exported --op-table   # the GPU delegate's verdict per op, headless
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve-web",
        help="show an export's TFLite files segmenting your images in your browser",
        description=(
            "Serve a web page that runs the exported TFLite files in MediaPipe Tasks "
            "for the web (ImageSegmenter, GPU or CPU delegate) on images you choose."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("export_dir", type=Path, help="a directory written by `deconvnet export`")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port (default: %(default)s; 0: any free one)"
    )
    parser.add_argument(
        "--node-modules", type=Path,
        help="a node_modules with @mediapipe/tasks-vision (default: ./node_modules, else the CDN)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="check that the directory can be served (its .tflite files, MediaPipe web) and exit",
    )
    parser.add_argument(
        "--op-table", action="store_true",
        help="instead of serving: run each file on MediaPipe web's GPU delegate in headless "
        "Chromium and print the delegate's own op table (needs chromium and `npm ci`)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_deconvnet.export import web_demo

    if not args.export_dir.is_dir():
        raise CommandError(f"Not a directory: {args.export_dir}")
    if args.op_table:
        reason = web_demo.browser_requirements(args.node_modules)
        if reason:
            raise CommandError(f"--op-table {reason}")
        print(web_demo.delegate_op_table(args.export_dir, args.node_modules))
        return 0
    port = 0 if args.check else args.port
    server = web_demo.make_server(args.export_dir, args.host, port, args.node_modules)
    host, port = server.server_address[:2]
    source = "local" if server.mediapipe_dir else f"CDN ({web_demo.MEDIAPIPE_CDN})"
    if args.check:
        server.server_close()
        models = sorted(path.name for path in args.export_dir.glob("*.tflite"))
        print(f"OK: {', '.join(models)} can be served (MediaPipe web: {source}).")
        return 0
    print(f"Serving {args.export_dir} on http://{host}:{port}/ (MediaPipe web: {source}). "
          "Ctrl-C stops.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
