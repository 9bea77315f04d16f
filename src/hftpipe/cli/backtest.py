"""``hftpipe backtest``: the model and the naive baselines under each trading policy, queue-aware fills."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hftpipe.trading.policies import POLICY_NAMES


def register(group: click.Group) -> None:
    group.add_command(backtest)


def resolve_bundle(ref: str) -> tuple[Path, str | None, Any]:
    """A model bundle folder from a folder path or a registry URI (models:/NAME@alias, models:/NAME/3, runs:/)."""
    if ref.startswith(("models:/", "runs:/")):
        from hftpipe.registry import resolve_model  # MLflow only when a registry URI is asked for

        bundle_dir, name, version = resolve_model(ref)
        return Path(bundle_dir), name, version
    if not Path(ref).is_dir():
        from hftpipe.errors import ModelError

        raise ModelError(f"{ref} is not a model bundle folder; run `hftpipe train` or pass --model models:/NAME@champion")
    return Path(ref), None, None


@click.command()
@click.option("--model", "model_ref", metavar="DIR_OR_URI",
              help="Model bundle folder or registry URI models:/NAME@champion (default: train.output).")
@click.option("--data", metavar="PATH",
              help="Raw LOBSTER zip / message CSV or canonical events Parquet (default: data.output).")
@click.option("--policy", type=click.Choice(["all", *POLICY_NAMES]), default="all", show_default=True,
              help="Trading policy (params.yaml `trading` section); all: every policy in one report.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the full report as JSON here.")
@click.pass_obj
def backtest(obj: Any, model_ref: str | None, data: str | None, policy: str, json_path: str | None) -> None:
    """Replay a day with queue-aware fills, latency, fees and the risk engine: model vs naive baselines."""
    from hftpipe.trading.report import backtest_sources, render_table

    cfg = obj.config
    ref = model_ref or cfg.train.output
    bundle_dir, name, version = resolve_bundle(ref)
    policies = POLICY_NAMES if policy == "all" else (policy,)
    report = backtest_sources(cfg, bundle_dir, data or cfg.data.output, policies,
                              model_ref=f"{ref}" + (f" ({name} v{version})" if name else ""))
    for line in render_table(report):
        click.echo(line)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        click.echo(f"report: {json_path}")
