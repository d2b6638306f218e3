"""What every exported format shares: the input shapes, the inference function, the config.

Every exported artefact (SavedModel, TFLite, ONNX) runs the same computation, built
by `inference_function`: RGB float images in [0, 255] -> the segmenter's own image
converter (its preprocessor's; the mean subtraction) -> the model -> softmax.
Clients therefore send plain pixels and get per-pixel class probabilities, whatever
the format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from keras_deconvnet.atomic_io import jsonable
from keras_deconvnet.inference.proposals import preprocessor_of
from keras_deconvnet.inference.whole_image import image_converter, outputs_probabilities

# What every artefact expects as input, written into the export configs.
INPUT_DESCRIPTION = (
    "RGB float32 images in [0, 255], shape (batch, height, width, 3); the exported "
    "model applies the segmenter's image converter (mean subtraction) itself."
)


def segmentation_shapes(
    model: keras.Model, image_shape: Sequence[int] | None = None
) -> tuple[tuple[int, int, int], int]:
    """Checks that `model` is an image segmentation model and fixes its input size.

    Args:
        model: a Keras model with one input `(batch, height, width, 3)` and one output
            `(batch, height, width, num_classes)`.
        image_shape: `(height, width)` or `(height, width, 3)` to export at; needed
            when the model's height or width is `None`, and must match it otherwise.

    Returns:
        `((height, width, 3), num_classes)`.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=4)
    >>> segmentation_shapes(model, (96, 96))
    ((96, 96, 3), 4)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model. Received: model={type(model).__name__}"
        )
    if len(model.inputs or []) != 1 or len(model.outputs or []) != 1:
        raise ValueError(
            "`model` must be a segmentation model with one input and one output. "
            f"Received: {len(model.inputs or [])} inputs, {len(model.outputs or [])} outputs"
        )
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] != 3:
        raise ValueError(
            "`model` must take RGB images (batch, height, width, 3). "
            f"Received: input shape={in_shape}"
        )
    if len(out_shape) != 4 or out_shape[-1] is None or out_shape[-1] < 2:
        raise ValueError(
            "`model` must output per-pixel class scores (batch, height, width, "
            f"num_classes >= 2). Received: output shape={out_shape}"
        )
    for axis in (1, 2):
        if None not in (in_shape[axis], out_shape[axis]) and in_shape[axis] != out_shape[axis]:
            raise ValueError(
                "`model` must output a score map of its input's size. "
                f"Received: input shape={in_shape}, output shape={out_shape}"
            )
    if image_shape is not None:
        image_shape = tuple(int(d) for d in image_shape)
        if len(image_shape) == 3 and image_shape[-1] == 3:
            image_shape = image_shape[:2]
        if len(image_shape) != 2 or min(image_shape) < 1:
            raise ValueError(
                "`image_shape` must be (height, width) or (height, width, 3). "
                f"Received: image_shape={image_shape}"
            )
        for axis in (1, 2):
            if in_shape[axis] is not None and in_shape[axis] != image_shape[axis - 1]:
                raise ValueError(
                    "`image_shape` must match the model's fixed input size "
                    f"{in_shape[1:3]}. Received: image_shape={image_shape}"
                )
        height, width = image_shape
    else:
        height, width = in_shape[1:3]
        if height is None or width is None:
            raise ValueError(
                "The model takes any image size; pass `image_shape=(height, width)` to "
                f"fix the exported one. Received: input shape={in_shape}"
            )
    return (int(height), int(width), 3), int(out_shape[-1])


def preprocessing_config(model: keras.Model) -> dict | None:
    """The converter's config (scale, offset, interpolation), for export configs
    (`None` for a plain Keras model without a preprocessor)."""
    if getattr(model, "preprocessor", None) is None and not hasattr(model, "backbone"):
        return None
    config = preprocessor_of(model).image_converter.get_config()
    keys = ("image_size", "scale", "offset", "interpolation", "antialias",
            "crop_to_aspect_ratio")
    return {"class_name": type(preprocessor_of(model).image_converter).__name__,
            **{k: config.get(k) for k in keys}}


def inference_function(model: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """RGB [0, 255] images -> class probabilities, through the model's converter."""
    softmax = not outputs_probabilities(model)
    normalise = image_converter(model)

    def probabilities(images):
        outputs = model(normalise(images), training=False)
        outputs = tf.cast(outputs, tf.float32)
        return tf.nn.softmax(outputs, axis=-1) if softmax else outputs

    return probabilities


def export_config(
    model: keras.Model,
    image_shape: tuple[int, int, int],
    num_classes: int,
    class_names: Sequence[str] | None = None,
    **extra,
) -> dict:
    """The JSON-ready description written next to every export."""
    import keras_deconvnet

    if class_names is not None:
        class_names = [str(name) for name in class_names]
        if len(class_names) != num_classes:
            raise ValueError(
                f"`class_names` must have one name per class ({num_classes}). "
                f"Received: {len(class_names)} names"
            )
    try:
        model_config = json.loads(json.dumps(jsonable(model.get_config()), default=str))
    except (NotImplementedError, TypeError):
        model_config = None
    return {
        "model_class": f"{type(model).__module__}.{type(model).__name__}",
        "model_config": model_config,
        "image_shape": list(image_shape),
        "num_classes": num_classes,
        "class_names": class_names,
        "input": INPUT_DESCRIPTION,
        "preprocessing": preprocessing_config(model),
        "outputs": {
            "probabilities": "float32 (batch, height, width, num_classes), softmax",
        },
        "keras_deconvnet_version": getattr(keras_deconvnet, "__version__", None),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        **extra,
    }


def file_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of all files under a directory."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
