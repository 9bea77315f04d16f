"""The pipeline's steps as plain functions of paths and strings: what every KFP component calls.

Each KFP component body is one call into this module, so the same code runs under `kfp.local`, on a
Kubeflow cluster, from DVC (through the CLI) and in pytest. The resolved config travels as JSON
(``config_json``) so a scheduled run on a cluster needs no params.yaml on disk.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hftpipe.config import Config, config_from_dict, load_config
from hftpipe.pipeline.ledger import step

log = logging.getLogger(__name__)


def resolve_config(config_json: str = "") -> Config:
    """Config from a JSON string (as compiled into the pipeline), else params.yaml / defaults.

    On a cluster every step runs in its own pod: ``pipeline.tracking_uri`` points them all at one MLflow
    server (an explicit ``MLFLOW_TRACKING_URI`` in the pod's environment still wins).
    """
    cfg = config_from_dict(json.loads(config_json)) if config_json.strip() else load_config("params.yaml")
    if cfg.pipeline.tracking_uri:
        os.environ.setdefault("MLFLOW_TRACKING_URI", cfg.pipeline.tracking_uri)
    return cfg


def _annotate(artifact: Any, values: dict[str, Any]) -> None:
    """Copy scalar outputs into a KFP artifact's metadata (shown in the KFP UI); no-op without one."""
    if artifact is not None:
        artifact.metadata.update({k: v for k, v in values.items() if isinstance(v, (str, int, float, bool))})


def validate_step(source: str, config_json: str, report_path: str) -> dict[str, Any]:
    """Validate a raw LOBSTER file; write the Markdown report to ``report_path`` (JSON beside it).

    Raises:
        ValidationFailed: any expectation failed (the run must stop here).
    """
    from hftpipe.prepare import validate_path

    cfg = resolve_config(config_json)
    with step("validate") as out:
        result = validate_path(source, cfg.validate, data_cfg=cfg.data)
        report = Path(report_path)
        report_dir = report.parent / (report.name + "_files")
        report_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = result.write_reports(report_dir)
        shutil.copyfile(md_path, report)
        out.update(success=result.success, report=str(report), report_json=str(json_path),
                   failures=len(result.failures))
        result.raise_if_failed()
    return out


def ingest_step(source: str, config_json: str, events_path: str, artifact: Any = None) -> dict[str, Any]:
    """Load, validate and write the canonical event table (validation is skipped when ``validate`` passed it)."""
    from hftpipe.prepare import ingest

    cfg = resolve_config(config_json)
    with step("ingest") as out:
        table = ingest(cfg.data, source=source, output=events_path, validate_cfg=cfg.validate)
        out.update(events_path=str(events_path), symbol=table.meta.symbol, date=table.meta.date,
                   levels=table.meta.levels,
                   rows=table.meta.rows, source_sha256=table.meta.source_sha256)
        # L3 captures: what the book builder ignored and repaired (unknown deletes, outliers, repairs...)
        out.update({f"loader_{k}": v for k, v in table.meta.source_report.items()})
        _annotate(artifact, out)
    return out


def features_step(events_path: str, config_json: str, features_dir: str, artifact: Any = None) -> dict[str, Any]:
    """Features, labels and time splits from the canonical table."""
    from hftpipe.prepare import build_feature_set

    cfg = resolve_config(config_json)
    with step("features") as out:
        fs = build_feature_set(cfg.features, events_path, features_dir, cfg.validate)
        out.update(features_dir=str(features_dir), rows=len(fs.frame), summary=fs.summary())
        _annotate(artifact, out)
    return out


def train_step(features_dir: str, config_json: str, model_dir: str, nproc: int = 1,
               artifact: Any = None) -> dict[str, Any]:
    """Train a model (torchrun when nproc > 1) and write the model bundle, tracked in MLflow."""
    from hftpipe.pipeline.tracked import train_tracked

    cfg = resolve_config(config_json)
    with step("train") as out:
        out.update(train_tracked(cfg, features_dir, model_dir, nproc=nproc))
        _annotate(artifact, out)
    return out


def evaluate_step(model_dir: str, features_dir: str, config_json: str, report_dir: str,
                  metrics: Any = None, confusion: Any = None, markdown_path: str | None = None) -> dict[str, Any]:
    """Score the model and the naive baselines on the test split, with a cost-aware backtest.

    ``metrics`` / ``confusion`` are KFP Metrics / ClassificationMetrics artifacts when run as a component.
    """
    from hftpipe.evaluation.report import REPORT_MD, EvaluationReport
    from hftpipe.pipeline.tracked import evaluate_tracked

    cfg = resolve_config(config_json)
    with step("evaluate") as out:
        out.update(evaluate_tracked(cfg, model_dir, features_dir, report_dir))
        report = EvaluationReport.load(report_dir)
        if metrics is not None:
            for name, value in report.headline().items():
                metrics.log_metric(name, value)
        if confusion is not None:
            confusion.log_confusion_matrix(list(report.model["classes"]),
                                           [list(map(int, row)) for row in report.model["confusion"]])
        if markdown_path:
            shutil.copyfile(Path(report_dir) / REPORT_MD, markdown_path)
    return out


def register_step(model_dir: str, report_dir: str, features_dir: str, config_json: str,
                  registration_path: str | None = None, artifact: Any = None) -> dict[str, Any]:
    """Register the model version and apply the promotion gate (champion or challenger).

    The registration (model name, version, decision, reasons) is written as JSON to
    ``registration_path``: the deploy step reads the version from there.
    """
    from hftpipe.evaluation.report import REPORT_FILE
    from hftpipe.registry import register

    cfg = resolve_config(config_json)
    with step("register") as out:
        result = register(cfg, model_dir, str(Path(report_dir) / REPORT_FILE), features_dir=features_dir)
        out.update(result.to_dict())
        if registration_path:
            Path(registration_path).parent.mkdir(parents=True, exist_ok=True)
            Path(registration_path).write_text(json.dumps(out, indent=2, default=str))
        _annotate(artifact, {k: out[k] for k in ("model_name", "version", "decision")})
    return out


def deploy_step(registration_path: str, config_json: str) -> dict[str, Any]:
    """Put the promoted version live: locally, check it loads and answers; on a cluster, roll KServe."""
    from hftpipe.pipeline.deploy import deploy

    cfg = resolve_config(config_json)
    with step("deploy") as out:
        registration = json.loads(Path(registration_path).read_text())
        out.update(deploy(cfg, registration["model_name"], str(registration["version"])))
    return out
