"""The command's output in logs: plain progress lines, one-line warnings, native chatter
held back (and everything else written back)."""

import io
import os
import sys
import warnings

import keras
import pytest

from keras_deconvnet.cli import console


def test_a_keras_progress_bar_becomes_plain_lines():
    out = io.StringIO()
    plain = console.PlainProgressStream(out, interval=3600)
    saved, sys.stdout = sys.stdout, plain
    try:
        bar = keras.utils.Progbar(5, unit_name="image", interval=0)
        for i in range(1, 6):
            bar.update(i)
    finally:
        sys.stdout = saved
    plain.finish()
    text = out.getvalue()
    assert "\x1b" not in text and "\b" not in text and "\r" not in text
    assert "━" not in text  # the bar's glyphs say nothing without their colours
    lines = text.splitlines()
    # The first state right away, then (within the interval) only the final one.
    assert len(lines) == 2, lines
    assert lines[0].startswith("1/5") and lines[1].startswith("5/5")


def test_a_redrawn_line_is_written_again_after_the_interval():
    out = io.StringIO()
    plain = console.PlainProgressStream(out, interval=0)
    plain.write("\r1/3\r2/3\r3/3\nplain line\n")
    assert out.getvalue() == "1/3\n2/3\n3/3\nplain line\n"


def test_command_output_keeps_stdout_when_it_is_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    with console.plain_progress_when_not_a_terminal():
        assert sys.stdout is terminal


def test_warnings_are_one_line_without_the_source():
    with console.one_line_warnings():
        lines = [
            warnings.formatwarning("fc6 and fc7 keep\n their random initialisation",
                                   UserWarning, __file__, 1, "source line"),
            warnings.formatwarning("old", FutureWarning, __file__, 2),
        ]
    assert lines == ["deconvnet: warning: fc6 and fc7 keep their random initialisation\n",
                     "deconvnet: warning: old (FutureWarning)\n"]
    assert warnings.formatwarning is not console.format_warning  # restored


def test_native_noise_is_dropped_and_the_rest_written_back(capfd):
    with console.native_output_filtered():
        os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"W0000 00:00:1796680618.859734    6111 flatbuffer.cc:12] Ignored x\n")
        os.write(2, b"E0000 something that went wrong\n")
    err = capfd.readouterr().err
    assert err == "E0000 something that went wrong\n"


def test_everything_native_is_written_back_when_the_block_fails(capfd):
    with pytest.raises(RuntimeError), console.native_output_filtered():
        os.write(2, b"fully_quantize: 0, inference_type: 6\n")
        raise RuntimeError("conversion failed")
    assert "fully_quantize" in capfd.readouterr().err


def test_native_lines_that_are_not_noise_pass_while_the_block_runs(capfd):
    import time

    with console.native_output_filtered():
        os.write(2, b"E0000 a native error\n")
        seen = ""
        for _ in range(500):  # the reader thread forwards it; no sleep-based guess
            seen += capfd.readouterr().err
            if "a native error" in seen:
                break
            time.sleep(0.01)
        assert "E0000 a native error" in seen  # before the block ended
        print("python's stderr still works", file=sys.stderr)
    assert "python's stderr still works" in capfd.readouterr().err
