"""What is inside a TFLite file: its ops, how integer they are, and whether the GPU
delegate runs them all.

GPU delegate ops (`TFLITE_GPU_OPS`): the builtin ops that LiteRT's GPU delegate
parses, taken from `tflite/delegates/gpu/common/model_builder.cc` (the operation
parsers) and `tflite/tools/versioning/gpu_compatibility.cc` (their attribute and type
constraints) in the LiteRT / TensorFlow repositories. ARG_MAX, SCATTER_ND and
GATHER_ND have no parser there; Flex and custom ops are never delegated (the
MediaPipe custom ops `MaxPoolingWithArgmax2D`/`MaxUnpooling2D` run on the GPU but not
on plain TFLite CPU, so they are not used). `check_gpu_ops` checks the op names
against that set and also runs TensorFlow's `tf.lite.experimental.Analyzer` with
`gpu_compatibility=True`, which applies `gpu_compatibility.cc`'s per-op checks
(attributes, tensor types).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

# Builtin ops the TFLite GPU delegate parses, from LiteRT's
# tflite/delegates/gpu/common/model_builder.cc and
# tflite/tools/versioning/gpu_compatibility.cc. QUANTIZE/DEQUANTIZE appear in int8
# and float16 files; the delegate folds them (int8: with quantized models enabled).
# ARG_MAX has no parser there and is deliberately absent.
TFLITE_GPU_OPS = frozenset(
    {
        "ABS", "ADD", "AVERAGE_POOL_2D", "CAST", "CONCATENATION", "CONV_2D",
        "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "DIV", "EQUAL", "GREATER",
        "GREATER_EQUAL", "HARD_SWISH", "LESS", "LESS_EQUAL", "LOGISTIC", "MAXIMUM",
        "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NOT_EQUAL", "PACK", "PAD", "PRELU",
        "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SELECT_V2", "SLICE", "SOFTMAX",
        "SPACE_TO_DEPTH", "SPLIT",
        "STRIDED_SLICE", "SUB", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
        "FULLY_CONNECTED",
    }
)

# What MediaPipe web's GPU delegate (LiteRT's model builder, WebGL backend) refused
# although the parser list above has it, seen in its own console in headless Chromium
# (`deconvnet serve-web DIR --op-table`, tests/export/web_gpu_delegate_test.py). The
# same backend also fails on an op that takes one tensor twice (a self-concatenation
# becomes a COPY node: "No support of copy").
WEB_GPU_REFUSED = {
    "EQUAL": "Not supported logical op case",
    "NOT_EQUAL": "logical op, as EQUAL",
    "SELECT": "No support of select",
    "SELECT_V2": "No support of select_v2",
}

# Tensor types that make an op a float op (the rest: integer, bool, string).
_FLOAT_TYPES = (np.float16, np.float32, np.float64)


def tflite_content(flatbuffer: bytes | bytearray | os.PathLike) -> bytes:
    """The bytes of a TFLite flatbuffer given as bytes or as a file path."""
    if isinstance(flatbuffer, (bytes, bytearray)):
        return bytes(flatbuffer)
    return Path(flatbuffer).read_bytes()


def _op_details(flatbuffer: bytes | os.PathLike) -> tuple[list[dict], dict]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite_content(flatbuffer))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # Ops replaced by a delegate show up as DELEGATE nodes besides the originals.
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    return ops, tensors


def tflite_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """The set of operator names in a TFLite file or flatbuffer."""
    return set(op_counts(flatbuffer))


def op_counts(flatbuffer: bytes | os.PathLike) -> dict[str, dict[str, int]]:
    """How many times each op occurs, and how many of those touch a float tensor.

    Returns:
        `{op name: {"count": n, "float": n touching a float16/32/64 tensor}}`,
        sorted by name.

    Example:

    >>> @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    ... def double(x):
    ...     return x * 2.0
    >>> flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [double.get_concrete_function()], tf.Module()).convert()
    >>> op_counts(flatbuffer)
    {'MUL': {'count': 1, 'float': 1}}
    """
    ops, tensors = _op_details(flatbuffer)
    counts: dict = collections.defaultdict(lambda: {"count": 0, "float": 0})
    for op in ops:
        indices = [i for i in (*op["inputs"], *op["outputs"]) if i >= 0 and i in tensors]
        entry = counts[op["op_name"]]
        entry["count"] += 1
        entry["float"] += any(tensors[i]["dtype"] in _FLOAT_TYPES for i in indices)
    return {name: dict(counts[name]) for name in sorted(counts)}


def integer_op_fraction(flatbuffer: bytes | os.PathLike) -> float:
    """The fraction of ops none of whose tensors is float (1.0: fully integer).

    Example:

    >>> @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    ... def double(x):
    ...     return x * 2.0
    >>> integer_op_fraction(tf.lite.TFLiteConverter.from_concrete_functions(
    ...     [double.get_concrete_function()], tf.Module()).convert())
    0.0
    """
    return integer_fraction(op_counts(flatbuffer))


def integer_fraction(counts: Mapping[str, Mapping[str, int]]) -> float:
    """The fraction of integer-only ops in `op_counts`'s result (1.0 without ops)."""
    total = sum(c["count"] for c in counts.values())
    return 1.0 - sum(c["float"] for c in counts.values()) / total if total else 1.0


def format_op_table(files: Mapping[str, bytes | os.PathLike]) -> str:
    """A Markdown table of the ops in TFLite files: count per file, GPU delegate.

    Generated from the files themselves (the README's op lists come from here):
    one row per op, one column per file with `count` (and `count (f float)` where
    some of them touch float tensors), then whether the GPU delegate parses it.

    Args:
        files: `{column title: .tflite path or bytes}`.

    Returns:
        The table; its last row gives each file's fraction of integer-only ops.
    """
    counts = {title: op_counts(content) for title, content in files.items()}
    names = sorted({name for c in counts.values() for name in c})
    header = ["op", *counts, "GPU delegate"]
    rows = [header, ["---"] * len(header)]
    for name in names:
        cells = [name]
        for c in counts.values():
            entry = c.get(name)
            if entry is None:
                cells.append("")
            elif entry["float"]:
                cells.append(f"{entry['count']} ({entry['float']} float)")
            else:
                cells.append(str(entry["count"]))
        supported = name in TFLITE_GPU_OPS and name not in WEB_GPU_REFUSED
        cells.append("yes" if supported else "**no**")
        rows.append(cells)
    totals = ["integer-only ops"]
    for c in counts.values():
        total = sum(e["count"] for e in c.values())
        integer = total - sum(e["float"] for e in c.values())
        totals.append(f"{integer}/{total} ({100.0 * integer / max(total, 1):.0f}%)")
    rows.append([*totals, ""])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def gpu_compatibility_report(flatbuffer: bytes | os.PathLike) -> str:
    """TensorFlow's `Analyzer` report with the GPU delegate compatibility checks."""
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(
            model_content=tflite_content(flatbuffer), gpu_compatibility=True
        )
    return report.getvalue()


def check_gpu_ops(flatbuffer: bytes | os.PathLike) -> set[str]:
    """Raises `ValueError` if the TFLite GPU delegate cannot run the whole model.

    Checks the op names against `TFLITE_GPU_OPS` less what the web GPU delegate was
    seen to refuse (`WEB_GPU_REFUSED`), that no op takes one tensor twice, and the
    `Analyzer`'s GPU compatibility report (op attributes and tensor types). These are
    proxies: the real delegate's verdict is `deconvnet serve-web DIR --op-table`.

    Returns:
        The set of op names.
    """
    content = tflite_content(flatbuffer)
    ops = tflite_ops(content)
    unsupported = sorted((ops - TFLITE_GPU_OPS) | (ops & set(WEB_GPU_REFUSED)))
    if unsupported:
        raise ValueError(
            f"The TFLite model uses ops the GPU delegate does not support: "
            f"{', '.join(unsupported)}. All ops: {', '.join(sorted(ops))}."
        )
    details, _ = _op_details(content)
    for op in details:
        inputs = [i for i in op["inputs"] if i >= 0]
        if len(inputs) != len(set(inputs)):
            raise ValueError(
                f"A {op['op_name']} of the TFLite model takes one tensor twice, which the "
                "web GPU delegate turns into a COPY node it cannot run."
            )
    report = gpu_compatibility_report(content)
    if "GPU COMPATIBILITY WARNING" in report:
        lines = [line.strip() for line in report.splitlines() if "GPU" in line]
        raise ValueError(
            "The TFLite GPU compatibility check failed: " + " | ".join(lines[:10])
        )
    return ops

