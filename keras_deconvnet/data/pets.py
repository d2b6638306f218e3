"""Oxford-IIIT Pet (TFDS `oxford_iiit_pet`) mapped to the common format.

The trimap becomes the class mask: 1 (pet) -> the pet's class, 2 (background) -> 0,
3 (border) and any other value -> 255 (ignore). Each image has one instance, the pet
(instance 1 on its trimap-1 pixels); its box is the tight box around the pet and
border pixels (the border straddles the outline). An image without pet pixels has
no box. The mask is resized (nearest) to the image size when they differ, as in
TFDS's mock data.

Needs `tensorflow-datasets` (the `datasets` extra) and the prepared data (TFDS
downloads it on first use, or point `data_dir` at a prepared copy).
"""

from __future__ import annotations

import tensorflow as tf

from keras_deconvnet.data.example_format import (
    IGNORE_LABEL,
    DatasetInfo,
    bitwise_palette,
    tf_box_from_mask,
)

PET_SPECIES = ("background", "cat", "dog")
PET_BREEDS = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound",
    "beagle", "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua",
    "Egyptian_Mau", "english_cocker_spaniel", "english_setter", "german_shorthaired",
    "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon",
    "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll",
    "Russian_Blue", "saint_bernard", "samoyed", "scottish_terrier", "shiba_inu",
    "Siamese", "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)
_CLASS_NAMES = {
    "binary": ("background", "pet"),
    "species": PET_SPECIES,
    "breed": ("background", *PET_BREEDS),
}


def pets_info(class_mode: str = "species") -> DatasetInfo:
    """Class names and palette for a `class_mode` of `pets_dataset`."""
    _check_class_mode(class_mode)
    return DatasetInfo(f"oxford_iiit_pet_{class_mode}", _CLASS_NAMES[class_mode],
                       bitwise_palette())


def _check_class_mode(class_mode):
    if class_mode not in _CLASS_NAMES:
        raise ValueError(
            f"`class_mode` must be one of {sorted(_CLASS_NAMES)}. "
            f"Received: class_mode={class_mode!r}"
        )


def pets_to_common(example: dict, class_mode: str = "species") -> dict:
    """Maps one TFDS `oxford_iiit_pet` example to the common format (graph-safe)."""
    _check_class_mode(class_mode)
    image = tf.convert_to_tensor(example["image"])
    image = tf.image.grayscale_to_rgb(image) if image.shape[-1] == 1 else image
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    trimap = tf.convert_to_tensor(example["segmentation_mask"])
    trimap = tf.reshape(trimap, tf.concat([tf.shape(trimap)[:2], [1]], 0))
    trimap = tf.image.resize(trimap, [height, width], method="nearest")[..., 0]
    trimap = tf.cast(trimap, tf.int32)

    if class_mode == "binary":
        class_id = tf.constant(1, tf.int32)
    elif class_mode == "species":
        class_id = tf.cast(example["species"], tf.int32) + 1
    else:
        class_id = tf.cast(example["label"], tf.int32) + 1

    pet = trimap == 1
    class_mask = tf.where(pet, class_id, tf.where(trimap == 2, 0, IGNORE_LABEL))
    boxes = tf_box_from_mask(pet | (trimap == 3))
    count = tf.shape(boxes)[0] * tf.cast(tf.reduce_any(pet), tf.int32)
    boxes = boxes[:count]
    image_id = example.get("file_name", tf.constant(""))
    return {
        "image_id": tf.strings.regex_replace(image_id, r"\.[A-Za-z]+$", ""),
        "image": tf.cast(image, tf.uint8),
        "class_mask": tf.cast(class_mask, tf.uint8),
        "instance_mask": tf.cast(pet, tf.int32),
        "boxes": boxes,
        "box_classes": tf.fill([count], class_id),
        "box_instances": tf.ones([count], tf.int32),
    }


def pets_dataset(
    split: str = "train",
    class_mode: str = "species",
    data_dir: str | None = None,
    download: bool = True,
    shuffle_files: bool = False,
) -> tf.data.Dataset:
    """Oxford-IIIT Pet through `tfds.load`, in the common format.

    Args:
        split: a TFDS split, `"train"` or `"test"` (slices like `"train[:10%]"` work).
        class_mode: `"species"` (background, cat, dog; default), `"breed"` (37
            breeds) or `"binary"` (background, pet).
        data_dir: TFDS data directory, or None for the default.
        download: let TFDS download and prepare the data if needed; with `False`,
            data that is not prepared is a one-line `FileNotFoundError`.
        shuffle_files: passed to `tfds.load`.

    Returns:
        A `tf.data.Dataset` of dicts; `pets_info(class_mode)` has names and palette.

    Example:

    ```python
    ds = pets_dataset("test", class_mode="binary")
    ```
    """
    _check_class_mode(class_mode)
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "pets_dataset needs tensorflow-datasets: "
            "`pip install keras-deconvnet[datasets]`."
        ) from error
    if not download:
        _check_prepared(tfds, data_dir)
    dataset = tfds.load(
        "oxford_iiit_pet", split=split, data_dir=data_dir, download=download,
        shuffle_files=shuffle_files,
    )
    return dataset.map(
        lambda example: pets_to_common(example, class_mode),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _check_prepared(tfds, data_dir) -> None:
    """A one-line `FileNotFoundError` instead of TFDS's AssertionError traceback."""
    import logging

    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # "Variant folder ... has no dataset_info.json"
    try:
        builder = tfds.builder("oxford_iiit_pet", data_dir=data_dir)
        prepared = builder.is_prepared()
    finally:
        absl_logger.setLevel(level)
    if not prepared:
        raise FileNotFoundError(
            f"Oxford-IIIT Pet is not prepared in {builder.data_dir}: prepare it once "
            "with network access (`tfds build oxford_iiit_pet`, or "
            "`pets_dataset(download=True)`), or point data_dir (--data-dir) at the "
            "TFDS folder that holds oxford_iiit_pet/."
        )


__all__ = ["PET_BREEDS", "PET_SPECIES", "pets_dataset", "pets_info", "pets_to_common"]
