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


def pool_features_step(features_dirs: list[str], config_json: str, collection_dir: str,
                       artifact: Any = None) -> dict[str, Any]:
    """Copy several sources' feature sets into one collection folder (one sub-folder per SYMBOL_DATE_Llevels).

    The pooled steps (train, evaluate, register) take the collection like one feature set. Copies, not links:
    on a cluster each step's artifact lives in its own storage.
    """
    from hftpipe.evaluation.pooled import slug, unique_folders
    from hftpipe.training.pooled import PooledSet, write_collection

    resolve_config(config_json)  # the same config checks as every step
    with step("pool") as out:
        metas = [json.loads((Path(d) / "features_meta.json").read_text()) for d in features_dirs]
        names = unique_folders([slug(m.get("symbol"), m.get("date"), f"L{m.get('levels')}") for m in metas])
        target = Path(collection_dir)
        target.mkdir(parents=True, exist_ok=True)
        for source, name in zip(features_dirs, names):
            shutil.copytree(source, target / name, dirs_exist_ok=True)
        write_collection(target, [PooledSet(str(target / name)) for name in names])
        out.update(features_dir=str(target), sets=len(names), names=",".join(names))
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
    A collection (``pool_features_step``, the monitor's retrain) is scored on its sets with role ``split``:
    one such set gives the usual report, several a report per instrument plus ``pooled.json`` / ``pooled.md``.
    """
    from hftpipe.evaluation.report import REPORT_MD, EvaluationReport
    from hftpipe.pipeline.tracked import evaluate_tracked

    cfg = resolve_config(config_json)
    with step("evaluate") as out:
        scored = _scored_sets(features_dir, model_dir)
        if len(scored) > 1:  # several instruments: a report per instrument and the pooled summary
            out.update(_evaluate_pooled(cfg, model_dir, scored, report_dir, metrics, markdown_path))
            return out
        out.update(evaluate_tracked(cfg, model_dir, scored[0], report_dir))
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


def _scored_sets(features_dir: str, model_dir: str) -> list[str]:
    """The feature sets evaluation scores: the folder itself, or a collection's sets with role ``split``.

    Raises:
        ConfigError: a scored set relabelled with an alpha override the model does not use (its report
            would label the rows with the set's own band).
    """
    from hftpipe.errors import ConfigError
    from hftpipe.models.bundle import read_bundle_json
    from hftpipe.training.pooled import expand_sets, is_collection

    if not is_collection(features_dir):
        return [features_dir]
    info = read_bundle_json(model_dir)
    scored = []
    for s in expand_sets(features_dir):
        if s.role != "split":
            continue
        if s.alpha is not None:
            band = s.alpha.get(str(info["horizon"]))
            if info.get("alpha") is None or band is None or abs(float(info["alpha"]) - band) > 1e-12 * max(1.0, band):
                raise ConfigError(f"{s.path} is labelled with an alpha override the model does not carry "
                                  f"(model alpha {info.get('alpha')}); give every set the same band")
        scored.append(s.path)
    return scored


def _evaluate_pooled(cfg: Config, model_dir: str, scored: list[str], report_dir: str, metrics: Any,
                     markdown_path: str | None) -> dict[str, Any]:
    from hftpipe.evaluation.pooled import POOLED_JSON, POOLED_MD
    from hftpipe.pipeline.tracked import evaluate_many_tracked

    out = evaluate_many_tracked(cfg, model_dir, scored, report_dir)
    if metrics is not None:
        summary = json.loads((Path(report_dir) / POOLED_JSON).read_text())
        metrics.log_metric("mean_macro_f1", summary["instrument_mean"]["model_macro_f1"])
        metrics.log_metric("mean_margin", summary["instrument_mean"]["margin"])
        for row in summary["instruments"]:
            metrics.log_metric(f"{row['symbol']}_{row['date']}_macro_f1", row["model_macro_f1"])
            metrics.log_metric(f"{row['symbol']}_{row['date']}_margin", row["margin"]["point"])
    if markdown_path:
        shutil.copyfile(Path(report_dir) / POOLED_MD, markdown_path)
    return out


def register_step(model_dir: str, report_dir: str, features_dir: str, config_json: str,
                  registration_path: str | None = None, artifact: Any = None) -> dict[str, Any]:
    """Register the model version and apply the promotion gate (champion or challenger).

    The registration (model name, version, decision, reasons) is written as JSON to
    ``registration_path``: the deploy step reads the version from there. A collection whose evaluation scored
    several instruments goes through the several-instrument gate (:func:`hftpipe.registry.register_pooled`).
    """
    from hftpipe.evaluation.report import REPORT_FILE
    from hftpipe.registry import register

    cfg = resolve_config(config_json)
    with step("register") as out:
        scored = _scored_sets(features_dir, model_dir)
        if len(scored) > 1:  # several instruments: the pooled gate (hftpipe.registry.gate.decide_pooled)
            from hftpipe.registry import register_pooled

            result = register_pooled(cfg, model_dir, report_dir, scored)
        else:
            result = register(cfg, model_dir, str(Path(report_dir) / REPORT_FILE), features_dir=scored[0])
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
