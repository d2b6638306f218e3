"""`MaxPoolWithArgmax` + `Unpool` against `tf.nn.max_pool_with_argmax` + `tf.scatter_nd`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.machine import timed


def _reference_pool_unpool(x: tf.Tensor) -> tf.Tensor:
    """`tf.nn.max_pool_with_argmax` + `tf.scatter_nd`: the classic argmax unpooling."""
    pooled, argmax = tf.nn.max_pool_with_argmax(
        x, 2, 2, "SAME", include_batch_in_index=True
    )
    flat = tf.scatter_nd(
        tf.reshape(argmax, (-1, 1)), tf.reshape(pooled, (-1,)),
        tf.cast(tf.reshape(tf.size(x), (1,)), tf.int64),
    )
    return tf.reshape(flat, tf.shape(x))


def _ours_pool_unpool() -> Callable[[tf.Tensor], tf.Tensor]:
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    pool, unpool = MaxPoolWithArgmax(), Unpool()

    def fn(x):
        pooled, switches = pool(x)
        return unpool(pooled, switches)

    return fn


def _forward_backward(fn: Callable) -> Callable:
    # Returns the forward output too, as a training step uses it downstream: otherwise
    # graph pruning drops the reference's scatter (its gradient is a gather that needs
    # only the indices) and the comparison would time half of the reference.
    def step(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y, tape.gradient(y, x, output_gradients=dy)

    return step


def bench_layers(config: SuiteConfig, log=print) -> list:
    """Pool+unpool rows: ours vs the argmax+scatter reference, forward and backward."""
    rows = []
    ours = _ours_pool_unpool()
    impls = {
        "ours": ours,
        "reference": _reference_pool_unpool,
    }
    for batch in config.layer_batches:
        for h, w, c in config.feature_maps:
            x = tf.constant(np.random.default_rng(1).normal(size=(batch, h, w, c)),
                            tf.float32)
            dy = tf.constant(np.random.default_rng(2).normal(size=(batch, h, w, c)),
                             tf.float32)
            row = {"batch": batch, "shape": [h, w, c]}
            for name, fn in impls.items():
                forward = tf.function(fn)
                both = tf.function(_forward_backward(fn))
                row[f"{name}_forward_s"] = timed(
                    config, lambda f=forward, x=x: f(x).numpy(), config.warmup + 1
                )["median_s"]
                row[f"{name}_forward_backward_s"] = timed(
                    config, lambda f=both, x=x, dy=dy: [t.numpy() for t in f(x, dy)],
                    config.warmup + 1,
                )["median_s"]
            # The same layers compiled by XLA, which fuses their elementwise ops.
            xla = tf.function(_forward_backward(ours), jit_compile=True)
            row["ours_xla_forward_backward_s"] = timed(
                config, lambda f=xla, x=x, dy=dy: [t.numpy() for t in f(x, dy)],
                config.warmup + 1,
            )["median_s"]
            row["forward_ratio"] = row["ours_forward_s"] / row["reference_forward_s"]
            row["forward_backward_ratio"] = (
                row["ours_forward_backward_s"] / row["reference_forward_backward_s"]
            )
            rows.append(row)
            log(f"  layers b{batch} {h}x{w}x{c}: fwd+bwd ours "
                f"{row['ours_forward_backward_s'] * 1e3:.2f} ms vs reference "
                f"{row['reference_forward_backward_s'] * 1e3:.2f} ms")
    return rows
