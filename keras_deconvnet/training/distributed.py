"""Distribution: strategies by name, the chief, and a training loop for worker clusters.

Keras 3's `model.fit` does not run under `tf.distribute.MultiWorkerMirroredStrategy`
with more than one worker (keras-team/keras#20585; measured with Keras 3.15 and
TensorFlow 2.21: `fit` fails in `_maybe_symbolic_build`, which reduces a
`PerReplica` batch across workers, and then in `reduce_per_replica`). Everything
else in Keras works there, so `DistributedLoop` is `fit`'s epoch loop written out:
the same `model.train_step` / `model.test_step` (loss, metrics, optimizer, gradient
accumulation) run by `strategy.run` inside a `tf.function`, the same callbacks,
progress bar and logs. `train_two_stage` uses it for multi-worker strategies and
`fit` everywhere else.

Data: `strategy.experimental_distribute_dataset` with auto-sharding by DATA: every
worker runs the same input pipeline and keeps its slice of each global batch (with 2
workers and batch 8, worker 0 trains on rows 0-3 and worker 1 on rows 4-7 of every
batch), so each worker sees different crops and the update is exactly that of one
machine training the same global batch split the same way.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from keras_deconvnet import private_apis

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def _slurm_job() -> bool:
    # Set by `srun` for every task of a job step: the cluster can be read from it.
    return "SLURM_STEP_NUM_TASKS" in os.environ and "SLURM_PROCID" in os.environ


def get_strategy(strategy: str | tf.distribute.Strategy = "default") -> tf.distribute.Strategy:
    """Resolves a strategy name to a `tf.distribute.Strategy`.

    Create it first thing in the program: `MultiWorkerMirroredStrategy` (and a TPU
    system) can only be set up before TensorFlow has run anything, building
    datasets included.

    Args:
        strategy: `"default"` (no distribution: one device), `"mirrored"`
            (`MirroredStrategy` over all local GPUs, or the CPU), `"multi_worker"`
            (`MultiWorkerMirroredStrategy`: the cluster from the `TF_CONFIG`
            environment variable, or from Slurm's variables inside `srun` when
            `TF_CONFIG` is unset), `"tpu"` (`TPUStrategy` on the TPU that
            `TPUClusterResolver` finds), or a `tf.distribute.Strategy` instance,
            returned as is.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: on an unknown name or a malformed `TF_CONFIG`.
        RuntimeError: with a one-line reason when the strategy cannot be created
            (too late in the program, no TPU).

    Example:

    >>> type(get_strategy("default")).__name__
    '_DefaultDistributionStrategy'
    """
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multi_worker":
        return _multi_worker_strategy()
    if strategy == "tpu":
        return _tpu_strategy()
    raise ValueError(
        f"`strategy` must be one of {STRATEGIES} or a tf.distribute.Strategy. "
        f"Received: strategy={strategy!r}"
    )


def slurm_resolver(port_base: int = 8888):
    """The cluster of the current `srun` job step, one worker per task.

    GPUs are counted by TensorFlow rather than by `nvidia-smi` (which
    `SlurmClusterResolver` would run, and which CPU nodes lack); with several
    tasks on a node each gets its share of the node's GPUs.

    Args:
        port_base: the first port of each node's tasks. Defaults to `8888`.

    Returns:
        A `tf.distribute.cluster_resolver.SlurmClusterResolver`.

    Raises:
        RuntimeError: outside a Slurm job step (`SLURM_PROCID` missing).
    """
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    count = len(gpus.split(",")) if gpus else len(tf.config.list_physical_devices("GPU"))
    if count:
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=port_base, gpus_per_node=count)
    # CPU nodes: the resolver's allocation loop needs a GPU per task, so give it
    # placeholders and do not let it set CUDA_VISIBLE_DEVICES.
    return tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=port_base, gpus_per_node=1024, gpus_per_task=1, auto_set_gpu=False)


def _multi_worker_strategy():
    resolver = None
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            json.loads(tf_config)
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    elif _slurm_job():
        resolver = slurm_resolver()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except (RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise RuntimeError(
            "cannot create tf.distribute.MultiWorkerMirroredStrategy: it must be created "
            "at program start, before any other TensorFlow work (datasets included); "
            "create it with get_strategy('multi_worker') first and pass the instance. "
            f"TensorFlow said: {reason}"
        ) from None


def _tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as e:
        reason = " ".join(str(e).split())[:300]
        raise RuntimeError(f"no TPU available for --strategy tpu: {reason}") from None


def worker_info(strategy) -> tuple[str | None, int, int]:
    """`(task_type, task_id, number of workers)` of this process in `strategy`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None) if resolver is not None else None
    if not task_type:
        return None, 0, 1
    cluster = resolver.cluster_spec().as_dict()
    workers = sum(len(cluster.get(job, [])) for job in ("chief", "worker"))
    return task_type, int(resolver.task_id or 0), max(workers, 1)


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints and logs: the `chief` task, or worker
    0 of a cluster without one, or the only process."""
    task_type, task_id, _ = worker_info(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def needs_custom_loop(strategy) -> bool:
    """True for strategies under which Keras 3's `fit` fails: multi-worker ones."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        worker_info(strategy)[2] > 1
    )


def preprocessed(model: keras.Model, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with the model's preprocessing mapped over it, as keras-hub's `fit`
    does (`model.preprocess_samples`); unchanged for a model without one."""
    preprocess = getattr(model, "preprocess_samples", None)
    if preprocess is None or getattr(model, "preprocessor", None) is None:
        return dataset
    return dataset.map(lambda *batch: preprocess(*batch), num_parallel_calls=tf.data.AUTOTUNE)


def _data_sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _to_floats(logs) -> dict:
    return {key: float(value) for key, value in logs.items()}


class DistributedLoop:
    """`model.fit`'s loop with `strategy.run`, for strategies where `fit` fails.

    The model must be compiled inside `strategy.scope()`. `fit` takes the same
    arguments as `keras.Model.fit` (datasets only) and calls the callbacks at the
    same points, so `EpochBackup`, `ReduceLROnPlateau`, `TerminateOnNaN`, the
    progress bar and `History` behave as under `fit`. `steps_per_execution` and
    `jit_compile` are not used: one `tf.function` step per batch.

    Args:
        model: a compiled Keras model (a keras-hub task gets its preprocessor
            mapped over the data, as its `fit` does).
        strategy: the `tf.distribute.Strategy` the model was built in.

    Example:

    >>> inputs = keras.Input((4, 4, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    >>> model.compile("sgd", "sparse_categorical_crossentropy")
    >>> loop = DistributedLoop(model, tf.distribute.get_strategy())
    >>> data = tf.data.Dataset.from_tensor_slices(
    ...     (tf.zeros((4, 4, 4, 3)), tf.zeros((4, 4, 4), "int32"))).batch(2)
    >>> sorted(loop.fit(data, epochs=1, verbose=0).history)
    ['loss']
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy):
        self.model = model
        self.strategy = strategy
        self._train_function = None
        self._test_function = None

    # --- the distributed steps ----------------------------------------------------
    def _make_functions(self):
        model, strategy = self.model, self.strategy

        def replica_train(data):
            return model.train_step(data)["loss"]

        @tf.function
        def train_function(iterator):
            loss = strategy.run(replica_train, args=(next(iterator),))
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)

        @tf.function
        def test_function(data):
            strategy.run(model.test_step, args=(data,))

        self._train_function, self._test_function = train_function, test_function

    def _build(self, dataset):
        # What `fit`'s `_maybe_symbolic_build` does, from the dataset's element
        # spec instead of a cross-worker reduction of a distributed batch (the step
        # that fails): optimizer, loss and metric variables exist before the step is
        # traced. Not from a batch: a second iterator over a seeded `shuffle` would
        # advance its seed and change the order the training iterator sees.
        with self.strategy.scope():
            optimizer = self.model.optimizer
            if not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            symbolic_build = getattr(self.model, "_symbolic_build", None)
            if symbolic_build is not None:
                symbolic_build(data_batch=dataset.element_spec)

    # --- the loop -----------------------------------------------------------------
    def fit(
        self,
        dataset: tf.data.Dataset,
        epochs: int = 1,
        steps_per_epoch: int | None = None,
        validation_data: tf.data.Dataset | None = None,
        validation_steps: int | None = None,
        callbacks=(),
        verbose="auto",
    ) -> keras.callbacks.History:
        """Trains like `model.fit(dataset, ...)`; returns the `History`.

        Raises:
            ValueError: if `steps_per_epoch` is None and the dataset's length is
                unknown or infinite (the workers must agree on the steps).
        """
        model = self.model
        train = preprocessed(model, dataset)
        steps = _steps(dataset, steps_per_epoch)
        if self._train_function is None:
            self._build(train)
            self._make_functions()
        distributed = self.strategy.experimental_distribute_dataset(_data_sharded(train))
        validation = None
        if validation_data is not None:
            validation = self.strategy.experimental_distribute_dataset(
                _data_sharded(preprocessed(model, validation_data)))
        callbacks = keras.callbacks.CallbackList(
            list(callbacks), add_history=True, add_progbar=verbose not in (0, False),
            model=model, verbose=1 if verbose == "auto" else verbose, epochs=epochs,
            steps=steps,
        )
        model.stop_training = False
        callbacks.on_train_begin()
        initial_epoch = private_apis.initial_epoch(model)
        # As `fit`: with `steps_per_epoch` one iterator runs on across epochs.
        iterator = iter(distributed) if steps_per_epoch else None
        logs = {}
        for epoch in range(initial_epoch, epochs):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            epoch_iterator = iterator if iterator is not None else iter(distributed)
            for step in range(steps):
                callbacks.on_train_batch_begin(step)
                loss = self._train_function(epoch_iterator)
                callbacks.on_train_batch_end(step, {"loss": float(loss)})
                if model.stop_training:
                    break
            logs = _to_floats(model.get_metrics_result())
            if validation is not None:
                logs.update({f"val_{k}": v for k, v in
                             self.evaluate(validation, validation_steps).items()})
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callbacks.on_train_end(logs)
        private_apis.set_initial_epoch(model, None)
        return model.history

    def evaluate(self, distributed, steps: int | None = None) -> dict:
        """Metrics of the model over a distributed dataset (every batch, or `steps`)."""
        self.model.reset_metrics()
        for step, data in enumerate(distributed):
            if steps is not None and step >= steps:
                break
            self._test_function(data)
        return _to_floats(self.model.get_metrics_result())


def _steps(dataset: tf.data.Dataset, steps_per_epoch: int | None) -> int:
    if steps_per_epoch is not None:
        return steps_per_epoch
    cardinality = int(dataset.cardinality())
    if cardinality < 0:
        raise ValueError(
            "Multi-worker training needs `steps_per_epoch` for a dataset of unknown or "
            f"infinite length (cardinality {cardinality}): all workers must run the "
            "same number of steps."
        )
    return cardinality
