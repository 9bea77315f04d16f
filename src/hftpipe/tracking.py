"""Experiment-tracking interface used by domain code; the MLflow implementation lives at the edge.

Domain code (training, evaluation) takes a :class:`Tracker` and never imports mlflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What training and evaluation report to; only rank 0 holds a real one."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None: ...


class NullTracker:
    """A tracker that records into memory (for pure tests and non-zero ranks)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.tags: dict[str, str] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.dicts: dict[str, dict[str, Any]] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        self.dicts[artifact_file] = data
