"""The browser demo of an export: MediaPipe's ImageSegmenter on the TFLite files, on
the GPU (WebGL) where there is one, and the headless run of it that tests the files
in the real client.

`make_server` serves the page (`web/index.html`, `web/segmenter.js`), the export's
`.tflite` files and MediaPipe Tasks for the web: from a local
`node_modules/@mediapipe/tasks-vision` where there is one (`npm ci` at the
repository root; nothing leaves the machine), else from the jsDelivr CDN, which the
user's browser fetches. `run_in_browser` drives the page in headless Chromium through
`web/drive.mjs` (puppeteer-core with the system browser) and returns each run's
category mask, WebGL draw calls and console lines.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import mimetypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

WEB_DIR = Path(__file__).parent / "web"
MEDIAPIPE_VERSION = "1.1.0"
MEDIAPIPE_CDN = f"https://cdn.jsdelivr.net/npm/@mediapipe/tasks-vision@{MEDIAPIPE_VERSION}"
INSTALL_HINT = (
    "apt-get install chromium && npm ci (at the repository root, for puppeteer-core and "
    "@mediapipe/tasks-vision)"
)
# Console lines of MediaPipe web that mean some of the model did not run on the GPU.
GPU_FALLBACK_LINES = ("operations will run on the CPU", "Created TensorFlow Lite XNNPACK delegate")
_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
          ".json": "application/json", ".html": "text/html; charset=utf-8",
          ".tflite": "application/octet-stream"}


def default_node_modules() -> Path | None:
    """`node_modules` of the working directory or of the repository this package runs
    from, where `npm ci` installed MediaPipe web there."""
    for parent in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = parent / "node_modules"
        if (candidate / "@mediapipe" / "tasks-vision").is_dir():
            return candidate
    return None


def _handler(routes: Mapping[str, Path | bytes], mediapipe_dir: Path | None):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            body = routes.get(path)
            if body is None and mediapipe_dir is not None and path.startswith("/mediapipe/"):
                target = (mediapipe_dir / path.removeprefix("/mediapipe/")).resolve()
                if target.is_file() and mediapipe_dir.resolve() in target.parents:
                    body = target
            if body is None:
                self.send_error(404)
                return
            data = body.read_bytes() if isinstance(body, Path) else body
            name = body.name if isinstance(body, Path) else path
            kind = _TYPES.get(Path(name).suffix) or mimetypes.guess_type(name)[0]
            self.send_response(200)
            self.send_header("Content-Type", kind or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def make_server(
    export_dir: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 0,
    node_modules: str | os.PathLike | None = None,
    images: Mapping[str, bytes] | None = None,
) -> http.server.ThreadingHTTPServer:
    """An HTTP server of the demo page and the `.tflite` files in `export_dir`.

    Args:
        export_dir: a directory with `.tflite` files (what `deconvnet export` wrote).
        host: the address to listen on. Defaults to `"127.0.0.1"` (this machine).
        port: the port; `0` picks a free one (see `server.server_address`).
        node_modules: a `node_modules` with `@mediapipe/tasks-vision`; defaults to the
            repository's, else the page loads MediaPipe from `MEDIAPIPE_CDN`.
        images: extra files served under `/images/NAME` (the test's images).

    Returns:
        The server, not yet serving (`serve_forever()` or a thread).

    Example:

    >>> server = make_server("exports/quickstart")  # doctest: +SKIP
    >>> server.serve_forever()  # doctest: +SKIP
    """
    export_dir = Path(export_dir)
    models = sorted(export_dir.glob("*.tflite"))
    if not models:
        raise FileNotFoundError(f"No .tflite files in {export_dir}. Run `deconvnet export` first.")
    node_modules = Path(node_modules) if node_modules else default_node_modules()
    mediapipe_dir = None
    if node_modules is not None and (node_modules / "@mediapipe/tasks-vision").is_dir():
        mediapipe_dir = node_modules / "@mediapipe/tasks-vision"
    config = {
        "mediapipe": "/mediapipe" if mediapipe_dir else MEDIAPIPE_CDN,
        "models": {path.name: f"/models/{path.name}" for path in models},
    }
    routes: dict[str, Path | bytes] = {
        "/": WEB_DIR / "index.html",
        "/index.html": WEB_DIR / "index.html",
        "/segmenter.js": WEB_DIR / "segmenter.js",
        "/config.json": json.dumps(config).encode(),
        "/favicon.ico": b"",
    }
    routes.update({f"/models/{path.name}": path for path in models})
    routes.update({f"/images/{name}": data for name, data in (images or {}).items()})
    server = http.server.ThreadingHTTPServer((host, port), _handler(routes, mediapipe_dir))
    server.mediapipe_dir = mediapipe_dir
    return server


@contextlib.contextmanager
def serving(export_dir, **kwargs) -> Iterator[str]:
    """Serves `make_server(export_dir, **kwargs)` in a thread; yields its base URL."""
    server = make_server(export_dir, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def browser_requirements(node_modules: str | os.PathLike | None = None) -> str | None:
    """Why `run_in_browser` cannot run here (one line), or `None` when it can."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not Path("/usr/bin/chromium").exists() and shutil.which("chromium") is None:
        missing.append("chromium")
    node_modules = Path(node_modules) if node_modules else default_node_modules()
    if node_modules is None or not (node_modules / "puppeteer-core").is_dir():
        missing.append("node_modules")
    if not missing:
        return None
    return f"needs {', '.join(missing)}: {INSTALL_HINT}"


def run_in_browser(
    export_dir: str | os.PathLike,
    runs: Sequence[Mapping[str, str]],
    images: Mapping[str, bytes],
    node_modules: str | os.PathLike | None = None,
    timeout: float = 600,
) -> dict:
    """Runs MediaPipe's ImageSegmenter in headless Chromium on the export's files.

    Args:
        export_dir: the directory of `.tflite` files.
        runs: `{"model": FILE_NAME, "delegate": "GPU" or "CPU", "image": IMAGE_NAME}`
            each, run in order in one page.
        images: the images, by name (PNG or JPEG bytes).
        node_modules: with puppeteer-core and @mediapipe/tasks-vision; defaults to the
            repository's.
        timeout: seconds for the whole browser session.

    Returns:
        `{"runs": [...], "blocked": [urls], "pageErrors": [...], "console": [...]}`:
        each run has `width`, `height`, `mask` (row-major labels), `drawCalls` and
        `console` (its lines), or `error`.
    """
    reason = browser_requirements(node_modules)
    if reason:
        raise RuntimeError(f"Cannot run the browser: {reason}")
    node_modules = Path(node_modules) if node_modules else default_node_modules()
    chromium = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which(
        "chromium")
    with serving(export_dir, node_modules=node_modules, images=images) as url, \
            tempfile.TemporaryDirectory(prefix="deconvnet-chromium-") as profile:
        task = {
            "url": url + "/", "chromium": chromium, "userDataDir": profile,
            "nodeModules": str(node_modules),
            "runs": [{**run, "model": f"/models/{run['model']}",
                      "image": f"/images/{run['image']}"} for run in runs],
        }
        done = subprocess.run(
            ["node", str(WEB_DIR / "drive.mjs"), json.dumps(task)],
            capture_output=True, text=True, timeout=timeout,
        )
    if done.returncode != 0:
        raise RuntimeError(f"The browser driver failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def gpu_fallback_lines(console: Sequence[str]) -> list[str]:
    """The console lines saying that part of a model ran on the CPU instead."""
    return [line for line in console if any(s in line for s in GPU_FALLBACK_LINES)]


def delegate_verdict(run: Mapping) -> dict:
    """What MediaPipe web's GPU delegate printed about one run of `run_in_browser`.

    Returns:
        `{"refused": {op: reason}, "summary": the "N operations will run on the GPU"
        line or None, "fallback": fallback lines, "error": the error's first line or
        None, "draw_calls": n}`.
    """
    console = [line.strip() for line in run.get("console", [])]
    refused = {}
    listing = False  # the lines between the delegate's header and its summary
    for line in console:
        if "operations are not supported by GPU delegate" in line:
            listing = True
            continue
        match = re.match(r"^([A-Z][A-Z0-9_]+): (.+)$", line)
        if listing and match:
            refused[match.group(1)] = match.group(2)
        else:
            listing = False
    summary = next((line for line in console if "operations will run on the GPU" in line), None)
    # MediaPipe's error names the calculator and, after its last "failed: ", the cause
    # ("No support of select_v2": an op the WebGL backend has no kernel for).
    causes = re.findall(r"failed: ([^;\n]+)", run.get("error") or "")
    causes = [cause.strip() for cause in causes if cause.strip()]
    error = causes[-1] if causes else (run.get("error") or None)
    unsupported = re.search(r"No support of (\w+)", error or "")
    if unsupported:
        refused.setdefault(unsupported.group(1).upper(), error)
    return {
        "refused": refused, "summary": summary, "fallback": gpu_fallback_lines(console),
        "error": error, "draw_calls": run.get("drawCalls"),
    }


def delegate_op_table(
    export_dir: str | os.PathLike, node_modules: str | os.PathLike | None = None
) -> str:
    """The GPU delegate's own op table of every `.tflite` file in `export_dir`.

    Each file runs once in MediaPipe web with delegate GPU (headless Chromium, as in
    `run_in_browser`); the table has the ops counted from the file and, per op, what
    the delegate's console said: `GPU`, or `**CPU**: its reason`. The last rows give
    the delegate's verdict on the whole file and its WebGL draw calls.

    Returns:
        A Markdown table.
    """
    from PIL import Image

    from keras_deconvnet.export.tflite_inspection import op_counts

    files = sorted(Path(export_dir).glob("*.tflite"))
    buffer = io.BytesIO()
    Image.new("RGB", (97, 61), (120, 90, 200)).save(buffer, "PNG")
    runs = [{"model": path.name, "delegate": "GPU", "image": "probe.png"} for path in files]
    result = run_in_browser(export_dir, runs, {"probe.png": buffer.getvalue()}, node_modules)
    verdicts = [delegate_verdict(run) for run in result["runs"]]
    counts = [op_counts(path) for path in files]
    names = sorted({name for c in counts for name in c})
    rows = [["op", *(path.name for path in files)], ["---"] * (len(files) + 1)]
    for name in names:
        cells = [name]
        for count, verdict in zip(counts, verdicts):
            if name not in count:
                cells.append("")
                continue
            reason = verdict["refused"].get(name)
            where = f"**CPU**: {reason}" if reason else "GPU"
            cells.append(f"{count[name]['count']} {where}")
        rows.append(cells)
    whole = ["whole file"]
    for verdict in verdicts:
        if verdict["error"] or verdict["fallback"] or verdict["summary"]:
            parts = [verdict["summary"], verdict["error"] and f"fails: {verdict['error']}"]
            whole.append("; ".join(filter(None, parts)) or "; ".join(verdict["fallback"]))
        else:
            whole.append("all on the GPU")
    rows.append(whole)
    rows.append(["WebGL draw calls", *(str(v["draw_calls"] or 0) for v in verdicts)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
