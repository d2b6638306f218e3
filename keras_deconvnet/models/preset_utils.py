"""What keras-hub's preset machinery lacks for this package, and nothing it already does.

keras-hub saves and loads our presets (`config.json`, `task.json`,
`preprocessor.json`, `image_converter.json`, `metadata.json`, the weights). This module
adds: named configurations that build untrained models without a download (keras-hub's
built-in presets always point at a hub handle), a safety check that refuses configs
which would run or import code, atomic preset writing with our training metadata
(data, metrics, description), and one-line errors for hub handles on a machine
without network access.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

import keras

from keras_deconvnet import atomic_io

CONFIG_FILE = "config.json"
TASK_CONFIG_FILE = "task.json"
PREPROCESSOR_CONFIG_FILE = "preprocessor.json"
IMAGE_CONVERTER_CONFIG_FILE = "image_converter.json"
METADATA_FILE = "metadata.json"
CONFIG_FILES = (CONFIG_FILE, TASK_CONFIG_FILE, PREPROCESSOR_CONFIG_FILE,
                IMAGE_CONVERTER_CONFIG_FILE)
# Our own entry in keras-hub's metadata.json (keras-hub ignores unknown keys).
METADATA_KEY = "keras_deconvnet"

# Modules a preset's config may name; anything else would make Keras import it.
_SAFE_MODULE_ROOTS = ("keras", "keras_hub", "keras_deconvnet")
_UNSAFE_CLASS_NAMES = ("Lambda", "__lambda__")
# Hub schemes keras-hub downloads from, and the host each needs.
_HUB_HOSTS = {
    "kaggle": "www.kaggle.com",
    "hf": "huggingface.co",
    "modelscope": "www.modelscope.cn",
    "gs": "storage.googleapis.com",
}
_OFFLINE_VARIABLES = {"hf": "HF_HUB_OFFLINE", "kaggle": "KAGGLEHUB_OFFLINE"}
# Entries of a preset directory that `check_preset_files` looks at, at most (a real
# preset has 7 files): bounded work on a hostile directory.
_MAX_PRESET_ENTRIES = 10_000

# name -> (backbone class, {"metadata": ..., "config": ..., "num_classes": ...}).
NAMED_CONFIGS: dict[str, tuple[type, dict]] = {}


class PresetError(ValueError):
    """A preset whose files are malformed, unsafe, or unreachable."""


class classproperty(property):  # noqa: N801 (named like `property`)
    """A read-only property of the class, as keras-hub's `presets`."""

    def __get__(self, _, owner):
        return self.fget(owner)


def named_config(
    description: str,
    path: str,
    blocks: tuple,
    fc_units: int,
    fc_kernel_size: int,
    image_shape: tuple,
    params: int | None = None,
    num_classes: int = 21,
    **config,
) -> dict:
    """One named configuration as keras-hub's preset dicts hold it (plain data).

    Args:
        description: what the configuration is for.
        path: the family's folder, as keras-hub's metadata `"path"`.
        blocks: `(block_filters, block_depths)` of the VGG16-style encoder.
        fc_units, fc_kernel_size, image_shape: backbone arguments.
        params: the segmenter's parameter count at `num_classes` (checked by tests).
        num_classes: the classes a segmenter of this configuration gets by default.
        **config: further backbone arguments.
    """
    metadata = {"description": description, "path": path}
    if params is not None:
        metadata["params"] = params
    block_filters, block_depths = blocks
    return {
        "metadata": metadata,
        "num_classes": num_classes,
        "config": {"block_filters": block_filters, "block_depths": block_depths,
                   "fc_units": fc_units, "fc_kernel_size": fc_kernel_size,
                   "image_shape": image_shape, **config},
    }


def register_named_configs(presets: dict, backbone_cls: type) -> None:
    """Registers named configurations: `{name: {"metadata", "config", "num_classes"}}`."""
    for name, entry in presets.items():
        NAMED_CONFIGS[name] = (backbone_cls, entry)


def named_configs(backbone_cls: type | None = None) -> dict:
    """The named configurations of `backbone_cls` (all if `None`), name -> entry."""
    return {
        name: copy.deepcopy(entry)
        for name, (owner, entry) in NAMED_CONFIGS.items()
        if backbone_cls is None or issubclass(owner, backbone_cls)
    }


# === Checking ===============================================================


def _is_safe_module(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in _SAFE_MODULE_ROOTS)


def check_config_is_safe(config: Any, where: str = "the config") -> None:
    """Rejects configs that could run or import code when deserialized.

    Every serialized object must come from Keras, keras-hub or keras_deconvnet; a
    class with a package prefix (`"package>Name"`) must be registered with Keras;
    Lambda layers and serialized lambdas are refused.

    Raises:
        PresetError: naming the offending class.

    Example:

    >>> check_config_is_safe({"class_name": "Lambda", "config": {}})
    Traceback (most recent call last):
    ...
    keras_deconvnet.models.preset_utils.PresetError: the config contains a Lambda ...
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
                "a preset may only use Keras, keras-hub and registered keras_deconvnet "
                f"classes (loading never imports modules from a preset). "
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


def _scheme(preset: str) -> str | None:
    return preset.split("://", 1)[0].lower() if "://" in preset else None


def _host_reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether `host` resolves and accepts a TCP connection on 443 within `timeout`."""
    result = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def check_preset(preset) -> str:
    """Checks a preset handle before keras-hub opens it; returns it as a string.

    Local directories must exist and hold only safe configs. Hub handles
    (`kaggle://`, `hf://`, `modelscope://`, `gs://`) fail at once, in one line,
    when the hub cannot be reached (unless `HF_HUB_OFFLINE` / `KAGGLEHUB_OFFLINE`
    asks for the local cache), instead of a ConnectionError after retries.

    Raises:
        PresetError: unreachable hub, missing directory, unsafe or invalid config.
    """
    if isinstance(preset, os.PathLike):
        preset = os.fspath(preset)
    if not isinstance(preset, str) or not preset:
        raise PresetError(f"A preset must be a non-empty string or path. Received: {preset!r}")
    scheme = _scheme(preset)
    if scheme == "file":
        preset = preset[len("file://"):]
        scheme = None
    if scheme is not None:
        host = _HUB_HOSTS.get(scheme)
        if host is None:
            raise PresetError(
                f"Unknown preset scheme {scheme!r}: use a local directory or a "
                f"{', '.join(s + '://' for s in _HUB_HOSTS)} handle. Received: {preset!r}"
            )
        offline_variable = _OFFLINE_VARIABLES.get(scheme)
        if offline_variable and os.environ.get(offline_variable, "") not in ("", "0"):
            return preset
        if not _host_reachable(host):
            raise PresetError(
                f"The preset handle {preset!r} needs network access to download from "
                f"{host}, which this machine cannot reach. Download the preset on a "
                "machine with network access (e.g. `keras_hub.models.ImageSegmenter."
                "from_preset(handle).save_to_preset(dir)`) and pass its directory."
            )
        return preset
    path = Path(preset)
    if path.exists() and path.is_dir():
        check_preset_files(path)
    if not path.exists():
        raise PresetError(
            f"No preset named {preset!r}: it is neither a named configuration "
            f"({', '.join(sorted(NAMED_CONFIGS)) or 'none'}) nor an existing directory."
        )
    if not path.is_dir():
        raise PresetError(
            f"A preset is a directory written by `save_to_preset`; {preset!r} is a file "
            "(a `.keras` file loads with `keras.saving.load_model`)."
        )
    if not (path / CONFIG_FILE).is_file():
        raise PresetError(
            f"The preset directory {preset!r} has no {CONFIG_FILE}; write presets with "
            "`segmenter.save_to_preset(dir)`. Files found: "
            f"{sorted(p.name for p in path.iterdir())[:8]}"
        )
    for name in CONFIG_FILES:
        if (path / name).is_file():
            check_config_is_safe(read_json(path / name), f"`{name}` of the preset {preset!r}")
    return preset


def _kind(mode: int) -> str:
    """What a non-regular file is, for messages."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def check_preset_files(preset_dir) -> None:
    """Refuses a preset directory holding anything a loader could hang on or escape by.

    Every entry (recursively, at most 10,000) must be a regular file or a directory;
    symbolic links are followed only when they stay inside the preset directory and
    end at one. FIFOs, devices and sockets (reading one blocks or never ends) and links
    leaving the folder (a preset would read `/etc/...` or another user's files) raise.

    Raises:
        PresetError: one line naming the entry and what it is.

    Example:

    >>> import tempfile
    >>> preset = Path(tempfile.mkdtemp())
    >>> os.mkfifo(preset / "task.json")
    >>> check_preset_files(preset)
    Traceback (most recent call last):
    ...
    keras_deconvnet.models.preset_utils.PresetError: `task.json` in the preset ... is a FIFO, ...
    """
    root = Path(os.fspath(preset_dir)).resolve()
    seen = 0
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs) + sorted(files):
            seen += 1
            if seen > _MAX_PRESET_ENTRIES:
                raise PresetError(f"The preset {str(root)!r} holds more than "
                                  f"{_MAX_PRESET_ENTRIES:,} entries; a preset has a few files.")
            entry = Path(directory) / name
            relative = entry.relative_to(root)
            info = entry.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = entry.resolve()
                if target != root and root not in target.parents:
                    raise PresetError(
                        f"`{relative}` in the preset {str(root)!r} is a symbolic link to "
                        f"{str(target)!r}, outside the preset; copy the file in instead.")
                try:
                    info = target.stat()
                except OSError as e:
                    raise PresetError(f"`{relative}` in the preset {str(root)!r} is a "
                                      f"broken symbolic link: {e.strerror}") from None
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise PresetError(
                    f"`{relative}` in the preset {str(root)!r} is {_kind(info.st_mode)}, "
                    "not a file; a preset holds regular files only.")


def read_json(path) -> dict:
    """A JSON object from `path`, or a `PresetError` naming the file.

    The file is opened without blocking and checked to be a regular file first, so a
    FIFO or a device in its place fails at once instead of hanging.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise PresetError(f"`{path}` is not a readable JSON file: {e}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise PresetError(f"`{path}` is {_kind(mode)}, not a JSON file.")
        with os.fdopen(descriptor, "rb") as f:
            descriptor = -1
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"`{path}` is not a readable JSON file: {e}") from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    if not isinstance(data, dict):
        raise PresetError(f"`{path}` must hold a JSON object. Received: {type(data).__name__}")
    return data


def preset_metadata(preset) -> dict:
    """Our entry of a local preset's `metadata.json` (`{}` when there is none)."""
    path = Path(os.fspath(preset)) / METADATA_FILE
    if not path.is_file():
        return {}
    return read_json(path).get(METADATA_KEY, {})


# === Building named configurations ===========================================


class NamedConfigBackboneMixin:
    """`presets`, `from_preset` and `get_config` for our keras-hub `Backbone`s.

    A name builds the configuration untrained (no download); anything else goes to
    keras-hub's own `from_preset` after `check_preset`. `get_config` adds the
    constructor arguments listed in the class's `CONFIG_KEYS` to keras-hub's.
    """

    CONFIG_KEYS: tuple = ()

    def _store_config(self, arguments: dict) -> None:
        """Keeps the constructor arguments named in `CONFIG_KEYS` (what `get_config`
        returns); call it with the constructor's `locals()`."""
        for key in self.CONFIG_KEYS:
            setattr(self, key, arguments[key])

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.CONFIG_KEYS})
        return config

    @classproperty
    def presets(cls) -> dict:
        """Named configurations: `{name: {"metadata", "config", "num_classes"}}`."""
        return named_configs(cls)

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, **kwargs):
        if isinstance(preset, str) and preset in NAMED_CONFIGS:
            owner, entry = NAMED_CONFIGS[preset]
            if not issubclass(owner, cls):
                raise PresetError(
                    f"{preset!r} is a {owner.__name__} configuration, not a "
                    f"{cls.__name__}. Received: preset={preset!r}"
                )
            return owner(**{**copy.deepcopy(entry["config"]), **kwargs})
        return super().from_preset(check_preset(preset), load_weights, **kwargs)


class SegmenterPresetMixin:
    """`presets`, `from_preset` and an atomic `save_to_preset` for our segmenters."""

    @classproperty
    def presets(cls) -> dict:
        """Named configurations of this segmenter's backbone."""
        return named_configs(cls.backbone_cls) if cls.backbone_cls else named_configs()

    @classmethod
    def from_preset(cls, preset, load_weights: bool = True, **kwargs):
        if isinstance(preset, str) and preset in NAMED_CONFIGS:
            return cls._from_named_config(preset, **kwargs)
        return super().from_preset(check_preset(preset), load_weights, **kwargs)

    @classmethod
    def _from_named_config(cls, preset: str, **kwargs):
        owner, entry = NAMED_CONFIGS[preset]
        if cls.backbone_cls is not None and not issubclass(owner, cls.backbone_cls):
            raise PresetError(
                f"{preset!r} is a {owner.__name__} configuration; load it with the "
                f"segmenter of that family, not {cls.__name__}. Received: preset={preset!r}"
            )
        backbone_kwargs = {
            k: kwargs.pop(k) for k in ("image_shape", "dtype", "decoder_initializer")
            if k in kwargs
        }
        backbone = owner(**{**copy.deepcopy(entry["config"]), **backbone_kwargs})
        if "preprocessor" not in kwargs:
            kwargs["preprocessor"] = cls.default_preprocessor(backbone)
        kwargs.setdefault("num_classes", entry.get("num_classes", 21))
        return cls(backbone=backbone, **kwargs)

    @classmethod
    def default_preprocessor(cls, backbone):
        """The family's preprocessor for `backbone` (resizing to its fixed input size)."""
        height, width = backbone.image_shape[:2]
        image_size = (height, width) if height and width else None
        converter = cls.preprocessor_cls.image_converter_cls(image_size=image_size)
        return cls.preprocessor_cls(image_converter=converter)

    def save_to_preset(
        self,
        preset_dir,
        max_shard_size=10,
        *,
        training_data: Any = None,
        metrics: dict | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Writes a keras-hub preset directory, atomically, with our metadata.

        keras-hub's saver writes `config.json`, `model.weights.h5`, `task.json`,
        `task.weights.h5`, `preprocessor.json`, `image_converter.json` and
        `metadata.json` into a temporary sibling directory, to which `metadata.json`
        gets our entry (`training_data`, `metrics`, `description`, class names); the
        directory then replaces `preset_dir` in one rename, so a crash leaves the old
        preset or none, never half of one.

        Args:
            preset_dir: the local directory to write.
            max_shard_size: keras-hub's weight sharding threshold, in GB.
            training_data: JSON-serializable description of the training data.
            metrics: JSON-serializable metrics, e.g. `{"val_mean_iou": 0.62}`.
            description: free text for `deconvnet presets PATH`.
            overwrite: replace a non-empty `preset_dir`. Defaults to `False`.

        Returns:
            The absolute path of the preset directory.
        """
        target = Path(os.fspath(preset_dir)).absolute()
        if target.is_dir() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(
                f"The preset directory `{target}` is not empty; pass `overwrite=True` "
                "to replace it."
            )
        extra = {
            "training_data": training_data,
            "metrics": metrics or {},
            "description": description,
            "class_names": list(self.class_names),
            "saved_by": "keras_deconvnet",
        }
        try:
            json.dumps(extra)
        except TypeError as e:
            raise ValueError(
                f"`training_data`, `metrics` and `description` must be JSON-serializable: {e}"
            ) from None
        check_config_is_safe(keras.saving.serialize_keras_object(self), "the model's config")
        with atomic_io.staged_directory(target, overwrite=True) as staging:
            super().save_to_preset(str(staging), max_shard_size=max_shard_size)
            metadata = read_json(staging / METADATA_FILE)
            metadata[METADATA_KEY] = extra
            atomic_io.write_json(staging / METADATA_FILE, metadata, indent=4)
        return target
