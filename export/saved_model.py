"""SavedModel export in TF Serving's layout, `BASE/NAME/VERSION/`, plus `models.config`.

Each version is written to a temporary directory under `BASE/NAME/` (a name that is
not an integer, which TF Serving ignores) and renamed into place when complete, so a
server watching `BASE/NAME` never sees a half-written version.

Signatures (both read plain pixels; the segmenter's image converter, the package's one
preprocessing definition, runs inside the graph):

- `serving_default`: `images`, float32 `(batch, height, width, 3)` RGB in [0, 255]
  at the exported size -> `probabilities` float32 `(batch, height, width,
  num_classes)` (softmax) and `labels` int32 `(batch, height, width)` (argmax).
- `predict_image_bytes`: `image_bytes`, a string batch `(batch,)` of encoded JPEG,
  PNG, BMP, GIF (first frame) or WebP images of any size, decoded by
  `images.decode_image_tensor` (TensorFlow ops; JPEG with the accurate integer DCT,
  so the pixels equal the local `load_image`'s bit for bit); grayscale and RGBA are
  converted to RGB, EXIF orientation is not applied. Each image is predicted with the package's
  one whole-image convention (`whole_image.whole_image_probabilities`, what local
  inference does): the converter resizes it to the model input (bilinear,
  half-pixel centres), the model's raw class scores are resized back to the image's
  own size (bilinear, half-pixel), then softmax and argmax. Outputs: `labels` int32
  `(batch, max_height, max_width)`, padded with -1 where a batch mixes sizes, and
  `image_sizes` int32 `(batch, 2)`, each image's `(height, width)`.

The export config (`export_config.json`: model config, preprocessing, class names,
signatures) is written inside each version directory; TF Serving ignores it.

Everything loads with plain `tf.saved_model.load` without keras_deconvnet installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import keras
import tensorflow as tf

from keras_deconvnet import atomic_io
from keras_deconvnet.export import model_interface
from keras_deconvnet.inference import images, whole_image

SERVING_DEFAULT = "serving_default"
IMAGE_BYTES_SIGNATURE = "predict_image_bytes"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Where the tensorflow/serving container sees the base directory (serving/docker-run.sh
# mounts it there): models.config's base paths are written for it.
CONTAINER_BASE = "/models"
# A version directory's name: ASCII digits of an int64 (TF Serving's rule; the local
# server's `servables.is_version_name` is the same). `str.isdigit` would also take
# "²" or "٣", which `int()` refuses or reads as another number.
_VERSION_PATTERN = re.compile(r"[0-9]{1,18}")
# What each signature takes and returns, written into `export_config.json`.
SIGNATURE_DESCRIPTIONS = {
    SERVING_DEFAULT: {
        "inputs": {"images": "float32 (batch, height, width, 3), RGB 0-255"},
        "outputs": {
            "probabilities": "float32 (batch, height, width, num_classes)",
            "labels": "int32 (batch, height, width)",
        },
    },
    IMAGE_BYTES_SIGNATURE: {
        "inputs": {"image_bytes": "string (batch,), encoded JPEG/PNG/BMP/GIF"},
        "convention": (
            "decode (JPEG: accurate integer DCT, as Pillow; no EXIF "
            "orientation) -> image converter resize to the "
            "model input (bilinear, half-pixel centres, no antialias) -> model "
            "-> raw scores resized to the image size (bilinear, half-pixel) "
            "-> softmax -> argmax"
        ),
        "outputs": {
            "labels": "int32 (batch, max_height, max_width), -1 = padding",
            "image_sizes": "int32 (batch, 2), (height, width) of each image",
        },
    },
}


def check_model_name(name: str) -> None:
    """Raises `ValueError` unless `name` is a directory name TF Serving can use."""
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise ValueError(
            "`name` must be a non-empty directory name of letters, digits, '_', '-', "
            f"'.'. Received: name={name!r}"
        )


def next_version(model_dir: str | os.PathLike) -> int:
    """1 + the largest integer version directory under `model_dir` (1 if none)."""
    model_dir = Path(model_dir)
    versions = [
        int(p.name) for p in model_dir.iterdir()
        if _VERSION_PATTERN.fullmatch(p.name) and p.is_dir()
    ] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


def export_saved_model(
    model: keras.Model,
    base_dir: str | os.PathLike,
    name: str = "deconvnet",
    version: int | None = None,
    image_shape: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    write_models_config: bool = True,
) -> Path:
    """Exports `model` for TF Serving to `base_dir/name/version/`.

    Args:
        model: a segmenter with a preprocessor (`DeconvNetImageSegmenter`, ...):
            its image converter normalises the images inside the exported graph.
        base_dir: the TF Serving base directory holding one directory per model.
        name: the model name (TF Serving's `name`, a directory under `base_dir`).
            Defaults to `"deconvnet"`.
        version: a positive int; defaults to the next free integer.
        image_shape: `(height, width)` to export at; needed when the model's input
            size is not fixed.
        class_names: optional names of the classes, recorded in the export config.
        write_models_config: also (re)write `base_dir/models.config` listing every
            model under `base_dir`. Defaults to `True`.

    Returns:
        The version directory.

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter
    >>> model = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=4)
    >>> path = export_saved_model(model, "/tmp/serving", image_shape=(96, 96))
    >>> loaded = tf.saved_model.load(str(path))
    >>> sorted(loaded.signatures)
    ['predict_image_bytes', 'serving_default']
    """
    check_model_name(name)
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 1
    ):
        raise ValueError(f"`version` must be a positive int. Received: version={version!r}")
    shape, num_classes = model_interface.segmentation_shapes(model, image_shape)
    config = model_interface.export_config(
        model, shape, num_classes, class_names,
        format="saved_model",
        signatures=SIGNATURE_DESCRIPTIONS,
    )
    target = _version_dir(base_dir, name, version)
    archive = _archive(model, shape)
    with atomic_io.staged_directory(target) as staging:
        archive.write_out(str(staging), verbose=False)
        atomic_io.write_json(staging / "export_config.json", config)
    if write_models_config:
        write_model_config(base_dir)
    return target


def _version_dir(base_dir: str | os.PathLike, name: str, version: int | None) -> Path:
    """`base_dir/name/version`, the next free version when `None`; it must not exist."""
    model_dir = Path(base_dir) / name
    version = next_version(model_dir) if version is None else version
    target = model_dir / str(version)
    if target.exists():
        raise FileExistsError(
            f"Version {version} of model {name!r} already exists; pass another `version` "
            f"or leave it unset for the next one. Received: {target}"
        )
    return target


def _serve_image_bytes(model: keras.Model, shape: tuple[int, int, int]):
    """The `predict_image_bytes` endpoint: encoded images -> labels at their sizes."""
    height, width, channels = shape
    logits = not whole_image.outputs_probabilities(model)
    resize = whole_image.image_converter(model, (height, width))

    def decode(data):
        image = images.decode_image_tensor(data)
        size = tf.shape(image)[:2]
        # The converter resizes (half-pixel bilinear) and normalises.
        return resize(tf.cast(image, tf.float32)[None])[0], size

    def serve_bytes(image_bytes):
        # The local whole-image convention (`whole_image.whole_image_probabilities`),
        # with the model run once on the whole batch.
        inputs, sizes = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec((height, width, channels), tf.float32),
                tf.TensorSpec((2,), tf.int32),
            ),
        )
        scores = tf.cast(model(inputs, training=False), tf.float32)
        max_size = tf.reduce_max(sizes, axis=0)

        def restore(args):
            score, size = args
            label = tf.argmax(whole_image.scores_to_image(score, size, logits), -1, tf.int32)
            return tf.pad(
                label, [[0, max_size[0] - size[0]], [0, max_size[1] - size[1]]],
                constant_values=-1,
            )

        labels = tf.map_fn(
            restore, (scores, sizes),
            fn_output_signature=tf.TensorSpec((None, None), tf.int32),
        )
        return {"labels": labels, "image_sizes": sizes}

    return serve_bytes


def _archive(model, shape):
    height, width, channels = shape
    probabilities = model_interface.inference_function(model)

    def serve(images):
        probs = probabilities(images)
        return {"probabilities": probs, "labels": tf.argmax(probs, -1, tf.int32)}

    archive = keras.export.ExportArchive()
    # No `archive.track(model)`: the endpoints track the variables they use, and
    # tracking the model as well would store every variable twice.
    archive.add_endpoint(
        SERVING_DEFAULT,
        serve,
        input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, "images")],
    )
    archive.add_endpoint(
        IMAGE_BYTES_SIGNATURE,
        _serve_image_bytes(model, shape),
        input_signature=[tf.TensorSpec((None,), tf.string, "image_bytes")],
    )
    return archive


def write_model_config(
    base_dir: str | os.PathLike, base_path_prefix: str | None = None
) -> Path:
    """Writes `base_dir/models.config`, TF Serving's model config for every model there.

    A model is a directory of `base_dir` with at least one integer version directory.

    Args:
        base_dir: the TF Serving base directory.
        base_path_prefix: the directory `base_dir` will be at on the server.
            Defaults to `"/models"` (`CONTAINER_BASE`), where the tensorflow/serving
            container sees it (serving/docker-run.sh mounts it there); pass
            `str(Path(base_dir).resolve())` for a server that reads this machine's paths.

    Every entry serves all versions (`model_version_policy { all {} }`), as
    `deconvnet serve` does; TF Serving's default would serve only the newest.

    Returns:
        The config file's path. Serve with
        `tensorflow_model_server --model_config_file=PATH --rest_api_port=8501`.
    """
    base_dir = Path(base_dir)
    names = sorted(
        p.name for p in base_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".")
        and any(_VERSION_PATTERN.fullmatch(v.name) and v.is_dir() for v in p.iterdir())
    ) if base_dir.is_dir() else []
    if not names:
        raise ValueError(
            f"`base_dir` holds no exported model (NAME/VERSION/). Received: {base_dir}"
        )
    prefix = CONTAINER_BASE if base_path_prefix is None else base_path_prefix
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{prefix.rstrip("/")}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "    model_version_policy { all {} }\n"
        "  }\n"
        for name in names
    )
    path = base_dir / "models.config"
    atomic_io.write_text(path, f"model_config_list {{\n{entries}}}\n")
    return path
