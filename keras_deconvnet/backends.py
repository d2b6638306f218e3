"""Which Keras backend runs, and the one-line error of the parts that need TensorFlow.

The model family (`layers`, `models`, `metrics`, the losses and optimizers of
`training`) is written in `keras.ops` and runs on every Keras backend: TensorFlow,
JAX and PyTorch. The exporters, serving, the multi-worker training loop, the
`tf.data` pipelines of `data`, proposal inference and the `deconvnet` command line
use TensorFlow itself; under another backend they raise `TensorFlowRequiredError`
(one line) when called, and `import keras_deconvnet` still works.

Example:

>>> import keras
>>> backend_name() == keras.config.backend()
True
"""

from __future__ import annotations

import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")


class TensorFlowRequiredError(ImportError):
    """A TensorFlow-only part of the package was used under another Keras backend."""


def backend_name() -> str:
    """The Keras backend of this process (`"tensorflow"`, `"jax"`, `"torch"`, ...)."""
    import keras

    return keras.config.backend()


def require_tensorflow(feature: str) -> None:
    """Raises `TensorFlowRequiredError` (one line) unless Keras runs on TensorFlow.

    Args:
        feature: what needs TensorFlow, as the user knows it (e.g.
            `"keras_deconvnet.export"`).

    Example:

    >>> import keras
    >>> if keras.config.backend() == "tensorflow":
    ...     require_tensorflow("the exporters")  # nothing happens
    """
    name = backend_name()
    if name != "tensorflow":
        raise TensorFlowRequiredError(
            f"{feature} needs the TensorFlow backend of Keras; this process runs "
            f"{name!r} (set KERAS_BACKEND=tensorflow before Keras is imported). The "
            "models, layers, metrics and losses run on every backend."
        )


def select_tensorflow_backend(command: str = "deconvnet") -> None:
    """Makes Keras run on TensorFlow in this process (the command line's choice).

    Sets `KERAS_BACKEND=tensorflow` when Keras is not imported yet (an exported
    `KERAS_BACKEND=jax` is overridden); raises `TensorFlowRequiredError` when Keras
    was already imported with another backend, which cannot change any more.
    """
    keras_module = sys.modules.get("keras")
    if keras_module is None:
        os.environ["KERAS_BACKEND"] = "tensorflow"
        return
    name = keras_module.config.backend()
    if name != "tensorflow":
        raise TensorFlowRequiredError(
            f"{command} needs the TensorFlow backend of Keras, but Keras was already "
            f"imported with {name!r} in this process; run it in a fresh process (the "
            "`deconvnet` command selects TensorFlow itself)."
        )
