"""EDeconvNet inference as the authors' code ran it: DeconvNet over proposals, FCN-8s
once on the whole image, combined by the product of rectified raw scores."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_deconvnet.inference.config import FCN_INPUT_SIZE, InferenceConfig
from keras_deconvnet.inference.images import to_rgb_uint8
from keras_deconvnet.inference.proposals import predict_proposals, preprocessor_of
from keras_deconvnet.inference.scores import softmax


def predict_fcn_padded(fcn, image: np.ndarray, pad_to: int = FCN_INPUT_SIZE) -> np.ndarray:
    """FCN-8s on the whole image, zero-padded at the bottom/right to `pad_to`.

    As `cache_FCN8s_results.m`: the image is preprocessed (mean subtracted), padded
    with zeros in that preprocessed space to `pad_to` x `pad_to` (or kept, if larger),
    run once, and the raw scores are cut back to the image.

    Returns:
        `(H, W, num_classes)` float32 raw scores.
    """
    image = to_rgb_uint8(image)
    height, width = image.shape[:2]
    converter = preprocessor_of(fcn).image_converter
    if converter.image_size is not None:
        raise ValueError(
            "The FCN-8s runs on the whole image at its own size: give it a converter "
            f"without `image_size`. Received: image_size={converter.image_size}"
        )
    network_input = np.asarray(converter(image[None].astype(np.float32)))
    target = (max(pad_to, height), max(pad_to, width))
    padded = tf.pad(network_input, [[0, 0], [0, target[0] - height], [0, target[1] - width],
                                    [0, 0]])
    # Called directly: the input is preprocessed already (keras-hub's `predict_*`
    # would apply the preprocessor a second time).
    scores = np.asarray(fcn(padded, training=False), np.float32)[0]
    return scores[:height, :width]


def predict_ensemble(
    deconvnet,
    fcn,
    image: np.ndarray,
    proposals=None,
    config: InferenceConfig | None = None,
    *,
    image_id: str | None = None,
) -> np.ndarray:
    """EDeconvNet scores of one image.

    Args:
        deconvnet: a DeconvNet segmenter (logits), run over proposals as
            `predict_proposals` does (with the same `config`).
        fcn: an FCN-8s segmenter (logits), run once on the padded whole image.
        image: `(H, W, 3)` RGB.
        proposals: as in `predict_proposals` (`None`: `config.proposals`).
        config: an `InferenceConfig`; besides the proposal settings, its
            `ensemble_mode` (`"product"`, the default and the authors' code, from
            which the published 71.7 / 72.5 come: `deconvnet_scores * max(0,
            fcn_scores)` on raw scores, a score map whose softmax feeds the CRF; or
            `"mean"`, the paper's text: the mean of the two softmax probability maps)
            and `fcn_input_size` (the FCN-8s input the image is padded to: 500, the
            original) apply. `None` is the authors' inference.
        image_id: passed to proposal generators that read files.

    Returns:
        `(H, W, num_classes)` float32: scores (`"product"`) or probabilities
        (`"mean"`).

    Example:

    >>> from keras_deconvnet.models import DeconvNetImageSegmenter, FCN8sImageSegmenter
    >>> d = DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3)
    >>> f = FCN8sImageSegmenter.from_preset("fcn8s_edge_small", num_classes=3)
    >>> config = InferenceConfig(top_n=2, input_size=(96, 96), fcn_input_size=128)
    >>> predict_ensemble(d, f, np.zeros((100, 120, 3), np.uint8), config=config).shape
    (100, 120, 3)
    """
    config = config or InferenceConfig()
    deconvnet_scores = predict_proposals(deconvnet, image, proposals, config,
                                         image_id=image_id)
    fcn_scores = predict_fcn_padded(fcn, image, config.fcn_input_size)
    if deconvnet_scores.shape != fcn_scores.shape:
        raise ValueError(
            "The two members must predict the same classes. Received: "
            f"{deconvnet_scores.shape[-1]} and {fcn_scores.shape[-1]}"
        )
    if config.ensemble_mode == "product":
        return deconvnet_scores * np.maximum(fcn_scores, 0.0)
    return (softmax(deconvnet_scores) + softmax(fcn_scores)) / 2
