"""Where the forward pass spends its time, by op type and layer kind; ablations."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_deconvnet.benchmarks.config import SuiteConfig
from keras_deconvnet.benchmarks.forward import build_model, random_images
from keras_deconvnet.benchmarks.machine import run_child, time_runs


def _layer_kinds(model: keras.Model) -> dict:
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    kinds = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # the backbone inside a segmenter
            kinds.update(_layer_kinds(layer))
            continue
        name = layer.name
        if isinstance(layer, MaxPoolWithArgmax):
            kinds[name] = "pooling (MaxPoolWithArgmax)"
        elif isinstance(layer, Unpool):
            kinds[name] = "unpooling (Unpool)"
        elif isinstance(layer, keras.layers.BatchNormalization):
            kinds[name] = "batchnorm"
        elif isinstance(layer, keras.layers.ReLU):
            kinds[name] = "relu"
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            kinds[name] = "fc (fc6/fc7/deconv_fc6)"
        elif isinstance(layer, keras.layers.Conv2D):
            fc = name.startswith("fc") or layer.kernel_size != (3, 3)
            kinds[name] = "fc (fc6/fc7/deconv_fc6)" if fc and name != "score" else "conv 3x3"
            if name == "score":
                kinds[name] = "score 1x1"
        else:
            kinds[name] = "other"
    return kinds


def _layer_of(op_name: str, op_type: str, kinds: dict) -> str | None:
    """The Keras layer an op belongs to (fused convolutions: the convolution layer)."""
    for part in op_name.split("/"):
        base, _, suffix = part.rpartition("_")
        candidates = [part, base] if suffix.isdigit() else [part]
        for name in candidates:
            if name in kinds:
                if "Conv" in op_type or "MatMul" in op_type:
                    # oneDNN fuses Conv2D+BatchNorm+ReLU and names the fused op after
                    # its last node (..._bn or ..._relu): charge it to the convolution.
                    for tail in ("_relu", "_bn"):
                        if name.endswith(tail) and name[: -len(tail)] in kinds:
                            return name[: -len(tail)]
                return name
    return None


def _variant_calls(variant: str) -> tuple[Callable, Callable]:
    """`(pool_call, unpool_call)` replacing the layers' `call` for an ablation variant.

    - `ours`: the layers as they are.
    - `ours_xla_layers`: each layer's `call` compiled by XLA on its own (the convolutions
      stay on oneDNN), which fuses the switch arithmetic into one loop.
    - `reference`: `tf.nn.max_pool_with_argmax` + `tf.scatter_nd` (the argmax indices
      travel as the "switches"; even sizes only).
    - `no_switches`: plain max pooling and nearest-neighbour enlargement, no mask: the
      lower bound of any exact unpooling.
    """
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    pool_call, unpool_call = MaxPoolWithArgmax.call, Unpool.call
    if variant == "ours":
        return pool_call, unpool_call
    if variant == "ours_xla_layers":
        def xla_pool(self, inputs):
            if not hasattr(self, "_bench_xla"):
                self._bench_xla = tf.function(
                    lambda t: pool_call(self, t), jit_compile=True, autograph=False)
            return self._bench_xla(inputs)

        def xla_unpool(self, inputs, switches):
            if not hasattr(self, "_bench_xla"):
                self._bench_xla = tf.function(
                    lambda t, m: unpool_call(self, t, m), jit_compile=True, autograph=False)
            return self._bench_xla(inputs, switches)

        return xla_pool, xla_unpool
    if variant == "reference":
        def ref_pool(self, inputs):
            return list(tf.nn.max_pool_with_argmax(
                inputs, 2, 2, "SAME", include_batch_in_index=True))

        def ref_unpool(self, inputs, switches):
            shape = tf.shape(inputs) * tf.constant([1, 2, 2, 1])
            flat = tf.scatter_nd(tf.reshape(switches, (-1, 1)), tf.reshape(inputs, (-1,)),
                                 tf.cast(tf.reshape(tf.reduce_prod(shape), (1,)), tf.int64))
            return tf.reshape(flat, shape)

        return ref_pool, ref_unpool
    if variant == "no_switches":
        def plain_pool(self, inputs):
            return [tf.nn.max_pool2d(inputs, 2, 2, "SAME"), inputs]

        def plain_unpool(self, inputs, switches):
            return tf.nn.depth_to_space(tf.concat([inputs] * 4, axis=-1), 2)

        return plain_pool, plain_unpool
    raise ValueError(f"Unknown variant {variant!r}")


ABLATION_VARIANTS = ("ours", "ours_xla_layers", "reference", "no_switches")


def _ablation(payload: dict, x: tf.Tensor) -> list:
    """The same network with other pooling/unpooling implementations, ms per batch."""
    from keras_deconvnet.layers import MaxPoolWithArgmax, Unpool

    rows = []
    original = MaxPoolWithArgmax.call, Unpool.call
    for variant in payload["variants"]:
        MaxPoolWithArgmax.call, Unpool.call = _variant_calls(variant)
        try:
            model = build_model(payload["preset"], payload["image_size"])
            fn = tf.function(lambda t, m=model: m(t, training=False))
            fn(x).numpy()
            timing = time_runs(lambda f=fn: f(x).numpy(), payload["warmup"],
                               payload["repeats"], payload["seconds_per_figure"],
                               payload["max_repeats"])
        finally:
            MaxPoolWithArgmax.call, Unpool.call = original
        rows.append({"variant": variant, "seconds_per_batch": timing["median_s"]})
        del model, fn
        keras.backend.clear_session()
    base = next((r["seconds_per_batch"] for r in rows if r["variant"] == "ours"), None)
    for row in rows:
        row["vs_ours"] = row["seconds_per_batch"] / base if base else None
    return rows


def _trace(fn: Callable[[], object], steps: int):
    """Runs `fn` `steps` times under the TensorFlow profiler: (XSpace, wall s/step)."""
    from keras_deconvnet.private_apis import xplane_pb2

    space = xplane_pb2().XSpace()
    directory = tempfile.mkdtemp(prefix="deconvnet-profile-")
    try:
        tf.profiler.experimental.start(directory)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)
        with open(files[0], "rb") as f:
            space.ParseFromString(f.read())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return space, wall


def _op_events(space):
    """`(op_name, op_type, duration_ps)` of every op the CPU compute threads ran."""
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        metadata = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = metadata[event.metadata_id].name
                # Op events are "op_name:OpType"; executor and thread-pool events
                # ("ExecutorState::Process", ...) wrap them and are skipped.
                if ":" not in name or "::" in name:
                    continue
                op_name, op_type = name.rsplit(":", 1)
                yield op_name, op_type, event.duration_ps


def profile_child(payload: dict) -> dict:
    """In a subprocess (one op at a time, so op times add up): trace + ablation."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    preset, batch, size = payload["preset"], payload["batch"], payload["image_size"]
    x = tf.constant(random_images(batch, size))
    ablation = _ablation(payload, x)

    model = build_model(preset, size)
    kinds = _layer_kinds(model)
    fn = tf.function(lambda t: model(t, training=False))
    fn(x).numpy()
    fn(x).numpy()
    steps = 2
    space, wall = _trace(lambda: fn(x).numpy(), steps)
    by_type: dict = defaultdict(float)
    by_kind: dict = defaultdict(float)
    by_layer: dict = defaultdict(float)
    for op_name, op_type, duration_ps in _op_events(space):
        seconds = duration_ps / 1e12 / steps
        layer = _layer_of(op_name, op_type, kinds)
        by_type[op_type] += seconds
        by_kind[kinds.get(layer, "other")] += seconds
        by_layer[layer or "other"] += seconds
    total = sum(by_type.values()) or 1.0

    def table(values, top=None):
        items = sorted(values.items(), key=lambda kv: -kv[1])[:top]
        return [{"name": k, "seconds": v, "share": v / total} for k, v in items]

    return {
        "preset": preset, "batch": batch, "inter_op_threads": 1, "ablation": ablation,
        "wall_seconds_per_batch": wall, "op_seconds_per_batch": total,
        "by_kind": table(by_kind), "by_op_type": table(by_type, 15),
        "by_layer": table(by_layer, 15),
    }


def bench_profile(config: SuiteConfig, log=print) -> dict:
    """Where the forward pass spends its time (by layer kind and op type), and what
    the network costs with other pooling/unpooling implementations (ablation).

    Runs in a subprocess with one inter-op thread, so ops do not overlap and their
    profiled durations add up to the step (this does not change the speed measurably
    on 2 cores).
    """
    result = run_child("profile.profile_child", {
        "preset": config.profile_preset, "batch": config.profile_batch,
        "image_size": config.image_size, "variants": list(ABLATION_VARIANTS),
        # The ablation is a comparison within one process: `repeats` runs each.
        "warmup": config.warmup, "repeats": config.repeats, "seconds_per_figure": 0.0,
        "max_repeats": config.repeats,
    })
    for row in result["ablation"]:
        log(f"  ablation {row['variant']}: {row['seconds_per_batch'] * 1e3:.1f} ms/batch")
    for row in result["by_kind"]:
        log(f"  profile {row['name']}: {row['share']:.1%}")
    return result
