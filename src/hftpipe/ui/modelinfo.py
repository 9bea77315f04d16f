"""What the live page needs to know about the served model to score it: horizon (k events or h seconds),
alpha, label kind.

Sources, first that answers wins (the page says which one was used):

1. the model server's streaming answer, when it carries ``horizon`` / ``alpha`` (and ``label``,
   ``sampling``);
2. the registry: ``bundle.json`` of the served version (``models:/NAME/VERSION``);
3. the local feature set's ``features_meta.json`` (``features.output``) with ``train.horizon``: the
   data the local pipeline trains on, used only when the two above are silent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import ConfigError, HftpipeError
from hftpipe.horizons import horizon_key, parse_horizon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """Scoring parameters of the served model, and where they came from."""

    name: str | None = None
    version: str | None = None
    horizon: int | str | None = None  # 10 (events) or '1s' (clock time), as bundle.json writes it
    alpha: float | None = None
    label: str = "forward"
    sampling: str = "all"
    source: str = ""

    @property
    def scoreable(self) -> bool:
        return self.horizon is not None and self.alpha is not None

    def to_dict(self) -> dict[str, Any]:
        h = None if self.horizon is None else parse_horizon(self.horizon)
        return {"name": self.name, "version": self.version, "horizon": self.horizon, "alpha": self.alpha,
                "horizon_unit": None if h is None else h.unit, "horizon_text": None if h is None else h.describe(),
                "label": self.label, "sampling": self.sampling, "source": self.source}


def _pick(raw: dict[str, Any], *names: str) -> Any:
    for name in names:
        if raw.get(name) is not None:
            return raw[name]
    return None


def from_fields(raw: dict[str, Any], source: str, base: ModelInfo) -> ModelInfo:
    """Fill ``base`` from a mapping holding some of horizon / alpha / label / sampling."""
    meta = raw.get("feature_meta") if isinstance(raw.get("feature_meta"), dict) else {}
    horizon = _pick(raw, "horizon")
    alpha = _pick(raw, "alpha")
    label = _pick(raw, "label_kind", "label") or meta.get("label")
    sampling = _pick(raw, "sampling") or meta.get("sampling")
    if horizon is None or alpha is None:
        return base
    try:
        horizon = parse_horizon(horizon).value  # 10 stays 10 events, '1s' stays clock time
    except ConfigError as exc:
        log.warning("ignoring the horizon from %s: %s", source, exc)
        return base
    return replace(base, horizon=horizon, alpha=float(alpha),
                   label=str(label) if label in ("forward", "deeplob") else base.label,
                   sampling=str(sampling) if sampling in ("all", "top_of_book") else base.sampling,
                   source=source)


@lru_cache(maxsize=32)
def _registry_bundle(store: str, name: str, version: str) -> dict[str, Any]:
    # A version's bundle never changes, so one download per (store, name, version) is enough. Imported
    # here: the registry pulls in mlflow, which the login page and health probe never need.
    from hftpipe.models.bundle import read_bundle_json
    from hftpipe.registry import resolve_model

    path, _, _ = resolve_model(f"models:/{name}/{version}")
    return read_bundle_json(path)


def from_registry(base: ModelInfo) -> ModelInfo:
    """Read the served version's ``bundle.json`` from the registry (numeric versions only)."""
    if not base.name or not base.version or not str(base.version).isdigit():
        return base
    try:
        raw = _registry_bundle(paths.mlflow_tracking_uri(), base.name, str(base.version))
    except (HftpipeError, ImportError, OSError) as exc:
        log.warning("cannot read %s version %s from the registry: %s", base.name, base.version, exc)
        return base
    return from_fields(raw, f"registry ({base.name} v{base.version})", base)


def from_local_features(cfg: Config, base: ModelInfo) -> ModelInfo:
    """Alpha of ``train.horizon`` from the local ``features_meta.json``, if there is one."""
    path = Path(cfg.features.output) / "features_meta.json"
    if not path.is_file():
        return base
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return base
    alphas = meta.get("alpha") or {}
    alpha = alphas.get(horizon_key(cfg.train.horizon)) if isinstance(alphas, dict) else None
    raw = {"horizon": cfg.train.horizon, "alpha": alpha, "label": meta.get("label"),
           "sampling": meta.get("sampling")}
    log.info("scoring the served model with alpha %s at horizon %s from %s", alpha,
             parse_horizon(cfg.train.horizon).describe(), path)
    return from_fields(raw, "the local feature set (features.output)", base)


def resolve(cfg: Config, response_fields: dict[str, Any], name: str | None, version: str | None) -> ModelInfo:
    """Scoring parameters for the served model (see the module docstring for the order)."""
    info = ModelInfo(name=name, version=version)
    for step in (lambda b: from_fields(response_fields, "model server", b), from_registry,
                 lambda b: from_local_features(cfg, b)):
        info = step(info)
        if info.scoreable:
            break
    return info
