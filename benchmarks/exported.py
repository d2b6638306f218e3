"""Exported runtimes (LiteRT float32/float16/int8, ONNX Runtime) against Keras."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.forward import build_model
from keras_deconvnet.benchmarks.machine import cpu_model, timed


def _litert_runner(content: bytes, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """Times what a client does per image: quantize the pixels for an integer input
    (the int8 file takes uint8 pixels as they are), invoke, dequantize the output."""
    from ai_edge_litert.interpreter import Interpreter

    from keras_deconvnet.export.runtimes import dequantize, quantize

    interpreter = Interpreter(model_content=content, num_threads=threads)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]

    def run(images):
        interpreter.set_tensor(source["index"], quantize(images, source))
        interpreter.invoke()
        return dequantize(interpreter.get_tensor(target["index"]), target)

    return run


def bench_exported(config: SuiteConfig, log=print) -> dict:
    """Per-image latency at batch 1: Keras float32 vs TFLite files vs ONNX Runtime.

    Every runtime computes the same function: RGB [0, 255] images -> preprocessing ->
    model -> softmax (the exports' contract). The int8 file is the one `deconvnet
    export` writes (uint8 pixels in, integer-only ops); each TFLite row records its
    fraction of integer-only ops.
    """
    from keras_deconvnet.export.model_interface import inference_function
    from keras_deconvnet.export.tflite_conversion import TFLiteConfig, convert_to_tflite
    from keras_deconvnet.export.tflite_inspection import integer_op_fraction

    threads = config.thread_count()
    model = build_model(config.exported_preset, config.image_size)
    size = config.image_size
    # Whole pixel values: what a camera frame holds, and what a uint8 input takes.
    image = np.random.default_rng(4).integers(0, 256, (1, size, size, 3)).astype("float32")
    calibration = np.random.default_rng(5).uniform(0, 255, (8, size, size, 3)).astype(
        "float32")
    rows = []

    def add(runtime, variant, run, extra=None):
        timing = timed(config, lambda: run(image), config.warmup + 1)
        row = {"runtime": runtime, "variant": variant, "batch": 1,
               "seconds_per_image": timing["median_s"], **(extra or {})}
        rows.append(row)
        log(f"  exported {runtime} {variant}: {timing['median_s'] * 1e3:.1f} ms/image")

    probabilities = inference_function(model)
    for mode, jit in (("function", False), ("xla", True)):
        fn = tf.function(probabilities, jit_compile=jit)
        add("keras", f"float32 {mode}", lambda images, fn=fn: fn(images).numpy())
    for quantization in config.quantizations:
        start = time.perf_counter()
        content = convert_to_tflite(
            model, quantization, TFLiteConfig(representative_samples=len(calibration)),
            representative_data=calibration,
        )
        convert_s = time.perf_counter() - start
        add("litert", quantization, _litert_runner(content, threads),
            {"size_mb": len(content) / 1e6, "convert_s": convert_s, "threads": threads,
             "integer_ops": integer_op_fraction(content)})
    if config.onnx:
        from keras_deconvnet.export.onnx import export_onnx, onnx_session

        directory = tempfile.mkdtemp(prefix="deconvnet-bench-")
        try:
            start = time.perf_counter()
            path = export_onnx(model, os.path.join(directory, "model.onnx"), check=False)
            convert_s = time.perf_counter() - start
            session = onnx_session(path, threads)
            name = session.get_inputs()[0].name
            add("onnxruntime", "float32",
                lambda images: session.run(None, {name: images})[0],
                {"size_mb": os.path.getsize(path) / 1e6, "convert_s": convert_s,
                 "threads": threads})
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    keras_best = min(r["seconds_per_image"] for r in rows if r["runtime"] == "keras")
    for row in rows:
        row["speedup_vs_keras_float32"] = keras_best / row["seconds_per_image"]
    del model
    keras.backend.clear_session()
    return {"preset": config.exported_preset, "threads": threads, "cpu": cpu_model(),
            "rows": rows}
