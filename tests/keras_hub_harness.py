"""Checks every segmenter family passes, after keras-hub's own test base
(`run_backbone_test`, `run_task_test`, `run_preset_test`): config round trips,
saving with keras-hub's saver, loading through `keras_hub`'s own classes, and
`predict` on raw images equal to the image converter followed by the model."""

from __future__ import annotations

import json

import keras
import keras_hub
import numpy as np


def check_backbone(backbone, images: np.ndarray) -> None:
    """Config round trip (JSON-able, rebuilds an equal model), and a forward pass."""
    config = backbone.get_config()
    json.dumps(config)
    clone = type(backbone).from_config(config)
    assert clone.get_config() == config
    assert clone.count_params() == backbone.count_params()
    outputs = backbone(images)
    for output in keras.tree.flatten(outputs):
        assert np.all(np.isfinite(np.asarray(output)))


def check_predict_is_converter_then_model(segmenter, raw_images: np.ndarray) -> np.ndarray:
    """`predict` on raw RGB uint8 equals the preprocessor's converter + the model."""
    predicted = segmenter.predict(raw_images, verbose=0)
    converted = segmenter.preprocessor.image_converter(raw_images)
    direct = np.asarray(segmenter(converted, training=False))
    np.testing.assert_allclose(predicted, direct, rtol=1e-5, atol=1e-5)
    return predicted


def check_preset_round_trip(segmenter, preset_dir, raw_images: np.ndarray) -> None:
    """keras-hub's saver writes the preset; keras_hub's own base classes load it."""
    path = segmenter.save_to_preset(preset_dir)
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "metadata.json", "model.weights.h5", "task.json",
            "task.weights.h5", "preprocessor.json", "image_converter.json"} <= files
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["keras_hub_version"] == keras_hub.__version__
    assert metadata["keras_deconvnet"]["class_names"] == list(segmenter.class_names)

    expected = segmenter.predict(raw_images, verbose=0)
    loaded = keras_hub.models.ImageSegmenter.from_preset(str(path))
    assert type(loaded) is type(segmenter)
    assert loaded.class_names == segmenter.class_names
    np.testing.assert_array_equal(loaded.predict(raw_images, verbose=0), expected)
    assert type(type(segmenter).from_preset(str(path))) is type(segmenter)

    backbone = keras_hub.models.Backbone.from_preset(str(path))
    assert type(backbone) is type(segmenter.backbone)
    for a, b in zip(backbone.weights, segmenter.backbone.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    preprocessor = keras_hub.models.ImageSegmenterPreprocessor.from_preset(str(path))
    assert type(preprocessor) is type(segmenter.preprocessor)
    np.testing.assert_array_equal(
        np.asarray(preprocessor(raw_images)),
        np.asarray(segmenter.preprocessor(raw_images)),
    )
