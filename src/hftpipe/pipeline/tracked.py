"""Training and evaluation wired to MLflow: the composition root used by pipeline steps.

Domain code (hftpipe.training, hftpipe.evaluation) takes a Tracker; this module supplies the MLflow one
so that training, its evaluation and the registered version share one MLflow run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml

from hftpipe.config import Config
from hftpipe.errors import PipelineError

log = logging.getLogger(__name__)


def train_tracked(cfg: Config, features_dir: str | Path, model_dir: str | Path, nproc: int = 1) -> dict[str, Any]:
    """Train (in-process, or under torchrun when ``nproc > 1``) inside an MLflow run."""
    if nproc > 1:
        from hftpipe.training.distributed import launch_torchrun

        # torchrun needs a fresh process group per rank: its ranks run `hftpipe train` on this config.
        with tempfile.TemporaryDirectory() as tmp:
            params = Path(tmp) / "params.yaml"
            params.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            code = launch_torchrun(nproc, str(params), [str(features_dir), "-o", str(model_dir)], stop_tree=False)
            if code != 0:
                raise PipelineError(f"distributed training with {nproc} processes exited {code}")
        bundle = json.loads((Path(model_dir) / "bundle.json").read_text())
        return {"model_dir": str(model_dir), "model": bundle.get("model_name"),
                "mlflow_run_id": bundle.get("mlflow_run_id"), **_scalars(bundle.get("metrics", {}))}

    from hftpipe.registry.tracker import step_run, train_subject
    from hftpipe.training import train

    with step_run(cfg, "train", train_subject(cfg), features_dir=features_dir) as tracker:
        result = train(cfg, features_dir, model_dir, tracker=tracker)
        run_id = tracker.run_id
    return {"model_dir": str(model_dir), "model": result.model, "mlflow_run_id": run_id,
            **_scalars(result.metrics)}


def evaluate_tracked(cfg: Config, model_dir: str | Path, features_dir: str | Path,
                     report_dir: str | Path) -> dict[str, Any]:
    """Evaluate the model against the baselines and log the report into the model's MLflow run."""
    from hftpipe.evaluation import EvaluationReport, evaluate
    from hftpipe.registry.tracker import step_run

    bundle = json.loads((Path(model_dir) / "bundle.json").read_text())
    run_id = bundle.get("mlflow_run_id")
    with step_run(cfg, "evaluate", str(bundle.get("model_name")), features_dir=features_dir,
                  run_id=run_id) as tracker:
        evaluate(cfg, model_dir, features_dir, report_dir, tracker=tracker)
    report = EvaluationReport.load(report_dir)
    out: dict[str, Any] = {"report_dir": str(report_dir), "mlflow_run_id": run_id,
                           "macro_f1": report.model_macro_f1,
                           "best_baseline": report.best_baseline,
                           "margin": report.raw.get("margin")}
    return out


def evaluate_many_tracked(cfg: Config, model_dir: str | Path, features_dirs: list[str],
                          report_dir: str | Path) -> dict[str, Any]:
    """Evaluate on several feature sets (a report per instrument and the pooled summary) in the model's run."""
    from hftpipe.evaluation.pooled import evaluate_many, instrument_mean
    from hftpipe.registry.tracker import step_run

    bundle = json.loads((Path(model_dir) / "bundle.json").read_text())
    run_id = bundle.get("mlflow_run_id")
    with step_run(cfg, "evaluate", str(bundle.get("model_name")), features_dir=features_dirs[0],
                  run_id=run_id) as tracker:
        result = evaluate_many(cfg, model_dir, features_dirs, report_dir, tracker=tracker)
    mean = instrument_mean(result.summary["instruments"])
    pooled = result.summary["pooled"]
    # The headline is the mean over instruments: the union's macro-F1 is no average when class mixes differ.
    return {"report_dir": str(report_dir), "mlflow_run_id": run_id, "instruments": len(features_dirs),
            "macro_f1": mean["model_macro_f1"], "mean_margin": mean["margin"],
            "pooled_macro_f1": pooled["model"]["macro_f1"], "pooled_margin": pooled["margin"]}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
