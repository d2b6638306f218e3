"""The real client: MediaPipe Tasks for the web (`@mediapipe/tasks-vision`) runs the
exported TFLite files in Debian's headless Chromium, with WebGL2 on SwiftShader. Its
GPU delegate is LiteRT's, built by the same model builder a phone's browser uses.

float32 and float16 must run wholly on the GPU delegate: no error, no console line
saying that operations fall back to the CPU or that XNNPACK was created, and WebGL
draw calls during `segment()`. Their GPU masks equal the CPU masks on >= 99.5% of
pixels. The int8 file is the CPU/NPU file: its CPU run matches, and its GPU run fails
in MediaPipe's own uint8 output handling, as the README says. A float32 file traced
with the "exact" switches (EQUAL/SELECT_V2) shows that the test catches a fallback.

One browser session serves every test here (about a minute on 2 cores). Every request
that does not go to 127.0.0.1 is blocked. Without Chromium or the node packages the
tests skip, naming the install commands.
"""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_deconvnet.export import web_demo
from keras_deconvnet.export.runtimes import litert_runner
from keras_deconvnet.export.tflite_conversion import TFLiteConfig, convert_to_tflite

REASON = web_demo.browser_requirements()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"browser test {REASON}")

FILES = {"float32": "deconvnet_float32.tflite", "float16": "deconvnet_float16.tflite",
         "int8": "deconvnet_int8.tflite", "exact": "exact_switches_float32.tflite",
         "int8_float_io": "int8_float_io.tflite"}


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def browser(trained, exported, tmp_path_factory):
    """One page, every run: `{(file key, delegate): run}`."""
    model, calibration, validation, _ = trained
    directory = tmp_path_factory.mktemp("web")
    for key in ("float32", "float16", "int8"):
        (directory / FILES[key]).write_bytes(exported.paths[f"tflite_{key}"].read_bytes())
    # The "exact" formulation, for the negative check.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = _exact_switches_file(model)
    (directory / FILES["exact"]).write_bytes(exact)
    # The GPU-runnable int8 variant: float input and output (--int8-io float).
    int8_float_io = convert_to_tflite(
        model, "int8", TFLiteConfig(int8_io="float", representative_samples=32),
        representative_data=calibration,
    )
    (directory / FILES["int8_float_io"]).write_bytes(_with_metadata(int8_float_io, model))
    pixels = validation[0].round().clip(0, 255).astype(np.uint8)
    runs = [{"model": FILES[key], "delegate": delegate, "image": "validation.png"}
            for key in ("float32", "float16", "int8", "int8_float_io")
            for delegate in ("GPU", "CPU")]
    runs.append({"model": FILES["exact"], "delegate": "GPU", "image": "validation.png"})
    result = web_demo.run_in_browser(directory, runs, {"validation.png": _png(pixels)})
    by_key = {}
    for run in result["runs"]:
        key = next(k for k, name in FILES.items() if run["model"].endswith(name))
        by_key[key, run["delegate"]] = run
    return result, by_key, pixels


def _with_metadata(flatbuffer, model) -> bytes:
    from keras_deconvnet.export.tflite import add_metadata

    return add_metadata(flatbuffer, model, ["background", "red", "green", "blue"])


def _exact_switches_file(model) -> bytes:
    config = TFLiteConfig(float_switches="exact")
    return _with_metadata(convert_to_tflite(model, "float32", config), model)


@pytest.mark.parametrize("key", ["float32", "float16"])
def test_runs_wholly_on_the_gpu_delegate(browser, key):
    result, runs, pixels = browser
    gpu, cpu = runs[key, "GPU"], runs[key, "CPU"]
    assert "error" not in gpu, gpu.get("error")
    assert web_demo.gpu_fallback_lines(gpu["console"]) == [], gpu["console"]
    assert gpu["drawCalls"] > 0
    assert "error" not in cpu, cpu.get("error")
    # The CPU run is the control: XNNPACK says it is there.
    assert web_demo.gpu_fallback_lines(cpu["console"])
    assert (gpu["height"], gpu["width"]) == pixels.shape[:2]
    agreement = np.mean(np.array(gpu["mask"]) == np.array(cpu["mask"]))
    assert agreement >= 0.995, (key, agreement)
    assert result["pageErrors"] == []


def test_int8_is_the_cpu_file(browser, exported):
    _, runs, pixels = browser
    cpu, gpu = runs["int8", "CPU"], runs["int8", "GPU"]
    assert "error" not in cpu
    # The browser's CPU run is the file's own integer arithmetic.
    ours = litert_runner(exported.paths["tflite_int8"])(pixels[None].astype(np.float32))
    agreement = np.mean(np.array(cpu["mask"]) == ours.argmax(-1).ravel())
    assert agreement >= 0.999, agreement
    # Measured (README): MediaPipe web's GPU graph cannot take the uint8 output.
    assert "Unsupported input tensor type" in gpu.get("error", ""), gpu


def test_int8_with_float_io_runs_on_the_gpu(browser):
    _, runs, _ = browser
    gpu, cpu = runs["int8_float_io", "GPU"], runs["int8_float_io", "CPU"]
    assert "error" not in gpu, gpu.get("error")
    assert web_demo.gpu_fallback_lines(gpu["console"]) == [] and gpu["drawCalls"] > 0
    # The GPU computes in float what the CPU computes in int8: labels differ where
    # quantization moves a score across a tie (README: measured agreement).
    agreement = np.mean(np.array(gpu["mask"]) == np.array(cpu["mask"]))
    print(f"\nint8 float I/O: GPU vs CPU masks {agreement:.4f}")
    assert agreement >= 0.88, agreement  # measured 0.916


def test_the_exact_switches_fall_back_to_the_cpu(browser):
    _, runs, _ = browser
    run = runs["exact", "GPU"]
    # The check has teeth: EQUAL/SELECT_V2 are refused, part of the graph would run on
    # the CPU, and MediaPipe gives up.
    assert "error" in run or web_demo.gpu_fallback_lines(run["console"]), run["console"]
    assert any("EQUAL" in line or "select" in line.lower() for line in run["console"]
               + [run.get("error", "")])


def test_nothing_leaves_127_0_0_1(browser):
    result, _, _ = browser
    assert all("127.0.0.1" not in url for url in result["blocked"])
