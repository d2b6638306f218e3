"""EDeconvNet: the ensemble task over a DeconvNet and an FCN-8s segmenter."""

from keras_deconvnet.models.edeconvnet.edeconvnet_image_segmenter import (
    ENSEMBLE_MODES,
    EDeconvNetImageSegmenter,
    RectifiedProduct,
)

__all__ = ["ENSEMBLE_MODES", "EDeconvNetImageSegmenter", "RectifiedProduct"]
