"""keras-deconvnet: DeconvNet semantic segmentation (Noh, Hong, Han, ICCV 2015) in Keras 3.

Importing the package registers its Keras classes (layers, models, metric, optimizer),
so `keras.saving.load_model("model.keras")` works after `import keras_deconvnet`.
"""

import os as _os
import sys as _sys

from keras_deconvnet.version import __version__

# The layers are written with TensorFlow ops so that they convert to TFLite builtins;
# the exporters need TensorFlow too. Pick the backend before Keras is first imported.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up notices (oneDNN, CPU features) hidden.

    TensorFlow 2.21 prints them through absl before any log level applies, so the only
    way to hide them is to point file descriptor 2 elsewhere meanwhile. Errors still
    raise as usual. Set TF_CPP_MIN_LOG_LEVEL=0 to see the notices.
    """
    if "tensorflow" in _sys.modules or _os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        _sys.stderr.flush()
        saved = _os.dup(2)
    except (OSError, ValueError):  # no real stderr (some notebooks, services)
        return
    try:
        with open(_os.devnull, "w") as devnull:
            _os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        _os.dup2(saved, 2)
        _os.close(saved)


def check_backend() -> None:
    """Raises `ImportError` unless Keras runs on TensorFlow."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "keras_deconvnet needs the TensorFlow backend of Keras (its layers use "
            "TensorFlow ops that convert to TFLite builtins). Set KERAS_BACKEND=tensorflow "
            f"before importing Keras. Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )


_import_tensorflow_quietly()
check_backend()

from keras_deconvnet import layers, metrics, models  # noqa: E402
from keras_deconvnet.training import optimizers as _optimizers  # noqa: E402, F401

__all__ = ["__version__", "check_backend", "layers", "metrics", "models"]
