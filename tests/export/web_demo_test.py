"""The browser demo's server and the parsing of MediaPipe web's console (no browser
needed); the browser itself runs in web_gpu_delegate_test.py."""

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from keras_deconvnet.export import web_demo


def test_the_server_serves_the_page_the_models_and_nothing_else(tmp_path):
    with pytest.raises(FileNotFoundError, match="deconvnet export"):
        web_demo.make_server(tmp_path)
    (tmp_path / "model_float16.tflite").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    with web_demo.serving(tmp_path, images={"a.png": b"png"}) as url:
        config = json.load(urllib.request.urlopen(url + "/config.json"))
        page = urllib.request.urlopen(url + "/")
        assert page.headers["Content-Type"].startswith("text/html")
        assert b"segmenter.js" in page.read()
        assert urllib.request.urlopen(url + "/models/model_float16.tflite").read() == b"x"
        assert urllib.request.urlopen(url + "/images/a.png").read() == b"png"
        for path in ("/models/secret.txt", "/models/../secret.txt", "/mediapipe/../../x"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(url + path)
    assert config["models"] == {"model_float16.tflite": "/models/model_float16.tflite"}
    assert config["mediapipe"] in ("/mediapipe", web_demo.MEDIAPIPE_CDN)


def test_delegate_verdict_reads_the_console_and_the_error():
    run = {
        "console": ["Graph successfully started running.",
                    "ERROR: Following operations are not supported by GPU delegate:",
                    "EQUAL: Not supported logical op case",
                    "68 operations will run on the GPU, and the remaining 78 operations "
                    "will run on the CPU."],
        "error": 'Error: UNIMPLEMENTED: CalculatorGraph::Run() failed: \nCalculator::Open() '
                 'for node "x" failed: No support of select_v2; WaitUntilIdle failed',
        "drawCalls": 0,
    }
    verdict = web_demo.delegate_verdict(run)
    assert verdict["refused"] == {"EQUAL": "Not supported logical op case",
                                  "SELECT_V2": "No support of select_v2"}
    assert verdict["error"] == "No support of select_v2"
    assert verdict["summary"].startswith("68 operations will run on the GPU")
    assert web_demo.gpu_fallback_lines(run["console"]) == [run["console"][-1]]
    clean = web_demo.delegate_verdict({"console": ["Graph successfully started running."],
                                       "drawCalls": 548})
    assert clean["refused"] == {} and clean["error"] is None and clean["draw_calls"] == 548


def test_serve_web_check_and_errors(tmp_path):
    (tmp_path / "m_float32.tflite").write_bytes(b"x")
    command = [sys.executable, "-m", "keras_deconvnet.cli", "serve-web"]
    done = subprocess.run([*command, str(tmp_path), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "m_float32.tflite" in done.stdout, done.stderr[-2000:]
    missing = subprocess.run([*command, str(tmp_path / "nope")], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 1 and "Not a directory" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
