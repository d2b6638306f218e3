"""Runs a training that SIGKILLs itself at a chosen point, for `exact_resume_test`.

    python kill_driver.py small OUT [FREQ]   # train_two_stage, a tiny DeconvNet
                                             # (FREQ: backups every FREQ batches)
    python kill_driver.py cli ARGS...        # `deconvnet ARGS...`

`KILL_AT` (environment) picks the point; without it the run goes to the end:

- `after:SUFFIX:N`: right after the N-th rename (`os.replace`/`os.rename`) onto a
  path ending in SUFFIX, e.g. `after:stage1/history.csv:2` (epoch 2's history row
  is written, its backup is not).
- `before:SUFFIX:N`: right before it: the temporary file or directory is complete
  and left behind, e.g. `before:stage2/last.weights.h5:1`.
- `batch:STAGE:EPOCH:BATCH`: at the end of that batch (0-based epoch and batch).
- `bn:N`: after N batches of the BatchNorm statistics.

The process kills itself with SIGKILL: no handler, `finally` or `atexit` runs, as
when a machine is preempted. Each point is reached when a file appears or a phase
is entered, never after a delay.
"""

import os
import signal
import sys

import keras

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for model_fixtures


def _die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(spec: str) -> None:
    kind, _, rest = spec.partition(":")
    if kind in ("after", "before"):
        suffix, _, count = rest.rpartition(":")
        state = {"seen": 0}
        for name in ("replace", "rename"):
            original = getattr(os, name)

            def renamed(src, dst, *args, _original=original, **kwargs):
                hit = os.fspath(dst).endswith(suffix)
                if hit:
                    state["seen"] += 1
                    if kind == "before" and state["seen"] == int(count):
                        _die()
                result = _original(src, dst, *args, **kwargs)
                if hit and kind == "after" and state["seen"] == int(count):
                    _die()
                return result

            setattr(os, name, renamed)
    elif kind == "batch":
        stage, epoch, batch = rest.split(":")
        from keras_deconvnet.training import stages

        class Killer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epoch = None

            def on_epoch_begin(self, e, logs=None):
                self.epoch = e

            def on_train_batch_end(self, b, logs=None):
                if self.epoch == int(epoch) and b == int(batch):
                    _die()

        original = stages._StageRunner.callbacks

        def callbacks(self):
            extra = [Killer()] if self.stage.name == stage else []
            return original(self) + extra

        stages._StageRunner.callbacks = callbacks
    elif kind == "bn":
        from keras_deconvnet.training import progress

        original = progress.BatchProgress.__call__

        def call(self, done, final=False):
            if done == int(rest) and not final:
                _die()
            return original(self, done, final)

        progress.BatchProgress.__call__ = call
    else:
        raise SystemExit(f"unknown KILL_AT {spec!r}")


def small_datasets():
    """Functions building the stage datasets: shuffled, augmented with per-example
    random draws, repeated, batched, prefetched, as `crop_datasets` builds them."""
    import tensorflow as tf

    from keras_deconvnet.data.crops import _with_seeds

    def make(seed):
        images = tf.random.stateless_uniform((12, 32, 32, 3), (seed, 1), 0, 255)
        masks = tf.cast(images[..., 0] // 86, tf.int32)

        def augment(example, example_seed):
            image, mask = example
            noise = tf.random.stateless_uniform(tf.shape(image), example_seed, -8, 8)
            flip = tf.random.stateless_uniform((), example_seed + 1) < 0.5
            image = tf.where(flip, image[:, ::-1], image) + noise
            return image, tf.where(flip, mask[:, ::-1], mask)

        data = tf.data.Dataset.from_tensor_slices((images, masks))
        data = _with_seeds(data, True, seed).map(augment)
        return (data.shuffle(8, seed=seed).repeat().batch(2, drop_remainder=True)
                .prefetch(tf.data.AUTOTUNE))

    return (lambda: make(1)), (lambda: make(2))


def run_small(out: str, backup_save_freq="epoch") -> int:
    import tensorflow as tf
    from training.two_stage_test import tiny_model

    from keras_deconvnet.training import StageConfig, TrainingConfig, train_two_stage

    keras.utils.set_random_seed(0)
    stage1, stage2 = small_datasets()
    images = tf.random.stateless_uniform((4, 32, 32, 3), (7, 1), 0, 255)
    validation = tf.data.Dataset.from_tensor_slices(
        (images, tf.cast(images[..., 0] // 86, tf.int32))).batch(2)
    config = TrainingConfig(
        stage1=StageConfig(epochs=2, steps_per_epoch=4, lr_step_size=1, learning_rate=0.1),
        stage2=StageConfig(epochs=3, steps_per_epoch=4, lr_step_size=2, learning_rate=0.1),
        batch_size=2, gradient_accumulation_steps=2, batchnorm_batches=3,
        batchnorm_batch_size=3, jit_compile=False, tensorboard=False, verbose=2,
        backup_save_freq=backup_save_freq,
    )
    train_two_stage(tiny_model, stage1, stage2, validation, out, config)
    return 0


def main(argv) -> int:
    if os.environ.get("KILL_AT"):
        _install_kill(os.environ["KILL_AT"])
    program, args = argv[0], argv[1:]
    if program == "small":
        return run_small(args[0], *(int(a) for a in args[1:2]))
    if program == "cli":
        from keras_deconvnet.cli import main as cli

        return cli(args)
    raise SystemExit(f"unknown program {program!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
