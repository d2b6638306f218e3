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


# Error maps: black on white, so that no class colour is taken.
CORRECT_COLOUR = (255, 255, 255)  # pixels labelled right
WRONG_COLOUR = (0, 0, 0)  # pixels labelled wrong
NOT_SCORED_COLOUR = (170, 170, 170)  # the ground truth's 255 (not scored)


def error_map(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """An RGB picture of where `labels` differ from `truth`: white where right, black
    where wrong, grey where the ground truth is 255 (not scored).

    Example:

    >>> error_map(np.array([[0, 1, 255]]), np.array([[0, 2, 1]]))[0].tolist()
    [[255, 255, 255], [0, 0, 0], [170, 170, 170]]
    """
    truth, labels = np.asarray(truth), np.asarray(labels)
    picture = np.empty((*truth.shape, 3), np.uint8)
    picture[...] = CORRECT_COLOUR
    picture[truth != labels] = WRONG_COLOUR
    picture[truth == IGNORE_LABEL] = NOT_SCORED_COLOUR
    return picture


def image_mean_iou(truth: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean IoU of one image over the classes in its ground truth or prediction (the
    evaluation's rule, on one image); pixels whose ground truth is 255 are not scored.

    Example:

    >>> round(image_mean_iou(np.array([[0, 0, 1, 1]]), np.array([[0, 1, 1, 1]]), 2), 3)
    0.583
    """
    from keras_deconvnet.metrics.mean_iou import confusion_matrix, iou_from_confusion

    labels = np.minimum(np.asarray(labels, np.int64), num_classes - 1)
    return float(iou_from_confusion(confusion_matrix(truth, labels, num_classes))["mean_iou"])


def save_comparison(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: dict[str, Sequence[np.ndarray]],
    path: str | os.PathLike,
    class_names: Sequence[str],
    palette=None,
    error_maps: bool = True,
) -> Path:
    """A grid read at a glance: one row per image, solid label maps side by side.

    Columns: the image, its ground truth, each method's labels (solid colours, the
    same palette, background in its own colour), then each method's error map
    (`error_map`). Every prediction's title holds the image's mean IoU
    (`image_mean_iou`); the legend names every class and the error colours.

    Args:
        images: RGB images.
        truths: their ground-truth label maps (255: not scored).
        predictions: `{method: [label map per image]}`, one column each.
        path: the PNG to write.
        class_names: one name per class, background first.
        palette: `(256, 3)` colours; defaults to VOC's.
        error_maps: bool, add one error-map column per method. Defaults to `True`.

    Returns:
        The path written.

    Example:

    >>> import tempfile
    >>> truth = np.zeros((32, 32), np.uint8); truth[8:24, 8:24] = 1
    >>> path = save_comparison([np.zeros((32, 32, 3), np.uint8)], [truth],
    ...                        {"whole": [truth]}, tempfile.mktemp(suffix=".png"),
    ...                        ["background", "square"])
    >>> path.suffix
    '.png'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as mpatches
    import matplotlib.pyplot as plt

    palette = np.asarray(voc_palette() if palette is None else palette, np.uint8)
    num_classes = len(class_names)
    methods = list(predictions)
    columns = ["image", "ground truth", *methods]
    if error_maps:
        columns += [f"errors: {m}" for m in methods]
    rows = len(images)
    cell = 2.1
    legend_height = 0.55
    fig, axes = plt.subplots(rows, len(columns), squeeze=False,
                             figsize=(cell * len(columns), (cell + 0.25) * rows
                                      + legend_height))
    not_scored = False
    for r in range(rows):
        truth = np.asarray(truths[r])
        not_scored |= bool((truth == IGNORE_LABEL).any())
        panels = [(images[r], columns[0]), (colorize(truth, palette), columns[1])]
        errors = []
        for method in methods:
            labels = np.asarray(predictions[method][r])
            score = image_mean_iou(truth, labels, num_classes)
            panels.append((colorize(labels, palette), f"{method}: {100 * score:.1f}% IoU"))
            errors.append((error_map(truth, labels),
                           f"errors: {method} ({100 * _wrong(truth, labels):.1f}%)"))
        if error_maps:
            panels += errors
        for c, (panel, title) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            for spine in ax.spines.values():
                spine.set_edgecolor("0.6")
            ax.set_xticks([])
            ax.set_yticks([])
            # Headers on the first row; scores on every row.
            if r == 0 or c >= 2:
                ax.set_title(title, fontsize=8.5 if c >= 2 else 10)
    handles = [
        mpatches.Patch(facecolor=palette[c] / 255.0, edgecolor="0.5", label=name)
        for c, name in enumerate(class_names)
    ]
    if not_scored:
        handles.append(mpatches.Patch(facecolor=palette[IGNORE_LABEL] / 255.0,
                                      edgecolor="0.5", label="not scored (255)"))
    if error_maps:
        handles += [
            mpatches.Patch(facecolor=np.array(CORRECT_COLOUR) / 255.0, edgecolor="0.5",
                           label="error map: right"),
            mpatches.Patch(facecolor=np.array(WRONG_COLOUR) / 255.0, edgecolor="0.5",
                           label="error map: wrong"),
        ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 9),
               frameon=False, fontsize=9, handlelength=1.6, columnspacing=1.2)
    fig.tight_layout(rect=(0, legend_height / fig.get_figheight(), 1, 1), h_pad=0.6)
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _wrong(truth: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of scored pixels labelled wrong."""
    scored = truth != IGNORE_LABEL
    return float((truth != labels)[scored].mean()) if scored.any() else 0.0


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
