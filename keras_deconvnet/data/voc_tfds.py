"""PASCAL VOC 2012 segmentation as a TFDS builder with a manual download directory.

An alternative to `voc_dataset` that converts the VOCdevkit once into TFDS's record
files (faster to read repeatedly, shardable, cached under `data_dir`). It reads the
files with the same code as `voc_dataset`, so the examples are identical. Needs
`tensorflow-datasets` (the `datasets` extra).

Example:

```python
from keras_deconvnet.data.voc_tfds import voc_tfds_dataset
ds = voc_tfds_dataset("val", manual_dir="~/data")  # ~/data/VOCdevkit/VOC2012/...
```
"""

from __future__ import annotations

import inspect
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from keras_deconvnet.data import voc

_SBD_DIRS = ("benchmark_RELEASE/dataset", "SBD/dataset", "SBD", "sbd")


def _find_sbd(manual_dir):
    for sub in _SBD_DIRS:
        path = os.path.join(manual_dir, sub)
        if os.path.isdir(os.path.join(path, "cls")):
            return path
    return None


class VocSegmentation(tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC 2012 segmentation (class and instance masks, boxes), from disk.

    Splits: `train`, `val` (VOC 2012 `ImageSets/Segmentation`) and, when SBD is in
    the manual directory, `train_aug` (VOC train + SBD train/val - VOC val).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Class masks, instance masks, boxes from instance masks."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download VOCtrainval_11-May-2012.tar from http://host.robots.ox.ac.uk/pascal/VOC/voc2012/
    and extract it into the manual directory, giving `<manual_dir>/VOCdevkit/VOC2012/`
    (JPEGImages, SegmentationClass, SegmentationObject, ImageSets/Segmentation).
    Optional, for the `train_aug` split: extract SBD's benchmark.tgz
    (http://home.bharathh.info/pubs/codes/SBD/download.html) there too, giving
    `<manual_dir>/benchmark_RELEASE/dataset/{cls,inst,img,train.txt,val.txt}`
    (reading its .mat files needs SciPy).
    """

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10's default imports `importlib_resources`, which it only installs
        # on Python < 3.9, for builders defined outside TFDS: bypass it.
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="PASCAL VOC 2012 semantic and instance segmentation.",
            features=tfds.features.FeaturesDict({
                "image_id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(None, None, 3)),
                "class_mask": tfds.features.Image(shape=(None, None, 1)),
                "instance_mask": tfds.features.Image(shape=(None, None, 1)),
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
                "box_classes": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "box_instances": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            }),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/",
        )

    def _split_generators(self, dl_manager):
        manual_dir = os.fspath(dl_manager.manual_dir)
        voc.find_voc2012(manual_dir)  # clear error if the VOCdevkit is not there
        splits = {
            "train": self._generate_examples(manual_dir, "train", None),
            "val": self._generate_examples(manual_dir, "val", None),
        }
        sbd_root = _find_sbd(manual_dir)
        if sbd_root is not None:
            splits["train_aug"] = self._generate_examples(manual_dir, "train", sbd_root)
        return splits

    def _generate_examples(self, manual_dir, split, sbd_root):
        for image_id, source in voc._sources(manual_dir, split, sbd_root, "mask"):
            if source == "voc":
                example = voc.load_voc_example(manual_dir, image_id)
            else:
                example = voc.load_sbd_example(sbd_root, image_id, manual_dir)
            if example["instance_mask"].max(initial=0) > 255:
                raise ValueError(f"Image {image_id!r} has more than 255 instances.")
            example["class_mask"] = example["class_mask"][..., None]
            example["instance_mask"] = example["instance_mask"].astype(np.uint8)[..., None]
            yield image_id, example


def to_common(example: dict) -> dict:
    """A `VocSegmentation` example in the common format of `keras_deconvnet.data`."""
    example = dict(example)
    example["class_mask"] = example["class_mask"][..., 0]
    example["instance_mask"] = tf.cast(example["instance_mask"][..., 0], tf.int32)
    return example


def voc_tfds_dataset(
    split: str = "train",
    manual_dir=None,
    data_dir=None,
    shuffle_files: bool = False,
) -> tf.data.Dataset:
    """Prepares (once) and loads `VocSegmentation`, in the common format.

    Args:
        split: `"train"`, `"val"`, or `"train_aug"` (needs SBD in `manual_dir`).
        manual_dir: folder holding `VOCdevkit/` (see `MANUAL_DOWNLOAD_INSTRUCTIONS`).
        data_dir: where TFDS writes the prepared data (default `~/tensorflow_datasets`).
        shuffle_files: passed to `as_dataset`.
    """
    builder = VocSegmentation(data_dir=data_dir)
    config = None
    if manual_dir is not None:
        config = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir))
    builder.download_and_prepare(download_config=config)
    if split not in builder.info.splits:
        raise ValueError(
            f"`split` must be one of {sorted(builder.info.splits)}. Received: split={split!r}"
        )
    dataset = builder.as_dataset(split=split, shuffle_files=shuffle_files)
    return dataset.map(to_common, num_parallel_calls=tf.data.AUTOTUNE)
