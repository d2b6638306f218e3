"""Segmentation metrics: VOC-style confusion matrix, IoU and a Keras `MeanIoU`."""

from keras_deconvnet.metrics.mean_iou import (
    MeanIoU,
    confusion_matrix,
    format_iou_table,
    iou_from_confusion,
)

__all__ = ["MeanIoU", "confusion_matrix", "format_iou_table", "iou_from_confusion"]
