"""The reference our layers must equal: `tf.nn.max_pool_with_argmax` + `tf.scatter_nd`."""

import numpy as np
import tensorflow as tf


def reference_pool(x, pool_size=2, padding="SAME"):
    return tf.nn.max_pool_with_argmax(
        x, pool_size, pool_size, padding.upper(), include_batch_in_index=True
    )


def reference_unpool(values, argmax, output_shape):
    flat = tf.scatter_nd(
        tf.reshape(argmax, [-1, 1]), tf.reshape(values, [-1]), [int(np.prod(output_shape))]
    )
    return tf.reshape(flat, output_shape)


def switches_to_argmax(switches) -> np.ndarray:
    """Flat (batch-inclusive) indices of the set switches, in TF's pooled order."""
    return np.flatnonzero(np.asarray(switches))
