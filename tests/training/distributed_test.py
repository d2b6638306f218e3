"""`train_two_stage` under tf.distribute strategies, in subprocesses.

Logical devices must be configured before TensorFlow initialises, so each case
runs a fresh interpreter and reports JSON on its last stdout line.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

COMMON = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import keras
from keras_deconvnet.metrics import MeanIoU, confusion_matrix, iou_from_confusion
from keras_deconvnet.models import DeconvNetBackbone, DeconvNetImageSegmenter
from keras_deconvnet.training import StageConfig, TrainingConfig, train_two_stage

def build():
    if MODEL == "deconvnet":
        backbone = DeconvNetBackbone(image_shape=(32, 32, 3), block_filters=(8, 8),
                                     block_depths=(1, 1), fc_units=16, fc_kernel_size=2)
        return DeconvNetImageSegmenter(
            backbone, 3, preprocessor=DeconvNetImageSegmenter.default_preprocessor(backbone))
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))

rng = np.random.default_rng(0)
images = rng.normal(size=(8, 32, 32, 3)).astype("float32")
masks = np.digitize(images[..., 0], [-0.5, 0.5]).astype("int32")
masks[:, :3] = 255
data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(4)
# Accumulation as the original (here 2 batches per update): Keras's own fails
# under MirroredStrategy ("merge_call called while defining a new graph").
config = TrainingConfig(stage1=StageConfig(epochs=2), stage2=StageConfig(epochs=1),
                        gradient_accumulation_steps=2, tensorboard=False, verbose=0)
model, history = train_two_stage(build, data, data, data, OUTPUT_DIR, config,
                                 strategy=STRATEGY)
logs = model.evaluate(data, verbose=0, return_dict=True)
predictions = model.predict(images, verbose=0).argmax(-1)
expected = iou_from_confusion(confusion_matrix(masks, predictions, 3))["mean_iou"]

# The metric alone, updated per replica on fixed scores, read in cross-replica context.
strategy = model.distribute_strategy
with strategy.scope():
    metric = MeanIoU(3)
scores = rng.normal(size=(8, 32, 32, 3)).astype("float32")
pairs = tf.data.Dataset.from_tensor_slices((masks, scores)).batch(4)

@tf.function
def update(y, p):
    strategy.run(metric.update_state, args=(y, p))

for y, p in strategy.experimental_distribute_dataset(pairs):
    update(y, p)
reference = confusion_matrix(masks, scores.argmax(-1), 3)
print(json.dumps({
    "replicas": model.distribute_strategy.num_replicas_in_sync,
    "strategy": type(model.distribute_strategy).__name__,
    "losses": history["stage1"]["loss"] + history["stage2"]["loss"],
    "updates": int(model.optimizer.iterations.numpy()),
    "val_mean_iou": history["stage2"]["val_mean_iou"],
    "evaluate_mean_iou": logs["mean_iou"],
    "numpy_mean_iou": expected,
    "metric_cm_matches": bool((metric.confusion_matrix() == reference).all()),
    "metric_mean_iou": float(metric.result()),
    "reference_mean_iou": iou_from_confusion(reference)["mean_iou"],
}))
"""

MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""

MULTI_WORKER = """
import tensorflow as tf
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()  # at program start
"""


def _run(prelude, model, output_dir, env=None):
    code = (
        prelude
        + f"MODEL = {model!r}\nOUTPUT_DIR = {str(output_dir)!r}\n"
        + textwrap.dedent(COMMON)
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _check(report, replicas):
    assert report["replicas"] == replicas
    assert len(report["losses"]) == 3
    assert report["updates"] == 1  # stage 2: 2 batches, accumulated into 1 update
    assert all(abs(loss) < 1e6 for loss in report["losses"])  # finite
    # The metric, summed over replicas, equals the numpy reference exactly...
    assert report["metric_cm_matches"]
    assert report["metric_mean_iou"] == pytest.approx(report["reference_mean_iou"], abs=1e-6)
    # ... and in `evaluate` (up to argmax ties that batch-size numerics may flip).
    assert report["evaluate_mean_iou"] == pytest.approx(report["numpy_mean_iou"], abs=2e-3)


def test_loop_engine_equals_fit(tmp_path):
    # The loop multi-worker clusters use, in one process: the same updates as `fit`
    # (callbacks, validation, resume files and BN statistics included).
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_deconvnet.training import StageConfig, TrainingConfig, train_two_stage

    def build():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        return keras.Model(inputs, keras.layers.Conv2D(3, 1)(x))

    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 16, 16, 3)).astype("float32")
    masks = np.digitize(images[..., 0], [-0.5, 0.5]).astype("int32")
    masks[:, :2] = 255
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    results = {}
    for engine in ("fit", "loop"):
        config = TrainingConfig(
            stage1=StageConfig(epochs=2, learning_rate=0.05),
            stage2=StageConfig(epochs=1, learning_rate=0.05), gradient_accumulation_steps=2,
            jit_compile=False, tensorboard=False, verbose=0, engine=engine,
            lr_schedule="plateau", plateau_patience=1)
        model, history = train_two_stage(build, data, data, data, tmp_path / engine, config)
        results[engine] = (model.get_weights(), history)
    (fit_weights, fit_history), (loop_weights, loop_history) = results["fit"], results["loop"]
    assert sorted(loop_history["stage1"]) == sorted(fit_history["stage1"])
    for key, values in fit_history["stage1"].items():
        np.testing.assert_allclose(loop_history["stage1"][key], values, rtol=1e-5, err_msg=key)
    for a, b in zip(loop_weights, fit_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "loop" / "stage2" / "batchnorm" / "COMPLETE.json").exists()


def test_mirrored_two_replicas(tmp_path):
    report = _run(MIRRORED, "small", tmp_path)
    assert report["strategy"] == "MirroredStrategy"
    _check(report, replicas=2)


@pytest.mark.slow
def test_mirrored_two_replicas_deconvnet(tmp_path):
    _check(_run(MIRRORED, "deconvnet", tmp_path), replicas=2)


@pytest.mark.slow
def test_multi_worker_single_worker_cluster(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"localhost:{port}"]},
                 "task": {"type": "worker", "index": 0}}
    report = _run(MULTI_WORKER, "small", tmp_path, env={"TF_CONFIG": json.dumps(tf_config)})
    # MultiWorkerMirroredStrategy's class is named CollectiveAllReduceStrategy.
    assert report["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")
    _check(report, replicas=1)
    assert (tmp_path / "stage2" / "COMPLETE.json").exists()  # the chief writes here


def test_slurm_cluster_from_the_environment(monkeypatch):
    from keras_deconvnet.training.distributed import slurm_resolver

    for name, value in {"SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2",
                        "SLURM_STEP_NODELIST": "node[01-02]",
                        "SLURM_STEP_TASKS_PER_NODE": "1(x2)"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    resolver = slurm_resolver()  # no GPU here, and no nvidia-smi needed
    assert resolver.cluster_spec().as_dict() == {"worker": ["node01:8888", "node02:8888"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
