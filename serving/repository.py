"""The repository the local servers serve: models, their versions, polling, predict.

`ModelRepository.from_base_dir` loads every version directory (ASCII digits) under
`BASE/NAME/` in isolation and with a time limit (`servables.load_version`; a FIFO or
device in it is refused unread), so no version can stop start-up or polling: one
that fails to load is
reported in the status as `END` with its error, as TF Serving's
`model_version_status` does, and the other versions serve. `poll()` (run every
`--file-system-poll-wait-seconds` by `start_polling`) rescans the base directory as
TF Serving does: new version directories are loaded once their content stops
changing between two polls, removed ones are unloaded.

The repository answers the questions both the REST and the gRPC server ask: which
versions exist and their status, a version's metadata (its `SignatureDef`s), and
predictions of a signature on numpy inputs, checked against the signature and the
`RequestLimits` first so a bad or too costly request gets `INVALID_ARGUMENT` instead
of reaching the graph.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from keras_deconvnet.serving import limits as limits_module
from keras_deconvnet.serving.errors import not_found
from keras_deconvnet.serving.limits import RequestLimits
from keras_deconvnet.serving.servables import (
    AVAILABLE,
    DEFAULT_LOAD_TIMEOUT,
    END,
    LOADING,
    Servable,
    VersionStatus,
    directory_fingerprint,
    load_version,
    version_dirs,
)
from keras_deconvnet.serving.signatures import Signature

logger = logging.getLogger("keras_deconvnet.serving")


def _event(events: list[str], level: int, message: str) -> None:
    logger.log(level, "%s", message)
    events.append(message)


class ModelRepository:
    """The models and versions a local server answers for.

    Args:
        models: model name -> {version -> `Servable`} (all `AVAILABLE`); use
            `from_base_dir` to load a TF Serving base directory.
        limits: the `RequestLimits` of every predict request.
        load_timeout: seconds one version may take to load (see `from_base_dir`).
        max_image_pixels: shorthand for `limits.max_image_pixels` (kept for
            compatibility).

    Example:

    >>> ModelRepository().models
    {}
    >>> repo = ModelRepository.from_base_dir("exported", names=["deconvnet"])  # doctest: +SKIP
    >>> repo.get("deconvnet").version  # doctest: +SKIP
    2
    >>> repo.start_polling(1.0)  # doctest: +SKIP
    """

    def __init__(
        self,
        models: Mapping[str, Mapping[int, Servable]] | None = None,
        max_image_pixels: int | None = None,
        limits: RequestLimits | None = None,
        load_timeout: float | None = DEFAULT_LOAD_TIMEOUT,
    ):
        limits = limits or RequestLimits()
        self.load_timeout = load_timeout
        if max_image_pixels is not None:
            limits = dataclasses.replace(limits, max_image_pixels=max_image_pixels)
        self.limits = limits
        self._status: dict[str, dict[int, VersionStatus]] = {
            name: {v: VersionStatus(v, AVAILABLE, servable=s) for v, s in versions.items()}
            for name, versions in (models or {}).items()
        }
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._batchers = {}
        self.batching = None
        self.base_dir: Path | None = None
        self.names: tuple[str, ...] | None = None
        self.version_policy = "all"
        self._pending: dict[tuple[str, int], tuple] = {}
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def max_image_pixels(self) -> int:
        return self.limits.max_image_pixels

    @classmethod
    def from_base_dir(
        cls,
        base_dir: str | os.PathLike,
        names: Iterable[str] | None = None,
        versions: str = "all",
        max_image_pixels: int | None = None,
        limits: RequestLimits | None = None,
        load_timeout: float | None = DEFAULT_LOAD_TIMEOUT,
    ) -> ModelRepository:
        """Loads models from TF Serving's layout `base_dir/NAME/VERSION/`.

        Each version loads in isolation: one that fails is reported by `status()` as
        `END` with its error, and the others serve. A version directory is only read
        by `poll()` later on (see `start_polling`).

        Args:
            base_dir: the base directory holding one directory per model.
            names: the models to load; defaults to every directory of `base_dir`
                with an integer version directory (re-scanned by `poll()`).
            versions: `"all"` serves every version; `"latest"` only the newest one that
                loads (a newer version that fails leaves the older one serving).
            max_image_pixels: see the class.
            limits: see the class.
            load_timeout: seconds one version may take to load (`None`: no limit);
                a version that takes longer is `END` with `DEADLINE_EXCEEDED` and the
                others load and serve. Defaults to 120.

        Returns:
            The repository.

        Raises:
            FileNotFoundError: `base_dir` does not exist.
            ValueError: no model, or a named model without any version directory.
        """
        base_dir = Path(base_dir)
        if not base_dir.is_dir():
            raise FileNotFoundError(f"model base directory not found: {base_dir}")
        if versions not in ("all", "latest"):
            raise ValueError(f"`versions` must be 'all' or 'latest'. Received: {versions!r}")
        repository = cls(max_image_pixels=max_image_pixels, limits=limits,
                         load_timeout=load_timeout)
        repository.base_dir = base_dir
        repository.version_policy = versions
        if names is not None:
            repository.names = tuple(names)
            for name in repository.names:
                if not version_dirs(base_dir / name):
                    raise ValueError(
                        f"no version of model {name!r}: {base_dir / name} has no integer "
                        "version directory"
                    )
        elif not repository._discover():
            raise ValueError(
                f"{base_dir} holds no model (NAME/VERSION/ with an integer VERSION); "
                "export one with keras_deconvnet.export.export_saved_model"
            )
        with repository._poll_lock:
            repository._poll(initial=True)
        return repository

    # -- versions -----------------------------------------------------------------
    def _discover(self) -> list[str]:
        try:
            children = sorted(self.base_dir.iterdir())
        except OSError:
            return []
        return [p.name for p in children if not p.name.startswith(".") and version_dirs(p)]

    @property
    def models(self) -> dict[str, dict[int, Servable]]:
        """Model name -> {version -> `Servable`} of the `AVAILABLE` versions (a copy)."""
        with self._lock:
            models = {
                name: {v: e.servable for v, e in table.items() if e.state == AVAILABLE}
                for name, table in self._status.items()
            }
        return {name: versions for name, versions in models.items() if versions}

    def version_status(self, name: str) -> list[VersionStatus]:
        """Every known version of `name`, newest first (copies)."""
        with self._lock:
            table = self._status.get(name, {})
            return [dataclasses.replace(table[v]) for v in sorted(table, reverse=True)]

    def failures(self) -> list[tuple[str, VersionStatus]]:
        """`(model name, status)` of every version that failed to load."""
        with self._lock:
            return [
                (name, dataclasses.replace(entry))
                for name, table in sorted(self._status.items())
                for _, entry in sorted(table.items()) if entry.failed
            ]

    def poll(self) -> list[str]:
        """Rescans the base directory once: loads new versions, unloads removed ones.

        A new version directory is loaded once its content (file names, sizes, times)
        is the same at two consecutive polls, so a version being copied in is not read
        half-written; a failed version is retried when its content changes.

        Returns:
            One line per change (also logged).
        """
        if self.base_dir is None:
            return []
        with self._poll_lock:
            return self._poll(initial=False)

    def _poll(self, initial: bool) -> list[str]:
        names = self.names if self.names is not None else self._discover()
        with self._lock:
            known = list(self._status)
        events = []
        for name in sorted(set(names) | set(known)):
            events.extend(self._poll_model(name, version_dirs(self.base_dir / name), initial))
        return events

    def _poll_model(self, name: str, found: dict[int, Path], initial: bool) -> list[str]:
        events = []
        with self._lock:
            table = self._status.setdefault(name, {})
            self._forget_removed(name, found, events)
            current = {v: dataclasses.replace(e) for v, e in table.items()}
        serving_newer = False
        for version in sorted(found, reverse=True):
            entry = current.get(version)
            if entry is not None and entry.state == AVAILABLE:
                if self.version_policy == "latest" and serving_newer:
                    with self._lock:
                        self._unload(name, table[version])
                    _event(events, logging.INFO, f"unloaded model {name!r} version "
                           f"{version} (a newer version serves)")
                serving_newer = True
                continue
            if self.version_policy == "latest" and serving_newer:
                continue
            loaded = self._load_when_stable(name, version, found[version], entry, initial)
            if loaded is None:
                continue
            if loaded.state == AVAILABLE:
                serving_newer = True
                _event(events, logging.INFO, f"loaded model {name!r} version {version}")
            else:
                _event(events, logging.WARNING, f"model {name!r} version {version} failed "
                       f"to load: {loaded.error_code}: {loaded.error_message}")
        with self._lock:
            if not self._status.get(name):
                self._status.pop(name, None)
        return events

    def _forget_removed(self, name: str, found: dict[int, Path], events: list[str]) -> None:
        """Unloads the versions of `name` whose directory is gone (with the lock held)."""
        table = self._status[name]
        for version in sorted(set(table) - set(found)):
            entry = table[version]
            if entry.state == AVAILABLE:
                self._unload(name, entry)
                _event(events, logging.INFO, f"unloaded model {name!r} version {version} "
                       "(its directory was removed)")
            elif entry.failed:
                del table[version]
        for key in [k for k in self._pending if k[0] == name and k[1] not in found]:
            del self._pending[key]

    def _load_when_stable(
        self, name: str, version: int, path: Path, entry: VersionStatus | None, initial: bool
    ) -> VersionStatus | None:
        """Loads a new or changed version once two polls saw the same content.

        Returns:
            The version's new status, or `None` when it was not loaded at this poll
            (it failed before and is unchanged, or its content is still changing).
        """
        fingerprint = directory_fingerprint(path)
        if entry is not None and entry.failed and entry.fingerprint == fingerprint:
            return None  # failed before, unchanged since
        key = (name, version)
        if not initial and self._pending.get(key) != fingerprint:
            self._pending[key] = fingerprint  # wait until a poll sees the same content
            return None
        self._pending.pop(key, None)
        with self._lock:
            self._status[name][version] = VersionStatus(
                version, LOADING, fingerprint=fingerprint
            )
        loaded = load_version(path, name, version, self.load_timeout, self._stop)
        with self._lock:
            self._status[name][version] = loaded
        return loaded

    def _unload(self, name: str, entry: VersionStatus) -> None:
        # Called with the lock held. In-flight requests keep their reference.
        entry.state, entry.servable = END, None
        entry.error_code, entry.error_message = "OK", ""
        for key in [k for k in self._batchers if k[:2] == (name, entry.version)]:
            self._batchers.pop(key).close()

    def start_polling(self, interval: float) -> None:
        """Calls `poll()` every `interval` seconds in a daemon thread until `close()`."""
        if interval <= 0:
            raise ValueError(f"`interval` must be positive. Received: {interval}")
        if self._poller is not None or self.base_dir is None:
            return

        def loop():
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except Exception:  # keep polling whatever one scan met
                    logger.exception("polling %s failed", self.base_dir)

        self._poller = threading.Thread(target=loop, daemon=True, name="version-poller")
        self._poller.start()

    # -- requests -----------------------------------------------------------------
    def get(self, name: str, version: int | None = None) -> Servable:
        """The `AVAILABLE` servable of `name` at `version` (the newest when `None`)."""
        with self._lock:
            table = self._status.get(name, {})
            available = [v for v, e in table.items() if e.state == AVAILABLE]
            if not available or (version is not None and version not in available):
                raise not_found(name, version)
            return table[max(available) if version is None else version].servable

    def status(self, name: str, version: int | None = None) -> dict:
        """TF Serving's status JSON (`GET /v1/models/NAME[/versions/N]`): every known
        version, newest first, with its state and load error."""
        with self._lock:
            table = self._status.get(name)
            if not table or (version is not None and version not in table):
                raise not_found(name, version)
            listed = [version] if version is not None else sorted(table, reverse=True)
            return {"model_version_status": [table[v].to_json() for v in listed]}

    def enable_batching(self, options) -> None:
        """Batches concurrent requests of batchable signatures (`BatchingOptions`)."""
        self.batching = options

    def predict(
        self,
        name: str,
        version: int | None,
        signature_name: str | None,
        inputs: Mapping[str, np.ndarray],
        strict_dtype: bool = False,
    ) -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """Runs a signature: `(servable, signature, outputs)`; errors are `ServingError`s.

        The request is checked against the signature and `limits` (rows, decoded
        pixels, finite values, answer size) before anything runs.
        """
        servable = self.get(name, version)
        signature = servable.signature(signature_name)
        checked = signature.check_inputs(inputs, strict_dtype=strict_dtype)
        rows = next((v.shape[0] for v in checked.values() if v.ndim), 0)
        self.limits.check_rows(rows)
        extents = []
        for key, info in signature.inputs.items():
            if info.is_string and "image" in key:
                extents.extend(limits_module.check_images(checked[key], self.limits, key))
        padded = limits_module.padded_extent(extents)
        expected_values = signature.output_values(rows, padded)
        limits_module.check_response_values(expected_values, self.limits)
        if self.batching is not None and signature.batchable and rows:
            extent = padded if signature.padded_by_image_sizes else None
            outputs = self._batcher(servable, signature).submit(checked, extent)
        else:
            outputs = signature(checked)
        # The real answer, whatever the estimate said (a decoder may produce more).
        limits_module.check_response_values(
            sum(int(np.size(v)) for v in outputs.values()), self.limits
        )
        return servable, signature, outputs

    def _batcher(self, servable: Servable, signature: Signature):
        from keras_deconvnet.serving.batching import Batcher

        key = (servable.name, servable.version, signature.name)
        with self._lock:
            if key not in self._batchers:
                self._batchers[key] = Batcher(
                    signature, self.batching, max_batch_pixels=self.limits.max_request_pixels
                )
            return self._batchers[key]

    def close(self) -> None:
        """Stops polling and the batching threads."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)  # a load in progress is abandoned at once
            self._poller = None
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
            self._batchers.clear()
