"""Where local state lives: everything under one folder, HFTPIPE_HOME (default ./.hftpipe)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Return the state folder, creating it; ``HFTPIPE_HOME`` overrides ``./.hftpipe``."""
    path = Path(os.environ.get("HFTPIPE_HOME", ".hftpipe")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def sub(name: str) -> Path:
    """Return (and create) a named sub-folder of the state folder."""
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir() -> Path:
    return sub("reports")


def mlflow_dir() -> Path:
    return sub("mlflow")


def mlflow_tracking_uri() -> str:
    """MLflow tracking/registry URI: ``MLFLOW_TRACKING_URI`` or a sqlite store under HFTPIPE_HOME."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{mlflow_dir() / 'mlflow.db'}"


def mlflow_artifact_root() -> str:
    """Artifact location for new experiments (never ./mlruns of the current directory)."""
    return (mlflow_dir() / "artifacts").as_uri()


def pipeline_root() -> Path:
    return sub("pipeline_root")


def dvc_remote_dir() -> Path:
    return sub("dvc-remote")


def checkpoints_dir() -> Path:
    return sub("checkpoints")


def logs_dir() -> Path:
    return sub("logs")


def repo_root() -> Path:
    """The source checkout (for the shipped data and params.yaml), found from this file."""
    return Path(__file__).resolve().parents[2]
