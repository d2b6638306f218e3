"""keras-deconvnet: DeconvNet semantic segmentation (Noh, Hong, Han, ICCV 2015) in Keras 3.

The public API is its subpackages: `layers`, `models` (keras-hub families), `data`,
`training`, `inference`, `metrics`, `export`, `serving`. Importing the package imports
`layers`, `models`, `metrics` and `training`, whose Keras classes are registered, so
`keras.saving.load_model` and `keras_hub`'s `from_preset` load saved models after
`import keras_deconvnet`.

The model family runs on every Keras backend (`KERAS_BACKEND=tensorflow`, `jax` or
`torch`); importing the package imports TensorFlow only under the TensorFlow backend.
The exporters, serving, the multi-worker training loop and the `deconvnet` command
line need TensorFlow (`keras_deconvnet.backends`); the command line selects it itself.
"""

import os as _os
import sys as _sys

from keras_deconvnet import backends as _backends
from keras_deconvnet import tensorflow_startup as _tensorflow_startup
from keras_deconvnet.version import __version__

# `deconvnet ...` runs on TensorFlow whatever KERAS_BACKEND says; Keras is not imported
# yet when the console script imports this package first.
if _tensorflow_startup.invoked_as_command_line() and "keras" not in _sys.modules:
    _backends.select_tensorflow_backend()
if _os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    _tensorflow_startup.quiet_when_command_line()


def check_backend() -> None:
    """Raises `ImportError` (one line) unless Keras runs on TensorFlow.

    Only the TensorFlow-only parts need it (exporters, serving, the command line).
    """
    _backends.require_tensorflow("This part of keras_deconvnet")


from keras_deconvnet import layers, metrics, models, training  # noqa: E402

__all__ = ["__version__", "check_backend", "layers", "metrics", "models", "training"]
