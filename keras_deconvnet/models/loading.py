"""One entry point to load whichever segmenter a name, directory or file holds."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from keras_deconvnet.models import preset_utils


def load_segmenter(model, load_weights: bool = True, **kwargs):
    """Loads a segmenter from a named configuration, a preset, or a `.keras` file.

    Args:
        model: a named configuration (`"deconvnet_edge"`, `"fcn8s_vgg16_voc"`, ...:
            untrained), a preset directory or hub handle (loaded by
            `keras_hub.models.ImageSegmenter.from_preset`), an EDeconvNet preset
            directory, or a `.keras` file.
        load_weights: load the preset's weights. Defaults to `True`.
        **kwargs: passed to `from_preset` (e.g. `num_classes`, `image_shape` for
            named configurations).

    Returns:
        A `DeconvNetImageSegmenter`, `FCN8sImageSegmenter` or
        `EDeconvNetImageSegmenter` (or the model of a `.keras` file).

    Raises:
        PresetError: an unknown name, a missing or unsafe preset, an unreachable hub.

    Example:

    >>> type(load_segmenter("deconvnet_edge_small", num_classes=3)).__name__
    'DeconvNetImageSegmenter'
    """
    import keras_hub

    from keras_deconvnet.models.deconvnet import DeconvNetBackbone, DeconvNetImageSegmenter
    from keras_deconvnet.models.edeconvnet import EDeconvNetImageSegmenter
    from keras_deconvnet.models.edeconvnet.edeconvnet_image_segmenter import ENSEMBLE_FILE
    from keras_deconvnet.models.fcn8s import FCN8sImageSegmenter

    if isinstance(model, str) and model in preset_utils.NAMED_CONFIGS:
        owner, _ = preset_utils.NAMED_CONFIGS[model]
        cls = DeconvNetImageSegmenter if issubclass(owner, DeconvNetBackbone) \
            else FCN8sImageSegmenter
        return cls.from_preset(model, **kwargs)
    path = Path(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else None
    if path is not None and "://" not in str(model):
        if path.is_file() and path.suffix == ".keras":
            try:
                return keras.saving.load_model(path, safe_mode=True)
            except Exception as e:  # Keras raises many types for corrupt archives.
                raise preset_utils.PresetError(f"Could not load {path}: {e}") from None
        if path.is_dir():
            preset_utils.check_preset_files(path)  # no FIFO, device or escaping link
        if (path / ENSEMBLE_FILE).is_file():
            return EDeconvNetImageSegmenter.from_preset(path, load_weights, **kwargs)
    preset = preset_utils.check_preset(model)
    return keras_hub.models.ImageSegmenter.from_preset(preset, load_weights, **kwargs)


def describe_preset(preset) -> dict:
    """What a named configuration or a local preset holds, read without building it.

    Returns:
        `{"preset", "named", "class_name", "config", "metadata", "files"}`.

    Example:

    >>> describe_preset("deconvnet_edge")["class_name"]
    'DeconvNetBackbone'
    """
    if isinstance(preset, str) and preset in preset_utils.NAMED_CONFIGS:
        owner, entry = preset_utils.NAMED_CONFIGS[preset]
        return {
            "preset": preset,
            "named": True,
            "class_name": owner.__name__,
            "config": entry["config"],
            "num_classes": entry.get("num_classes"),
            "metadata": entry["metadata"],
        }
    path = Path(preset_utils.check_preset(preset))
    if "://" in str(preset):
        raise preset_utils.PresetError(
            f"`describe_preset` reads local directories; download {preset!r} first."
        )
    config = preset_utils.read_json(path / preset_utils.CONFIG_FILE)
    task = path / preset_utils.TASK_CONFIG_FILE
    task_config = preset_utils.read_json(task) if task.is_file() else {}
    metadata_path = path / preset_utils.METADATA_FILE
    metadata = preset_utils.read_json(metadata_path) if metadata_path.is_file() else {}
    return {
        "preset": str(preset),
        "named": False,
        "class_name": task_config.get("class_name", config.get("class_name")),
        "config": config.get("config"),
        "num_classes": task_config.get("config", {}).get("num_classes"),
        "metadata": metadata,
        "files": {p.name: p.stat().st_size for p in sorted(path.iterdir()) if p.is_file()},
    }
