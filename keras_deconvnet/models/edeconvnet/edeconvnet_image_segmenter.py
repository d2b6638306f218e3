"""EDeconvNet: DeconvNet and FCN-8s combined, as the authors' code or the paper's text."""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras_hub.models import ImageSegmenter

from keras_deconvnet import atomic_io
from keras_deconvnet.models import preset_utils
from keras_deconvnet.models.segmenter_head import SegmenterMixin

ENSEMBLE_MODES = ("product", "mean")
ENSEMBLE_FILE = "edeconvnet.json"


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class RectifiedProduct(keras.layers.Layer):
    """`a * max(0, b)` of raw scores: the authors' ensemble (`deconv .* max(0, fcn)`).

    Example:

    >>> import numpy as np
    >>> RectifiedProduct()(np.array([2.0, 3.0]), np.array([-1.0, 0.5])).numpy().tolist()
    [0.0, 1.5]
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, deconvnet_scores, fcn_scores):
        return deconvnet_scores * keras.ops.relu(fcn_scores)

    def compute_output_shape(self, deconvnet_scores_shape, fcn_scores_shape):
        return deconvnet_scores_shape


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class EDeconvNetImageSegmenter(SegmenterMixin, ImageSegmenter):
    """The EDeconvNet ensemble of a DeconvNet and an FCN-8s segmenter on one input.

    `mode="product"` (default) is what the authors' code computed and what their
    published 71.7 / 72.5 mean IoU come from: the product of DeconvNet's raw scores
    with FCN-8s's rectified raw scores, `deconvnet * max(0, fcn8s)`; the output are
    scores (apply a softmax for probabilities, as the CRF step does). `mode="mean"`
    is the paper's text: the mean of the two members' softmax probabilities. Both
    members must return logits (`activation=None`) and predict the same classes.

    This model runs both members on the same input. The authors' full procedure
    (DeconvNet over proposals, FCN-8s once on the padded whole image) is
    `keras_deconvnet.inference.predict_ensemble`.

    Args:
        deconvnet: a `DeconvNetImageSegmenter`.
        fcn8s: an `FCN8sImageSegmenter`.
        mode: `"product"` or `"mean"`.
        preprocessor: defaults to the DeconvNet member's.
        **kwargs: `keras_hub.models.Task` arguments.

    Example:

    >>> import numpy as np
    >>> from keras_deconvnet.models import DeconvNetImageSegmenter, FCN8sImageSegmenter
    >>> ensemble = EDeconvNetImageSegmenter(
    ...     DeconvNetImageSegmenter.from_preset("deconvnet_edge_small", num_classes=3),
    ...     FCN8sImageSegmenter.from_preset("fcn8s_edge_small", num_classes=3))
    >>> ensemble.predict(np.zeros((1, 96, 96, 3), np.uint8), verbose=0).shape
    (1, 96, 96, 3)
    """

    backbone_cls = None
    preprocessor_cls = None

    def __init__(self, deconvnet, fcn8s, mode: str = "product", preprocessor=None, **kwargs):
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"`mode` must be one of {ENSEMBLE_MODES}. Received: mode={mode!r}")
        for member, what in ((deconvnet, "deconvnet"), (fcn8s, "fcn8s")):
            if getattr(member, "activation", "missing") is not None:
                raise ValueError(
                    f"`{what}` must be a segmenter returning logits (activation=None). "
                    f"Received: {type(member).__name__} with activation="
                    f"{getattr(member, 'activation', None)!r}"
                )
        if deconvnet.num_classes != fcn8s.num_classes:
            raise ValueError(
                "The two members must predict the same classes. Received: "
                f"{deconvnet.num_classes} and {fcn8s.num_classes}"
            )
        self._set_classes(deconvnet.num_classes, deconvnet._class_names, deconvnet.palette,
                          activation=None if mode == "product" else "softmax")
        self.mode = mode
        # === Functional model ===
        inputs = keras.Input(shape=deconvnet.input_shape[1:], name="images")
        scores = deconvnet(inputs)
        other = fcn8s(inputs)
        if mode == "product":
            outputs = RectifiedProduct(name="rectified_product")(scores, other)
        else:
            softmax = [keras.layers.Softmax(dtype="float32", name=f"{n}_softmax")(s)
                       for n, s in (("deconvnet", scores), ("fcn8s", other))]
            outputs = keras.layers.Average(dtype="float32", name="mean_probabilities")(softmax)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.deconvnet = deconvnet
        self.fcn8s = fcn8s
        self.preprocessor = preprocessor if preprocessor is not None else deconvnet.preprocessor

    def get_config(self):
        return {
            "name": self.name,
            "deconvnet": keras.saving.serialize_keras_object(self.deconvnet),
            "fcn8s": keras.saving.serialize_keras_object(self.fcn8s),
            "mode": self.mode,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        preset_utils.check_config_is_safe(config, f"the {cls.__name__} config")
        for key in ("deconvnet", "fcn8s"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, **kwargs):
        """Loads an ensemble directory: `deconvnet/`, `fcn8s/` and `edeconvnet.json`."""
        from keras_deconvnet.models.deconvnet import DeconvNetImageSegmenter
        from keras_deconvnet.models.fcn8s import FCN8sImageSegmenter

        path = Path(os.fspath(preset))
        if not (path / ENSEMBLE_FILE).is_file():
            raise preset_utils.PresetError(
                f"{str(preset)!r} is not an EDeconvNet preset: it has no {ENSEMBLE_FILE} "
                "(write one with `EDeconvNetImageSegmenter.save_to_preset`)."
            )
        spec = preset_utils.read_json(path / ENSEMBLE_FILE)
        deconvnet = DeconvNetImageSegmenter.from_preset(str(path / "deconvnet"), load_weights)
        fcn8s = FCN8sImageSegmenter.from_preset(str(path / "fcn8s"), load_weights)
        return cls(deconvnet, fcn8s, mode=kwargs.pop("mode", spec.get("mode", "product")),
                   **kwargs)

    def save_to_preset(self, preset_dir, max_shard_size=10, *, overwrite: bool = False,
                       **metadata) -> Path:
        """Writes `deconvnet/` and `fcn8s/` (keras-hub presets) and `edeconvnet.json`."""
        target = Path(os.fspath(preset_dir)).absolute()
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(
                f"The preset directory `{target}` is not empty; pass `overwrite=True`."
            )
        with atomic_io.staged_directory(target, overwrite=True) as staging:
            self.deconvnet.save_to_preset(staging / "deconvnet", max_shard_size, **metadata)
            self.fcn8s.save_to_preset(staging / "fcn8s", max_shard_size, **metadata)
            atomic_io.write_json(staging / ENSEMBLE_FILE, {"mode": self.mode})
        return target
