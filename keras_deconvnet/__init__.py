"""keras-deconvnet: DeconvNet semantic segmentation (Noh, Hong, Han, ICCV 2015) in Keras 3."""

import os as _os

# The layers are written with TensorFlow ops so that they convert to TFLite builtins;
# the exporters need TensorFlow too. Pick the backend before Keras is first imported.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras as _keras  # noqa: E402

if _keras.backend.backend() != "tensorflow":
    raise ImportError(
        "keras_deconvnet needs the TensorFlow backend of Keras (its layers use TensorFlow "
        "ops that convert to TFLite builtins). Set KERAS_BACKEND=tensorflow. "
        f"Received: KERAS_BACKEND={_keras.backend.backend()!r}"
    )

from keras_deconvnet import (
    layers,  # noqa: E402
    models,  # noqa: E402
)
from keras_deconvnet.version import __version__  # noqa: E402

__all__ = ["layers", "models", "__version__"]
