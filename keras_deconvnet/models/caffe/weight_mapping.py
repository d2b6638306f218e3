"""Caffe blobs to Keras variables: a plan checked whole before assigning.

A converter lists which Caffe layer feeds which Keras layer (`Conv`, `BatchNorm`);
`plan_weights` resolves the list against a `CaffeNet` and a Keras model into a
`WeightPlan` of `(variable, value)` pairs whose values are still views into the
memory-mapped file, and collects every problem (a missing, duplicated or unexpected
layer, a wrong blob shape, a geometry the Keras layer does not compute). Only a plan
without problems is applied, one Caffe layer at a time, so a bad file loads nothing
and converting holds at most one layer's copy of the weights besides the model. The
layout rules each pair follows (kernel axes, BGR input, folded BN) are in `layouts`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

from keras_deconvnet.models.caffe.caffe_net import CaffeLayer, CaffeModelError, CaffeNet
from keras_deconvnet.models.caffe.layouts import (
    KERNEL_LAYOUTS,
    bgr_to_rgb,
    caffe_weight_shape,
    conv_geometry,
    unit_variance,
)

CONV_TYPES = frozenset({"CONVOLUTION", "Convolution", "conv"})
DECONV_TYPES = frozenset({"DECONVOLUTION", "Deconvolution"})
INNER_PRODUCT_TYPES = frozenset({"INNER_PRODUCT", "InnerProduct", "innerproduct"})
# HyeonwooNoh/caffe's BN (scale, shift); BVLC's "BatchNorm" keeps other blobs.
BN_TYPES = frozenset({"BN"})
# The fork's BNParameter.bn_mode.
BN_LEARN, BN_INFERENCE = 0, 1
# The fork's BN layer adds this to the variance, hard-coded (bn_layer.cpp var_eps_).
CAFFE_BN_EPSILON = 1e-9
BN_FORMS = ("auto", "folded", "batch")
_MAX_LISTED = 6  # problems quoted in one error message
# The source of a value read from a blob ("'conv1_1' blob 0"); others are set by the plan.
_FROM_BLOB = re.compile(r" blob \d+$")


class CaffeMappingError(CaffeModelError):
    """A readable caffemodel whose layers do not fit the Keras model.

    Raised before any weight is assigned; the message names the file and the first
    layers at fault (missing, duplicated or unexpected names, wrong blob shapes or
    geometry).
    """


# === The specification a converter writes ====================================


@dataclass(frozen=True)
class Conv:
    """A Caffe CONVOLUTION/DECONVOLUTION (or INNER_PRODUCT) feeding one Keras layer.

    Attributes:
        caffe: the Caffe layer name; `aliases` are other names it may carry.
        keras: the Keras layer name.
        kind: `"conv"` (CONVOLUTION -> Conv2D), `"deconv"` (DECONVOLUTION ->
            Conv2DTranspose) or `"deconv_as_conv"` (stride-1 DECONVOLUTION -> "same"
            Conv2D, kernel flipped).
        on_task: the Keras layer is the task's (score layers), not the backbone's.
        bgr_input: reverse the kernel's input channels (conv1_1).
        pad: the Caffe pad the Keras geometry needs; `None` derives it from the Keras
            layer ("same": `(k - 1) / 2`, "valid": 0); `False` skips the check.
        inner_product: also accept an INNER_PRODUCT blob `(out, in * kh * kw)`
            (VGG16's fc6/fc7 before net surgery), reshaped in C order.
    """

    caffe: str
    keras: str
    kind: str = "conv"
    on_task: bool = False
    bgr_input: bool = False
    pad: int | bool | None = None
    inner_product: bool = False
    aliases: tuple[str, ...] = ()


def encoder_specs(block_depths, first_pad) -> list[Conv]:
    """The VGG16 encoder's convolutions (`convB_I` -> `blockB_convI`); the first one
    reads BGR (reversed to RGB) and has padding `first_pad` (`None`: not checked)."""
    specs = []
    for block, depth in enumerate(block_depths, 1):
        for i in range(1, depth + 1):
            first = (block, i) == (1, 1)
            specs.append(Conv(f"conv{block}_{i}", f"block{block}_conv{i}", bgr_input=first,
                              pad=first_pad if first else None))
    return specs


@dataclass(frozen=True)
class BatchNorm:
    """The fork's BN layer (two `(1, C, 1, 1)` blobs) feeding a Keras BatchNormalization."""

    caffe: str
    keras: str


@dataclass
class WeightPlan:
    """Every `(variable, value)` of a conversion, grouped by Caffe layer, and its problems.

    Attributes:
        path: the caffemodel, for messages.
        groups: `[(caffe layer name, [(variable, value, source)])]` in file order of
            the specification; values are NumPy views into the mapped file.
        problems: what does not fit, one line each, naming the layer.
        notes: facts the user should know (a zero bias filled in, a layer ignored).
    """

    path: str
    groups: list[tuple[str, list[tuple[keras.Variable, np.ndarray, str]]]] = field(
        default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def num_values(self) -> int:
        """The number of values the plan assigns."""
        return sum(int(v.size) for _, items in self.groups for _, v, _ in items)

    @property
    def num_file_values(self) -> int:
        """The values the plan takes from the file's blobs (the rest it sets itself)."""
        return sum(int(v.size) for _, items in self.groups for _, v, source in items
                   if _FROM_BLOB.search(source))

    def check(self) -> None:
        """Raises one `CaffeMappingError` listing the first problems, if there are any."""
        if not self.problems:
            return
        shown = "; ".join(self.problems[:_MAX_LISTED])
        more = len(self.problems) - _MAX_LISTED
        tail = f"; and {more} more" if more > 0 else ""
        raise CaffeMappingError(
            f"{self.path}: {len(self.problems)} layer(s) do not fit the Keras model, so "
            f"nothing was loaded: {shown}{tail}."
        )

    def apply(self, progress: bool = False) -> None:
        """Assigns every value, layer by layer (call `check` first).

        Values go to `assign` as the views they are: TensorFlow makes the one
        contiguous copy it needs and drops it after the assignment, so memory grows by
        one layer's weights at most (float64 blobs are cast first, one copy too).
        """
        self.check()
        bar = keras.utils.Progbar(len(self.groups), unit_name="layer") if progress else None
        for index, (_, items) in enumerate(self.groups, 1):
            for variable, value, _ in items:
                if value.dtype != np.dtype(variable.dtype):
                    value = value.astype(variable.dtype)
                variable.assign(value)
            if bar is not None:
                bar.update(index)


# === Planning ================================================================


class _Planner:
    """Resolves a specification against a net and a model, recording problems."""

    def __init__(self, net: CaffeNet, model) -> None:
        self.net = net
        self.model = model
        self.backbone = getattr(model, "backbone", None) or model
        self.plan = WeightPlan(net.path)
        self.used: set[str] = set()
        self.by_name: dict[str, list[CaffeLayer]] = {}
        for layer in net.layers:
            self.by_name.setdefault(layer.name, []).append(layer)

    def problem(self, message: str) -> None:
        self.plan.problems.append(message)

    def find(self, name: str, aliases: Sequence[str] = (), types=None) -> CaffeLayer | None:
        """The one layer named `name` (or an alias) that holds weights; records why not."""
        for candidate in (name, *aliases):
            found = [layer for layer in self.by_name.get(candidate, []) if layer.blobs]
            if not found:
                continue
            self.used.add(candidate)
            if len(found) > 1:
                self.problem(f"{len(found)} layers with weights are named {candidate!r}")
                return None
            layer = found[0]
            if types is not None and layer.type_name not in types:
                self.problem(
                    f"layer {candidate!r} is a {layer.type_name}, expected "
                    f"{' or '.join(sorted(types))}")
                return None
            return layer
        names = " or ".join(repr(n) for n in (name, *aliases))
        self.problem(f"no layer {names} with weights in the file")
        return None

    def keras_layer(self, name: str, on_task: bool):
        owner = self.model if on_task else self.backbone
        try:
            return owner.get_layer(name)
        except ValueError:
            self.problem(f"the Keras model has no layer {name!r}")
            return None

    def add(self, caffe_name: str, items: list[tuple[keras.Variable, np.ndarray, str]]) -> None:
        ok = True
        for variable, value, source in items:
            if tuple(variable.shape) != tuple(value.shape):
                self.problem(f"{source} gives {tuple(value.shape)} for {variable.path} of "
                             f"shape {tuple(variable.shape)}")
                ok = False
        if ok:
            self.plan.groups.append((caffe_name, items))

    # -- convolutions -----------------------------------------------------------------

    def conv(self, spec: Conv) -> None:
        types = {"conv": CONV_TYPES, "deconv": DECONV_TYPES,
                 "deconv_as_conv": DECONV_TYPES}[spec.kind]
        if spec.inner_product:
            types = types | INNER_PRODUCT_TYPES
        layer = self.find(spec.caffe, spec.aliases, types)
        target = self.keras_layer(spec.keras, spec.on_task)
        if layer is None or target is None:
            return
        expected, channels_out = caffe_weight_shape(spec.kind, tuple(target.kernel.shape))
        weight = self.conv_weight(layer, spec, expected)
        if weight is None:
            return
        self.check_geometry(layer, spec, target)
        kernel = KERNEL_LAYOUTS[spec.kind](weight)
        if spec.bgr_input:
            kernel = bgr_to_rgb(kernel)
        bias_items = self.conv_bias(layer, spec, target, channels_out)
        if bias_items is not None:
            self.add(layer.name, [(target.kernel, kernel, f"{layer.name!r} blob 0"),
                                  *bias_items])

    def conv_weight(
        self, layer: CaffeLayer, spec: Conv, expected: tuple[int, ...]
    ) -> np.ndarray | None:
        """The layer's weight blob in the Caffe shape `expected`, or None (a problem).

        An inner-product weight of the right size is reshaped (net surgery: C-order
        `(in, kh, kw)`).
        """
        name = layer.name
        if len(layer.blobs) not in (1, 2):
            self.problem(f"layer {name!r} has {len(layer.blobs)} blobs, expected a weight "
                         "and a bias")
            return None
        weight = layer.blobs[0]
        if tuple(weight.shape) == expected:
            return weight
        flat = tuple(d for d in weight.shape if d != 1)
        if (spec.inner_product and layer.type_name in INNER_PRODUCT_TYPES
                and weight.size == math.prod(expected) and flat[:1] == expected[:1]):
            return weight.reshape(expected)
        self.problem(f"layer {name!r} has a weight of shape {tuple(weight.shape)}, "
                     f"but {spec.keras!r} needs {expected} (Caffe layout)")
        return None

    def conv_bias(
        self, layer: CaffeLayer, spec: Conv, target, channels_out: int
    ) -> list[tuple[keras.Variable, np.ndarray, str]] | None:
        """The bias items of a convolution (zeros for `bias_term: false`), or None."""
        name = layer.name
        bias_var = target.bias if getattr(target, "use_bias", False) else None
        if len(layer.blobs) < 2:
            if bias_var is None:
                return []
            # `bias_term: false` in Caffe: a zero bias computes the same.
            zeros = np.zeros(tuple(bias_var.shape), np.float32)
            self.plan.notes.append(f"{name!r} has no bias; {spec.keras!r}'s bias is set to 0.")
            return [(bias_var, zeros, f"{name!r} (no bias: zeros)")]
        bias = layer.blobs[1]
        if bias.size != channels_out:
            self.problem(f"layer {name!r} has a bias of shape {tuple(bias.shape)}, "
                         f"expected {channels_out} values")
            return None
        if bias_var is not None:
            return [(bias_var, bias.reshape(-1), f"{name!r} blob 1")]
        if np.any(bias):
            self.problem(f"layer {name!r} has a non-zero bias, but {spec.keras!r} has "
                         "none (use_bias=False)")
            return None
        return []

    def check_geometry(self, layer: CaffeLayer, spec: Conv, target) -> None:
        geometry = conv_geometry(layer)
        if geometry is None:
            return
        name = layer.name
        kernel = tuple(target.kernel_size)
        strides = tuple(target.strides)
        if geometry["group"] != 1 or geometry["dilation"] != 1:
            self.problem(f"layer {name!r} has group {geometry['group']} and dilation "
                         f"{geometry['dilation']}; only 1 converts")
        if spec.kind == "deconv_as_conv":
            # Computed as a convolution: only stride 1 and pad (k - 1) / 2 are the same.
            want_stride, want_pad = (1, 1), tuple((k - 1) // 2 for k in kernel)
            if any(k % 2 == 0 for k in kernel) or target.padding != "same":
                self.problem(f"{spec.keras!r} must be an odd-sized 'same' convolution to "
                             f"compute {name!r}")
        elif spec.kind == "deconv":
            want_stride = strides
            want_pad = (0, 0) if target.padding == "valid" else None
        else:
            want_stride = strides
            if target.padding == "valid":
                want_pad = (0, 0)
            else:
                want_pad = tuple((k - 1) // 2 for k in kernel)
        if spec.pad is False:
            want_pad = None
        elif spec.pad is not None:
            want_pad = (int(spec.pad), int(spec.pad))
        got_stride = (geometry["stride"], geometry.get("stride_w", geometry["stride"]))
        got_pad = (geometry["pad"], geometry.get("pad_w", geometry["pad"]))
        if got_stride != want_stride:
            self.problem(f"layer {name!r} has stride {got_stride}, but {spec.keras!r} "
                         f"computes stride {want_stride}")
        if want_pad is None and spec.pad is not False:
            self.problem(f"{spec.keras!r} has padding {target.padding!r}, which no Caffe "
                         f"pad reproduces for {name!r}")
        elif want_pad is not None and got_pad != want_pad:
            self.problem(f"layer {name!r} has pad {got_pad}, but {spec.keras!r} computes "
                         f"pad {want_pad}")
        if geometry["kernel"] and (geometry["kernel"],
                                   geometry.get("kernel_w", geometry["kernel"])) != kernel:
            self.problem(f"layer {name!r} declares kernel_size {geometry['kernel']}, "
                         f"but its weight is {kernel}")
        if not geometry["bias_term"] and len(layer.blobs) == 2:
            self.problem(f"layer {name!r} says bias_term: false but holds a bias")

    # -- batch normalisation ------------------------------------------------------------

    def batch_norm(self, spec: BatchNorm, form: str) -> None:
        layer = self.find(spec.caffe, (), BN_TYPES)
        target = self.keras_layer(spec.keras, on_task=False)
        if layer is None or target is None:
            return
        if not isinstance(target, keras.layers.BatchNormalization):
            self.problem(f"{spec.keras!r} is not a BatchNormalization layer")
            return
        channels = int(target.gamma.shape[0])
        shapes = layer.blob_shapes
        if len(shapes) != 2 or any(math.prod(s) != channels for s in shapes):
            self.problem(f"BN layer {layer.name!r} has blobs {list(shapes)}, expected two of "
                         f"(1, {channels}, 1, 1)")
            return
        scale, shift = (blob.reshape(-1) for blob in layer.blobs)
        zeros = np.zeros(channels, np.float32)
        if form == "folded":
            # y = scale * x + shift, exactly: mean 0 and var + eps == 1 in float32.
            variance = np.full(channels, unit_variance(target.epsilon), np.float32)
        else:
            # gamma and beta; the population statistics are unknown (recomputed later).
            variance = np.ones(channels, np.float32)
        items = [(target.gamma, scale, f"{layer.name!r} blob 0"),
                 (target.beta, shift, f"{layer.name!r} blob 1"),
                 (target.moving_mean, zeros, f"{layer.name!r} (mean 0)"),
                 (target.moving_variance, variance, f"{layer.name!r} (variance)")]
        self.add(layer.name, items)

    # -- what is left -------------------------------------------------------------------

    def unexpected(self, ignore: Iterable[str] = ()) -> None:
        ignore = set(ignore)
        for layer in self.net.layers:
            if layer.blobs and layer.name not in self.used and layer.name not in ignore:
                self.problem(f"unexpected layer {layer.name!r} ({layer.type_name}) with "
                             f"weights {list(layer.blob_shapes)}")


def plan_weights(
    net: CaffeNet,
    model,
    specs: Sequence[Conv | BatchNorm],
    *,
    bn_form: str = "folded",
    ignore: Iterable[str] = (),
) -> WeightPlan:
    """Resolves `specs` into a `WeightPlan` for `model`, with every problem found.

    Args:
        net: the parsed caffemodel (kept open until the plan is applied).
        model: a segmenter (task layers, `backbone` layers) or a backbone.
        specs: `Conv` and `BatchNorm` entries.
        bn_form: `"folded"` (BN blobs are scale and shift of the INFERENCE form) or
            `"batch"` (gamma and beta of the LEARN form).
        ignore: names of layers with weights that are deliberately left out.

    Returns:
        The plan; call `plan.check()` (raises on problems) and `plan.apply()`.

    Example:

    >>> from keras_deconvnet.models.caffe.deconvnet_converter import deconvnet_specs
    >>> with read_caffemodel("DeconvNet_trainval_inference.caffemodel") as net:  # doctest: +SKIP
    ...     plan = plan_weights(net, segmenter, deconvnet_specs())
    ...     plan.check()  # raises CaffeMappingError, naming the layers
    ...     plan.apply()
    """
    planner = _Planner(net, model)
    for spec in specs:
        if isinstance(spec, BatchNorm):
            planner.batch_norm(spec, bn_form)
        else:
            planner.conv(spec)
    planner.unexpected(ignore)
    return planner.plan


def blob_shape(net: CaffeNet, name: str, aliases: Sequence[str] = ()) -> tuple[int, ...] | None:
    """The shape of the first blob of the layer `name` (or an alias), if it has one."""
    for candidate in (name, *aliases):
        for layer in net.layers_named(candidate):
            if layer.blobs:
                return layer.blob_shapes[0]
    return None


def missing_layers(net: CaffeNet, names: Iterable[str | tuple[str, ...]]) -> list[str]:
    """The names (or alias groups) of which the net has no layer with weights."""
    missing = []
    for entry in names:
        group = (entry,) if isinstance(entry, str) else tuple(entry)
        if blob_shape(net, group[0], group[1:]) is None:
            missing.append(" or ".join(repr(n) for n in group))
    return missing
