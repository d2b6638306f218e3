"""Converting the authors' caffemodels into keras-hub presets: one entry point for all three.

`convert_caffemodel(path, arch)` reads the file (memory-mapped), builds the Keras model
its blobs describe, plans every assignment, checks the whole plan, then assigns layer by
layer; `CaffeConversion.save` writes the keras-hub preset with VOC's class names and
palette and a record of the source file. As keras-hub's
`tools/checkpoint_conversion/convert_*` scripts, but a library function that
`deconvnet convert-caffe` calls.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keras_deconvnet.models.caffe.caffe_net import CaffeNet
from keras_deconvnet.models.caffe.caffemodel import read_caffemodel
from keras_deconvnet.models.caffe.deconvnet_converter import (
    RECOMPUTE_NOTE,
    build_deconvnet,
    plan_deconvnet,
)
from keras_deconvnet.models.caffe.fcn8s_converter import build_fcn8s, plan_fcn8s
from keras_deconvnet.models.caffe.vgg16_converter import (
    TARGETS,
    build_vgg16_target,
    plan_vgg16,
)
from keras_deconvnet.models.caffe.weight_mapping import BN_FORMS, WeightPlan, blob_shape
from keras_deconvnet.models.deconvnet.deconvnet_image_converter import CAFFE_BGR_MEAN

ARCHITECTURES = ("deconvnet", "fcn8s", "vgg16")

_TITLES = {
    "deconvnet": "DeconvNet (Noh, Hong, Han, ICCV 2015)",
    "fcn8s": "FCN-8s (Long, Shelhamer, Darrell, CVPR 2015)",
}


@dataclass
class CaffeConversion:
    """A converted segmenter with what the preset should record about its source.

    Attributes:
        segmenter: the Keras segmenter, weights loaded.
        arch: `"deconvnet"`, `"fcn8s"` or `"vgg16"`.
        target: for `"vgg16"`, the architecture initialised (`"deconvnet"`/`"fcn8s"`).
        source: the caffemodel's path.
        source_bytes: its size.
        source_sha256: its SHA-256, so a preset names the exact file.
        bn_form: `"folded"` (exact), `"batch"` (gamma/beta, statistics to recompute) or
            `None` (no BN in the file).
        notes: what the user should know, one sentence each.
    """

    segmenter: Any
    arch: str
    source: str
    source_bytes: int
    source_sha256: str
    target: str | None = None
    bn_form: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def needs_batchnorm_statistics(self) -> bool:
        """True for the stage files: BatchNorm statistics must be recomputed before use."""
        return self.bn_form == "batch"

    def description(self) -> str:
        """One paragraph for the preset's metadata (`deconvnet presets DIR` shows it)."""
        name = Path(self.source).name
        if self.arch == "vgg16":
            return (
                f"A {self.target} initialised for training from the Caffe VGG16 file "
                f"{name}: encoder and fc6/fc7 from VGG16 (conv1_1 reversed to RGB), the "
                "rest untrained. Train it with `deconvnet train --model PRESET`."
            )
        text = (f"{_TITLES[self.arch]}, converted from the authors' Caffe model {name} "
                f"(sha256 {self.source_sha256[:12]}...). RGB input with the authors' "
                "mean subtracted by the preprocessor; conv1_1 reversed from BGR. ")
        if self.arch == "fcn8s":
            text += "Original geometry: conv1_1 padded by 100, crops at 5, 9 and 31. "
        if self.needs_batchnorm_statistics:
            text += ("A training snapshot: its BatchNorm population statistics are NOT "
                     "set (mean 0, variance 1); recompute them before use. ")
        text += ("Scores checked against a NumPy Caffe oracle on synthetic files; VOC "
                 "accuracy not re-measured after conversion.")
        return text

    def training_data(self) -> dict:
        """The preset's `training_data` entry: where the weights come from."""
        trained_on = ("ImageNet ILSVRC-2012 (VGG16)" if self.arch == "vgg16" else
                      "PASCAL VOC 2012 with SBD, by the authors (see the paper)")
        record = {
            "source": "caffe",
            "caffemodel": Path(self.source).name,
            "caffemodel_bytes": self.source_bytes,
            "caffemodel_sha256": self.source_sha256,
            "arch": self.arch,
            "trained_on": trained_on,
            "input": "RGB 0-255; the preprocessor subtracts the authors' mean; conv1_1's "
                     "input channels reversed from Caffe's BGR",
            "mean_bgr": list(CAFFE_BGR_MEAN),
            "notes": list(self.notes),
        }
        if self.target:
            record["target"] = self.target
        if self.bn_form:
            record["batch_norm"] = ("folded scale/shift, exact" if self.bn_form == "folded"
                                    else "gamma/beta only: recompute the statistics")
            record["needs_batchnorm_statistics"] = self.needs_batchnorm_statistics
        return record

    def save(self, preset_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Writes the keras-hub preset (atomically), recording the source file.

        Args:
            preset_dir: the directory to write.
            overwrite: replace a non-empty directory. Defaults to `False`.

        Returns:
            The preset's absolute path; `keras_hub.models.ImageSegmenter.from_preset`
            loads it.
        """
        return self.segmenter.save_to_preset(
            preset_dir, training_data=self.training_data(), description=self.description(),
            overwrite=overwrite,
        )


def _open(source: str | os.PathLike | CaffeNet) -> tuple[CaffeNet, bool]:
    if isinstance(source, CaffeNet):
        return source, False
    return read_caffemodel(source), True


def _check_arch(arch: str, bn: str, target: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"`arch` must be one of {ARCHITECTURES}. Received: arch={arch!r}")
    if bn not in BN_FORMS:
        raise ValueError(f"`bn` must be one of {BN_FORMS}. Received: bn={bn!r}")
    if bn != "auto" and arch != "deconvnet":
        raise ValueError(f"`bn` applies to DeconvNet files; {arch} has no BN layers.")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}. Received: target={target!r}")


def _plan(net: CaffeNet, model, arch: str, bn: str) -> tuple[WeightPlan, str | None]:
    if arch == "deconvnet":
        return plan_deconvnet(net, model, bn)
    if arch == "fcn8s":
        return plan_fcn8s(net, model), None
    return plan_vgg16(net, model), None


def load_caffe_weights(
    model,
    source: str | os.PathLike | CaffeNet,
    arch: str,
    *,
    bn: str = "auto",
    progress: bool = False,
) -> list[str]:
    """Loads a caffemodel into an existing segmenter, all or nothing.

    Every layer is planned and checked before the first assignment: a missing,
    renamed, unexpected or misshapen layer raises and leaves `model` untouched.

    Args:
        model: a `DeconvNetImageSegmenter` (`arch="deconvnet"` or `"vgg16"`) or an
            `FCN8sImageSegmenter` with `input_padding=100` (`"fcn8s"` or `"vgg16"`).
        source: the `.caffemodel` path, or a `CaffeNet` from `read_caffemodel`.
        arch: `"deconvnet"`, `"fcn8s"` or `"vgg16"` (encoder and fc6/fc7 only).
        bn: DeconvNet's BN blobs: `"auto"`, `"folded"` or `"batch"`.
        progress: show a progress bar over the layers.

    Returns:
        The notes (e.g. that BN statistics must be recomputed).

    Raises:
        CaffeModelError: the file is unreadable.
        CaffeMappingError: the file does not fit the model; the model is unchanged.

    Example:

    >>> from keras_deconvnet.models import DeconvNetBackbone, DeconvNetImageSegmenter
    >>> backbone = DeconvNetBackbone.from_preset(  # doctest: +SKIP
    ...     "deconvnet_vgg16_voc", batch_norm_epsilon=1e-9)
    >>> segmenter = DeconvNetImageSegmenter(backbone)  # doctest: +SKIP
    >>> load_caffe_weights(segmenter, "DeconvNet_trainval_inference.caffemodel",
    ...                    "deconvnet")  # doctest: +SKIP
    ["BN: folded scale/shift, mapped exactly (...)."]
    """
    _check_arch(arch, bn, "deconvnet")
    net, owned = _open(source)
    try:
        plan, _ = _plan(net, model, arch, bn)
        plan.apply(progress=progress)  # checks first
        return list(plan.notes)
    finally:
        if owned:
            net.close()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # buffered reads: page cache, not this process's memory
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_caffemodel(
    path: str | os.PathLike,
    arch: str,
    *,
    bn: str = "auto",
    target: str = "deconvnet",
    num_classes: int = 21,
    progress: bool = True,
) -> CaffeConversion:
    """Converts a caffemodel into a Keras segmenter of the architecture it holds.

    The file is memory-mapped; the model's widths are read from its blobs (the
    paper's files give the named configurations `deconvnet_vgg16_voc` and
    `fcn8s_vgg16_voc`); every layer is planned and checked before any weight is
    assigned; weights then load one layer at a time from the mapping, so memory
    holds the model plus one layer's copy.

    Args:
        path: the `.caffemodel`.
        arch: `"deconvnet"` (DeconvNet_trainval_inference or a stage_*_train_result
            snapshot), `"fcn8s"` (fcn-8s-pascal) or `"vgg16"`
            (VGG_ILSVRC_16_layers_conv, a training initialisation).
        bn: DeconvNet only: `"auto"` (default), `"folded"` or `"batch"` (see
            `detect_bn_form`).
        target: `"vgg16"` only: the network to initialise, `"deconvnet"` (default)
            or `"fcn8s"`.
        num_classes: `"vgg16"` only: classes of the untrained class layer (21).
        progress: print the steps and a progress bar. Defaults to `True`.

    Returns:
        A `CaffeConversion`: `.segmenter`, `.notes`, `.save(dir)`.

    Raises:
        CaffeModelError: the file is unreadable (truncated, foreign), naming it.
        CaffeMappingError: the layers do not fit (nothing is loaded), naming them.
        ValueError: an unknown `arch`, `bn` or `target`.

    Example:

    >>> conversion = convert_caffemodel(  # doctest: +SKIP
    ...     "DeconvNet_trainval_inference.caffemodel", "deconvnet")
    >>> conversion.save("deconvnet_voc")  # doctest: +SKIP
    """
    from keras_deconvnet.labels import VOC_CLASSES, bitwise_palette

    _check_arch(arch, bn, target)
    path = os.fspath(path)
    say = print if progress else (lambda *_: None)
    say(f"Reading {path}")
    with read_caffemodel(path) as net:
        # VOC's class names and colours when the file scores VOC's 21 classes.
        voc = _class_count(net, arch, num_classes) == 21
        names = VOC_CLASSES if voc else None
        palette = bitwise_palette()[: len(VOC_CLASSES)].tolist() if voc else None
        say(f"Building the Keras {target if arch == 'vgg16' else arch} "
            f"({net.num_parameters:,} values in the file)")
        if arch == "deconvnet":
            segmenter = build_deconvnet(net, class_names=names, palette=palette)
        elif arch == "fcn8s":
            segmenter = build_fcn8s(net, class_names=names, palette=palette)
        else:
            segmenter = build_vgg16_target(net, target, num_classes, class_names=names,
                                           palette=palette)
        plan, bn_form = _plan(net, segmenter, arch, bn)
        plan.check()
        say(_loading_line(plan, net.num_parameters))
        plan.apply(progress=progress)
        notes = list(plan.notes)
        del plan  # its views keep the mapping alive
    size = os.path.getsize(path)
    return CaffeConversion(
        segmenter=segmenter, arch=arch, source=path, source_bytes=size,
        source_sha256=_sha256(path), target=target if arch == "vgg16" else None,
        bn_form=bn_form, notes=notes,
    )


def _loading_line(plan, file_values: int) -> str:
    """What is loaded, split by origin, so that it adds up to the file's count.

    Example: "Loading 59 layers: 322,049 values from the file, plus 1,320 set by the
    conversion (zero biases, BatchNorm means and variances)".
    """
    loaded = plan.num_file_values
    line = f"Loading {len(plan.groups)} layers: {loaded:,} values from the file"
    filled = plan.num_values - loaded
    if filled:
        line += f", plus {filled:,} set by the conversion (zero biases, BatchNorm means " \
                "and variances)"
    if file_values > loaded:
        line += f"; {file_values - loaded:,} of the file's values are not used"
    return line


def _class_count(net: CaffeNet, arch: str, num_classes: int) -> int:
    if arch == "vgg16":
        return num_classes
    shape = (blob_shape(net, "seg-score-voc") if arch == "deconvnet"
             else blob_shape(net, "score-fr", ("score_fr",)))
    return int(shape[0]) if shape else 0


__all__ = [
    "ARCHITECTURES",
    "RECOMPUTE_NOTE",
    "CaffeConversion",
    "convert_caffemodel",
    "load_caffe_weights",
]
