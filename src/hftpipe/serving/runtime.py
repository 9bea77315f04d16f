"""The served model and its hot reload: where it comes from, the atomic swap, the background watcher.

A :class:`ServedModel` is immutable; :class:`ModelHolder` swaps one reference, so a request that picked up
the old model finishes on it while the next request sees the new one. :class:`Reloader` polls the model
source (the registry alias, or a local bundle's weights hash), loads a new version in the background,
smoke-tests it on a real input and only then swaps; a version that fails is refused once, counted, and
the old one keeps serving.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hftpipe.errors import ModelError
from hftpipe.horizons import horizon_info, parse_horizon
from hftpipe.models.bundle import BUNDLE_FILE, ModelBundle, load_bundle, read_bundle_json

log = logging.getLogger(__name__)

REGISTRY_SCHEMES = ("models:/", "runs:/")


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version, as served: the bundle plus where it came from."""

    bundle: ModelBundle
    name: str  # registered model name (or the configured name for a local bundle)
    version: str  # registry version, or "local-<sha12>" for a bundle folder
    source: str  # the URI or path it was loaded from
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> str:
        b = self.bundle
        return (f"{self.name} version {self.version} ({b.model_name}, T={b.window}, L={b.levels}, "
                f"horizon {parse_horizon(b.horizon).describe()}) from {self.source}")

    @cached_property
    def label_info(self) -> dict[str, Any]:
        """What the model's classes mean, for clients that score it (the UI): horizon with its unit, alpha,
        label kind and event sampling, as bundle.json records them."""
        b = self.bundle
        meta = dict(getattr(b, "feature_meta", None) or {})
        features = (getattr(b, "config_dict", None) or {}).get("features") or {}
        info = {**horizon_info(b.horizon), "alpha": b.alpha,
                "label": meta.get("label") or features.get("label") or "forward",
                "sampling": meta.get("sampling") or features.get("sampling") or "all"}
        return {k: v for k, v in info.items() if v is not None}  # V2 parameters hold no null


class ModelSource(Protocol):
    """Where served models come from."""

    uri: str

    def current_version(self) -> str:
        """The version the source points at now (cheap: called every reload interval)."""
        ...

    def fetch(self) -> tuple[Path, str, str]:
        """(local bundle folder, model name, version) of the version the source points at now."""
        ...


class LocalSource:
    """A bundle folder (or a downloaded MLflow model holding one); its version is the weights' sha256,
    so retraining into the folder is a new version."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.uri = str(path)
        self.path = Path(path)
        self.name = name

    def bundle_dir(self) -> Path:
        if (self.path / BUNDLE_FILE).is_file():
            return self.path
        from hftpipe.registry import resolve_model  # finds the bundle inside an MLflow model folder

        return Path(resolve_model(self.path)[0])

    def current_version(self) -> str:
        sha = read_bundle_json(self.bundle_dir()).get("model_sha256") or "unknown"
        return f"local-{str(sha)[:12]}"

    def fetch(self) -> tuple[Path, str, str]:
        return self.bundle_dir(), self.name, self.current_version()


class RegistrySource:
    """An MLflow registry URI such as ``models:/hftpipe-lob@champion`` (resolved by hftpipe.registry)."""

    def __init__(self, uri: str, name: str) -> None:
        self.uri = uri
        self.name = name  # used when the URI names no registered model (runs:/...)

    def current_version(self) -> str:
        from hftpipe.registry import current_version

        return str(current_version(self.uri))

    def fetch(self) -> tuple[Path, str, str]:
        from hftpipe.registry import resolve_model

        path, name, version = resolve_model(self.uri)
        return Path(path), name or self.name, str(version if version is not None else self.current_version())


def model_source(uri: str, local_name: str) -> ModelSource:
    """The source for ``serve.model_uri``: a registry URI or a local bundle folder."""
    if uri.startswith(REGISTRY_SCHEMES):
        return RegistrySource(uri, local_name)
    path = Path(uri).expanduser()
    if not path.is_dir():
        raise ModelError(f"serve.model_uri {uri!r} is neither a registry URI (models:/NAME@champion) nor a "
                         "bundle folder (run `hftpipe train` or pass a folder with bundle.json)")
    return LocalSource(path, local_name)


_ALIAS_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^/]+)$")
FALLBACK_ALIAS = "previous"


def fallback_source(source: ModelSource) -> ModelSource | None:
    """The ``previous`` alias of the same registered model, for an alias URI other than ``previous``."""
    match = _ALIAS_URI.match(source.uri) if isinstance(source, RegistrySource) else None
    if match is None or match["alias"] == FALLBACK_ALIAS:
        return None
    return RegistrySource(f"models:/{match['name']}@{FALLBACK_ALIAS}", source.name)


def synthetic_window(window: int, levels: int) -> np.ndarray:
    """A valid raw window (1, T, 4L): a $100 ladder, one-cent ticks, 100 shares per level.

    Only the smoke test's last resort, when no real window has been served yet.
    """
    ticks = np.arange(1, levels + 1) * 0.01
    state = np.empty(4 * levels)
    state[0::4] = 100.0 + ticks - 0.005
    state[1::4] = 100.0
    state[2::4] = 100.0 - ticks + 0.005
    state[3::4] = 100.0
    return np.broadcast_to(state, (1, window, 4 * levels)).copy()


def smoke_input(bundle: ModelBundle, recent: np.ndarray | None) -> np.ndarray:
    """A real input for a new model: the most recently served window (cut to its T), else synthetic."""
    if recent is not None and recent.shape[-1] == 4 * bundle.levels and recent.shape[-2] >= bundle.window:
        return recent[..., -bundle.window:, :].reshape(1, bundle.window, 4 * bundle.levels)
    return synthetic_window(bundle.window, bundle.levels)


def smoke_test(bundle: ModelBundle, raw: np.ndarray) -> None:
    """Check that a model answers: (B, 3) finite probabilities summing to 1.

    Raises:
        ModelError: the model raised or answered something that is not a probability vector.
    """
    try:
        proba = bundle.predict_proba(raw)
    except Exception as exc:  # any failure of a candidate model means: refuse it
        raise ModelError(f"the model failed on a smoke input of shape {list(raw.shape)}: {exc}") from exc
    if proba.shape != (len(raw), len(bundle.class_names)):
        raise ModelError(f"the model answered shape {list(proba.shape)} for {len(raw)} window(s)")
    if not np.isfinite(proba).all() or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-4):
        raise ModelError("the model answered non-finite or unnormalised probabilities on a smoke input")


def load_served(source: ModelSource, recent: np.ndarray | None = None) -> ServedModel:
    """Fetch, load and smoke-test the version the source points at.

    Raises:
        ModelError / RegistryError: it cannot be fetched, loaded, or does not answer.
    """
    path, name, version = source.fetch()
    bundle = load_bundle(path)
    smoke_test(bundle, smoke_input(bundle, recent))
    return ServedModel(bundle=bundle, name=name, version=version, source=source.uri)


class ModelHolder:
    """The currently served model; readers take :attr:`current` once per request."""

    def __init__(self, served: ServedModel) -> None:
        self._current = served
        self._lock = threading.Lock()
        self.recent: np.ndarray | None = None  # last window answered: the next smoke input

    @property
    def current(self) -> ServedModel:
        return self._current

    def swap(self, served: ServedModel) -> ServedModel:
        """Serve ``served`` from the next request on; return the previous model."""
        with self._lock:
            old, self._current = self._current, served
        return old


class Reloader:
    """Background thread: poll the source, load + smoke-test a new version, swap, or refuse it."""

    def __init__(self, holder: ModelHolder, source: ModelSource, interval_s: float,
                 on_swap: Callable[[ServedModel, ServedModel], None] | None = None,
                 on_refuse: Callable[[str, str], None] | None = None, retry_refused_s: float = 60.0,
                 on_poll: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.holder = holder
        self.source = source
        self.interval_s = interval_s
        self.on_swap = on_swap
        self.on_refuse = on_refuse
        self.retry_refused_s = retry_refused_s
        self.on_poll = on_poll
        self.clock = clock
        self.refused: dict[str, str] = {}  # version -> reason; retried only after retry_refused_s
        self._refused_at: dict[str, float] = {}
        self.source_version: str | None = None  # what the source pointed at on the last successful poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hftpipe-model-reloader", daemon=True)

    def refuse(self, version: str, reason: str) -> None:
        """Remember that ``version`` failed (not tried again before retry_refused_s)."""
        self.refused[version] = reason
        self._refused_at[version] = self.clock()

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive registry hiccups; the old model keeps serving
                log.exception("model reload check failed")

    def check_once(self) -> str:
        """One poll: returns "unchanged", "swapped", "refused" or "unreachable"."""
        try:
            version = self.source.current_version()
        except Exception as exc:  # noqa: BLE001 - registry down or alias gone: keep serving, say so once per poll
            log.warning("cannot read the current version of %s (still serving %s): %s: %s", self.source.uri,
                        self.holder.current.version, type(exc).__name__, exc)
            return "unreachable"
        self.source_version = version
        if self.on_poll:
            self.on_poll(version)
        if version == self.holder.current.version:
            return "unchanged"
        if version in self.refused:
            # A refused version is tried again after a while: its artifact may have been restored.
            if self.clock() - self._refused_at.get(version, -float("inf")) < self.retry_refused_s:
                return "unchanged"
            log.warning("%s still points at refused version %s: trying it again", self.source.uri, version)
        log.info("%s now points at version %s (serving %s): loading it", self.source.uri, version,
                 self.holder.current.version)
        try:
            served = load_served(self.source, self.holder.recent)
        except Exception as exc:  # noqa: BLE001 - a broken candidate never reaches traffic, whatever it raised
            reason = f"{type(exc).__name__}: {exc}"
            self.refuse(version, reason)
            log.error("refused version %s of %s; still serving %s. %s", version, self.source.uri,
                      self.holder.current.version, reason)
            if self.on_refuse:
                self.on_refuse(version, reason)
            return "refused"
        if served.version in self.refused and served.version != version:
            # The alias moved again between the check and the fetch, onto a version refused before.
            return "unchanged"
        self.refused.pop(served.version, None)
        self._refused_at.pop(served.version, None)
        old = self.holder.swap(served)
        # WARNING: the CLI's default level; operators must see every change of the served model.
        log.warning("hot reload: now serving %s (was version %s)", served.describe(), old.version)
        if self.on_swap:
            self.on_swap(old, served)
        return "swapped"
