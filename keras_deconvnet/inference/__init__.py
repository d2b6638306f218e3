"""Inference: instance-wise (proposal) prediction, whole-image prediction, image files.

`predict_proposals` is the paper's inference (proposals -> crops -> batched predict ->
paste back -> max/mean aggregation); `predict_whole_image` is the comparison baseline;
`dense_crf` refines either.
"""

from keras_deconvnet.inference.crf import DenseCRF, dense_crf
from keras_deconvnet.inference.images import ImageReadError, load_image, to_rgb_uint8
from keras_deconvnet.inference.proposals import (
    aggregate_proposals,
    crop_proposals,
    normalise_scores,
    predict_proposals,
)
from keras_deconvnet.inference.whole_image import (
    labels_from_scores,
    predict_whole_image,
    sliding_windows,
)

__all__ = [
    "DenseCRF",
    "dense_crf",
    "ImageReadError",
    "aggregate_proposals",
    "crop_proposals",
    "labels_from_scores",
    "load_image",
    "normalise_scores",
    "predict_proposals",
    "predict_whole_image",
    "sliding_windows",
    "to_rgb_uint8",
]
