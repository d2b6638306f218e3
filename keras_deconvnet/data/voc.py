"""PASCAL VOC 2012 segmentation (and SBD's augmented set) read from disk.

TFDS's `voc` builder has boxes but no segmentation masks, so this reads a VOCdevkit:

    VOCdevkit/VOC2012/
      JPEGImages/<id>.jpg
      SegmentationClass/<id>.png     palette PNG: index = class id, 255 = border/ignore
      SegmentationObject/<id>.png    palette PNG: index = instance id, 255 = border
      Annotations/<id>.xml           objects' name and bndbox (only for boxes_from="xml")
      ImageSets/Segmentation/{train,val,trainval}.txt

`root` may be the `VOCdevkit` folder or its `VOC2012` folder. Masks are read with
Pillow as palette indices (TensorFlow's PNG decoder would expand the palette to
colours). Border pixels (255) are ignore in `class_mask` and "no instance" (0) in
`instance_mask`.

Boxes: by default from the instance mask (tight around the visible pixels, exactly
matching the masks; `box_classes` is the majority class of each instance's pixels).
With `boxes_from="xml"` they come from `Annotations/<id>.xml` instead: VOC's 1-based
inclusive `bndbox` becomes pixel edges `[ymin - 1, xmin - 1, ymax, xmax]`, boxes past
the image are clipped with a warning, and the i-th `<object>` is instance id i (VOC's
convention for SegmentationObject).

SBD (Hariharan et al.'s augmented annotations, `benchmark_RELEASE/dataset`: `cls/*.mat`,
`inst/*.mat`, `img/*.jpg`, `train.txt`, `val.txt`) is optional: with `sbd_root`,
split `"train"` becomes the usual "train_aug" set, VOC train + SBD train + SBD val
minus VOC val (10,582 images with the full data), and `"trainval"` all of VOC
trainval and SBD (what the paper trained on for its test-server results); VOC's own
PNGs are used where they exist, SBD's `.mat` files (read with `scipy.io.loadmat`, so
SciPy is needed) for the rest. `"val"` stays VOC 2012 val. SBD masks have no border
pixels.
"""

from __future__ import annotations

import os
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_deconvnet.data.example_format import DatasetInfo, boxes_from_instance_mask
from keras_deconvnet.labels import IGNORE_LABEL, VOC_CLASSES, bitwise_palette

VOC_PALETTE = bitwise_palette()
"""The standard VOC colour map, `(256, 3)` uint8; row 255 (ignore) is (224, 224, 192)."""

VOC_INFO = DatasetInfo("voc2012", VOC_CLASSES, VOC_PALETTE)

_KEYS = ("image", "class_mask", "instance_mask", "boxes", "box_classes", "box_instances")
_DTYPES = (tf.uint8, tf.uint8, tf.int32, tf.float32, tf.int32, tf.int32)


def find_voc2012(root) -> str:
    """The `VOC2012` folder in `root`, `root/VOCdevkit` or `root` itself."""
    root = os.fspath(root)
    for candidate in (os.path.join(root, "VOC2012"), root,
                      os.path.join(root, "VOCdevkit", "VOC2012")):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    raise FileNotFoundError(
        f"No VOC 2012 data under {root}: expected {root}/VOC2012/JPEGImages or "
        f"{root}/JPEGImages (the VOCdevkit layout)."
    )


def _read_ids(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} list not found: {path}")
    with open(path) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        raise ValueError(f"{what} list {path} is empty: no images in this split.")
    return ids


def voc_image_ids(root, split: str = "train") -> list:
    """Image ids of a VOC 2012 segmentation split, from `ImageSets/Segmentation`."""
    voc_dir = find_voc2012(root)
    path = os.path.join(voc_dir, "ImageSets", "Segmentation", f"{split}.txt")
    return _read_ids(path, f"VOC segmentation split {split!r}")


def read_palette_png(path) -> np.ndarray:
    """The palette indices (label values) of a VOC mask PNG as uint8 `(H, W)`.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a readable single-channel (palette or grey) PNG.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Mask file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.array(image)
    except Exception as error:  # Pillow raises several types for bad files.
        raise ValueError(f"Cannot read mask PNG {path}: {error}") from error
    if mode not in ("P", "L") or array.ndim != 2:
        raise ValueError(
            f"Mask {path} must be a palette ('P') or greyscale ('L') PNG whose values "
            f"are label ids. Received: mode={mode!r}"
        )
    return array.astype(np.uint8)


def read_image(path) -> np.ndarray:
    """An RGB image file as uint8 `(H, W, 3)`; clear errors for missing or bad files."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), np.uint8)
    except Exception as error:
        raise ValueError(f"Cannot read image {path}: {error}") from error


def parse_voc_annotation(path, height: int | None = None, width: int | None = None):
    """Objects of a VOC XML annotation as `(boxes, classes)`.

    Args:
        path: the `.xml` file.
        height, width: the image size; boxes past it are clipped with a warning.

    Returns:
        float32 `(N, 4)` pixel-edge boxes `[ymin, xmin, ymax, xmax]` and int32 `(N,)`
        class ids (indices into `VOC_CLASSES`), in file order.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Annotation file not found: {path}")
    try:
        tree = ET.parse(path)
    except ET.ParseError as error:
        raise ValueError(f"Cannot parse annotation XML {path}: {error}") from error
    boxes, classes = [], []
    for obj in tree.getroot().iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES[1:]:
            raise ValueError(
                f"Unknown class name {name!r} in {path}; expected one of VOC_CLASSES."
            )
        bndbox = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (
                float(bndbox.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")
            )
        except (AttributeError, TypeError, ValueError) as error:
            raise ValueError(f"Bad or missing bndbox of {name!r} in {path}") from error
        boxes.append((ymin - 1, xmin - 1, ymax, xmax))
        classes.append(VOC_CLASSES.index(name))
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    if height is not None and width is not None and len(boxes):
        limits = np.array([height, width, height, width], np.float32)
        clipped = np.clip(boxes, 0, limits)
        if np.any(clipped != boxes):
            warnings.warn(
                f"Boxes in {path} extend past the {height}x{width} image; clipped them.",
                stacklevel=2,
            )
        boxes = clipped
    return boxes, np.array(classes, np.int32)


def _instances_from_masks(class_mask, instance_mask):
    """Instance ids present, their majority classes, and boxes from the mask."""
    ids = np.unique(instance_mask)
    ids = ids[ids > 0].astype(np.int32)
    classes = []
    for instance_id in ids:
        values = class_mask[(instance_mask == instance_id) & (class_mask != IGNORE_LABEL)]
        values = values[values > 0]
        classes.append(np.bincount(values).argmax() if values.size else 0)
    return ids, np.array(classes, np.int32)


def _example(image_path, class_mask, instance_mask, mask_path, annotation_path=None):
    image = read_image(image_path)
    if image.shape[:2] != class_mask.shape or image.shape[:2] != instance_mask.shape:
        raise ValueError(
            f"Image {image_path} is {image.shape[:2]} but its masks ({mask_path}) are "
            f"{class_mask.shape} and {instance_mask.shape}."
        )
    instance_mask = np.where(instance_mask == IGNORE_LABEL, 0, instance_mask).astype(np.int32)
    if annotation_path is None:
        ids, classes = _instances_from_masks(class_mask, instance_mask)
        boxes = boxes_from_instance_mask(instance_mask, ids)
    else:
        boxes, classes = parse_voc_annotation(annotation_path, *image.shape[:2])
        ids = np.arange(1, len(boxes) + 1, dtype=np.int32)
    return {
        "image": image,
        "class_mask": class_mask.astype(np.uint8),
        "instance_mask": instance_mask,
        "boxes": boxes.astype(np.float32).reshape(-1, 4),
        "box_classes": classes.astype(np.int32),
        "box_instances": ids.astype(np.int32),
    }


def load_voc_example(root, image_id: str, boxes_from: str = "mask") -> dict:
    """One VOC 2012 example in the common format, as numpy arrays.

    Raises:
        FileNotFoundError: a file of the example is missing (the message names it).
        ValueError: a file cannot be decoded, or image and masks differ in size.
    """
    voc_dir = find_voc2012(root)
    class_path = os.path.join(voc_dir, "SegmentationClass", f"{image_id}.png")
    object_path = os.path.join(voc_dir, "SegmentationObject", f"{image_id}.png")
    annotation_path = None
    if boxes_from == "xml":
        annotation_path = os.path.join(voc_dir, "Annotations", f"{image_id}.xml")
    example = _example(
        os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"),
        read_palette_png(class_path),
        read_palette_png(object_path),
        class_path,
        annotation_path,
    )
    example["image_id"] = image_id
    return example


def _loadmat_field(path, struct, field):
    try:
        import scipy.io
    except ImportError as error:
        raise ImportError(
            "Reading SBD's .mat files needs SciPy: `pip install scipy`."
        ) from error
    if not os.path.exists(path):
        raise FileNotFoundError(f"SBD annotation file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
        return getattr(mat[struct], field)
    except Exception as error:
        raise ValueError(f"Cannot read {struct}.{field} from {path}: {error}") from error


def load_sbd_example(sbd_root, image_id: str, voc_root=None) -> dict:
    """One SBD example in the common format (image from VOC's JPEGImages if given)."""
    sbd_root = os.fspath(sbd_root)
    cls_path = os.path.join(sbd_root, "cls", f"{image_id}.mat")
    inst_path = os.path.join(sbd_root, "inst", f"{image_id}.mat")
    class_mask = np.asarray(_loadmat_field(cls_path, "GTcls", "Segmentation"), np.uint8)
    instance_mask = np.asarray(_loadmat_field(inst_path, "GTinst", "Segmentation"), np.int32)
    categories = np.atleast_1d(
        np.asarray(_loadmat_field(inst_path, "GTinst", "Categories"), np.int32)
    )
    image_path = os.path.join(sbd_root, "img", f"{image_id}.jpg")
    if voc_root is not None:
        voc_image = os.path.join(find_voc2012(voc_root), "JPEGImages", f"{image_id}.jpg")
        image_path = voc_image if os.path.exists(voc_image) else image_path
    example = _example(image_path, class_mask, instance_mask, cls_path)
    # SBD lists each instance's category; prefer it over the majority vote.
    ids = example["box_instances"]
    known = (ids >= 1) & (ids <= len(categories))
    example["box_classes"] = np.where(
        known, categories[np.clip(ids - 1, 0, max(len(categories) - 1, 0))],
        example["box_classes"],
    ).astype(np.int32)
    example["image_id"] = image_id
    return example


def _sources(root, split, sbd_root, boxes_from):
    """`[(image_id, source)]` with source "voc" or "sbd"; checks the files exist."""
    voc_dir = find_voc2012(root)
    with_sbd = bool(sbd_root) and split in ("train", "trainval")
    voc_ids = voc_image_ids(root, split) if not with_sbd else None
    if voc_ids is None:
        voc_train = set(voc_image_ids(root, "train"))
        voc_val = set(voc_image_ids(root, "val"))
        sbd_ids = set(_read_ids(os.path.join(sbd_root, "train.txt"), "SBD train"))
        sbd_ids |= set(_read_ids(os.path.join(sbd_root, "val.txt"), "SBD val"))
        if split == "train":
            ids = sorted((voc_train | sbd_ids) - voc_val)
        else:  # trainval: everything, for the test-server submission, as the paper
            ids = sorted(voc_train | voc_val | sbd_ids)
        voc_ids = voc_train | voc_val
    else:
        ids = voc_ids
        voc_ids = set(voc_ids)
    sources = []
    for image_id in ids:
        has_voc = os.path.exists(os.path.join(voc_dir, "SegmentationClass", f"{image_id}.png"))
        if image_id in voc_ids or not sbd_root or has_voc:
            source = "voc"
            needed = [
                os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"),
                os.path.join(voc_dir, "SegmentationClass", f"{image_id}.png"),
                os.path.join(voc_dir, "SegmentationObject", f"{image_id}.png"),
            ]
            if boxes_from == "xml":
                needed.append(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"))
        else:
            source = "sbd"
            needed = [os.path.join(sbd_root, d, f"{image_id}.mat") for d in ("cls", "inst")]
            images = [os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"),
                      os.path.join(sbd_root, "img", f"{image_id}.jpg")]
            if not any(os.path.exists(p) for p in images):
                needed.append(images[0])
        missing = [p for p in needed if not os.path.exists(p)]
        if missing:
            raise FileNotFoundError(
                f"Missing file(s) for image {image_id!r} of split {split!r}: "
                + ", ".join(missing)
            )
        sources.append((image_id, source))
    return sources


def voc_dataset(
    root,
    split: str = "train",
    sbd_root=None,
    boxes_from: str = "mask",
    shuffle_files: bool = False,
    seed: int | None = None,
) -> tf.data.Dataset:
    """PASCAL VOC 2012 segmentation as a `tf.data.Dataset` in the common format.

    All of the split's files are checked to exist up front (FileNotFoundError naming
    the file); a file that cannot be decoded fails when it is read, with a
    `tf.errors.InvalidArgumentError` whose message names it.

    Args:
        root: the `VOCdevkit` folder (or its `VOC2012` folder).
        split: `"train"`, `"val"`, `"trainval"` (any `ImageSets/Segmentation` list).
        sbd_root: optional SBD `dataset` folder; with split `"train"` gives train_aug,
            with `"trainval"` VOC trainval + all of SBD.
        boxes_from: `"mask"` (default, from the instance mask) or `"xml"`.
        shuffle_files: shuffle the order of the images (each epoch).
        seed: int or None, seed of that shuffle.

    Returns:
        A `tf.data.Dataset` of dicts; class names and palette are in `VOC_INFO`.

    Example:

    ```python
    ds = voc_dataset("~/data/VOCdevkit", "val")
    example = next(iter(ds))  # {"image": (H, W, 3) uint8, "class_mask": ..., ...}
    ```
    """
    if boxes_from not in ("mask", "xml"):
        raise ValueError(
            f"`boxes_from` must be 'mask' or 'xml'. Received: boxes_from={boxes_from!r}"
        )
    if not isinstance(split, str) or not split:
        raise ValueError(f"`split` must be a split name like 'train'. Received: split={split!r}")
    root = os.path.expanduser(os.fspath(root))
    sbd_root = os.path.expanduser(os.fspath(sbd_root)) if sbd_root is not None else None
    if sbd_root is not None and not os.path.isdir(sbd_root):
        raise FileNotFoundError(f"SBD folder not found: {sbd_root}")
    sources = _sources(root, split, sbd_root, boxes_from)

    def load(image_id, source):
        image_id, source = image_id.decode(), source.decode()
        if source == "voc":
            example = load_voc_example(root, image_id, boxes_from)
        else:
            example = load_sbd_example(sbd_root, image_id, root)
        return tuple(example[k] for k in _KEYS)

    def to_dict(image_id, source):
        values = tf.numpy_function(load, [image_id, source], _DTYPES)
        shapes = [(None, None, 3), (None, None), (None, None), (None, 4), (None,), (None,)]
        example = {"image_id": image_id}
        for key, value, shape in zip(_KEYS, values, shapes):
            value.set_shape(shape)
            example[key] = value
        return example

    ids = [s[0] for s in sources]
    kinds = [s[1] for s in sources]
    dataset = tf.data.Dataset.from_tensor_slices((ids, kinds))
    if shuffle_files:
        dataset = dataset.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    return dataset.map(to_dict, num_parallel_calls=tf.data.AUTOTUNE)
