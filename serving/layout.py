"""Checks an export directory against what TF Serving expects (and loads it, if asked).

TF Serving serves `--model_base_path=BASE/NAME` (or each `base_path` of a
`--model_config_file`) and loads the subdirectories of it whose names are integers
(versions; others, such as a `.1.partial-*` staging directory, are ignored). Each
version must hold `saved_model.pb` (or `.pbtxt`) with a meta graph tagged `serve`
and a `variables/` directory (`variables.index` + `variables.data-*`), and clients
call the signatures by name. `check_layout` reads the protos, and with `load=True`
(what `deconvnet serve --check` does) also loads every version that passes, as the
server would, so truncated or corrupt variables are caught too. It also reports files
and directories other users cannot read (TF Serving in a container running as a
non-root user, a shared directory or a Kubernetes volume could not load them), and a
`models.config` whose entries do not serve every version, as `deconvnet serve` does:

>>> report = check_layout("exported", load=True)  # doctest: +SKIP
>>> print(report.format())  # doctest: +SKIP
>>> report.ok  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from keras_deconvnet.serving.servables import is_version_name

SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"

# The signatures keras_deconvnet.export.export_saved_model writes:
# signature -> ({input: (dtype, rank)}, {output: (dtype, rank)}).
DECONVNET_SIGNATURES = {
    "serving_default": (
        {"images": ("DT_FLOAT", 4)},
        {"probabilities": ("DT_FLOAT", 4), "labels": ("DT_INT32", 3)},
    ),
    "predict_image_bytes": (
        {"image_bytes": ("DT_STRING", 1)},
        {"labels": ("DT_INT32", 3), "image_sizes": ("DT_INT32", 2)},
    ),
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One finding: `level` is `"error"` (TF Serving or the client would fail) or
    `"warning"` (works, but probably not what was meant)."""

    level: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.path}: {self.message}"


@dataclasses.dataclass
class LayoutReport:
    """The result of `check_layout`.

    Attributes:
        path: the directory checked.
        models: model name -> its integer versions, ascending.
        signatures: `"NAME/VERSION"` -> that version's signature names.
        problems: every error and warning.
        loaded: the `"NAME/VERSION"`s that were loaded successfully (`load=True`).
    """

    path: str
    models: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    signatures: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    problems: list[Problem] = dataclasses.field(default_factory=list)
    loaded: list[str] = dataclasses.field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def _add(self, level: str, path, message: str) -> None:
        self.problems.append(Problem(level, str(path), message))

    def format(self) -> str:
        """A human-readable summary, one line per model version and per problem."""
        lines = [f"TF Serving layout check of {self.path}"]
        for name, versions in sorted(self.models.items()):
            for version in versions:
                sigs = ", ".join(self.signatures.get(f"{name}/{version}", [])) or "-"
                loaded = " (loaded)" if f"{name}/{version}" in self.loaded else ""
                lines.append(f"  model {name!r} version {version}: signatures {sigs}{loaded}")
        lines.extend(f"  {p}" for p in self.problems)
        verdict = "OK" if self.ok else f"FAILED ({len(self.errors)} error(s))"
        lines.append(f"{verdict}, {len(self.warnings)} warning(s)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "ok": self.ok,
            "models": self.models,
            "signatures": self.signatures,
            "loaded": self.loaded,
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _read_saved_model(path: Path):
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    if (path / "saved_model.pb").is_file():
        proto.ParseFromString((path / "saved_model.pb").read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    return proto


def _dims(info) -> list[int] | None:
    shape = info.tensor_shape
    return None if shape.unknown_rank else [d.size for d in shape.dim]


def _check_signatures(report, path, signature_defs, required, expected) -> None:
    for key in required:
        if key not in signature_defs:
            report._add(
                "error", path,
                f"missing signature {key!r} (found: {', '.join(sorted(signature_defs)) or 'none'})",
            )
    from tensorflow.core.framework import types_pb2

    for key, sig in sorted(signature_defs.items()):
        if key.startswith("__"):
            continue  # __saved_model_init_op and friends
        if sig.method_name and sig.method_name != PREDICT_METHOD:
            report._add("warning", path, f"signature {key!r} has method {sig.method_name!r}, "
                        f"not {PREDICT_METHOD!r}: only :classify/:regress can call it")
        for kind, tensors in (("input", sig.inputs), ("output", sig.outputs)):
            for name, info in tensors.items():
                dims = _dims(info)
                if dims is not None and (not dims or dims[0] != -1):
                    report._add("warning", path, f"{kind} {name!r} of {key!r} has no "
                                "variable batch dimension: TF Serving cannot batch it")
        if key not in expected:
            continue
        want_inputs, want_outputs = expected[key]
        for kind, tensors, wanted in (
            ("input", sig.inputs, want_inputs), ("output", sig.outputs, want_outputs)
        ):
            for name, (dtype, rank) in wanted.items():
                if name not in tensors:
                    report._add("error", path, f"signature {key!r} has no {kind} {name!r} "
                                f"(found: {', '.join(sorted(tensors)) or 'none'})")
                    continue
                got = types_pb2.DataType.Name(tensors[name].dtype)
                dims = _dims(tensors[name])
                if got != dtype:
                    report._add("error", path, f"{kind} {name!r} of {key!r} is {got}, "
                                f"expected {dtype}")
                elif dims is not None and len(dims) != rank:
                    report._add("error", path, f"{kind} {name!r} of {key!r} has rank "
                                f"{len(dims)}, expected {rank}")


def _load_version(report, name, version_dir: Path) -> None:
    from keras_deconvnet.serving.servables import load_version

    status = load_version(version_dir, name, int(version_dir.name))
    if status.failed:
        report._add("error", version_dir, f"cannot be loaded: {status.error_code}: "
                    f"{status.error_message}")
    else:
        report.loaded.append(f"{name}/{version_dir.name}")


def _check_version(report, name, version_dir: Path, required, expected, load) -> None:
    errors_before = len(report.errors)
    has_pb = (version_dir / "saved_model.pb").is_file()
    has_pbtxt = (version_dir / "saved_model.pbtxt").is_file()
    if not (has_pb or has_pbtxt):
        report._add("error", version_dir, "no saved_model.pb (or saved_model.pbtxt): not a "
                    "SavedModel")
        return
    variables = version_dir / "variables"
    if not variables.is_dir():
        report._add("error", version_dir, "missing variables/ directory (the weights): "
                    "copy the whole SavedModel directory")
    else:
        if not (variables / "variables.index").is_file():
            report._add("error", variables, "missing variables.index")
        if not any(p.name.startswith("variables.data-") for p in variables.iterdir()):
            report._add("error", variables, "missing variables.data-* shards")
    try:
        proto = _read_saved_model(version_dir)
    except Exception as e:  # DecodeError, ParseError, OSError
        report._add("error", version_dir, f"cannot parse the SavedModel proto: {e}")
        return
    graphs = [g for g in proto.meta_graphs if SERVE_TAG in g.meta_info_def.tags]
    if not graphs:
        tags = [list(g.meta_info_def.tags) for g in proto.meta_graphs]
        report._add("error", version_dir, f"no meta graph tagged {SERVE_TAG!r} "
                    f"(TF Serving's default tag set); found tags {tags}")
        return
    signature_defs = dict(graphs[0].signature_def)
    report.signatures[f"{name}/{version_dir.name}"] = sorted(
        k for k in signature_defs if not k.startswith("__")
    )
    _check_signatures(report, version_dir, signature_defs, required, expected)
    if not (version_dir / "export_config.json").is_file():
        report._add("warning", version_dir, "no export_config.json (not written by "
                    "keras_deconvnet.export.export_saved_model?)")
    if load and len(report.errors) == errors_before:
        _load_version(report, name, version_dir)


def _check_model(report, model_dir: Path, required, expected, load=False) -> None:
    name = model_dir.name
    if not model_dir.is_dir():
        report._add("error", model_dir, f"model directory of {name!r} not found")
        return
    versions, others = [], []
    for child in sorted(model_dir.iterdir()):
        if not child.is_dir():
            continue
        if is_version_name(child.name):
            versions.append(child)
        elif child.name.startswith(".") and "partial" in child.name:
            report._add("warning", child, "leftover partial export (ignored by TF Serving; "
                        "safe to delete once no export is running)")
        else:
            others.append(child)
    for child in others:
        if _is_saved_model(child):
            hint = "error" if not versions else "warning"
            report._add(hint, child, "SavedModel in a directory whose name is not an "
                        "integer: TF Serving ignores it (rename it to a version number, "
                        "e.g. 1)")
    if not versions:
        report._add("error", model_dir, "no version directory: TF Serving loads only "
                    "subdirectories named with an integer, e.g. "
                    f"{model_dir / '1'}/saved_model.pb")
        return
    for child in versions:
        if child.name != str(int(child.name)):
            report._add("warning", child, f"version {child.name!r} has leading zeros; "
                        f"TF Serving reports it as {int(child.name)}")
    report.models[name] = sorted(int(v.name) for v in versions)
    for child in sorted(versions, key=lambda p: int(p.name)):
        _check_version(report, name, child, required, expected, load)


_CONFIG_ENTRY = re.compile(r'\b(name|base_path|model_platform)\s*:\s*"([^"]*)"')
_POLICY = re.compile(r"\bmodel_version_policy\s*\{\s*(all|latest|specific)\b")
# The directory the tensorflow/serving container sees the base directory at
# (serving/docker-run.sh mounts it there; export writes models.config for it).
CONTAINER_BASE = "/models"


def read_model_config(path: str | os.PathLike) -> list[dict[str, str]]:
    """The `config` entries of a TF Serving model config file (`models.config`).

    Uses `tensorflow_serving`'s `ModelServerConfig` proto when
    `tensorflow-serving-api` is installed (strict parse), else reads the `name`,
    `base_path`, `model_platform` and version policy fields in order.

    Returns:
        One dict per model with the keys `name`, `base_path`, `model_platform` and
        `model_version_policy` (`"all"`, `"latest"`, `"specific"`, or `""` when
        absent: TF Serving then serves the newest version only).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError:
        entries: list[dict[str, str]] = []
        # One chunk per `config {` block: the policy belongs to the block it is in.
        for block in re.split(r"\bconfig\s*\{", text)[1:]:
            entry = {"name": "", "base_path": "", "model_platform": "",
                     "model_version_policy": ""}
            for key, value in _CONFIG_ENTRY.findall(block):
                entry[key] = value
            policy = _POLICY.search(block)
            entry["model_version_policy"] = policy[1] if policy else ""
            entries.append(entry)
        return entries
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(text, config)
    return [
        {"name": c.name, "base_path": c.base_path, "model_platform": c.model_platform,
         "model_version_policy": (c.model_version_policy.WhichOneof("policy_choice") or "")
         if c.HasField("model_version_policy") else ""}
        for c in config.model_config_list.config
    ]


def _check_model_config(report, base_dir: Path, config_path: Path) -> None:
    try:
        entries = read_model_config(config_path)
    except Exception as e:  # text_format.ParseError, OSError
        report._add("error", config_path, f"cannot parse the model config: {e}")
        return
    if not entries:
        report._add("error", config_path, "the model config lists no model")
    names = set()
    for entry in entries:
        name, base_path = entry["name"], entry["base_path"]
        names.add(name)
        if not name or not base_path:
            report._add("error", config_path, f"entry without name or base_path: {entry}")
            continue
        if entry["model_platform"] not in ("", "tensorflow"):
            report._add("error", config_path, f"model {name!r}: model_platform must be "
                        f"'tensorflow', not {entry['model_platform']!r}")
        if not (base_dir / name).is_dir():
            report._add("error", config_path, f"model {name!r} is listed but {base_dir / name} "
                        "does not exist")
        if entry.get("model_version_policy") != "all" and len(report.models.get(name, [])) > 1:
            report._add("warning", config_path, f"model {name!r}: TF Serving serves only "
                        f"the newest of its {len(report.models[name])} versions with this "
                        "config (`deconvnet serve` serves all); add "
                        "`model_version_policy { all {} }`")
        if Path(base_path).name != name:
            report._add("warning", config_path, f"model {name!r}: base_path {base_path!r} does "
                        f"not end in /{name}")
        elif base_path.startswith(CONTAINER_BASE + "/"):
            inside = base_dir / base_path[len(CONTAINER_BASE) + 1:]
            if not inside.is_dir():
                report._add("error", config_path, f"model {name!r}: base_path {base_path!r} "
                            f"maps to {inside} with the base directory mounted at "
                            f"{CONTAINER_BASE}, which does not exist")
        elif Path(base_path).is_absolute() and not Path(base_path).exists():
            report._add("warning", config_path, f"model {name!r}: base_path {base_path!r} "
                        f"does not exist here and is not under {CONTAINER_BASE}, where "
                        "serving/docker-run.sh mounts the base directory")
        elif Path(base_path).is_absolute() and Path(base_path).exists() and not (
            Path(base_path).resolve() == (base_dir / name).resolve()
        ):
            report._add("warning", config_path, f"model {name!r}: base_path {base_path!r} is "
                        f"another directory than {base_dir / name}")
    for name in report.models:
        if name not in names:
            report._add("warning", config_path, f"model {name!r} is not listed: TF Serving "
                        "started with this config will not serve it")


def _check_permissions(report, base: Path) -> None:
    """Reports what other users cannot read: files without `o+r`, directories without `o+rx`.

    The report names the first few and the count; an export written with umask 0022
    has none. Hidden entries (staging directories) are skipped.
    """
    closed: list[tuple[Path, int]] = []
    unreadable: list[Path] = []
    count = 0
    for root, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for entry in [Path(root), *(Path(root) / f for f in files if not f.startswith("."))]:
            count += 1
            if count > 100_000:  # bounded work on a huge tree
                return
            try:
                info = entry.lstat()
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode):
                continue
            need = 0o005 if stat.S_ISDIR(info.st_mode) else 0o004
            if info.st_mode & need != need:
                closed.append((entry, stat.S_IMODE(info.st_mode)))
            if not os.access(entry, os.R_OK):
                unreadable.append(entry)
    for entry in unreadable[:3]:
        report._add("error", entry, "cannot be read by this user (check its owner and mode)")
    if closed:
        shown = ", ".join(f"{path} ({mode:04o})" for path, mode in closed[:3])
        more = f" and {len(closed) - 3} more" if len(closed) > 3 else ""
        report._add("warning", base, f"{len(closed)} file(s) or directories other users "
                    f"cannot read: {shown}{more}. TF Serving running as another user (a "
                    "container's non-root user, a shared directory, a Kubernetes volume) "
                    f"cannot load them; fix: chmod -R a+rX {base}")


def check_layout(
    path: str | os.PathLike,
    name: str | None = None,
    required_signatures: Sequence[str] = tuple(DECONVNET_SIGNATURES),
    expected_signatures: Mapping[str, tuple] | None = None,
    load: bool = False,
) -> LayoutReport:
    """Checks a TF Serving base directory (`BASE/NAME/VERSION/`) or model directory.

    Args:
        path: a base directory (holding `NAME/` directories and maybe
            `models.config`) or one model's directory (holding version directories).
        name: in a base directory, check only this model.
        required_signatures: signatures every version must have. Defaults to the two
            `export_saved_model` writes; pass `("serving_default",)` for other models.
        expected_signatures: signature -> `({input: (dtype, rank)}, {output: (dtype,
            rank)})` to compare; defaults to `DECONVNET_SIGNATURES`.
        load: also load every version without errors with `tf.saved_model.load`, as
            the server does (catches truncated or corrupt variables; takes about as
            long as serving start-up).

    Returns:
        A `LayoutReport`; `report.ok` is False when TF Serving (or this package's
        client) would fail.

    Example:

    >>> report = check_layout("exported", name="deconvnet")  # doctest: +SKIP
    >>> [str(p) for p in report.errors]  # doctest: +SKIP
    []
    """
    path = Path(path)
    expected = DECONVNET_SIGNATURES if expected_signatures is None else expected_signatures
    report = LayoutReport(str(path))
    if not path.exists():
        report._add("error", path, "does not exist")
        return report
    if not path.is_dir():
        report._add("error", path, "is not a directory")
        return report
    if _is_saved_model(path):
        report._add("error", path, "this is a SavedModel (version) directory: TF Serving "
                    "needs BASE/NAME/VERSION/saved_model.pb; pass BASE or BASE/NAME, and "
                    "name the version directory with an integer")
        return report
    children = [p for p in sorted(path.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if name is None and any(is_version_name(p.name) or _is_saved_model(p) for p in children):
        _check_model(report, path, required_signatures, expected, load)  # a model dir
        _check_permissions(report, path)
        return report
    models = [path / name] if name is not None else [
        p for p in children
        if any(c.is_dir() and (is_version_name(c.name) or _is_saved_model(c)) for c in p.iterdir())
    ]
    if not models:
        report._add("error", path, "no model found: expected BASE/NAME/VERSION/"
                    "saved_model.pb with an integer VERSION")
    for model_dir in models:
        _check_model(report, model_dir, required_signatures, expected, load)
    config_path = path / "models.config"
    if config_path.is_file():
        _check_model_config(report, path, config_path)
    _check_permissions(report, path)
    return report


def report_json(report: LayoutReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_json(), indent=2)
