"""Pipeline commands: run (local or on KFP), schedule, compile, and the cron-safe ``retrain``."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from hftpipe import paths

EXIT_STEP_FAILED = 1
EXIT_LOCKED = 75  # EX_TEMPFAIL: another retrain holds the lock; cron simply tries again next time


def register(group: click.Group) -> None:
    group.add_command(pipeline)
    group.add_command(retrain)


@click.group()
def pipeline() -> None:
    """Kubeflow Pipelines: run locally (kfp.local) or on a cluster, schedule, compile."""


def step_printer() -> Callable[[dict], None]:
    """One console line per step start/end, on the stdout of now (kfp.local's output goes to kfp.log)."""
    stream = sys.stdout  # captured now: kfp.local redirects sys.stdout while the pipeline runs

    def print_step(record: dict) -> None:
        if record["status"] == "started":
            click.echo(f"  {record['step']:<9} started ...", file=stream)
        elif record["status"] == "succeeded":
            click.echo(f"  {record['step']:<9} done in {record['seconds']:.1f} s", file=stream)
        else:
            click.secho(f"  {record['step']:<9} FAILED after {record['seconds']:.1f} s", fg="red", file=stream)

    return print_step


def _sources(obj, data: tuple[str, ...] | str | None) -> str | list[str]:
    """``--data`` (given once or several times), else ``data.source`` (a string or a list)."""
    if isinstance(data, str):
        return data
    if data:
        return data[0] if len(data) == 1 else list(data)
    source = obj.config.data.source
    return source if isinstance(source, str) else list(source)


def _run(obj, data: tuple[str, ...] | str | None, host: str | None, nproc: int, summary_json: str | None,
         log_to: logging.Logger | None = None) -> int:
    from hftpipe.pipeline.runner import describe_sources, pipeline_call, run_local, submit

    cfg = obj.config
    source = _sources(obj, data)
    if host:
        info = submit(cfg, source, host, nproc=nproc)
        click.echo(f"submitted run {info['run_id']} to {host}")
        if log_to:
            log_to.info("submitted run %s to %s", info["run_id"], host)
        if summary_json:
            Path(summary_json).write_text(json.dumps(info, indent=2))
        return 0
    _, _, files = pipeline_call(cfg, source)  # a bad glob or mixed depths: one line before anything starts
    what = "the pooled training pipeline" if len(files) > 1 else "the training pipeline"
    click.echo(f"running {what} locally (kfp.local) on {describe_sources(files)}")
    printer = step_printer()

    def on_step(record: dict) -> None:
        printer(record)
        if log_to:
            log_to.info("step %s %s%s", record["step"], record["status"],
                        f" in {record['seconds']:.1f} s" if "seconds" in record else "")

    summary = run_local(cfg, source, nproc=nproc, on_step=on_step)
    for line in summary.lines():
        click.echo(line)
        if log_to:
            log_to.info("%s", line)
    if summary_json:
        Path(summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_json).write_text(json.dumps(summary.to_dict(), indent=2, default=str))
    return 0 if summary.status == "succeeded" else EXIT_STEP_FAILED


@pipeline.command("run")
@click.option("--data", multiple=True, help="LOBSTER zip or CSV pair (default: data.source, the shipped sample); "
                                           "give it several times (or a glob) to pool several sources.")
@click.option("--host", help="KFP endpoint; without it the pipeline runs here with kfp.local.")
@click.option("--nproc", default=1, show_default=True, help="Training processes (torchrun).")
@click.option("--summary-json", type=click.Path(dir_okay=False), help="Write the run summary as JSON.")
@click.pass_obj
def run_cmd(obj, data: tuple[str, ...], host: str | None, nproc: int, summary_json: str | None) -> None:
    """Run the training pipeline: validate, ingest, features, train, evaluate, register, deploy.

    Several sources (``--data`` more than once, a glob, or a list in ``data.source``): each is validated,
    ingested and turned into features on its own, then one pooled model is trained, evaluated per instrument
    (plus the pooled summary) and gated with the several-instrument rule (docs/pooled.md).
    """
    sys.exit(_run(obj, data, host, nproc, summary_json))


@pipeline.command("schedule")
@click.option("--cron", required=True, help="KFP cron, 6 fields with seconds first, e.g. '0 0 2 * * 1-5'.")
@click.option("--host", required=True, help="KFP endpoint.")
@click.option("--data", multiple=True, help="Data path as seen by the cluster's step containers (several: pooled).")
@click.option("--name", default="hftpipe-nightly-retrain", show_default=True)
@click.pass_obj
def schedule_cmd(obj, cron: str, host: str, data: tuple[str, ...], name: str) -> None:
    """Create a KFP recurring run (max concurrency 1, no catch-up, no stale cache)."""
    from hftpipe.pipeline.runner import schedule, validate_cron

    validate_cron(cron)  # refuse a bad expression before touching the network
    info = schedule(obj.config, _sources(obj, data), host, cron, job_name=name)
    click.echo(f"recurring run {info['recurring_run_id']} created: {cron}")


@pipeline.command("compile")
@click.option("--out", type=click.Path(file_okay=False), help="Folder (default: pipelines/compiled).")
def compile_cmd(out: str | None) -> None:
    """Compile every pipeline to KFP IR YAML."""
    from hftpipe.pipeline.runner import compile_pipelines

    for path in compile_pipelines(out):
        click.echo(f"compiled {path}")


@click.command()
@click.option("--data", multiple=True, help="LOBSTER zip or CSV pair (default: data.source); several: pooled.")
@click.option("--host", help="KFP endpoint (default: run here with kfp.local).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Default: HFTPIPE_HOME/logs/retrain.log.")
@click.pass_obj
def retrain(obj, data: tuple[str, ...], host: str | None, log_file: str | None) -> None:
    """Cron-safe retraining: one run at a time (lock), a log file, clear exit codes.

    Exit status: 0 done, 1 a step failed (the log names it), 2 bad configuration,
    75 another retrain is still running (nothing done).
    130 / 143 interrupted by SIGINT / SIGTERM (every process of the run stopped first).
    """
    lock_path = paths.home() / "retrain.lock"
    log_path = Path(log_file) if log_file else paths.logs_dir() / "retrain.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger, handler = _retrain_logger(log_path)
    try:
        _retrain_locked(obj, data, host, lock_path, logger)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _retrain_locked(obj, data: str | None, host: str | None, lock_path: Path, logger: logging.Logger) -> None:
    from hftpipe.errors import HftpipeError

    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("another retrain holds %s; exiting", lock_path)
            click.echo(f"another retrain is running (lock {lock_path}); nothing done", err=True)
            sys.exit(EXIT_LOCKED)
        logger.info("retrain started (pid %d) on %s", os.getpid(), _sources(obj, data))
        _audit_retrain(obj, data, host, logger)
        summary_path = paths.logs_dir() / "retrain-last.json"
        try:
            # The lock is held until _run returns or raises, and an interrupted run returns only once every
            # process it started is gone: a second retrain can never overlap an orphaned train step.
            code = _run(obj, data, host, 1, str(summary_path), log_to=logger)
        except HftpipeError as exc:  # interrupted, bad data or settings: the log says so, then the CLI's one line
            logger.error("retrain failed: %s", exc)
            raise
        logger.info("retrain finished with exit %d; summary %s", code, summary_path)
    sys.exit(code)


def _audit_retrain(obj, data: str | None, host: str | None, logger: logging.Logger) -> None:
    """One ``retrain_trigger`` audit record before the run starts; without it the retrain does not run."""
    from hftpipe import audit

    source = _sources(obj, data)
    try:
        audit.record(audit.RETRAIN_TRIGGER, obj.config.register.model_name, reason="hftpipe retrain",
                     details={"data": source, "host": host or "local", "pid": os.getpid()}, url=obj.config.audit.url)
    except Exception as exc:  # sqlite3 / psycopg / OS errors alike
        logger.error("retrain refused: audit record not written: %s", exc)
        if isinstance(exc, audit.AuditError):
            raise
        raise audit.AuditError(f"audit record 'retrain_trigger' could not be written ({exc}); nothing was "
                               "retrained") from exc


def _retrain_logger(log_path: Path) -> tuple[logging.Logger, logging.Handler]:
    """``hftpipe.retrain`` writing INFO and above to ``log_path``, whatever the console's verbosity.

    The file handler sits on this logger (not the root, whose level is WARNING without -v): before, a
    successful run's INFO lines were dropped and the log stayed empty.
    """
    logger = logging.getLogger("hftpipe.retrain")
    handler = logging.FileHandler(log_path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the console gets the CLI's own lines; cron mail stays quiet on success
    return logger, handler
