"""Recomputes BatchNorm moving statistics from data, as the original code did.

The authors' BN layer kept no running averages while training. Their script
`training/003_make_bn_layer_testable/BN_make_INFERENCE_script.py` (HyeonwooNoh/
DeconvNet) then ran the stage-2 network over 501 training batches (one forward,
then `iteration = 500` more; batches of 28 windows, the `batch_size` of
`DeconvNet_make_bn_layer_testable.prototxt`), averaged each BN layer's per-batch
mean and (biased) per-batch variance, multiplied the variance by `m / (m - 1)`
with `m = N * H * W` the values per channel in a batch, and folded the result into
the layer's scale and shift with `var_eps = 1e-9`.

`recompute_batchnorm_statistics` does the same (`method="caffe"`) and writes the
statistics into Keras's `moving_mean` / `moving_variance` instead of folding them;
inference then uses the layer's own `epsilon`, the one it trained with. Two details
of the original, for the record: the script is Python 2 and `m` a numpy integer, so
`m / (m - 1)` there is integer division and equals 1: the released model got the
plain average of biased variances (`unbiased=False`). The correction matters only
where `m` is small: fc6/fc7 (1x1 maps, m = 28: 3.7%) and deconv_fc6 (7x7: 0.07%).
Keras's exponential moving averages are a cheaper approximation that lags behind
the weights (and is poor after short fine-tuning).
"""

from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

METHODS = ("caffe", "population")


def _all_layers(model):
    """Every layer of `model`, those of nested models (a segmenter's backbone) too."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def batchnorm_layers(model: keras.Model) -> list:
    """Every `BatchNormalization` layer of `model`, nested models included."""
    return [
        layer
        for layer in _all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


@contextlib.contextmanager
def _recording_input_sizes(layers, sizes: dict):
    """Records, per layer, the number of values per channel of its last input."""
    originals = {}
    for layer in layers:
        original = layer.call

        def call(inputs, *args, _original=original, _layer=layer, **kwargs):
            shape = tuple(inputs.shape)
            channels = shape[layer_axis(_layer)]
            total = math.prod(shape) if None not in shape else None
            sizes[id(_layer)] = total // channels if total and channels else None
            return _original(inputs, *args, **kwargs)

        originals[id(layer)] = layer
        object.__setattr__(layer, "call", call)  # the instance's, not the class's
    try:
        yield
    finally:
        for layer in originals.values():
            layer.__dict__.pop("call", None)


def layer_axis(layer) -> int:
    axis = layer.axis
    return axis[0] if isinstance(axis, (list, tuple)) else axis


def recompute_batchnorm_statistics(
    model: keras.Model,
    dataset,
    num_batches: int | None = 500,
    method: str = "caffe",
    unbiased: bool = True,
    progress=None,
) -> int:
    """Replaces every BatchNorm's moving mean and variance by statistics over data.

    The model runs in training mode (each BatchNorm normalises with its batch's
    statistics, as during training) over `num_batches` batches. Each BatchNorm's
    `moving_mean` becomes the mean of its batch means, and `moving_variance`:

    - `method="caffe"` (default, the original script): the mean of its per-batch
      variances, each times `m / (m - 1)` when `unbiased` (`m`: the batch's values
      per channel, `batch * height * width`);
    - `method="population"`: the variance of its input over all those pixels
      (pooled: mean of `variance + mean^2` minus the squared mean).

    Batches are weighted by their size. Nothing else changes: weights, `momentum`
    and `trainable` are restored, and an error leaves the statistics as they were.

    Args:
        model: a built Keras model with `BatchNormalization` layers (nested
            models included).
        dataset: a *batched* `tf.data.Dataset` (or any iterable) of images or of
            `(images, masks)` / `(images, masks, weights)` tuples; masks are unused.
            Raw RGB images when the model has a `preprocessor` (a keras-hub
            segmenter), which is applied; preprocessed ones otherwise.
        num_batches: how many batches to use; `None` for the whole dataset.
            Defaults to `500`.
        method: `"caffe"` or `"population"`, see above. Defaults to `"caffe"`.
        unbiased: with `"caffe"`, the `m / (m - 1)` correction. Defaults to `True`.
        progress: `None` or a function called with the number of batches done
            after each batch (e.g. `keras_deconvnet.training.progress.BatchProgress`).

    Returns:
        The number of batches used.

    Raises:
        ValueError: if the model has no BatchNorm (or one with renorm),
            `num_batches` is not a positive int or None, `method` is unknown, or
            the dataset yields no batch or unbatched images.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> images = tf.data.Dataset.from_tensor_slices(
    ...     np.random.uniform(0, 255, (4, 96, 96, 3))).batch(2)
    >>> recompute_batchnorm_statistics(model, images, num_batches=None)
    2
    """
    if num_batches is not None and (
        isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1
    ):
        raise ValueError(
            f"`num_batches` must be a positive int or None. Received: num_batches={num_batches!r}"
        )
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError(
            f"The model {model.name!r} has no BatchNormalization layer: nothing to recompute."
        )
    for layer in layers:
        if getattr(layer, "renorm", False):
            raise ValueError(
                f"BatchNormalization layer {layer.name!r} uses renorm, which this "
                "utility does not support."
            )
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    originals = [
        (keras.ops.convert_to_numpy(layer.moving_mean),
         keras.ops.convert_to_numpy(layer.moving_variance))
        for layer in layers
    ]
    done = False
    try:
        for layer in layers:
            # momentum 0: after a training-mode call the moving statistics *are*
            # the batch's statistics, which are read and pooled in float64.
            layer.momentum = 0.0
            layer.trainable = True
        used, statistics = _accumulate(model, layers, dataset, num_batches, method, unbiased,
                                       progress)
        for layer, (mean, variance) in zip(layers, statistics):
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
        done = True
    finally:
        for layer, (momentum, trainable), (mean, var) in zip(layers, saved, originals):
            layer.momentum = momentum
            layer.trainable = trainable
            if not done:  # Leave the model as it was, not half-updated.
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(var)
    return used


def _accumulate(model, layers, dataset, num_batches, method, unbiased, progress=None):
    """Runs the batches; returns `(batches used, [(mean, variance)] per layer)`."""
    preprocessor = getattr(model, "preprocessor", None)
    sum_mean = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
    sum_var = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
    total = 0.0
    used = 0
    sizes = {}
    with _recording_input_sizes(layers, sizes):
        for batch in dataset:
            if num_batches is not None and used >= num_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            images = tf.convert_to_tensor(images)
            if images.shape.rank != 4:
                raise ValueError(
                    "`dataset` must yield batched images (batch, height, width, "
                    f"channels). Received a batch of shape {images.shape}"
                )
            if preprocessor is not None:
                images = preprocessor(images)
            model(images, training=True)
            weight = float(images.shape[0])
            for i, layer in enumerate(layers):
                mean = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
                var = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
                if method == "population":
                    var = var + mean**2  # E[x^2] of the batch
                elif unbiased:
                    m = sizes.get(id(layer))
                    if m and m > 1:
                        var = var * (m / (m - 1))
                sum_mean[i] += weight * mean
                sum_var[i] += weight * var
            total += weight
            used += 1
            if progress is not None:
                progress(used)
    if used == 0:
        raise ValueError("`dataset` yielded no batch: cannot compute statistics.")
    statistics = []
    for i in range(len(layers)):
        mean = sum_mean[i] / total
        var = sum_var[i] / total
        if method == "population":
            var = np.maximum(var - mean**2, 0.0)
        statistics.append((mean, var))
    return used, statistics
