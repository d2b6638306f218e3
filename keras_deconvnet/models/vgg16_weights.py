"""Initialises a DeconvNet or FCN-8s encoder from Keras's ImageNet VGG16 weights, offline.

The paper initialises the encoder (and fc6/fc7, as convolutions) from VGG16 trained on
ImageNet. Keras publishes those weights as `.h5` files that `keras.applications.VGG16`
caches under `~/.keras/models/`; this module reads such a file from disk and never
downloads. Those weights were trained on BGR input (Caffe's convention); our networks
take RGB, so conv1_1's input channels are reversed on the way in.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import keras
import numpy as np

NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
TOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels.h5"


def default_weights_dir() -> Path:
    """Where Keras caches downloaded weights (`$KERAS_HOME/models`)."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(keras_home) / "models"


def resolve_weights_path(weights: str | os.PathLike) -> Path:
    """A path to a VGG16 weights file; `"imagenet"` means Keras's cached file."""
    if str(weights) == "imagenet":
        for name in (TOP_FILE, NOTOP_FILE):
            candidate = default_weights_dir() / name
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"No ImageNet VGG16 weights in {default_weights_dir()} (looked for {TOP_FILE} "
            f"and {NOTOP_FILE}). keras_deconvnet never downloads at run time: on a "
            "machine with internet run `keras.applications.VGG16(weights='imagenet', "
            f"include_top=True)` once (it writes {TOP_FILE}, which also holds fc6/fc7; "
            "the include_top=False file leaves them random), and copy the file from "
            "~/.keras/models/ here, or pass its path."
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights file not found: {path}")
    return path


def _read_vgg16(path: Path) -> dict[str, list[np.ndarray]]:
    """Weights by layer name, read by Keras's own VGG16 loader."""
    try:
        with h5py.File(path, "r") as f:
            layer_names = {
                name.decode() if isinstance(name, bytes) else name
                for name in f.attrs.get("layer_names", [])
            }
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 weights file: {e}") from None
    if "block1_conv1" not in layer_names:
        raise ValueError(
            f"{path} does not look like a Keras VGG16 weights file (no layer "
            f"'block1_conv1'; found {sorted(layer_names)[:6]})."
        )
    include_top = "fc1" in layer_names
    vgg = keras.applications.VGG16(
        include_top=include_top,
        weights=None,
        input_shape=(224, 224, 3) if include_top else None,
    )
    vgg.load_weights(str(path))
    return {layer.name: layer.get_weights() for layer in vgg.layers if layer.weights}


def load_vgg16_weights(
    model: keras.Model, weights: str | os.PathLike = "imagenet", load_fc: bool = True
) -> list[str]:
    """Copies VGG16 weights into an encoder (and fc6/fc7 when present and shaped so).

    Encoder layers are matched by name (`block1_conv1` ... `block5_conv3`); the
    kernel of `block1_conv1` gets its input channels reversed (BGR-trained weights,
    RGB network). When the file has VGG16's classifier (`fc1`, `fc2`) and the
    model's fc6 is 7x7 with 4096 units, fc6 and fc7 are initialised from it,
    reshaped to 7x7 and 1x1 convolutions, as the paper did; an fc6 of another shape
    (FCN-8s's "same" geometry keeps 7x7, a smaller configuration does not) is left
    as initialised, with a warning (as when the file has no classifier). The decoder
    and class layers are left as initialised (the paper trains them from scratch).

    Args:
        model: a segmenter or backbone whose encoder has VGG16's block structure.
        weights: `"imagenet"` (Keras's cached file under `~/.keras/models/`) or a
            path to a VGG16 `.h5` weights file (with or without top).
        load_fc: bool, also initialise fc6/fc7 when the file has them. Defaults to
            `True`.

    Returns:
        The names of the layers that were initialised.

    Example:

    >>> segmenter = DeconvNetImageSegmenter.from_preset(  # doctest: +SKIP
    ...     "deconvnet_vgg16_voc")
    >>> load_vgg16_weights(segmenter, "vgg16_notop.h5")  # doctest: +SKIP
    ['block1_conv1', ..., 'block5_conv3']
    """
    path = resolve_weights_path(weights)
    source = _read_vgg16(path)
    backbone = getattr(model, "backbone", None) or model
    plan = []
    for name, arrays in source.items():
        if not name.startswith("block") or "_conv" not in name:
            continue
        if name == "block1_conv1":
            kernel, bias = arrays
            arrays = [kernel[:, :, ::-1, :], bias]  # BGR-trained -> RGB input
        plan.append((name, arrays))
    if load_fc and "fc1" in source and _fc6_takes_vgg16(backbone):
        kernel, bias = source["fc1"]
        plan.append(("fc6", [kernel.reshape(7, 7, 512, kernel.shape[-1]), bias]))
        kernel, bias = source["fc2"]
        plan.append(("fc7", [kernel.reshape(1, 1, *kernel.shape), bias]))
    random_fc = None  # why fc6/fc7 keep their initialisation, when they do
    if load_fc and not any(name == "fc6" for name, _ in plan) and _has_layer(backbone,
                                                                              "fc6"):
        random_fc = (f"{path.name} has no classifier (fc1/fc2): use {TOP_FILE}, written "
                     "by keras.applications.VGG16(weights='imagenet', include_top=True)"
                     if "fc1" not in source else
                     "the model's fc6 is not VGG16's 7x7x512 -> 4096")

    # Check every layer first so that a mismatch leaves the model untouched.
    targets = []
    for name, arrays in plan:
        try:
            layer = backbone.get_layer(name)
        except ValueError:
            raise ValueError(
                f"The model has no layer {name!r} to receive VGG16 weights; the encoder "
                "must have VGG16's 5 blocks of (2, 2, 3, 3, 3) convolutions."
            ) from None
        expected = [tuple(w.shape) for w in layer.weights]
        received = [a.shape for a in arrays]
        if expected != received:
            raise ValueError(
                f"VGG16 weights do not fit layer {name!r}: it has shapes {expected}, "
                f"the file {path.name} has {received}. Only configurations with "
                "VGG16's widths (e.g. 'deconvnet_vgg16_voc') can load them."
            )
        targets.append((layer, arrays))
    for layer, arrays in targets:
        layer.set_weights(arrays)
    if random_fc:
        warnings.warn(f"fc6 and fc7 keep their random initialisation: {random_fc}.",
                      stacklevel=2)
    return [layer.name for layer, _ in targets]


def _has_layer(backbone, name: str) -> bool:
    try:
        backbone.get_layer(name)
    except ValueError:
        return False
    return True


def _fc6_takes_vgg16(backbone) -> bool:
    try:
        kernel = backbone.get_layer("fc6").kernel
    except (ValueError, AttributeError):
        return False
    return tuple(kernel.shape) == (7, 7, 512, 4096)
