"""Resolve ``models:/`` / ``runs:/`` URIs and bundle folders to a local bundle (downloads cached and verified)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import mlflow
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.errors import DataFormatError, ModelError, RegistryError
from hftpipe.registry.common import (
    _alias_version,
    _require_model,
)
from hftpipe.registry.pyfunc import BUNDLE_ARTIFACT
from hftpipe.registry.tracker import client, file_sha256, fluent_store

log = logging.getLogger(__name__)

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


def _parse_models_uri(mc: MlflowClient, uri: str) -> ModelVersion:
    match = _URI.match(uri)
    if not match:
        raise RegistryError(f"{uri!r} is not a registry URI; use models:/NAME@ALIAS or models:/NAME/VERSION")
    name = match["name"]
    _require_model(mc, name)
    if match["alias"]:
        mv = _alias_version(mc, name, match["alias"])
        if mv is None:
            raise RegistryError(f"{name} has no alias {match['alias']!r}; see `hftpipe registry list`")
        return mv
    version = match["version"]
    if version == "latest":
        versions = mc.search_model_versions(f"name = '{name}'")
        return max(versions, key=lambda v: int(v.version))
    try:
        return mc.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version!r}; see `hftpipe registry list`") from exc


def current_version(uri: str) -> str:
    """The version a registry URI points at now (cheap: no download), e.g. for alias polling."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0]
    return str(_parse_models_uri(client(), uri).version)


def _bundle_in(model_root: Path) -> Path:
    """The bundle folder inside a downloaded pyfunc model (from its MLmodel file)."""
    mlmodel = model_root / "MLmodel"
    if mlmodel.is_file():
        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifact = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts", {}).get(BUNDLE_ARTIFACT)
        if artifact and (model_root / artifact["path"] / "bundle.json").is_file():
            return model_root / artifact["path"]
    if (model_root / "bundle.json").is_file():
        return model_root
    found = sorted(model_root.rglob("bundle.json"))
    if not found:
        raise ModelError(f"{model_root} holds no hftpipe model bundle (bundle.json); it was not registered by "
                         "`hftpipe register`")
    return found[0].parent


def _cache_problem(model_root: Path) -> str | None:
    """Why a downloaded model cannot be used (bundle weights fail their sha256), or None if it is intact."""
    from hftpipe.models.bundle import BUNDLE_FILE, MODEL_FILE, read_bundle_json

    try:
        bundle = _bundle_in(model_root)
    except ModelError:
        return None  # not a bundle at all: resolve_model's caller reports that, not a hash problem
    try:
        expected = read_bundle_json(bundle).get("model_sha256")
        weights = bundle / MODEL_FILE
        if not weights.is_file():
            return f"{MODEL_FILE} is missing"
        if file_sha256(weights) != expected:
            return f"{MODEL_FILE} does not match the sha256 in {BUNDLE_FILE}"
    except (ModelError, DataFormatError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _download(artifact_uri: str, destination: Path) -> Path:
    """Download once into ``destination`` (atomic: a half-finished download is never seen).

    A cached copy is checked on every use: one that fails its hash (a download of an artifact corrupted
    at the time, a disk error) is discarded and downloaded again, so restoring the artifact is enough.

    Raises:
        ModelError: the freshly downloaded artifact fails its hash too (the registry's copy is corrupt).
    """
    if destination.is_dir():
        problem = _cache_problem(destination)
        if problem is None:
            return destination
        log.warning("cached copy of %s is corrupt (%s): discarding it and downloading again", artifact_uri, problem)
        trash = destination.with_name(f".discard-{destination.name}-{os.getpid()}")
        try:
            os.replace(destination, trash)
        except OSError:
            pass  # another process discarded it first
        shutil.rmtree(trash, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=destination.parent))
    try:
        with fluent_store():
            mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging))
        problem = _cache_problem(staging)
        if problem is not None:
            raise ModelError(f"{artifact_uri}: the artifact in the registry is corrupt ({problem}); restore it in "
                             "the MLflow artifact store, or move the alias to a good version (`hftpipe registry "
                             "rollback`); nothing was cached, so the next try downloads it again")
        try:
            os.replace(staging, destination)
        except OSError:
            if not destination.is_dir():  # another process finished the same download first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def resolve_model(uri: str | Path) -> tuple[Path, str | None, str | None]:
    """Resolve a model reference to a local bundle folder.

    Args:
        uri: a bundle folder, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (or ``/latest``), or
            ``runs:/RUN_ID/model``. Registry versions are downloaded once into a cache under HFTPIPE_HOME.
    Returns:
        (bundle folder, registered name or None, version or None).
    Raises:
        RegistryError: unknown model, alias or version. ModelError: the download holds no bundle.
    """
    text = str(uri)
    if not text.startswith(("models:/", "runs:/")):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise RegistryError(f"{text!r} is neither a bundle folder nor a registry URI "
                                "(models:/NAME@champion, models:/NAME/3)")
        return _bundle_in(path), None, None
    cache = paths.sub("model_cache")
    if text.startswith("runs:/"):
        key = re.sub(r"[^A-Za-z0-9._-]+", "_", text.removeprefix("runs:/"))
        return _bundle_in(_download(text, cache / "runs" / key)), None, None
    mc = client()
    mv = _parse_models_uri(mc, text)
    name, version = mv.name, str(mv.version)
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    # A version's content never changes, so the cache is keyed by version (an alias resolves to its version
    # first) plus the store and the version's source, so another store or a re-created model never hits it.
    origin = hashlib.sha256(f"{mc.tracking_uri}|{mv.source}".encode()).hexdigest()[:12]
    local = _download(f"models:/{name}/{version}", cache / safe_name / f"{version}-{origin}")
    return _bundle_in(local), name, version
