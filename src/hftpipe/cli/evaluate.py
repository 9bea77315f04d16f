"""``hftpipe evaluate``: score a model beside the naive baselines on any feature set or LOBSTER file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(evaluate)


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(str(p) for p in parts if p is not None)).strip("_")


def evaluated_config(cfg: Any, info: dict[str, Any]) -> Any:
    """The config an evaluation run records: the evaluated model's own ``train`` / ``features`` sections.

    Before, the run logged this invocation's config, so a run scoring a deeplob bundle showed the
    params.yaml model (e.g. lstm). Settings of the evaluation itself (evaluate, register, data) stay ours.
    """
    import dataclasses
    import logging

    from hftpipe.config import config_from_dict
    from hftpipe.errors import ConfigError

    if isinstance(info.get("config"), dict):
        try:
            trained = config_from_dict(info["config"])
            return cfg.replace(train=trained.train, features=trained.features)
        except ConfigError as exc:  # a bundle from another hftpipe version: keep what bundle.json says for sure
            logging.getLogger(__name__).info("bundle config not readable (%s); logging its model fields only", exc)
    known = {key: info[key] for key in ("horizon", "window", "hidden", "dropout") if info.get(key) is not None}
    return cfg.replace(train=dataclasses.replace(cfg.train, model=info.get("model", cfg.train.model), **known))


@click.command()
@click.option("--model", "model_ref", metavar="DIR_OR_URI",
              help="Model bundle folder, or a registry URI models:/NAME@champion, models:/NAME/3 "
                   "(default: train.output).")
@click.option("--data", metavar="PATH", multiple=True,
              help="Features folder, or a raw LOBSTER zip / message CSV / canonical Parquet of any ticker and day; "
                   "raw data is validated and featurised with the model's settings (default: features.output). "
                   "Repeat it to score several instruments/days: a report per file plus a pooled summary.")
@click.option("--leave-one-out", "leave_one_out", is_flag=True,
              help="For each --data file, train train.model (current config) on the other files and score it on "
                   "that one; prints the table and writes leave_one_out.json/.md (no --model).")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Report folder (default: evaluate.output for the pipeline's own model and data, otherwise "
                   "HFTPIPE_HOME/reports/evaluate/<model>_<data>).")
@click.option("--scope", type=click.Choice(["auto", "test", "all"]), default="auto", show_default=True,
              help="Rows scored: the test split, the whole file, or auto (test split of the model's own "
                   "training file, whole file otherwise).")
@click.option("--metrics", "metrics_path", type=click.Path(dir_okay=False),
              help="Also write the headline numbers as a flat JSON file (default: metrics.json beside "
                   "evaluate.output when the report goes there, the DVC stage's metrics file).")
@click.option("--track/--no-track", default=True, show_default=True,
              help="Log the report to a new MLflow run (linked to the model's training run).")
@click.pass_obj
def evaluate(obj: Any, model_ref: str | None, data: tuple[str, ...], leave_one_out: bool, output: str | None,
             scope: str, metrics_path: str | None, track: bool) -> None:
    """Score a model and the naive baselines (same rows), with bootstrap intervals and a cost-aware backtest."""
    from hftpipe import paths
    from hftpipe.evaluation import evaluate_source
    from hftpipe.models.bundle import read_bundle_json

    cfg = obj.config
    if leave_one_out or len(data) > 1:
        _evaluate_several(obj, model_ref, list(data), leave_one_out, output, scope, metrics_path, track)
        return
    data = data[0] if data else None  # type: ignore[assignment]
    ref = model_ref or cfg.train.output
    name = version = None
    if ref.startswith(("models:/", "runs:/")):
        from hftpipe.registry import resolve_model  # MLflow only when a registry URI is asked for

        bundle_dir, name, version = resolve_model(ref)
    else:
        bundle_dir = Path(ref)
        if not bundle_dir.is_dir():
            from hftpipe.errors import ModelError

            raise ModelError(f"{ref} is not a model bundle folder; run `hftpipe train` or pass "
                             "--model models:/NAME@champion")
    data_path = data or cfg.features.output
    info = read_bundle_json(bundle_dir)
    if output is None:
        if model_ref is None and data is None:
            output = cfg.evaluate.output
        else:
            model_part = _slug(name, version) if name else _slug(info.get("model"), Path(bundle_dir).name)
            output = str(paths.reports_dir() / "evaluate" / _slug(model_part, Path(data_path).stem))

    def run(tracker: Any = None) -> Any:
        return evaluate_source(cfg, bundle_dir, data_path, output, tracker, scope=scope,  # type: ignore[arg-type]
                               model_ref=ref if name else str(bundle_dir))

    if track:
        from hftpipe.registry.tracker import step_run

        tags = {"evaluated_model": ref, "model.name": str(info.get("model"))}
        if info.get("mlflow_run_id"):
            tags["model_run_id"] = str(info["mlflow_run_id"])
        if name:
            tags.update({"model_name": name, "model_version": str(version)})
        source = Path(data_path)
        lineage = {"features_dir": source} if (source / "features_meta.json").is_file() else {"data_path": source}
        with step_run(evaluated_config(cfg, info), "evaluate", f"{info.get('model')}-{source.stem}", tags,
                      **lineage) as tracker:
            result = run(tracker)
    else:
        result = run()
    if metrics_path is None and Path(output).resolve() == Path(cfg.evaluate.output).resolve():
        metrics_path = str(Path(cfg.evaluate.output).parent / "metrics.json")  # dvc.yaml: data/metrics.json
    headline = result.headline()
    (result.output_dir / "metrics.json").write_text(json.dumps(headline, indent=2) + "\n")
    if metrics_path:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_path).write_text(json.dumps(headline, indent=2) + "\n")
    for line in result.summary_lines():
        click.echo(line)


def _evaluate_several(obj: Any, model_ref: str | None, data: list[str], leave_one_out: bool, output: str | None,
                      scope: str, metrics_path: str | None, track: bool) -> None:
    """Several --data files: one model scored per instrument plus pooled, or the leave-one-out table."""
    import contextlib

    from hftpipe import paths
    from hftpipe.errors import ConfigError

    cfg = obj.config
    if leave_one_out and model_ref is not None:
        raise ConfigError("--leave-one-out trains its own models; drop --model")
    if leave_one_out and scope != "auto":
        raise ConfigError("--leave-one-out scores each held-out file whole; drop --scope")
    names = "+".join(Path(d).stem if not Path(d).is_dir() else Path(d).name for d in data)
    if leave_one_out:
        output = output or str(paths.reports_dir() / "evaluate" / _slug("leave_one_out", cfg.train.model, names))
    else:
        ref = model_ref or cfg.train.output
        output = output or str(paths.reports_dir() / "evaluate" / _slug(Path(ref).name, names))
    tracked: Any = contextlib.nullcontext(None)
    if track:
        from hftpipe.registry.tracker import step_run

        tags = {"evaluation.files": ";".join(data), "evaluation.kind": "leave_one_out" if leave_one_out
                else "several"}
        tracked = step_run(cfg, "evaluate", _slug("loo" if leave_one_out else "pooled", cfg.train.model), tags)
    with tracked as tracker:
        if leave_one_out:
            from hftpipe.training.leave_one_out import leave_one_out as run_loo

            result: Any = run_loo(cfg, data, output, tracker)
        else:
            from hftpipe.evaluation.pooled import evaluate_many

            bundle_dir, ref_name = _bundle_dir(model_ref or cfg.train.output)
            result = evaluate_many(cfg, bundle_dir, data, output, tracker, scope=scope,
                                   model_ref=ref_name)
    headline = result.headline()
    (Path(output) / "metrics.json").write_text(json.dumps(headline, indent=2) + "\n")
    if metrics_path:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(metrics_path).write_text(json.dumps(headline, indent=2) + "\n")
    for line in result.summary_lines():
        click.echo(line)


def _bundle_dir(ref: str) -> tuple[Path, str]:
    """A bundle folder from a folder or a registry URI, and how to name it in reports."""
    if ref.startswith(("models:/", "runs:/")):
        from hftpipe.registry import resolve_model

        bundle_dir, _, _ = resolve_model(ref)
        return Path(bundle_dir), ref
    if not Path(ref).is_dir():
        from hftpipe.errors import ModelError

        raise ModelError(f"{ref} is not a model bundle folder; run `hftpipe train` or pass --model models:/NAME@champion")
    return Path(ref), str(ref)
