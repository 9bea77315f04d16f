"""What a fired retrain trigger does: retrain on the original training data PLUS the recorded live data,
through the promotion gate.

1. The recorded book updates of the symbol and day with the most rows (``feedback/books``) are exported as a
   LOBSTER message/orderbook pair (:func:`~hftpipe.monitoring.feedback_store.export_lobster`);
2. ``hftpipe monitor retrain-pooled`` (a child process, under the same lock as ``hftpipe retrain``: a second
   trigger while one runs exits 75 and does nothing) runs :func:`run_pooled_retrain` with the service's
   resolved config: ingest (load + validate) and build features for the model's original training file
   (``feedback.retrain_original``, else ``data.source``) and for the live export, each on its own, then the
   pipeline's own pooled steps -- train, evaluate, register with the promotion gate, deploy -- on a collection
   of the two (:mod:`hftpipe.training.pooled`, the same core as ``hftpipe pipeline run`` on several sources);
3. the outcome (exit status, registered version, the gate's decision and reasons) is appended to the audit
   trail beside the trigger's own record.

How the two days take part (explicit options of the pooled core, :class:`~hftpipe.training.pooled.PooledSet`):
the original day has role ``train`` (every labelled row trains, none is held out), the live day keeps its
own time split, so validation and the test split -- where the gate re-scores the champion -- are the newest,
live data; the live day is labelled with the original day's stationary bands (an ``alpha`` override: one
label definition, the served model's). Pooling never lets an input window or a label cross from one day
into the other (the first T-1 rows of each set are never a window end).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from hftpipe import paths
from hftpipe.config import Config, single_source
from hftpipe.errors import DataFormatError
from hftpipe.monitoring.feedback_store import export_lobster
from hftpipe.monitoring.retrain import json_safe

log = logging.getLogger(__name__)


def largest_recording(root: Path) -> tuple[str, str, int]:
    """(symbol, date, rows) of the most-recorded symbol-day under ``root/books``.

    Raises:
        DataFormatError: nothing was recorded.
    """
    best = ("", "", 0)
    for day in (root / "books").glob("symbol=*/date=*"):
        n = sum(pq.ParquetFile(p).metadata.num_rows for p in day.glob("part-*.parquet"))
        if n > best[2]:
            best = (day.parent.name.split("=", 1)[1], day.name.split("=", 1)[1], n)
    if not best[2]:
        raise DataFormatError(f"no recorded book updates under {root / 'books'}; set feedback.record_books: true")
    return best


def original_source(config: Config) -> Path:
    """The model's original training file: ``feedback.retrain_original``, else ``data.source``.

    Raises:
        DataFormatError: the file does not exist.
    """
    source = Path(config.feedback.retrain_original or single_source(config.data, "the outcome monitor's retrain "
                                                                    "(set feedback.retrain_original)"))
    if not source.exists():
        raise DataFormatError(f"original training data {source} does not exist; set feedback.retrain_original")
    return source


def prepare_retrain(config: Config, root: Path, extra_args: tuple[str, ...] = ()) -> tuple[list[str], dict[str, Any]]:
    """Export the live recording and write the resolved config; returns (command, facts about the data)."""
    symbol, date, rows = largest_recording(root)
    original = original_source(config)
    work = root / "retrain" / time.strftime("%Y%m%d-%H%M%S")
    data = export_lobster(root, symbol, date, work / "data")
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (paths.logs_dir() / "retrain-last.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "hftpipe.cli", "--params", str(params), *extra_args, "monitor", "retrain-pooled",
           "--original", str(original.resolve()), "--live", str(data), "--work", str(work)]
    return cmd, {"work": str(work), "data": str(data), "original": str(original), "symbol": symbol, "date": date,
                 "rows": rows}


def run_pooled_retrain(config: Config, original: Path, live: Path, work: Path) -> dict[str, Any]:
    """Ingest and build features for both days, then train, evaluate, register (the gate) and deploy a pooled
    model with the pipeline's own step functions; returns the summary ``finish_retrain`` reads (never raises
    for a step)."""
    from hftpipe.pipeline import steps
    from hftpipe.prepare import build_feature_set, ingest
    from hftpipe.training.pooled import PooledSet, write_collection

    config_json = json.dumps(config.to_dict())
    summary: dict[str, Any] = {"status": "running", "model_name": config.register.model_name,
                               "original": str(original), "live": str(live)}
    step = "ingest"
    try:
        events = {}
        for name, src in (("original", original), ("live", live)):
            events[name] = work / f"{name}.events.parquet"
            ingest(config.data, source=src, output=events[name], validate_cfg=config.validate)
        step = "features"
        collection = work / "features"
        built = {name: build_feature_set(config.features, events[name], collection / name, config.validate)
                 for name in ("original", "live")}
        bands = {str(k): float(v) for k, v in built["original"].meta["alpha"].items()}
        write_collection(collection, [PooledSet(str(collection / "original"), role="train"),
                                      PooledSet(str(collection / "live"), alpha=bands)])
        features = str(collection)
        step = "train"
        steps.train_step(features, config_json, str(work / "model"))
        trained_on = json.loads((work / "model" / "bundle.json").read_text()).get("trained_on") or []
        summary["rows"] = {"original_train": int(trained_on[0]["split_rows"]["train"]),
                           "pooled": int(sum(int(t["rows"]) for t in trained_on))}
        step = "evaluate"
        steps.evaluate_step(str(work / "model"), features, config_json, str(work / "report"))
        step = "register"
        registration = work / "registration.json"
        reg = steps.register_step(str(work / "model"), str(work / "report"), features, config_json, str(registration))
        summary.update(version=str(reg.get("version")), decision=reg.get("decision"),
                       reasons=list(reg.get("reasons", [])), aliases=[reg.get("decision")],
                       model_name=reg.get("model_name", summary["model_name"]))
        step = "deploy"
        steps.deploy_step(str(registration), config_json)
        summary["status"] = "succeeded"
    except Exception as exc:  # noqa: BLE001 - any step's failure is the run's result, reported and audited
        log.error("pooled retrain failed at %s: %s", step, exc)
        summary.update(status="failed", failed_step=step, error=f"{type(exc).__name__}: {exc}")
    return summary


def finish_retrain(config: Config, facts: dict[str, Any], returncode: int, output: str, seconds: float,
                   evidence: dict[str, Any] | None) -> dict[str, Any]:
    """Read the run's summary, append the result to the audit trail, and return it."""
    from hftpipe import audit

    summary_path = paths.logs_dir() / "retrain-last.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    result = {
        "exit_code": returncode, "seconds": round(seconds, 1), **{k: v for k, v in facts.items() if k != "work"},
        "status": summary.get("status"), "version": summary.get("version"), "decision": summary.get("decision"),
        "aliases": summary.get("aliases", []), "gate_reasons": summary.get("reasons", []),
        "failed_step": summary.get("failed_step"), "output_tail": output[-2000:],
    }
    audit.record(audit.RETRAIN_TRIGGER, summary.get("model_name") or config.register.model_name,
                 reason=(f"retrain on live data finished: exit {returncode}, gate "
                         f"{summary.get('decision') or 'not reached'}"),
                 details=json_safe({k: v for k, v in {**result, "trigger_evidence": evidence}.items()
                                    if k != "output_tail"}),
                 url=config.audit.url)
    (Path(facts["work"]) / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _env() -> dict[str, str]:
    return {**os.environ, "HFTPIPE_HOME": str(paths.home())}


def retrain_on_feedback(config: Config, root: Path, evidence: dict[str, Any] | None = None,
                        extra_args: tuple[str, ...] = (), timeout_s: float | None = None) -> dict[str, Any]:
    """Export the live recording, retrain on it plus the original data, audit the result; returns what happened."""
    cmd, facts = prepare_retrain(config, root, extra_args)
    log.warning("retraining on the recorded live data: %s", " ".join(cmd))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s, env=_env())
    return finish_retrain(config, facts, proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0,
                          evidence)


class RetrainJob:
    """The service's ``on_trigger``: ``hftpipe monitor retrain-pooled`` as a child process, one at a time.

    The event loop keeps consuming meanwhile; when the service stops (task cancelled) the child gets
    SIGTERM and exits 143, and that is audited too.
    """

    def __init__(self, config: Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.running: asyncio.Task | None = None
        self.results: list[dict[str, Any]] = []

    async def start(self, decision: Any) -> None:
        if self.running is not None and not self.running.done():
            log.warning("a retrain is still running; this trigger is recorded but starts nothing")
            return
        self.running = asyncio.current_task()
        try:
            cmd, facts = await asyncio.to_thread(prepare_retrain, self.config, self.root)
        except Exception as exc:  # noqa: BLE001 - nothing to train on must not stop the outcome store
            log.error("retrain not started: %s", exc)
            return
        log.warning("retraining on the recorded live data: %s", " ".join(cmd))
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, env=_env())
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:
            proc.terminate()
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=30.0)
            except TimeoutError:
                proc.kill()
                out = b""
            finish_retrain(self.config, facts, proc.returncode if proc.returncode is not None else -9,
                           out.decode(errors="replace"), time.monotonic() - t0, decision.evidence)
            raise
        result = await asyncio.to_thread(finish_retrain, self.config, facts, proc.returncode,
                                         out.decode(errors="replace"), time.monotonic() - t0, decision.evidence)
        self.results.append(result)
        log.warning("retrain finished: exit %s, gate %s", result["exit_code"], result["decision"])
