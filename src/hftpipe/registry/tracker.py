"""MLflow implementation of :class:`hftpipe.tracking.Tracker` and the run context that creates it.

The store is a sqlite database under ``HFTPIPE_HOME`` unless ``MLFLOW_TRACKING_URI`` says otherwise
(:func:`hftpipe.paths.mlflow_tracking_uri`). Experiments created here put their artifacts under
:func:`hftpipe.paths.mlflow_artifact_root` so nothing lands in ``./mlruns`` of whatever directory the
command ran from. Every run carries the resolved config (flattened params plus ``config.json``) and
lineage tags: the git commit of the checkout and the input data's sha256 / DVC hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.config import Config

log = logging.getLogger(__name__)

# MLflow caps one log_batch call at 1000 metrics / 100 params / 100 tags; stay under the smallest.
_BATCH = 100
_PARAM_MAX_CHARS = 6000
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
PIPELINE_RUN_ENV = "HFTPIPE_PIPELINE_RUN"  # set by the local pipeline runner: every step's run is tagged with it
PIPELINE_RUN_TAG = "pipeline.run"


class MlflowTracker:
    """A :class:`~hftpipe.tracking.Tracker` writing to one MLflow run through an explicit client.

    It never touches MLflow's global "active run", so training code, the registry and tests can each
    hold their own run without stepping on one another.
    """

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id

    @property
    def tracking_uri(self) -> str:
        return self.client.tracking_uri

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (values are stringified; MLflow params are write-once per run)."""
        items = [Param(str(k), _param_value(v)) for k, v in params.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step``; non-finite values are kept (MLflow stores NaN)."""
        timestamp = _now_ms()
        items = [Metric(str(k), float(v), timestamp, int(step or 0)) for k, v in metrics.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, metrics=items[start:start + _BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for start in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, tags=items[start:start + _BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or a whole folder as run artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, data, artifact_file)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return text[:_PARAM_MAX_CHARS]


def flatten_config(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested sections to ``section.key`` params (lists stay whole, as JSON)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten_config(value, name))
        else:
            flat[name] = value
    return flat


def is_local_store(uri: str) -> bool:
    """True for stores whose artifacts we place ourselves (sqlite / file); a server picks its own."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def client() -> MlflowClient:
    """A client on the configured tracking and registry store."""
    uri = paths.mlflow_tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(mlflow_client: MlflowClient, name: str) -> str:
    """Return the id of experiment ``name``, creating it with artifacts under HFTPIPE_HOME."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if is_local_store(mlflow_client.tracking_uri):
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"
        location = f"{paths.mlflow_artifact_root()}/{slug}"
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another process (a second DDP launcher, a parallel DVC stage) created it first.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit(repo: Path | None = None) -> tuple[str, bool] | None:
    """(commit sha, dirty) of the checkout holding the code, or None outside a git checkout."""
    repo = repo or paths.repo_root()
    if not (repo / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        log.debug("git is not usable in %s; no commit tag", repo)
        return None
    return sha, bool(status.strip())


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dvc_hash(path: str | Path, repo: Path | None = None) -> str | None:
    """The md5 DVC recorded for ``path`` (from ``dvc.lock`` outs or a ``<path>.dvc`` file), if any."""
    repo = (repo or paths.repo_root()).resolve()
    target = Path(path).resolve()
    try:
        rel = target.relative_to(repo).as_posix()
    except ValueError:
        return None
    pointer = target.with_name(target.name + ".dvc")
    candidates: list[tuple[Path, str]] = [(repo / "dvc.lock", rel)]
    if pointer.exists():
        candidates.append((pointer, target.name))
    for source, wanted in candidates:
        if not source.exists():
            continue
        try:
            doc = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError:
            log.warning("cannot parse %s; no DVC hash for %s", source, rel)
            continue
        outs = [out for stage in (doc.get("stages") or {}).values() for out in stage.get("outs", [])]
        outs += doc.get("outs", [])
        for out in outs:
            if str(out.get("path", "")).rstrip("/") == wanted and out.get("md5"):
                return str(out["md5"])
    return None


def lineage_tags(features_dir: str | Path | None = None, data_path: str | Path | None = None,
                 repo: Path | None = None) -> dict[str, str]:
    """Tags that say which code and which data produced a run.

    Args:
        features_dir: a feature-set folder; its ``features_meta.json`` names the raw file's sha256.
        data_path: any input file (raw zip, event table) to hash directly.
        repo: the checkout to read the git commit from (default: this source tree).
    """
    tags: dict[str, str] = {}
    commit = git_commit(repo)
    if commit is not None:
        tags["mlflow.source.git.commit"] = commit[0]
        tags["git.commit"] = commit[0]
        tags["git.dirty"] = str(commit[1]).lower()
    if features_dir is not None:
        meta_path = Path(features_dir) / "features_meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            for key in ("source_sha256", "symbol", "date", "levels"):
                if meta.get(key) is not None:
                    tags[f"data.{key}"] = str(meta[key])
        parquet = Path(features_dir) / "features.parquet"
        if parquet.exists():
            tags["data.features_sha256"] = file_sha256(parquet)
        md5 = dvc_hash(features_dir, repo)
        if md5:
            tags["data.features_dvc_md5"] = md5
    if data_path is not None and Path(data_path).is_file():
        tags["data.input_sha256"] = file_sha256(data_path)
        md5 = dvc_hash(data_path, repo)
        if md5:
            tags["data.input_dvc_md5"] = md5
    return tags


def log_config(tracker: MlflowTracker, cfg: Config) -> None:
    """Log the resolved config: flattened params and the whole thing as ``config.json``."""
    resolved = cfg.to_dict()
    tracker.log_params(flatten_config(resolved))
    tracker.log_dict(resolved, "config.json")


@contextmanager
def mlflow_run(cfg: Config, run_name: str, tags: dict[str, str] | None = None, *,
               features_dir: str | Path | None = None, data_path: str | Path | None = None,
               run_id: str | None = None) -> Iterator[MlflowTracker]:
    """Open an MLflow run in experiment ``cfg.register.experiment`` and yield its tracker.

    The run gets the resolved config and lineage tags; it ends FINISHED, or FAILED / KILLED when the
    body raises (the exception propagates).

    Args:
        cfg: the resolved config (logged as params and ``config.json``).
        run_name: the run's display name.
        tags: extra tags (e.g. ``{"step": "train"}``).
        features_dir / data_path: inputs whose sha256 / DVC hash become lineage tags.
        run_id: continue an existing run (e.g. ``train --resume``) instead of creating one; its params
            are not logged again (MLflow params are write-once).
    """
    mlflow_client = client()
    experiment_id = ensure_experiment(mlflow_client, cfg.register.experiment)
    all_tags = {**lineage_tags(features_dir, data_path), **(tags or {})}
    if os.environ.get(PIPELINE_RUN_ENV):
        all_tags[PIPELINE_RUN_TAG] = os.environ[PIPELINE_RUN_ENV]  # how an interrupted run's runs are found
    if run_id is None:
        run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        tracker = MlflowTracker(mlflow_client, run.info.run_id, experiment_id)
        log_config(tracker, cfg)
    else:
        run = mlflow_client.get_run(run_id)
        mlflow_client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        tracker = MlflowTracker(mlflow_client, run_id, run.info.experiment_id)
        tracker.set_tags(_continued_tags(run.data.tags, all_tags))
    log.info("MLflow run %s (%s) in experiment %s at %s", tracker.run_id, run_name,
             cfg.register.experiment, mlflow_client.tracking_uri)
    try:
        yield tracker
    except KeyboardInterrupt:
        mlflow_client.set_terminated(tracker.run_id, RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow_client.set_terminated(tracker.run_id, RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow_client.set_terminated(tracker.run_id, RunStatus.to_string(RunStatus.FINISHED))


def _continued_tags(existing: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Tags for a continued run: its ``step`` stays what created it (a training run evaluated in the
    pipeline is still a training run); the steps that touched it accumulate in ``steps``."""
    out = dict(new)
    first = existing.get("step")
    if first and "step" in out:
        done = (existing.get("steps") or first).split(",")
        if out["step"] not in done:
            done.append(out["step"])
        out["steps"] = ",".join(done)
        out["step"] = first
    return out


def kill_pipeline_runs(pipeline_run: str, experiment: str) -> list[str]:
    """Mark every still-RUNNING MLflow run of one interrupted pipeline run as KILLED; return their ids."""
    mlflow_client = client()
    found = mlflow_client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = mlflow_client.search_runs(
        [found.experiment_id],
        filter_string=f"tags.`{PIPELINE_RUN_TAG}` = '{pipeline_run}' and attributes.status = 'RUNNING'")
    for run in runs:
        mlflow_client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    return [run.info.run_id for run in runs]


@contextmanager
def fluent_store() -> Iterator[str]:
    """Point MLflow's global (fluent) API at our store for the duration, then restore it.

    ``mlflow.pyfunc.log_model`` and friends only read the global tracking URI, and setting it also
    sets the ``MLFLOW_TRACKING_URI`` environment variable; restoring keeps the process clean.
    """
    uri = paths.mlflow_tracking_uri()
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    previous_bar = os.environ.get(_PROGRESS_BAR)
    if previous_bar is None and not sys.stderr.isatty():
        os.environ[_PROGRESS_BAR] = "false"  # download bars only clutter logs when nobody watches
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous_env)  # type: ignore[arg-type]  # None unsets the variable
        if previous_bar is None:
            os.environ.pop(_PROGRESS_BAR, None)


def train_subject(cfg: Config) -> str:
    """What a training run is named after: the model and its horizon (``lstm-k10``)."""
    return f"{cfg.train.model}-k{cfg.train.horizon}"


@contextmanager
def step_run(cfg: Config, step: str, subject: str, tags: dict[str, str] | None = None, *,
             features_dir: str | Path | None = None, data_path: str | Path | None = None,
             run_id: str | None = None) -> Iterator[MlflowTracker]:
    """The MLflow run of one step (train, evaluate, register), wherever it is started (CLI or pipeline).

    Named ``{step}-{subject}`` and tagged ``step`` (what the UI's Runs page filters on); everything else
    as :func:`mlflow_run`.
    """
    with mlflow_run(cfg, f"{step}-{subject}", {**(tags or {}), "step": step}, features_dir=features_dir,
                    data_path=data_path, run_id=run_id) as tracker:
        yield tracker
