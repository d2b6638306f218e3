"""Inference: instance-wise (proposal) prediction as the authors ran it, whole-image
prediction, the EDeconvNet ensemble, the dense CRF, and image files.

`predict_proposals` is the paper's inference (proposal windows -> batched network ->
raw scores max-aggregated on a zero canvas); `predict_whole_image` is the comparison
baseline; `predict_ensemble` adds FCN-8s; `dense_crf` refines any of them. One
`InferenceConfig` holds the settings of them all.
"""

from keras_deconvnet.inference.config import InferenceConfig
from keras_deconvnet.inference.crf import DenseCRF, dense_crf
from keras_deconvnet.inference.ensemble import predict_ensemble, predict_fcn_padded
from keras_deconvnet.inference.images import ImageReadError, load_image, to_rgb_uint8
from keras_deconvnet.inference.mean_field import pydensecrf2_available, unary_from_scores
from keras_deconvnet.inference.permutohedral import PermutohedralLattice
from keras_deconvnet.inference.proposals import (
    aggregate_proposals,
    crop_windows,
    predict_proposals,
    proposal_windows,
)
from keras_deconvnet.inference.scores import labels_from_scores, normalise_scores, softmax
from keras_deconvnet.inference.whole_image import (
    image_converter,
    predict_whole_image,
    scores_to_image,
    sliding_windows,
    whole_image_probabilities,
    whole_image_scores,
)

__all__ = [
    "DenseCRF",
    "ImageReadError",
    "InferenceConfig",
    "PermutohedralLattice",
    "aggregate_proposals",
    "crop_windows",
    "dense_crf",
    "image_converter",
    "labels_from_scores",
    "load_image",
    "normalise_scores",
    "predict_ensemble",
    "predict_fcn_padded",
    "predict_proposals",
    "predict_whole_image",
    "proposal_windows",
    "pydensecrf2_available",
    "scores_to_image",
    "sliding_windows",
    "softmax",
    "to_rgb_uint8",
    "unary_from_scores",
    "whole_image_probabilities",
    "whole_image_scores",
]
