"""EDeconvNet: the ensemble of DeconvNet and FCN-8s by their class probabilities."""

from __future__ import annotations

import keras

from keras_deconvnet.models.preset_io import PresetModel

ENSEMBLE_MODES = ("mean", "product")


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class EnsembleSegmenter(PresetModel):
    """Combines segmentation models' per-pixel class probabilities (EDeconvNet).

    `mode="mean"` (default) averages the members' softmax probabilities, as the
    paper describes. `mode="product"` is what the original MATLAB code computed,
    `p_deconvnet * max(0, p_fcn)` (renormalised here so it stays a distribution).
    Members must take the same input and predict the same classes; their outputs may
    be logits or probabilities (`member_outputs`).

    Args:
        members: list of Keras segmentation models with one image input.
        mode: `"mean"` or `"product"`. Defaults to `"mean"`.
        member_outputs: `"logits"` (default; softmax is applied) or
            `"probabilities"`.

    Example:

    >>> from keras_deconvnet.models import DeconvNet, FCN8s
    >>> config = dict(num_classes=3, image_shape=(64, 64, 3),
    ...               block_filters=(8, 8, 8, 8, 8), fc_units=16)
    >>> ensemble = EnsembleSegmenter(
    ...     [DeconvNet(**config, fc_kernel_size=2), FCN8s(**config)])
    >>> ensemble.output_shape
    (None, 64, 64, 3)
    >>> import tempfile
    >>> path = ensemble.save_to_preset(tempfile.mkdtemp() + "/edeconvnet")
    >>> EnsembleSegmenter.from_preset(path).mode
    'mean'
    """

    def __init__(self, members, mode: str = "mean", member_outputs: str = "logits", **kwargs):
        if mode not in ENSEMBLE_MODES:
            raise ValueError(f"`mode` must be one of {ENSEMBLE_MODES}. Received: mode={mode!r}")
        if member_outputs not in ("logits", "probabilities"):
            raise ValueError(
                "`member_outputs` must be 'logits' or 'probabilities'. "
                f"Received: member_outputs={member_outputs!r}"
            )
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"An ensemble needs at least 2 members. Received: {len(members)}")
        shapes = {tuple(m.output_shape[1:]) for m in members}
        inputs_ = {tuple(m.input_shape[1:]) for m in members}
        if len(shapes) != 1 or len(inputs_) != 1:
            raise ValueError(
                "Ensemble members must share input and output shapes. Received: inputs "
                f"{sorted(inputs_, key=str)}, outputs {sorted(shapes, key=str)}"
            )

        # === Functional model ===
        inputs = keras.Input(shape=members[0].input_shape[1:], name="images")
        probabilities = []
        for i, member in enumerate(members):
            out = member(inputs)
            if member_outputs == "logits":
                out = keras.layers.Softmax(name=f"member{i}_softmax", dtype="float32")(out)
            probabilities.append(out)
        if mode == "mean":
            outputs = keras.layers.Average(name="mean_probabilities", dtype="float32")(
                probabilities
            )
        else:
            product = probabilities[0]
            for p in probabilities[1:]:
                product = keras.layers.Multiply(dtype="float32")(
                    [product, keras.layers.ReLU(dtype="float32")(p)]
                )
            outputs = Renormalise(name="renormalise")(product)
        kwargs.setdefault("name", "edeconvnet")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.members = members
        self.mode = mode
        self.member_outputs = member_outputs

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            "mode": self.mode,
            "member_outputs": self.member_outputs,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [
            keras.saving.deserialize_keras_object(m) for m in config["members"]
        ]
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_deconvnet")
class Renormalise(keras.layers.Layer):
    """Divides by the sum over classes so a product of probabilities sums to 1."""

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        return inputs / (keras.ops.sum(inputs, axis=-1, keepdims=True) + 1e-12)
