"""Tests of the VOC-style confusion matrix, IoU table and the Keras `MeanIoU` metric."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_deconvnet.metrics import (
    MeanIoU,
    confusion_matrix,
    format_iou_table,
    iou_from_confusion,
)

# 3 classes; class 2 never appears in ground truth or predictions; 255 = void.
LABELS = np.array([[0, 0, 1, 1], [0, 1, 1, 255], [255, 0, 0, 1]])
PREDS = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [1, 0, 1, 1]])
# Counted pixels (label != 255), by hand: rows ground truth, columns prediction.
#   gt 0 at (0,0) (0,1) (1,0) (2,1) (2,2) predicted 0 1 0 0 1 => [3, 2, 0]
#   gt 1 at (0,2) (0,3) (1,1) (1,2) (2,3) predicted 1 1 0 1 1 => [1, 4, 0]
EXPECTED_CM = np.array([[3, 2, 0], [1, 4, 0], [0, 0, 0]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(LABELS, PREDS, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, EXPECTED_CM)
    # Without ignoring, the void pixels are out of range: a clear error.
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix(LABELS, PREDS, num_classes=3, ignore_label=None)


def test_iou_from_confusion_by_hand():
    result = iou_from_confusion(EXPECTED_CM)
    # IoU0 = 3 / (3 + 2 + 1) = 0.5, IoU1 = 4 / (4 + 1 + 2) = 4/7, class 2 absent.
    np.testing.assert_allclose(result["per_class_iou"][:2], [0.5, 4 / 7])
    assert math.isnan(result["per_class_iou"][2])
    assert result["present"].tolist() == [True, True, False]
    assert result["mean_iou"] == pytest.approx((0.5 + 4 / 7) / 2)
    assert result["pixel_accuracy"] == pytest.approx(7 / 10)
    assert result["mean_class_accuracy"] == pytest.approx((3 / 5 + 4 / 5) / 2)
    assert result["num_pixels"] == 10


def test_absent_class_predicted_counts_as_present():
    # A class only predicted (false positives) is present with IoU 0.
    cm = np.array([[2, 1], [0, 0]])
    result = iou_from_confusion(cm)
    np.testing.assert_allclose(result["per_class_iou"], [2 / 3, 0.0])
    assert result["mean_iou"] == pytest.approx(1 / 3)


def test_numpy_errors():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 5), 2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2), int), 0)
    with pytest.raises(ValueError, match="square"):
        iou_from_confusion(np.zeros((2, 3)))


def test_format_iou_table():
    result = iou_from_confusion(EXPECTED_CM)
    table = format_iou_table(result, ["background", "cat", "dog"])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "IoU", "(%)"]
    assert lines[1].split() == ["background", "50.0"]
    assert lines[2].split() == ["cat", "57.1"]
    assert lines[3].split() == ["dog", "-"]
    assert "mean IoU" in table and "53.6" in table
    wide = format_iou_table(result, ["background", "cat", "dog"], transpose=False)
    header, row = wide.splitlines()
    assert header.split() == ["background", "cat", "dog", "mean"]
    assert row.split() == ["50.0", "57.1", "-", "53.6"]
    with pytest.raises(ValueError, match="one name per class"):
        format_iou_table(result, ["a", "b"])


def test_keras_metric_by_hand_with_logits_and_labels():
    logits = tf.one_hot(PREDS, 3) * 5.0
    metric = MeanIoU(num_classes=3)
    metric.update_state(LABELS[None], logits[None])
    np.testing.assert_array_equal(metric.confusion_matrix(), EXPECTED_CM)
    assert float(metric.result()) == pytest.approx((0.5 + 4 / 7) / 2, abs=1e-6)
    # Integer label maps and masks with a trailing channel work the same.
    metric.reset_state()
    metric.update_state(LABELS[None, ..., None], PREDS[None])
    np.testing.assert_array_equal(metric.confusion_matrix(), EXPECTED_CM)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_keras_metric_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    num_classes = 5
    metric = MeanIoU(num_classes)
    all_labels, all_preds = [], []
    for _ in range(4):
        labels = rng.integers(0, num_classes, (2, 16, 16))
        labels[rng.random(labels.shape) < 0.2] = 255
        labels[labels == 3] = 0  # class 3 absent from the ground truth
        scores = rng.normal(size=(2, 16, 16, num_classes)).astype("float32")
        probs = tf.nn.softmax(scores).numpy()  # probabilities: same argmax
        metric.update_state(labels.astype("int32"), probs)
        all_labels.append(labels)
        all_preds.append(scores.argmax(-1))
    expected = iou_from_confusion(
        confusion_matrix(np.stack(all_labels), np.stack(all_preds), num_classes)
    )
    np.testing.assert_array_equal(
        metric.confusion_matrix(),
        confusion_matrix(np.stack(all_labels), np.stack(all_preds), num_classes),
    )
    assert float(metric.result()) == pytest.approx(expected["mean_iou"], abs=1e-6)
    np.testing.assert_allclose(
        metric.result_dict()["per_class_iou"], expected["per_class_iou"]
    )


def test_keras_metric_sample_weight():
    labels = np.array([[[0, 1]], [[1, 1]]])
    preds = np.array([[[0, 0]], [[1, 1]]])
    metric = MeanIoU(2)
    metric.update_state(labels, preds, sample_weight=np.array([1.0, 0.0]))
    np.testing.assert_array_equal(metric.confusion_matrix(), [[1, 0], [1, 0]])


def test_keras_metric_in_evaluate_with_jit():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 1)(inputs))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                  ignore_class=255),
                  metrics=[MeanIoU(4)], jit_compile=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, (6, 8, 8)).astype("int32")
    y[:, 0] = 255
    logs = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    expected = iou_from_confusion(
        confusion_matrix(y, model.predict(x, verbose=0).argmax(-1), 4)
    )
    assert logs["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)


def test_keras_metric_config_round_trip():
    metric = MeanIoU(7, ignore_class=None, name="miou")
    config = metric.get_config()
    assert config["num_classes"] == 7 and config["ignore_class"] is None
    restored = MeanIoU.from_config(config)
    assert (restored.num_classes, restored.ignore_class, restored.name) == (7, None, "miou")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(again, MeanIoU) and again.num_classes == 7


def test_keras_metric_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        MeanIoU(0)
    with pytest.raises(ValueError, match="ignore_class"):
        MeanIoU(3, ignore_class="void")
