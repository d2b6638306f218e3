"""Presets in keras-hub's layout: saving, checking and loading preset directories.

A preset is a directory with `config.json` (the Keras serialization of the model),
`metadata.json` (versions, classes, input size, preprocessing, training data, metrics),
`preprocessor.json` (`keras_deconvnet.preprocessing.PREPROCESSING`) and
`model.weights.h5`. `PresetModel` gives the package's models keras-hub's
`from_preset` / `save_to_preset` / `presets` API; `load_preset` loads whichever model a
preset holds. Loading never runs code from a preset, and checks every file against the
others before a weight is assigned.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_deconvnet.preprocessing import PREPROCESSING

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
MODEL_WEIGHTS_FILE = "model.weights.h5"
PRESET_FILES = (CONFIG_FILE, METADATA_FILE, PREPROCESSOR_CONFIG_FILE, MODEL_WEIGHTS_FILE)

FORMAT_VERSION = 1
IGNORE_LABEL = 255
FILE_PREFIX = "file://"
# Modules a preset's config may name. Anything else would make Keras import it.
_SAFE_MODULE_ROOTS = ("keras", "keras_deconvnet")
_UNSAFE_CLASS_NAMES = ("Lambda", "__lambda__")

# name -> (class, {"metadata": ..., "config": ..., optional "handle": ...}).
BUILTIN_PRESETS: dict[str, tuple[type, dict]] = {}


class PresetError(ValueError):
    """A preset whose files are malformed, unsafe or do not fit together."""


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency (keras-hub) is needed for this preset handle.

    A `ValueError` too, so command-line tools print it as a one-line error.
    """


@dataclasses.dataclass(frozen=True)
class PresetClasses:
    """Class names and colours that a model loaded from a preset remembers.

    `save_to_preset` reuses them when no classes are given, so a fine-tuned preset
    keeps its names.
    """

    names: tuple
    palette: tuple


def register_presets(presets: dict, cls: type) -> None:
    """Registers built-in presets of `cls`, as keras-hub's `register_presets` does.

    Args:
        presets: `{name: {"metadata": {...}, "config": {...}}}`; an entry may have a
            `"handle"` (a preset directory or hub handle holding trained weights).
        cls: the model class the configurations build.
    """
    for name, entry in presets.items():
        BUILTIN_PRESETS[name] = (cls, entry)


def builtin_presets(cls: type | None = None) -> dict:
    """The registered built-in presets of `cls` and its subclasses (all if `None`)."""
    return {
        name: entry
        for name, (owner, entry) in BUILTIN_PRESETS.items()
        if cls is None or issubclass(owner, cls)
    }


# === Locating files =========================================================


def _scheme(preset: str) -> str | None:
    return preset.split("://", 1)[0].lower() if "://" in preset else None


def _local_dir(preset: str | os.PathLike) -> Path | None:
    """The directory of a local preset (a path or `file://` URL), else `None`."""
    preset = os.fspath(preset)
    if preset.startswith(FILE_PREFIX):
        return Path(preset[len(FILE_PREFIX):])
    if _scheme(preset) is None:
        return Path(preset)
    return None


def _keras_hub_get_file():
    """keras-hub's downloader, `keras_hub.src.utils.preset_utils.get_file`."""
    try:
        from keras_hub.src.utils.preset_utils import get_file
    except ImportError as e:
        raise MissingDependencyError(
            "Loading a preset from a hub handle (kaggle://, hf://, gs://) needs "
            "keras-hub, which downloads it: `pip install 'keras-hub>=0.32'` (and "
            "`kagglehub` or `huggingface_hub`). Local preset directories and file:// "
            f"paths load without it. ({e})"
        ) from None
    return get_file


def get_file(preset: str | os.PathLike, filename: str) -> Path:
    """The local path of one file of a preset, downloading it for hub handles.

    Args:
        preset: a preset directory, a `file://` path, or a `kaggle://` / `hf://`
            handle (delegated to keras-hub's `get_file`, which must be installed).
        filename: a file of the preset, e.g. `"config.json"`.

    Returns:
        A local `Path`.

    Raises:
        FileNotFoundError: the preset has no such file.
        MissingDependencyError: a hub handle without keras-hub installed.
    """
    local = _local_dir(preset)
    if local is not None:
        path = local / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"`{filename}` is missing from the preset directory `{local}`. A preset "
                f"has {', '.join(PRESET_FILES)}. Received: preset={os.fspath(preset)!r}"
            )
        return path
    path = _keras_hub_get_file()(os.fspath(preset), filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`{filename}` is missing from the preset `{preset}`. Received: {path!r}"
        )
    return Path(path)


def _load_json(preset, filename: str) -> dict:
    path = get_file(preset, filename)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(
            f"`{filename}` of the preset `{preset}` is not valid JSON: {e}. "
            f"Received: {path}"
        ) from None
    if not isinstance(data, dict):
        raise PresetError(
            f"`{filename}` of the preset `{preset}` must hold a JSON object. "
            f"Received: {type(data).__name__}"
        )
    return data


# === Checking configs =======================================================


def _json_normalise(value):
    """Tuples to lists, numpy to Python, so values compare as they do in JSON."""

    def default(obj):
        if isinstance(obj, np.ndarray | np.generic):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    return json.loads(json.dumps(value, default=default))


def _is_safe_module(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in _SAFE_MODULE_ROOTS)


def check_config_is_safe(config: Any, where: str = f"`{CONFIG_FILE}`") -> None:
    """Rejects configs that could run code when deserialized.

    Every serialized object must come from Keras or keras_deconvnet; a class with a
    package prefix (`"package>Name"`) must be registered with Keras; Lambda layers
    and serialized lambdas are refused.

    Raises:
        PresetError: naming the offending class.
    """
    if isinstance(config, list):
        for item in config:
            check_config_is_safe(item, where)
        return
    if not isinstance(config, dict):
        return
    class_name = config.get("class_name")
    if isinstance(class_name, str):
        if class_name in _UNSAFE_CLASS_NAMES:
            raise PresetError(
                f"{where} contains a {class_name} (arbitrary Python code); presets "
                "never execute code, so models with Lambda layers cannot be presets. "
                "Write the computation as a registered layer instead. "
                f"Received: class_name={class_name!r}"
            )
        module = config.get("module")
        if isinstance(module, str) and not _is_safe_module(module):
            raise PresetError(
                f"{where} names the class {class_name!r} from the module {module!r}; "
                "a preset may only use Keras built-ins and registered keras_deconvnet "
                "classes (loading never imports modules from a preset). "
                f"Received: module={module!r}"
            )
        registered_name = config.get("registered_name")
        if (
            isinstance(registered_name, str)
            and ">" in registered_name
            and keras.saving.get_registered_object(registered_name) is None
        ):
            raise PresetError(
                f"{where} names the class {registered_name!r}, which is not registered "
                "with Keras (`keras.saving.register_keras_serializable`). Loading never "
                "imports code from a preset; import the package that defines it first. "
                f"Received: registered_name={registered_name!r}"
            )
    for value in config.values():
        check_config_is_safe(value, where)


def _config_class(config: dict, preset) -> type:
    """The registered class a `config.json` describes."""
    missing = [k for k in ("class_name", "config", "registered_name") if k not in config]
    if missing:
        raise PresetError(
            f"`{CONFIG_FILE}` of the preset `{preset}` is not a Keras-serialized model: "
            f"it lacks {missing}. Write presets with `model.save_to_preset(path)`. "
            f"Received keys: {sorted(config)}"
        )
    registered_name = config["registered_name"]
    cls = keras.saving.get_registered_object(registered_name) if registered_name else None
    if cls is None or not (isinstance(cls, type) and issubclass(cls, PresetModel)):
        raise PresetError(
            f"`{CONFIG_FILE}` of the preset `{preset}` holds a "
            f"{config['class_name']!r}, which is not a keras_deconvnet model "
            f"(DeconvNet, FCN8s, EnsembleSegmenter). "
            f"Received: registered_name={registered_name!r}"
        )
    return cls


def _strip_build_configs(config):
    """Drops `build_config` / `compile_config`, as keras-hub's preset saver does."""
    if isinstance(config, dict):
        for key in ("build_config", "compile_config"):
            config.pop(key, None)
        for value in config.values():
            _strip_build_configs(value)
    elif isinstance(config, list):
        for value in config:
            _strip_build_configs(value)
    return config


def _check_preprocessing(preprocessing: Any, where: str, preset) -> None:
    """Errors when a preset was trained with other preprocessing than this package's."""
    expected = _json_normalise(PREPROCESSING)
    received = _json_normalise(preprocessing)
    if received == expected:
        return
    if isinstance(received, dict):
        keys = sorted(set(expected) | set(received))
        diff = {k: {"preset": received.get(k), "package": expected.get(k)}
                for k in keys if received.get(k) != expected.get(k)}
    else:
        diff = received
    raise PresetError(
        f"The preprocessing recorded in `{where}` of the preset `{preset}` differs from "
        "this package's `keras_deconvnet.preprocessing.PREPROCESSING`; the model "
        "would see differently normalised images than it was trained on. "
        f"Received differences: {diff}"
    )


def _check_metadata(metadata: dict, preset) -> None:
    classes = metadata.get("classes")
    if not isinstance(classes, dict) or not isinstance(classes.get("names"), list):
        raise PresetError(
            f"`{METADATA_FILE}` of the preset `{preset}` must have "
            '`"classes": {"names": [...], "palette": [...]}`. '
            f"Received: classes={classes!r}"
        )
    palette = classes.get("palette")
    if not isinstance(palette, list) or len(palette) != len(classes["names"]):
        raise PresetError(
            f"`{METADATA_FILE}` of the preset `{preset}` must give one palette colour "
            f"per class ({len(classes['names'])} names). Received: palette={palette!r}"
        )
    if "preprocessing" in metadata:
        _check_preprocessing(metadata["preprocessing"], METADATA_FILE, preset)


def _check_model_against_metadata(model, metadata: dict, preset) -> None:
    num_classes = model.output_shape[-1]
    names = metadata["classes"]["names"]
    if len(names) != num_classes:
        raise PresetError(
            f"The preset `{preset}` is inconsistent: `{CONFIG_FILE}` builds a model with "
            f"{num_classes} classes, `{METADATA_FILE}` names {len(names)}. "
            f"Received: classes={names}"
        )
    recorded = metadata.get("parameter_count")
    if recorded is not None and recorded != model.count_params():
        raise PresetError(
            f"The preset `{preset}` is inconsistent: `{CONFIG_FILE}` builds a model with "
            f"{model.count_params():,} parameters, `{METADATA_FILE}` records "
            f"{recorded:,}. Received: parameter_count={recorded}"
        )


# === Weights ================================================================


def _weight_manifest(model, prefix: str = "layers") -> dict[str, tuple[tuple, str]]:
    """Where Keras's `.weights.h5` stores each variable: `{h5 path: (shape, var path)}`.

    Follows Keras's naming (class name in snake case, numbered per container) only to
    name mismatches precisely; `_check_weights_file` falls back to comparing shapes
    when the naming does not line up.
    """
    from keras.src.utils import naming

    manifest = {}
    used: dict[str, int] = {}
    for layer in model.layers:
        base = naming.to_snake_case(type(layer).__name__)
        if base in used:
            used[base] += 1
            base = f"{base}_{used[base]}"
        else:
            used[base] = 0
        path = f"{prefix}/{base}"
        if isinstance(layer, keras.Model):
            manifest.update(_weight_manifest(layer, f"{path}/layers"))
            continue
        variables = list(layer._trainable_variables) + list(layer._non_trainable_variables)
        for i, variable in enumerate(variables):
            manifest[f"{path}/vars/{i}"] = (tuple(variable.shape), variable.path)
    return manifest


def _weights_file_shapes(path: Path) -> dict[str, tuple]:
    import h5py

    shapes = {}
    try:
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda name, obj: shapes.__setitem__(name, tuple(obj.shape))
                if isinstance(obj, h5py.Dataset) else None
            )
    except OSError as e:
        raise PresetError(f"`{MODEL_WEIGHTS_FILE}` is not a readable HDF5 file: {e}. "
                          f"Received: {path}") from None
    # An optimizer's state is no part of a preset (`save_to_preset` leaves it out).
    return {k: v for k, v in shapes.items() if not k.startswith("optimizer/")}


def _check_weights_file(model, path: Path, preset) -> None:
    """Errors unless the file holds exactly the variables of `model`, shape for shape."""
    received = _weights_file_shapes(path)
    where = f"`{MODEL_WEIGHTS_FILE}` of the preset `{preset}`"
    try:
        manifest = _weight_manifest(model)
    except ImportError:
        manifest = None
    if manifest is not None and set(manifest) == set(received):
        wrong = [
            f"{var} needs {shape}, the file has {received[key]}"
            for key, (shape, var) in manifest.items()
            if received[key] != shape
        ]
        if wrong:
            raise PresetError(
                f"{where} does not fit the architecture in `{CONFIG_FILE}` "
                f"({len(wrong)} of {len(manifest)} arrays differ; were the weights saved "
                f"from a model with other widths or classes?). Received: "
                + "; ".join(wrong[:5]) + ("; ..." if len(wrong) > 5 else "")
            )
        return
    expected = Counter(tuple(v.shape) for v in model.weights)
    found = Counter(received.values())
    if expected == found:
        return  # Same arrays, named differently (another Keras version): Keras checks.
    missing = expected - found
    needing = [v.path for v in model.weights if tuple(v.shape) in missing][:5]
    raise PresetError(
        f"{where} does not fit the architecture in `{CONFIG_FILE}`: the model has "
        f"{sum(expected.values())} weight arrays ({model.count_params():,} parameters), "
        f"the file {sum(found.values())} "
        f"({sum(int(np.prod(s)) for s in received.values()):,} values). "
        f"Received: no array in the file fits {needing}; shapes only in the file: "
        f"{sorted((found - expected).elements(), key=str)[:5]}"
    )


def load_checked_weights(model, path: str | os.PathLike, preset=None) -> None:
    """Loads a `.weights.h5` file after checking that every array fits `model`.

    Keras alone would skip layers missing from the file and keep their random
    weights; this refuses instead, naming the variables that do not fit.
    """
    path = Path(path)
    _check_weights_file(model, path, preset if preset is not None else path)
    model.load_weights(str(path))


def _save_model_weights(model, path: Path) -> None:
    """The model's weights without any optimizer state (which a preset does not hold)."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        model.save_weights(str(path))
        return
    try:
        from keras.src.saving import saving_lib

        saving_lib.save_weights_only(model, str(path), objects_to_skip=[optimizer])
    except (ImportError, TypeError):
        model.save_weights(str(path))


def _transfer_weights(source, target) -> list[str]:
    """Copies weights layer by layer where names and shapes agree; returns the rest."""
    skipped = []
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            skipped.append(layer.name)
            continue
        if isinstance(layer, keras.Model) and isinstance(other, keras.Model):
            skipped += [f"{layer.name}/{n}" for n in _transfer_weights(other, layer)]
            continue
        if [tuple(w.shape) for w in layer.weights] == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
        else:
            skipped.append(layer.name)
    return skipped


# === Saving =================================================================


def _classes_metadata(model, dataset_info, class_names, palette) -> dict:
    from keras_deconvnet.data.common import bitwise_palette

    num_classes = int(model.output_shape[-1])
    if dataset_info is not None and (class_names is not None or palette is not None):
        raise ValueError(
            "Give either `dataset_info` or `class_names`/`palette`, not both. "
            f"Received: dataset_info={dataset_info.name!r}, class_names={class_names!r}"
        )
    full_palette = bitwise_palette()
    remembered = getattr(model, "_preset_classes", None)
    if dataset_info is not None:
        class_names, palette = dataset_info.class_names, dataset_info.palette
    elif class_names is None and remembered is not None and len(remembered.names) == num_classes:
        class_names = remembered.names
        palette = remembered.palette if palette is None else palette
    if class_names is None:
        class_names = ["background"] + [f"class_{i}" for i in range(1, num_classes)]
    class_names = [str(n) for n in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"The model predicts {num_classes} classes; give one name per class "
            f"(background first). Received: {len(class_names)} names {class_names}"
        )
    palette = full_palette if palette is None else np.asarray(palette)
    if palette.ndim != 2 or palette.shape[-1] != 3 or len(palette) < num_classes:
        raise ValueError(
            f"`palette` must be RGB rows, at least one per class ({num_classes}). "
            f"Received: shape={palette.shape}"
        )
    ignore = palette[IGNORE_LABEL] if len(palette) == 256 else full_palette[IGNORE_LABEL]
    return {
        "names": class_names,
        "palette": np.asarray(palette[:num_classes]).astype(int).tolist(),
        "ignore_label": IGNORE_LABEL,
        "ignore_color": np.asarray(ignore).astype(int).tolist(),
    }


def _json_argument(value, name: str):
    try:
        return _json_normalise(value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"`{name}` must be JSON-serializable (numbers, strings, lists, dicts). "
            f"Received: {name}={value!r} ({e})"
        ) from None


def _write_json(path: Path, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4)
        f.write("\n")


def _commit_directory(tmp: Path, target: Path, overwrite: bool) -> None:
    """Moves a finished temporary directory into place, replacing `target` if allowed."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if not any(target.iterdir()):
        os.replace(tmp, target)  # rename(2) replaces an empty directory.
        return
    if not overwrite:
        raise FileExistsError(
            f"The preset directory `{target}` is not empty; pass `overwrite=True` to "
            f"replace it. Received: preset_dir={str(target)!r}"
        )
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_preset(
    model,
    preset_dir: str | os.PathLike,
    *,
    dataset_info=None,
    class_names: Sequence[str] | None = None,
    palette=None,
    training_data: Any = None,
    metrics: dict | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes `model` as a preset directory; see `PresetModel.save_to_preset`."""
    if not isinstance(model, PresetModel):
        raise TypeError(
            "Only keras_deconvnet models (DeconvNet, FCN8s, EnsembleSegmenter) can be "
            f"saved as presets. Received: {type(model).__name__}"
        )
    preset_str = os.fspath(preset_dir)
    target = _local_dir(preset_str)
    if target is None:
        raise ValueError(
            "`save_to_preset` writes a local directory; upload it afterwards with "
            "`keras_hub.upload_preset(uri, preset_dir)`. "
            f"Received: preset_dir={preset_str!r}"
        )
    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise FileExistsError(
            f"`{target}` exists and is not a directory. Received: preset_dir={preset_str!r}"
        )
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(
            f"The preset directory `{target}` is not empty; pass `overwrite=True` to "
            f"replace it. Received: preset_dir={preset_str!r}"
        )

    # Check everything before writing anything.
    config = _strip_build_configs(keras.saving.serialize_keras_object(model))
    check_config_is_safe(config, where="the model's config")
    config = _json_argument(config, "config")
    metadata = {
        "format_version": FORMAT_VERSION,
        "keras_deconvnet_version": _package_version(),
        "keras_version": keras.version(),
        "tensorflow_version": _tensorflow_version(),
        "date_saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "class_name": type(model).__name__,
        "parameter_count": int(model.count_params()),
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "classes": _classes_metadata(model, dataset_info, class_names, palette),
        "preprocessing": _json_normalise(PREPROCESSING),
        "training_data": _json_argument(training_data, "training_data"),
        "metrics": _json_argument(metrics or {}, "metrics"),
        "description": description,
    }
    preprocessor = {
        "function": "keras_deconvnet.preprocessing.preprocess_images",
        "config": _json_normalise(PREPROCESSING),
    }

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_json(tmp / CONFIG_FILE, config)
        _write_json(tmp / METADATA_FILE, metadata)
        _write_json(tmp / PREPROCESSOR_CONFIG_FILE, preprocessor)
        _save_model_weights(model, tmp / MODEL_WEIGHTS_FILE)
        _commit_directory(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _package_version() -> str:
    from keras_deconvnet.version import __version__

    return __version__


def _tensorflow_version() -> str | None:
    try:
        import tensorflow as tf
    except ImportError:
        return None
    return tf.__version__


# === Loading ================================================================


def _unknown_preset(preset: str, cls: type | None) -> ValueError:
    known = sorted(builtin_presets(cls))
    what = f"{cls.__name__} preset" if cls is not None else "preset"
    return ValueError(
        f"Unknown {what} {preset!r}. Known presets: {', '.join(known) or 'none'}; or "
        "give a preset directory, a file:// path, or a kaggle:// / hf:// handle "
        f"(with keras-hub installed). Received: preset={preset!r}"
    )


def _build_builtin(name: str, cls: type | None, load_weights: bool, weights, overrides):
    owner, entry = BUILTIN_PRESETS[name]
    if cls is not None and not issubclass(owner, cls):
        raise PresetError(
            f"The built-in preset {name!r} is a {owner.__name__}, not a {cls.__name__}. "
            f"Load it with `{owner.__name__}.from_preset({name!r})`. "
            f"Received: preset={name!r}"
        )
    handle = entry.get("handle")
    if handle and load_weights and weights is None:
        return _load_directory(handle, owner, load_weights, overrides)
    config = copy.deepcopy(entry["config"])
    config.update(overrides)
    model = owner(**config)
    if weights is not None:
        _load_builtin_weights(model, weights)
    return model


def _load_builtin_weights(model, weights) -> None:
    """`.weights.h5` of the whole model, or VGG16 weights for the encoder."""
    if str(weights).endswith(".weights.h5"):
        load_checked_weights(model, weights)
        return
    from keras_deconvnet.models.vgg16_weights import load_vgg16_weights

    load_vgg16_weights(model, weights)


def _load_directory(preset, cls: type | None, load_weights: bool, overrides: dict):
    config = _load_json(preset, CONFIG_FILE)
    metadata = _load_json(preset, METADATA_FILE)
    preprocessor = _load_json(preset, PREPROCESSOR_CONFIG_FILE)

    check_config_is_safe(config, where=f"`{CONFIG_FILE}` of the preset `{preset}`")
    preset_cls = _config_class(config, preset)
    if cls is not None and not issubclass(preset_cls, cls):
        raise PresetError(
            f"The preset `{preset}` holds a {preset_cls.__name__}, not a "
            f"{cls.__name__}. Load it with `{preset_cls.__name__}.from_preset(...)` or "
            "`keras_deconvnet.models.load_preset(...)`. "
            f"Received: class_name={config['class_name']!r}"
        )
    _check_preprocessing(preprocessor.get("config"), PREPROCESSOR_CONFIG_FILE, preset)
    _check_metadata(metadata, preset)

    saved_config = config["config"]
    unknown = sorted(set(overrides) - set(saved_config))
    if unknown:
        raise ValueError(
            f"{preset_cls.__name__} has no argument(s) {unknown} to override; its "
            f"arguments are {sorted(saved_config)}. Received: overrides={overrides}"
        )
    changed = {
        k: v for k, v in overrides.items()
        if _json_normalise(v) != _json_normalise(saved_config[k])
    }
    # Fetched only now: for hub handles this is the large download.
    weights_path = get_file(preset, MODEL_WEIGHTS_FILE) if load_weights else None
    model = _deserialize(config, preset)
    _check_model_against_metadata(model, metadata, preset)
    if weights_path is not None:
        load_checked_weights(model, weights_path, preset)
    if changed:
        source = model
        model = _deserialize({**config, "config": {**saved_config, **changed}}, preset)
        if weights_path is not None:
            skipped = _transfer_weights(source, model)
            if skipped:
                warnings.warn(
                    f"Layers {skipped} of the preset `{preset}` do not fit the "
                    f"overrides {changed} and keep their initial weights; fine-tune "
                    "before use.",
                    stacklevel=4,
                )
    classes = metadata["classes"]
    if model.output_shape[-1] == len(classes["names"]):
        model._preset_classes = PresetClasses(
            tuple(classes["names"]), tuple(tuple(c) for c in classes["palette"])
        )
    return model


def _deserialize(config: dict, preset):
    try:
        return keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (TypeError, ValueError) as e:
        raise PresetError(
            f"`{CONFIG_FILE}` of the preset `{preset}` does not describe a valid "
            f"{config.get('class_name')}: {e}"
        ) from e


def load_preset(
    preset: str | os.PathLike,
    load_weights: bool = True,
    *,
    cls: type | None = None,
    weights: str | os.PathLike | None = None,
    **overrides,
):
    """Loads the model a preset holds, whichever class it is.

    Args:
        preset: a built-in name (see `DeconvNet.presets()`), a preset directory, a
            `file://` path, or a `kaggle://` / `hf://` handle (needs keras-hub).
        load_weights: bool, load `model.weights.h5`. Defaults to `True`.
        cls: only accept presets of this class (and its subclasses). Defaults to
            any keras_deconvnet model.
        weights: built-in names only: a `.weights.h5` file of the whole model, or
            `"imagenet"` / a Keras VGG16 `.h5` file for the encoder. Built-in
            presets are untrained otherwise.
        **overrides: constructor arguments to change, e.g. `num_classes=5`. For
            directories, layers whose shapes change keep their initial weights (a
            warning names them); the others are loaded.

    Returns:
        A `DeconvNet`, `FCN8s` or `EnsembleSegmenter`.

    Raises:
        FileNotFoundError: a preset file is missing.
        PresetError: (a `ValueError`) files that are malformed, unsafe, or do not fit
            together, or a preset of another class than `cls`.

    Example:

    >>> from keras_deconvnet.models import FCN8s, load_preset
    >>> import tempfile
    >>> path = FCN8s(num_classes=3, image_shape=(64, 64, 3), block_filters=(8,) * 5,
    ...              fc_units=16).save_to_preset(tempfile.mkdtemp() + "/fcn")
    >>> type(load_preset(path)).__name__
    'FCN8s'
    """
    if isinstance(preset, str) and preset in BUILTIN_PRESETS:
        return _build_builtin(preset, cls, load_weights, weights, overrides)
    if weights is not None:
        raise ValueError(
            "`weights` applies to built-in presets only; a preset directory brings its "
            f"own model.weights.h5. Received: preset={os.fspath(preset)!r}"
        )
    local = _local_dir(preset)
    if local is not None:
        if not local.exists():
            if isinstance(preset, str) and not os.fspath(preset).startswith(FILE_PREFIX) \
                    and os.sep not in preset and "." not in preset:
                raise _unknown_preset(preset, cls)
            raise FileNotFoundError(
                f"The preset directory `{local}` does not exist. "
                f"Received: preset={os.fspath(preset)!r}"
            )
        if not local.is_dir():
            raise PresetError(
                f"A preset is a directory with {', '.join(PRESET_FILES)}; `{local}` is a "
                "file (a `.keras` file loads with `keras.saving.load_model`). "
                f"Received: preset={os.fspath(preset)!r}"
            )
    return _load_directory(preset, cls, load_weights, overrides)


def describe_preset(preset: str | os.PathLike) -> dict:
    """What a preset holds, read from its JSON files without building the model.

    Args:
        preset: a built-in name, a preset directory, `file://` path or hub handle.

    Returns:
        `{"preset", "builtin", "class_name", "config", "metadata", "files"}`.
    """
    if isinstance(preset, str) and preset in BUILTIN_PRESETS:
        owner, entry = BUILTIN_PRESETS[preset]
        return {
            "preset": preset,
            "builtin": True,
            "class_name": owner.__name__,
            "config": _json_normalise(entry["config"]),
            "metadata": _json_normalise(entry["metadata"]),
            "handle": entry.get("handle"),
            "preprocessing": _json_normalise(PREPROCESSING),
        }
    local = _local_dir(preset)
    if local is not None and not local.exists():
        if isinstance(preset, str) and os.sep not in preset and "." not in preset:
            raise _unknown_preset(preset, None)
        raise FileNotFoundError(
            f"The preset directory `{local}` does not exist. Received: preset={preset!r}"
        )
    config = _load_json(preset, CONFIG_FILE)
    metadata = _load_json(preset, METADATA_FILE)
    preprocessor = _load_json(preset, PREPROCESSOR_CONFIG_FILE)
    files = {}
    if local is not None:
        files = {p.name: p.stat().st_size for p in sorted(local.iterdir()) if p.is_file()}
    return {
        "preset": os.fspath(preset),
        "builtin": False,
        "class_name": config.get("class_name"),
        "config": config.get("config"),
        "metadata": metadata,
        "preprocessing": preprocessor.get("config"),
        "files": files,
    }


def preset_dataset_info(preset: str | os.PathLike):
    """A `DatasetInfo` (class names, 256-colour palette) from a preset's metadata."""
    from keras_deconvnet.data.common import DatasetInfo, bitwise_palette

    metadata = _load_json(preset, METADATA_FILE)
    _check_metadata(metadata, preset)
    classes = metadata["classes"]
    palette = bitwise_palette().copy()
    palette[: len(classes["palette"])] = np.asarray(classes["palette"], np.uint8)
    if "ignore_color" in classes:
        palette[IGNORE_LABEL] = np.asarray(classes["ignore_color"], np.uint8)
    name = metadata.get("training_data")
    if isinstance(name, dict):
        name = name.get("name")
    return DatasetInfo(str(name or Path(os.fspath(preset)).name), tuple(classes["names"]),
                       palette)


# === The model API ==========================================================


class PresetModel(keras.Model):
    """Base class of the package's models: keras-hub's preset API.

    `from_preset` builds a built-in configuration or loads a preset directory;
    `save_to_preset` writes one; `presets` lists the built-in ones. A preset
    directory is keras-hub's layout: `config.json`, `metadata.json`,
    `preprocessor.json`, `model.weights.h5`.

    Example:

    >>> import tempfile
    >>> from keras_deconvnet.models import DeconvNet
    >>> model = DeconvNet(num_classes=3, image_shape=(64, 64, 3),
    ...                   block_filters=(4, 4, 8, 8, 8), fc_units=16, fc_kernel_size=2)
    >>> path = model.save_to_preset(tempfile.mkdtemp() + "/tiny",
    ...                             class_names=["background", "cat", "dog"])
    >>> DeconvNet.from_preset(path).count_params() == model.count_params()
    True
    """

    @classmethod
    def presets(cls) -> dict:
        """The built-in presets, `{name: {"metadata": ..., "config": ...}}`."""
        return builtin_presets(cls)

    @classmethod
    def from_preset(
        cls,
        preset: str | os.PathLike,
        load_weights: bool = True,
        *,
        weights: str | os.PathLike | None = None,
        **overrides,
    ):
        """Builds a built-in preset or loads a preset directory of this class.

        Args:
            preset: a name from `presets()` (e.g. `"deconvnet_edge"`; untrained
                unless `weights` are given), a preset directory or `file://` path
                (offline), or a `kaggle://` / `hf://` handle (downloaded by
                keras-hub, an optional dependency).
            load_weights: bool, load the preset's weights. Defaults to `True`.
            weights: built-in names only: a `.weights.h5` file of the whole model,
                or `"imagenet"` / a Keras VGG16 `.h5` file for the encoder.
            **overrides: constructor arguments to change, e.g. `num_classes=3`.

        Returns:
            An instance of this class (or a subclass).

        Raises:
            FileNotFoundError: a preset file is missing.
            PresetError: (a `ValueError`) the files are malformed, unsafe, do not fit
                together, record other preprocessing than `PREPROCESSING`, or hold
                another class.

        Example:

        >>> from keras_deconvnet.models import DeconvNet
        >>> DeconvNet.from_preset("deconvnet_edge", num_classes=3).output_shape
        (None, 224, 224, 3)
        """
        return load_preset(preset, load_weights, cls=cls, weights=weights, **overrides)

    def save_to_preset(
        self,
        preset_dir: str | os.PathLike,
        *,
        dataset_info=None,
        class_names: Sequence[str] | None = None,
        palette=None,
        training_data: Any = None,
        metrics: dict | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Writes this model as a preset directory (keras-hub's layout).

        The directory appears complete or not at all: files are written to a
        temporary directory beside it and renamed into place.

        Args:
            preset_dir: the directory to write (local path or `file://`).
            dataset_info: a `keras_deconvnet.data.DatasetInfo` giving class names and
                palette, e.g. `VOC_INFO`.
            class_names: names of the classes, background first, when no
                `dataset_info` is given. Defaults to the names of the preset the
                model was loaded from, else `background, class_1, ...`.
            palette: RGB rows, one per class (or `(256, 3)`). Defaults to the VOC
                colour map.
            training_data: JSON-serializable description of the training data,
                e.g. `{"name": "voc2012+sbd", "split": "train"}`.
            metrics: JSON-serializable metrics, e.g. `{"val_mean_iou": 0.62}`.
            description: free text for `deconvnet presets PATH`.
            overwrite: bool, replace a non-empty `preset_dir`. Defaults to `False`.

        Returns:
            The absolute path of the preset directory.

        Example:

        >>> import tempfile
        >>> from keras_deconvnet.data import SYNTHETIC_INFO
        >>> from keras_deconvnet.models import DeconvNet
        >>> model = DeconvNet.from_preset("deconvnet_edge_small",
        ...                               num_classes=SYNTHETIC_INFO.num_classes)
        >>> path = model.save_to_preset(tempfile.mkdtemp() + "/shapes",
        ...                             dataset_info=SYNTHETIC_INFO,
        ...                             metrics={"val_mean_iou": 0.0})
        >>> sorted(p.name for p in path.iterdir())
        ['config.json', 'metadata.json', 'model.weights.h5', 'preprocessor.json']
        """
        return save_preset(
            self, preset_dir, dataset_info=dataset_info, class_names=class_names,
            palette=palette, training_data=training_data, metrics=metrics,
            description=description, overwrite=overwrite,
        )
