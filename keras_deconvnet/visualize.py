"""Pictures of segmentations: palette label PNGs, overlays with a legend, confusion matrices."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from keras_deconvnet.labels import IGNORE_LABEL, bitwise_palette


def full_palette(class_colours=None) -> np.ndarray:
    """A `(256, 3)` palette: `class_colours` (one RGB row per class) over VOC's map.

    Example:

    >>> full_palette([(1, 2, 3)])[:2].tolist()
    [[1, 2, 3], [128, 0, 0]]
    """
    palette = bitwise_palette().copy()
    if class_colours is not None:
        colours = np.asarray(class_colours, np.uint8).reshape(-1, 3)[:256]
        palette[: len(colours)] = colours
    return palette


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map, `(256, 3)` uint8 (label 255 is the cream border)."""
    return bitwise_palette()


def save_label_png(labels: np.ndarray, path: str | os.PathLike, palette=None) -> Path:
    """Writes a label map as a palette PNG (the VOC `SegmentationClass` format)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise ValueError(
            f"`labels` must be a 2D map of values 0..255. Received: shape={labels.shape}"
        )
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(np.asarray(voc_palette() if palette is None else palette,
                                np.uint8).ravel().tolist())
    path = Path(path)
    image.save(path)
    return path


def colorize(labels: np.ndarray, palette=None) -> np.ndarray:
    """Label map to an RGB image with the palette."""
    palette = np.asarray(voc_palette() if palette is None else palette, np.uint8)
    return palette[np.asarray(labels, np.uint8)]


def overlay(image: np.ndarray, labels: np.ndarray, palette=None, alpha: float = 0.5):
    """Blends the coloured labels over the image; background pixels stay as they are."""
    colours = colorize(labels, palette).astype(np.float32)
    image = np.asarray(image, np.float32)
    mask = (np.asarray(labels) > 0)[..., None]
    blended = np.where(mask, (1 - alpha) * image + alpha * colours, image)
    return blended.round().astype(np.uint8)


def save_overlay(
    image: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str],
    palette=None,
    title: str | None = None,
) -> Path:
    """Writes the image, the overlay, the label map and a legend of the classes present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    palette = np.asarray(voc_palette() if palette is None else palette, np.uint8)
    present = [int(c) for c in np.unique(labels) if c != IGNORE_LABEL]
    height, width = np.asarray(labels).shape
    fig_w = 10.5
    fig, axes = plt.subplots(1, 3, figsize=(fig_w, fig_w / 3 * height / width + 0.9))
    axes[0].imshow(image)
    axes[0].set_title("image")
    axes[1].imshow(overlay(image, labels, palette))
    axes[1].set_title(title or "segmentation")
    axes[2].imshow(colorize(labels, palette))
    axes[2].set_title("labels")
    for ax in axes:
        ax.axis("off")
    handles = [
        mpatches.Patch(
            color=palette[c] / 255.0,
            label=class_names[c] if c < len(class_names) else f"class {c}",
        )
        for c in present
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6) or 1,
               frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_comparison(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: dict[str, Sequence[np.ndarray]],
    path: str | os.PathLike,
    class_names: Sequence[str],
    palette=None,
) -> Path:
    """A grid with one row per image: the image, its ground truth, each method's labels.

    Args:
        images: RGB images.
        truths: their ground-truth label maps (255 drawn in the palette's row 255).
        predictions: `{method: [label map per image]}`, one column each.
        path: the PNG to write.
        class_names: names for the legend (classes present anywhere).
        palette: `(256, 3)` colours; defaults to VOC's.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    palette = np.asarray(voc_palette() if palette is None else palette, np.uint8)
    columns = ["image", "ground truth", *predictions]
    rows = len(images)
    fig, axes = plt.subplots(rows, len(columns), squeeze=False,
                             figsize=(2.2 * len(columns), 2.2 * rows + 0.6))
    present = set()
    for r in range(rows):
        panels = [images[r], colorize(truths[r], palette)]
        present.update(int(c) for c in np.unique(truths[r]) if c != IGNORE_LABEL)
        for method in predictions:
            labels = predictions[method][r]
            present.update(int(c) for c in np.unique(labels))
            panels.append(overlay(images[r], labels, palette, alpha=0.7))
        for c, panel in enumerate(panels):
            axes[r][c].imshow(panel)
            axes[r][c].axis("off")
            if r == 0:
                axes[r][c].set_title(columns[c], fontsize=10)
    handles = [
        mpatches.Patch(color=palette[c] / 255.0,
                       label=class_names[c] if c < len(class_names) else f"class {c}")
        for c in sorted(present)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7) or 1,
               frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.6 / (2.2 * rows + 0.6), 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_confusion_matrix(
    cm: np.ndarray, path: str | os.PathLike, class_names: Sequence[str], title: str = ""
) -> Path:
    """Plots a row-normalised confusion matrix (rows: ground truth) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, np.float64)
    rows = cm.sum(1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(cm)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * n, 0.8 + 0.45 * n))
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{normalised[i, j]:.2f}", ha="center", va="center",
                        color="white" if normalised[i, j] > 0.5 else "black", fontsize=7)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
