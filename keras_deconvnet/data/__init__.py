"""Datasets and training crops for DeconvNet, as `tf.data` pipelines.

**The common example format.** Every dataset here yields dicts with:

| key               | dtype   | shape       | meaning                                         |
|-------------------|---------|-------------|-------------------------------------------------|
| `"image_id"`      | string  | ()          | the image's id (file stem), for proposal files  |
| `"image"`         | uint8   | (H, W, 3)   | RGB image                                       |
| `"class_mask"`    | uint8   | (H, W)      | 0 background, 1..K classes, 255 ignore          |
| `"instance_mask"` | int32   | (H, W)      | 0 no instance, 1..N instance ids                |
| `"boxes"`         | float32 | (N, 4)      | `[ymin, xmin, ymax, xmax]`, absolute pixels     |
| `"box_classes"`   | int32   | (N,)        | class id of each box                            |
| `"box_instances"` | int32   | (N,)        | the instance id of each box in `instance_mask`  |

Boxes are pixel edges: an object covering pixel rows 3..7 has `ymin=3, ymax=8`.
Each dataset has a `DatasetInfo` (class names, `(256, 3)` RGB palette):
`SYNTHETIC_INFO`, `VOC_INFO`, `pets_info(class_mode)`.

Datasets: `synthetic_dataset` (built in, no files), `voc_dataset` (PASCAL VOC 2012 +
optional SBD from disk), `pets_dataset` (Oxford-IIIT Pet via TFDS). VOC is also a TFDS
builder with a manual directory: `keras_deconvnet.data.voc_tfds` (imported on demand,
it needs `tensorflow-datasets`).
Training crops: `stage1_crops`, `stage2_crops` -> `(image, mask)` pairs.
Proposals: `SlidingWindowProposals`, `FileProposals`, `PaddedBoxProposals` (the
authors' `.mat` cache), `box_iou`, `filter_proposals`.

Example:

>>> from keras_deconvnet.data import synthetic_dataset, stage1_crops
>>> crops = stage1_crops(synthetic_dataset(num_examples=4), crop_size=64, resize_size=72)
>>> images, masks = next(iter(crops.batch(2)))
>>> tuple(images.shape), masks.dtype.name
((2, 64, 64, 3), 'int32')
"""

from keras_deconvnet.data.crops import Stage2CropConfig, stage1_crops, stage2_crops
from keras_deconvnet.data.example_format import (
    IGNORE_LABEL,
    DatasetInfo,
    bitwise_palette,
    boxes_from_instance_mask,
)
from keras_deconvnet.data.pets import pets_dataset, pets_info, pets_to_common
from keras_deconvnet.data.proposal_cache import PaddedBoxProposals
from keras_deconvnet.data.proposals import (
    FileProposals,
    SlidingWindowProposals,
    box_iou,
    call_proposals,
    filter_proposals,
)
from keras_deconvnet.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_INFO,
    SYNTHETIC_PALETTE,
    synthetic_dataset,
    synthetic_example,
)
from keras_deconvnet.data.voc import (
    VOC_CLASSES,
    VOC_INFO,
    VOC_PALETTE,
    load_voc_example,
    voc_dataset,
)

__all__ = [
    "IGNORE_LABEL",
    "DatasetInfo",
    "FileProposals",
    "PaddedBoxProposals",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_INFO",
    "SYNTHETIC_PALETTE",
    "SlidingWindowProposals",
    "VOC_CLASSES",
    "VOC_INFO",
    "VOC_PALETTE",
    "bitwise_palette",
    "box_iou",
    "boxes_from_instance_mask",
    "call_proposals",
    "filter_proposals",
    "load_voc_example",
    "pets_dataset",
    "pets_info",
    "pets_to_common",
    "stage1_crops",
    "stage2_crops",
    "Stage2CropConfig",
    "synthetic_dataset",
    "synthetic_example",
    "voc_dataset",
]
