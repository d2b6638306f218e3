"""What our segmenters share beyond keras-hub's `ImageSegmenter`: class names, the
sparse-label training defaults, and the float32 output layer."""

from __future__ import annotations

import logging

import keras
from keras_hub.models import ImageSegmenter

from keras_deconvnet.labels import IGNORE_LABEL
from keras_deconvnet.models import preset_utils
from keras_deconvnet.models.vgg16_encoder import validate_num_classes

ACTIVATIONS = (None, "softmax")
logger = logging.getLogger(__name__)


def output_activation(x, activation):
    """The last layer: float32 even under mixed precision, as keras-hub's heads."""
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"`activation` must be None (logits) or 'softmax'. Received: activation={activation!r}"
        )
    return keras.layers.Activation(
        activation or "linear", dtype="float32", name=activation or "logits"
    )(x)


def check_class_names(class_names, num_classes: int):
    """`class_names` as a tuple of `num_classes` strings, or `None`."""
    if class_names is None:
        return None
    names = tuple(str(n) for n in class_names)
    if len(names) != num_classes:
        raise ValueError(
            f"`class_names` must name every class, background first ({num_classes}). "
            f"Received: {len(names)} names {list(names)[:6]}"
        )
    return names


def check_palette(palette, num_classes: int):
    """`palette` as a tuple of `num_classes` RGB triples, or `None`."""
    if palette is None:
        return None
    rows = tuple(tuple(int(c) for c in row) for row in palette)
    if len(rows) < num_classes or any(len(r) != 3 or not all(0 <= c < 256 for c in r)
                                      for r in rows):
        raise ValueError(
            f"`palette` must give an RGB colour (0-255) per class ({num_classes}). "
            f"Received: {len(rows)} rows {list(rows)[:4]}"
        )
    return rows[:num_classes]


class SegmenterMixin(preset_utils.SegmenterPresetMixin):
    """Class names, sparse-label `compile` defaults and safe `from_config`."""

    @classmethod
    def from_backbone(cls, backbone, num_classes: int = 21, **kwargs):
        """A segmenter over `backbone` with the family's default preprocessor.

        Example:

        >>> from keras_deconvnet.models import DeconvNetBackbone, DeconvNetImageSegmenter
        >>> backbone = DeconvNetBackbone.from_preset("deconvnet_edge_small")
        >>> DeconvNetImageSegmenter.from_backbone(backbone, 4).output_shape
        (None, None, None, 4)
        """
        kwargs.setdefault("preprocessor", cls.default_preprocessor(backbone))
        return cls(backbone=backbone, num_classes=num_classes, **kwargs)

    @property
    def class_names(self) -> tuple:
        """The class names (given, or `background, class_1, ...`)."""
        if self._class_names is not None:
            return self._class_names
        return ("background",) + tuple(f"class_{i}" for i in range(1, self.num_classes))

    def _set_classes(self, num_classes, class_names, palette, activation=None):
        """Checks and keeps the head's classes, their names and colours, and the
        output activation (`None`: logits, or `"softmax"`)."""
        self.activation = activation
        self.num_classes = validate_num_classes(num_classes)
        self._class_names = check_class_names(class_names, num_classes)
        self.palette = check_palette(palette, num_classes)

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", **kwargs):
        """Configures training with sparse integer masks (label 255 ignored).

        keras-hub's `ImageSegmenter.compile` expects one-hot labels; ours are
        `(batch, height, width)` integer masks. Defaults: SGD with momentum 0.9 and
        learning rate 0.01 (the paper's), `SparseCategoricalCrossentropy` ignoring
        255 (from logits unless `activation="softmax"`), and `MeanIoU`. Any argument
        can be overridden, as in `keras.Model.compile`.
        """
        from keras_deconvnet.metrics import MeanIoU

        if optimizer == "auto":
            optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        if loss == "auto":
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=self.activation != "softmax", ignore_class=IGNORE_LABEL
            )
        if metrics == "auto":
            metrics = [MeanIoU(self.num_classes, ignore_class=IGNORE_LABEL)]
        # Skips `ImageSegmenter.compile`, whose defaults assume one-hot labels.
        super(ImageSegmenter, self).compile(
            optimizer=optimizer, loss=loss, metrics=metrics, **kwargs
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "activation": self.activation,
                "class_names": list(self._class_names) if self._class_names else None,
                "palette": [list(c) for c in self.palette] if self.palette else None,
            }
        )
        return config

    def compile_from_config(self, config):
        """Recompiles a model loaded from a `.keras` file with its saved settings."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def save_task_weights(self, filepath):
        """The class layer's weights, without the backbone's or any optimizer state.

        keras-hub's version also writes the optimizer's variables of a trained model,
        which a preset has no use for and which warn when loaded into a fresh one.
        """
        keras.saving.save_weights(self, filepath, objects_to_skip=self._not_task_weights())

    def load_task_weights(self, filepath):
        keras.saving.load_weights(self, filepath, objects_to_skip=self._not_task_weights())

    def _not_task_weights(self) -> list:
        skip = [self.backbone]
        if getattr(self, "optimizer", None) is not None:
            skip.append(self.optimizer)
        return skip

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        preset_utils.check_config_is_safe(config, f"the {cls.__name__} config")
        # keras-hub's `from_preset(dir, num_classes=N)` replaces `num_classes` for a
        # new head: the saved names and colours belong to the old one.
        num_classes = config.get("num_classes")
        for key in ("class_names", "palette"):
            value = config.get(key)
            if value is not None and num_classes is not None and len(value) != num_classes:
                logger.info("Dropping the preset's %s: %d classes now.", key, num_classes)
                config[key] = None
        return super().from_config(config)
