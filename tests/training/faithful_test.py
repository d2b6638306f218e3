"""The original code's rules that `train_two_stage` applies, on hand-made examples:
BN statistics after the last stage, class balancing (an option), the recipe's model."""

import json

import keras
import numpy as np
import pytest
from training.two_stage_test import StageConfig, learnable_data, quick_config, small_model

from keras_deconvnet.recipes import RecipeConfig, build_model_fn, stage2_proposals
from keras_deconvnet.training import (
    ClassWeightedCrossentropy,
    median_frequency_weights,
    recompute_batchnorm_statistics,
    train_two_stage,
)


def _moving(model):
    return [keras.ops.convert_to_numpy(w) for w in model.non_trainable_weights]


def test_batchnorm_statistics_recomputed_after_the_last_stage(tmp_path):
    # BN_make_INFERENCE_script.py: after stage 2, batch statistics of training
    # batches (of 28 there; 3 here), the plain mean of the biased batch variances:
    # its `m / (m - 1)` is Python 2 integer division, a factor of 1.
    data = learnable_data(n=8, batch=2)
    config = quick_config(batchnorm_batches=2, batchnorm_batch_size=3)
    model, _ = train_two_stage(small_model, data, data, None, tmp_path, config)
    expected = small_model()
    expected.load_weights(tmp_path / "stage2" / "final.weights.h5")
    recompute_batchnorm_statistics(expected, data.unbatch().batch(3), num_batches=2,
                                   unbiased=False)
    for got, want in zip(_moving(model), _moving(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5)
    record = json.loads((tmp_path / "stage2" / "batchnorm" / "COMPLETE.json").read_text())
    assert record == {"batches": 2, "batch_size": 3, "unbiased": False}
    # The Bessel-corrected variances (the option) differ: the default is not them.
    corrected = small_model()
    corrected.load_weights(tmp_path / "stage2" / "final.weights.h5")
    recompute_batchnorm_statistics(corrected, data.unbatch().batch(3), num_batches=2,
                                   unbiased=True)
    assert any(not np.allclose(got, want, rtol=1e-5)
               for got, want in zip(_moving(model), _moving(corrected)))
    final = small_model()
    final.load_weights(tmp_path / "final.weights.h5")
    for got, want in zip(_moving(final), _moving(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-5)

    # Off: the final weights are stage 2's, Keras's moving averages.
    model, _ = train_two_stage(small_model, data, data, None, tmp_path / "off",
                               quick_config(recompute_batchnorm=False))
    assert not (tmp_path / "off" / "stage2" / "batchnorm").exists()
    stage2 = small_model()
    stage2.load_weights(tmp_path / "off" / "stage2" / "final.weights.h5")
    for got, want in zip(_moving(model), _moving(stage2)):
        np.testing.assert_array_equal(got, want)


def test_class_weighted_loss_by_hand():
    y = np.array([[[0, 1], [2, 255]]])  # 3 valid pixels
    logits = np.log(np.array([[[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]],
                               [[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]], "float32"))
    weights = [1.0, 2.0, 4.0]
    expected = (1 * -np.log(0.5) + 2 * -np.log(0.25) + 4 * -np.log(0.25)) / 3
    got = ClassWeightedCrossentropy(weights)(y, logits)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Weights of 1: Keras's loss with ignore_class, exactly.
    plain = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    assert float(ClassWeightedCrossentropy([1.0] * 3)(y, logits)) == pytest.approx(
        float(plain(y, logits)), rel=1e-6)
    restored = ClassWeightedCrossentropy.from_config(ClassWeightedCrossentropy(weights)
                                                     .get_config())
    assert restored.class_weights == weights
    with pytest.raises(ValueError, match="class_weights"):
        ClassWeightedCrossentropy([1.0, -1.0])


def test_median_frequency_weights_by_hand():
    # Class 0 in both images (4 of their 7 labelled pixels), class 1 in the first
    # only (2 of 4),
    # class 2 in the second only (1 of its 3 labelled pixels); class 3 never.
    masks = np.array([[[0, 0, 1, 1]], [[0, 0, 2, 255]]])
    frequency = np.array([4 / 7, 2 / 4, 1 / 3])
    median = np.median(frequency)
    with pytest.warns(UserWarning, match=r"classes \[3\]"):
        weights = median_frequency_weights([(None, masks)], 4)
    np.testing.assert_allclose(weights, [*(median / frequency), 1.0])
    with pytest.raises(ValueError, match="No labelled pixel"):
        median_frequency_weights([(None, np.full((1, 2, 2), 255))], 3)


def test_class_balancing_in_training_is_kept_on_resume(tmp_path):
    data = learnable_data(n=4, batch=2)
    config = quick_config(class_balancing="median_frequency", class_balancing_batches=2,
                          stage2=StageConfig(epochs=0))
    model, _ = train_two_stage(small_model, data, None, None, tmp_path, config)
    assert isinstance(model.loss, ClassWeightedCrossentropy)
    saved = json.loads((tmp_path / "stage1" / "class_weights.json").read_text())
    masks = np.concatenate([m for _, m in data.take(2).as_numpy_iterator()])
    expected = median_frequency_weights([(None, masks)], 3)
    np.testing.assert_allclose(saved["class_weights"], expected)
    np.testing.assert_allclose(model.loss.class_weights, expected)
    # Explicit weights win, and are checked against the model.
    model, _ = train_two_stage(small_model, data, None, None, tmp_path / "explicit",
                               quick_config(class_weights=[1.0, 2.0, 3.0],
                                            stage2=StageConfig(epochs=0)))
    assert model.loss.class_weights == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="3 classes"):
        train_two_stage(small_model, data, None, None, tmp_path / "bad",
                        quick_config(class_weights=[1.0, 2.0], stage2=StageConfig(epochs=0)))


def test_recipe_models_and_proposals(tmp_path):
    # The FCN-8s path builds the FCN-8s family's configuration at the crop size.
    fcn = build_model_fn(RecipeConfig("fcn8s", crop_size=64), num_classes=4)()
    assert type(fcn).__name__ == "FCN8sImageSegmenter"
    assert fcn.output_shape == (None, None, None, 4)  # runs on whole images
    glorot = build_model_fn(RecipeConfig(crop_size=96, decoder_initializer="glorot"), 4)()
    assert glorot.backbone.decoder_initializer == "glorot"
    default = build_model_fn(RecipeConfig(crop_size=96), 4)()
    assert default.backbone.decoder_initializer == "caffe"
    with pytest.raises(ValueError, match="decoder_initializer"):
        RecipeConfig("fcn8s", crop_size=64, decoder_initializer="caffe")
    with pytest.raises(ValueError, match="architecture"):
        RecipeConfig("segnet")
    # Stage-2 proposals: sliding windows by default, EdgeBoxes files from a folder.
    assert type(stage2_proposals(None)).__name__ == "SlidingWindowProposals"
    np.savetxt(tmp_path / "img1.txt", [[1, 1, 5, 4, 0.9]])
    files = stage2_proposals(str(tmp_path))
    assert type(files).__name__ == "FileProposals" and files.box_format == "edgeboxes"
    np.testing.assert_array_equal(files(np.zeros((8, 8, 3), np.uint8), image_id="img1"),
                                  [[0, 0, 4, 5]])
    with pytest.raises(FileNotFoundError):
        stage2_proposals(str(tmp_path / "missing"))
