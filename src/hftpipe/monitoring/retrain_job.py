"""What a fired retrain trigger does: retrain on the original training data PLUS the recorded live data,
through the promotion gate.

1. The recorded book updates of the symbol and day with the most rows (``feedback/books``) are exported as a
   LOBSTER message/orderbook pair (:func:`~hftpipe.monitoring.feedback_store.export_lobster`);
2. ``hftpipe monitor retrain-pooled`` (a child process, under the same lock as ``hftpipe retrain``: a second
   trigger while one runs exits 75 and does nothing) runs :func:`run_pooled_retrain` with the service's
   resolved config: ingest (load + validate) the model's original training file (``feedback.retrain_original``,
   else ``data.source``) and the live export, build the pooled feature set (:func:`pool_feature_frames`), then
   the pipeline's own step functions -- train, evaluate, register with the promotion gate, deploy;
3. the outcome (exit status, registered version, the gate's decision and reasons) is appended to the audit
   trail beside the trigger's own record.

Why pooled at the feature level: the pipeline (and ``hftpipe.training.train``) takes ONE feature set, and two
days cannot be one canonical event table (its time is seconds after midnight, increasing, within the session).
So each day gets its own features and labels (no rolling window and no label crosses from one day into the
other), the live day's labels use the original set's stationary bands (the served model's label), and the
two frames are stacked in time order: the original day is all training rows, the live day keeps its own
time split, so validation and the test split -- where the gate re-scores the champion -- are the newest, live
data. The first ``max(warm-up, train.window - 1)`` rows of the live day are purged: no input window reaches
back into the other day.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import DataFormatError
from hftpipe.features.labels import classify
from hftpipe.features.splits import PURGED, TRAIN
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
    source = Path(config.feedback.retrain_original or config.data.source)
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


def pool_feature_frames(original: tuple[pd.DataFrame, dict[str, Any]], live: tuple[pd.DataFrame, dict[str, Any]],
                        window: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Stack two days' feature frames into one training set (pure; see the module docstring for the rule).

    Raises:
        DataFormatError: the two frames do not have the same columns (other levels, windows or horizons).
    """
    (a, meta_a), (b, meta_b) = original, live
    if list(a.columns) != list(b.columns):
        raise DataFormatError("the original and the live feature frames differ in their columns (levels, "
                              "features.windows or horizons); retrain with the original's settings")
    b = b.copy()
    for h in meta_a["horizons"]:  # the live day's labels with the original's bands: one label definition
        b[f"label_k{h}"] = classify(b[f"ret_k{h}"].to_numpy(), float(meta_a["alpha"][str(h)]))
    a = a.assign(split=np.where(a["split"].to_numpy() >= 0, TRAIN, PURGED).astype(np.int8))
    split = b["split"].to_numpy().copy()
    split[: max(int(meta_b["splits"]["warmup"]), window - 1)] = PURGED
    b["split"] = split
    frame = pd.concat([a, b], ignore_index=True)
    train = frame["split"].to_numpy() == TRAIN
    stats = {}
    for name in meta_b["feature_names"]:
        values = frame[name].to_numpy()[train]
        values = values[np.isfinite(values)]
        stats[name] = {"mean": float(values.mean()) if len(values) else 0.0,
                       "std": float(values.std()) if len(values) else 1.0}
    parts = [{k: m.get(k) for k in ("symbol", "date", "source_sha256", "rows")} for m in (meta_a, meta_b)]
    digest = hashlib.sha256(json.dumps([p["source_sha256"] for p in parts]).encode()).hexdigest()
    n = len(a)
    meta = {**meta_b, "alpha": dict(meta_a["alpha"]), "alpha_source": "the original training set's",
            "source_sha256": digest, "event_rows": meta_a["event_rows"] + meta_b["event_rows"], "rows": len(frame),
            "feature_stats": stats, "parts": parts,
            "splits": {**meta_b["splits"], "rows": len(frame),
                       **{k: [n + x for x in meta_b["splits"][k]] for k in ("train", "val", "test")},
                       "original_train": [0, n]}}
    return frame, meta


def build_pooled_features(config: Config, original_events: Path, live_events: Path, out_dir: Path) -> Any:
    """Features of each day (validated like ``hftpipe features``), pooled, written to ``out_dir``."""
    from hftpipe.data.schema import read_events
    from hftpipe.features.build import build_frame, write_feature_set
    from hftpipe.validation.features import validate_features_frame

    built = []
    for path in (original_events, live_events):
        table = read_events(path)
        frame, meta = build_frame(config.features, table.frame, table.meta.levels, table.meta.to_dict())
        validate_features_frame(frame, meta, config.validate, source=str(path)).raise_if_failed()
        built.append((frame, meta))
    frame, meta = pool_feature_frames(built[0], built[1], config.train.window)
    return write_feature_set(frame, meta, out_dir)


def run_pooled_retrain(config: Config, original: Path, live: Path, work: Path) -> dict[str, Any]:
    """Ingest both days, pool their features, then train, evaluate, register (the gate) and deploy with the
    pipeline's own step functions; returns the summary ``finish_retrain`` reads (never raises for a step)."""
    from hftpipe.pipeline import steps
    from hftpipe.prepare import ingest

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
        fs = build_pooled_features(config, events["original"], events["live"], work / "features")
        summary["rows"] = {"original_train": fs.meta["splits"]["original_train"][1], "pooled": fs.meta["rows"]}
        features = str(work / "features")
        step = "train"
        steps.train_step(features, config_json, str(work / "model"))
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
