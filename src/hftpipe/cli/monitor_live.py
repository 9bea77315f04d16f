"""Outcome store commands: ``monitor run`` (the service) and ``monitor retrain-check``.

Plain click commands for the ``monitor`` group (``group.add_command(run_cmd)``,
``group.add_command(retrain_check_cmd)``). Run alone: ``python -m hftpipe.cli.monitor_live run ...``
(then ``-S``/``--params`` are given to this module's own small group).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click


def _config(ctx: click.Context):
    config = getattr(ctx.obj, "config", None)
    if config is None:  # run outside `hftpipe monitor`: this module's own group put a Config in ctx.obj
        raise click.UsageError("no configuration; run as `hftpipe monitor ...` or `python -m hftpipe.cli.monitor_live`")
    return config


@click.command("run")
@click.option("--model", "model_uri", help="Model whose label outcomes use (default: feedback.model_uri, else "
              "signals.model_uri, else serve.model_uri).")
@click.pass_context
def run_cmd(ctx: click.Context, model_uri: str | None) -> None:
    """Join signals with their realised outcomes: out.<symbol>, feedback Parquet, live quality; SIGTERM stops.

    Ready file: HFTPIPE_HOME/run/feedback.ready (written once both consumers are live).
    """
    from hftpipe.bus.lifecycle import ServiceRun
    from hftpipe.monitoring.service import run_feedback

    config = _config(ctx)
    with ServiceRun("feedback") as run:
        asyncio.run(run_feedback(config, model_uri=model_uri, on_ready=run.ready))


@click.command("retrain-check")
@click.option("--run", "run_now", is_flag=True, help="Retrain on the recorded live data now (through the gate), "
              "whatever the trigger says.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the decision / result as JSON.")
@click.pass_context
def retrain_check_cmd(ctx: click.Context, run_now: bool, json_path: str | None) -> None:
    """Evaluate the retrain trigger on the recorded outcomes (offline), or force a retrain with --run."""
    import math
    import time

    from hftpipe.monitoring.feedback_store import data_set_root, recorded_quality
    from hftpipe.monitoring.retrain import Observation, TriggerPolicy, TriggerState, decide, json_safe
    from hftpipe.monitoring.retrain_job import largest_recording, retrain_on_feedback

    config = _config(ctx)
    root = data_set_root(config)
    if run_now:
        result = retrain_on_feedback(config, root, {"reasons": ["manual"]})
        click.echo(f"retrain on {result['symbol']} {result['date']} ({result['rows']} recorded rows): exit "
                   f"{result['exit_code']}, gate {result['decision'] or 'not reached'} "
                   f"(version {result['version'] or '-'})")
        out = result
        code = 0 if result["exit_code"] == 0 else 1
    else:
        snap = recorded_quality(root, config.feedback.quality_window, config.feedback.reliability_bins)
        try:
            rows = largest_recording(root)[2]
        except Exception:  # noqa: BLE001 - nothing recorded: no new data
            rows = 0
        policy = TriggerPolicy.from_config(config.feedback)
        # Offline there is no history of how long a reason held: judge the snapshot as if it had held.
        policy = TriggerPolicy(**{**policy.__dict__, "min_hold_s": 0.0})
        decision, _ = decide(policy, TriggerState(), Observation(
            time=time.time(), rows_recorded=rows, outcomes=snap.n, model_macro_f1=snap.scores["model"]["macro_f1"],
            baseline_macro_f1={b: snap.scores[b]["macro_f1"] for b in ("persistence", "momentum")}))
        f1 = snap.scores["model"]["macro_f1"]
        click.echo(f"{snap.n} outcomes: model macro-F1 {f1:.4f}" if not math.isnan(f1) else "no scorable outcome")
        for b in ("persistence", "momentum"):
            click.echo(f"  baseline {b:<12} macro-F1 {snap.scores[b]['macro_f1']:.4f}")
        click.echo(f"trigger: {'FIRES' if decision.trigger else 'no'} "
                   f"({', '.join(decision.reasons) or 'no reason'}{'; ' + decision.blocked_by if decision.blocked_by else ''})")
        out = {"trigger": decision.trigger, "reasons": list(decision.reasons), "blocked_by": decision.blocked_by,
               "evidence": decision.evidence, "quality": snap.to_dict()}
        code = 0
    if json_path:
        Path(json_path).write_text(json.dumps(json_safe(out), indent=2, default=str))
    sys.exit(code)


@click.command("retrain-pooled")
@click.option("--original", required=True, type=click.Path(exists=True), help="The model's original training file.")
@click.option("--live", required=True, type=click.Path(exists=True), help="The recorded live day (LOBSTER pair).")
@click.option("--work", required=True, type=click.Path(file_okay=False), help="Folder for the run's artifacts.")
@click.pass_context
def retrain_pooled_cmd(ctx: click.Context, original: str, live: str, work: str) -> None:
    """Retrain on the original training day plus the live day through the promotion gate (what the trigger runs).

    Holds the retrain lock of ``hftpipe retrain``. Exit status: 0 done, 1 a step failed, 75 another retrain runs.
    """
    import fcntl
    import os

    from hftpipe import audit, paths
    from hftpipe.monitoring.retrain_job import run_pooled_retrain

    config = _config(ctx)
    with open(paths.home() / "retrain.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            click.echo("another retrain is running; nothing done", err=True)
            sys.exit(75)
        audit.record(audit.RETRAIN_TRIGGER, config.register.model_name, reason="hftpipe retrain",
                     details={"data": [original, live], "pooled": True, "pid": os.getpid()}, url=config.audit.url)
        summary = run_pooled_retrain(config, Path(original), Path(live), Path(work))
    (paths.logs_dir() / "retrain-last.json").write_text(json.dumps(summary, indent=2, default=str))
    click.echo(f"retrain {summary['status']}: {summary.get('model_name')} version {summary.get('version') or '-'}, "
               f"gate {summary.get('decision') or 'not reached'}")
    sys.exit(0 if summary["status"] == "succeeded" else 1)


@click.group()
@click.option("--params", default="params.yaml", show_default=True)
@click.option("-S", "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE")
@click.option("-v", "--verbose", count=True)
@click.pass_context
def _standalone(ctx: click.Context, params: str, overrides: tuple[str, ...], verbose: int) -> None:
    """The outcome-store commands outside the main CLI (until the ``monitor`` group adds them)."""
    import logging
    from types import SimpleNamespace

    from hftpipe.config import load_config

    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = SimpleNamespace(config=load_config(params, overrides))


_standalone.add_command(run_cmd)
_standalone.add_command(retrain_check_cmd)
_standalone.add_command(retrain_pooled_cmd)

if __name__ == "__main__":  # pragma: no cover
    _standalone()
