"""Recomputes BatchNorm moving statistics as population statistics over data.

The original DeconvNet kept no running averages while training; before inference
it ran ~500 training batches through the network with batch statistics and stored
the population mean and variance of every BatchNorm input. Keras's exponential
moving averages are a cheaper approximation that lags behind the weights (and are
poor after short fine-tuning); this utility recomputes them the original way.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _batchnorm_layers(model):
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    return layers


def recompute_batchnorm_statistics(
    model: keras.Model,
    dataset,
    num_batches: int | None = 500,
) -> int:
    """Replaces every BatchNorm's moving mean and variance by population statistics.

    The model runs in training mode (each BatchNorm normalises with its batch's
    statistics, as during training) over `num_batches` batches; each BatchNorm's
    `moving_mean` becomes the mean of its input over all those pixels and
    `moving_variance` their variance (pooled: mean over batches of
    `variance + mean^2`, minus the squared mean; batches weighted by size).
    Nothing else changes: weights, `momentum` and `trainable` are restored.

    Args:
        model: a built Keras model with `BatchNormalization` layers (nested
            models included).
        dataset: a *batched* `tf.data.Dataset` (or any iterable) of images or of
            `(images, masks)` / `(images, masks, weights)` tuples; masks are unused.
            Raw RGB images when the model has a `preprocessor` (a keras-hub
            segmenter), which is applied; preprocessed ones otherwise.
        num_batches: how many batches to use; `None` for the whole dataset.
            Defaults to `500` (the original code).

    Returns:
        The number of batches used.

    Raises:
        ValueError: if the model has no BatchNorm, `num_batches` is not a positive
            int or None, or the dataset yields no batch.

    Example:

    >>> import numpy as np, tensorflow as tf
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
    layers = _batchnorm_layers(model)
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

    preprocessor = getattr(model, "preprocessor", None)
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    originals = [
        (keras.ops.convert_to_numpy(layer.moving_mean),
         keras.ops.convert_to_numpy(layer.moving_variance))
        for layer in layers
    ]
    done = False
    # Per-layer sums over batches, weighted by pixels per channel.
    sum_mean = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
    sum_sq = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
    total = 0.0
    used = 0
    try:
        for layer in layers:
            # momentum 0: after a training-mode call the moving statistics *are*
            # the batch's statistics, which we read and pool in float64.
            layer.momentum = 0.0
            layer.trainable = True
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
            weight = float(images.shape[0] or tf.shape(images)[0].numpy())
            for i, layer in enumerate(layers):
                mean = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
                var = keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
                sum_mean[i] += weight * mean
                sum_sq[i] += weight * (var + mean**2)
            total += weight
            used += 1
        if used == 0:
            raise ValueError("`dataset` yielded no batch: cannot compute statistics.")
        for i, layer in enumerate(layers):
            mean = sum_mean[i] / total
            var = np.maximum(sum_sq[i] / total - mean**2, 0.0)
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
        done = True
    finally:
        for layer, (momentum, trainable), (mean, var) in zip(layers, saved, originals):
            layer.momentum = momentum
            layer.trainable = trainable
            if not done:  # Leave the model as it was, not half-updated.
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(var)
    return used
