"""``hftpipe monitor``: Prometheus on loopback, and the drift report of any data file against a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    from hftpipe.cli.monitor_live import retrain_check_cmd, retrain_pooled_cmd, run_cmd

    monitor.add_command(run_cmd)
    monitor.add_command(retrain_check_cmd)
    monitor.add_command(retrain_pooled_cmd)
    group.add_command(monitor)


@click.group()
def monitor() -> None:
    """Monitoring: Prometheus, drift against the training reference, the live outcome/quality service."""


@monitor.command("prometheus")
@click.option("--port", type=int, help="Listen on 127.0.0.1:PORT (default: monitor.prometheus_port).")
@click.option("--stop", "stop_", is_flag=True, help="Stop the Prometheus started from HFTPIPE_HOME/prometheus.")
@click.option("--write-only", is_flag=True, help="Only write (and check) prometheus.yml and rules.yml; print the path.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="State folder (default: HFTPIPE_HOME/prometheus): config, rules, data, pid file, log.")
@click.pass_obj
def prometheus_cmd(obj: Any, port: int | None, stop_: bool, write_only: bool, directory: str | None) -> None:
    """Write the scrape config of every hftpipe service and start Prometheus in the background."""
    from hftpipe.monitoring import prometheus as prom

    if stop_:
        pid = prom.stop(directory)
        click.echo(f"stopped Prometheus (pid {pid})" if pid else "Prometheus was not running")
        return
    cfg = obj.config
    if write_only:
        import dataclasses

        if port is not None:
            cfg = cfg.replace(monitor=dataclasses.replace(cfg.monitor, prometheus_port=port))
        path = prom.write_config(cfg, directory)
        prom.check_config(path)
        click.echo(str(path))
        return
    pid, url = prom.start(cfg, port, directory)
    f = prom.files(directory)
    click.echo(f"Prometheus {url} (pid {pid}); config {f.config}; log {f.log}")
    click.echo("stop it with: hftpipe monitor prometheus --stop")


@monitor.command("drift")
@click.option("--model", "model_ref", required=True, metavar="DIR_OR_URI",
              help="Model bundle folder or registry URI (models:/NAME@champion, models:/NAME/3).")
@click.option("--data", required=True, metavar="PATH",
              help="Feature-set folder, raw LOBSTER zip / CSV, Bitstamp capture or canonical events Parquet.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Rows of a feature-set folder to report on (raw files: all).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@click.pass_obj
def drift(obj: Any, model_ref: str, data: str, split: str, json_path: str | None) -> None:
    """Per-feature PSI and KS and prediction drift of a data file against the model's training reference.

    Exit status 0 either way; the JSON's top-level boolean ``drift`` carries the verdict.
    """
    from hftpipe.cli.backtest import resolve_bundle
    from hftpipe.models.bundle import load_bundle
    from hftpipe.monitoring.report import drift_of_file, summary_lines

    bundle_dir, _name, _version = resolve_bundle(model_ref)
    report = drift_of_file(obj.config, load_bundle(bundle_dir), data, split)  # type: ignore[arg-type]
    payload = {"model": model_ref, "data": str(data), "split": split, **report.to_dict()}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(payload, indent=2) + "\n")
    for line in summary_lines(report):
        click.echo(line)



@monitor.command("render")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="Repository root to write into.")
def render(repo: str) -> None:
    """Regenerate the Grafana dashboards (JSON) and the Kubernetes PrometheusRule and dashboards ConfigMap."""
    from hftpipe.monitoring.manifests import render as write

    for path in write(repo):
        click.echo(str(path))
