"""The local TF Serving-compatible server as a benchmark runs it: a model, a process, its memory."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth uint8 RGB image (a bilinear 4x4 blow-up): classes are well separated."""
    from PIL import Image

    small = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def export_untrained(base: Path, preset: str, image_size: int, name: str) -> Path:
    """Exports `preset` (untrained) at `image_size` to `base/name/1/`.

    The BatchNorm statistics are set from smooth random images (as the serving tests
    do), so the class scores are better separated.
    """
    import keras

    from keras_deconvnet.export.saved_model import export_saved_model
    from keras_deconvnet.models import DeconvNetImageSegmenter
    from keras_deconvnet.training import recompute_batchnorm_statistics

    keras.utils.set_random_seed(0)
    model = DeconvNetImageSegmenter.from_preset(preset, image_shape=(image_size, image_size, 3))
    rng = np.random.default_rng(0)
    images = np.stack([smooth_image(rng, image_size, image_size) for _ in range(8)])
    recompute_batchnorm_statistics(model, [images.astype("float32")], num_batches=None)
    path = export_saved_model(model, base, name=name, version=1)
    keras.backend.clear_session()
    return path


def latest_version(base: Path, name: str) -> Path:
    """The highest numbered version directory of `base/name` (ASCII digits only, as
    the server reads them)."""
    from keras_deconvnet.serving.servables import version_dirs

    versions = version_dirs(Path(base) / name)
    if not versions:
        raise ValueError(f"No version directory under {Path(base) / name}.")
    return versions[max(versions)]


def grpc_available() -> bool:
    try:
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def running_server(base: Path, log: Path, name: str | None = None, grpc: bool = False,
                   extra: Sequence[str] = (), timeout: float = 300) -> Iterator[tuple]:
    """Runs `python -m keras_deconvnet.serving.rest_server` over `base` on free loopback
    ports; yields `(process, ports)` (ports as the server prints them) and stops it."""
    command = [sys.executable, "-m", "keras_deconvnet.serving.rest_server",
               "--model-base", str(base), "--port", "0", *extra]
    if name:
        command += ["--name", name]
    if grpc:
        command += ["--grpc-port", "0"]
    stdout = log.with_suffix(".out")
    with open(stdout, "w") as out, open(log, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
    try:
        yield process, _wait_for_ports(process, stdout, log, timeout)
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminates a server subprocess; killed if it does not stop within `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for_ports(process: subprocess.Popen, stdout: Path, log: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited: {log.read_text()[-2000:]}")
        for line in stdout.read_text().splitlines():
            if line.startswith("{"):
                return json.loads(line)
        time.sleep(0.2)
    raise RuntimeError(f"The server did not start in {timeout:.0f} s.")


def rss_mb(pid: int) -> float | None:
    """The resident memory (VmRSS) of process `pid` in MB, `None` if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples the server's RSS every `interval` s with the number of finished requests."""

    def __init__(self, pid: int, progress, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.progress, self.interval = pid, progress, interval
        self.samples: list[tuple[int, float]] = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            value = rss_mb(self.pid)
            if value is not None:
                self.samples.append((self.progress(), value))
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()

    def at_fraction(self, fraction: float, total: int) -> float:
        """RSS at the first sample taken once `fraction` of the requests had finished."""
        target = fraction * total
        for done, value in self.samples:
            if done >= target:
                return value
        return self.samples[-1][1]

    def peak(self) -> float:
        return max(value for _, value in self.samples)
