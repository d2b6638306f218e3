"""keras-deconvnet: DeconvNet semantic segmentation (Noh, Hong, Han, ICCV 2015) in Keras 3.

The public API is its subpackages: `layers`, `models` (keras-hub families), `data`,
`training`, `inference`, `metrics`, `export`, `serving`. Importing the package imports
`layers`, `models`, `metrics` and `training`, whose Keras classes are registered, so
`keras.saving.load_model` and `keras_hub`'s `from_preset` load saved models after
`import keras_deconvnet`.
"""

import os as _os

from keras_deconvnet.version import __version__

# The layers are written with TensorFlow ops so that they convert to TFLite builtins;
# the exporters need TensorFlow too. Pick the backend before Keras is first imported.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_deconvnet import tensorflow_startup as _tensorflow_startup  # noqa: E402

_tensorflow_startup.quiet_when_command_line()


def check_backend() -> None:
    """Raises `ImportError` unless Keras runs on TensorFlow."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "keras_deconvnet needs the TensorFlow backend of Keras (its layers use "
            "TensorFlow ops that convert to TFLite builtins). Set KERAS_BACKEND=tensorflow "
            f"before importing Keras. Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )


check_backend()

from keras_deconvnet import layers, metrics, models, training  # noqa: E402

__all__ = ["__version__", "check_backend", "layers", "metrics", "models", "training"]
