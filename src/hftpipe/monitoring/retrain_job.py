"""What a fired retrain trigger does: retrain on the recorded live data through the promotion gate.

1. The recorded book updates of the symbol and day with the most rows (``feedback/books``) are exported as a
   LOBSTER message/orderbook pair (:func:`~hftpipe.monitoring.feedback_store.export_lobster`);
2. ``hftpipe retrain --data <that pair>`` runs the local training pipeline (kfp.local: validate, ingest,
   features, train, evaluate, register with the promotion gate, deploy) with the service's resolved config,
   under the retrain lock (a second trigger while one runs exits 75 and does nothing);
3. the outcome (exit status, registered version, the gate's decision and reasons) is appended to the audit
   trail beside the trigger's own record.

The training set is the recorded live day: the pipeline takes one LOBSTER day per run, so the original
training file is not concatenated to it (a multi-day training set is not supported by the pipeline yet).
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
from hftpipe.config import Config
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


def retrain_on_feedback(config: Config, root: Path, evidence: dict[str, Any] | None = None,
                        extra_args: tuple[str, ...] = (), timeout_s: float | None = None) -> dict[str, Any]:
    """Export the live recording, run ``hftpipe retrain`` on it, audit the result; returns what happened."""
    from hftpipe import audit

    symbol, date, rows = largest_recording(root)
    work = root / "retrain" / time.strftime("%Y%m%d-%H%M%S")
    data = export_lobster(root, symbol, date, work / "data")
    params = work / "params.yaml"
    params.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    summary_path = paths.logs_dir() / "retrain-last.json"
    summary_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "hftpipe.cli", "--params", str(params), *extra_args, "retrain", "--data", str(data)]
    log.warning("retraining on the recorded live data: %s", " ".join(cmd))
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "HFTPIPE_HOME": str(paths.home())})
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    result = {
        "exit_code": proc.returncode, "seconds": round(time.monotonic() - t0, 1), "data": str(data),
        "symbol": symbol, "date": date, "rows": rows, "status": summary.get("status"),
        "version": summary.get("version"), "decision": summary.get("decision"),
        "aliases": summary.get("aliases", []), "gate_reasons": summary.get("reasons", []),
        "failed_step": summary.get("failed_step"), "output_tail": (proc.stdout + proc.stderr)[-2000:],
    }
    audit.record(audit.RETRAIN_TRIGGER, summary.get("model_name") or config.register.model_name,
                 reason=(f"retrain on live data finished: exit {proc.returncode}, gate "
                         f"{summary.get('decision') or 'not reached'}"),
                 details=json_safe({k: v for k, v in {**result, "trigger_evidence": evidence}.items()
                                    if k != "output_tail"}),
                 url=config.audit.url)
    (work / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


class RetrainJob:
    """The service's ``on_trigger``: run :func:`retrain_on_feedback` in a worker thread, one at a time."""

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
            result = await asyncio.to_thread(retrain_on_feedback, self.config, self.root, decision.evidence)
            self.results.append(result)
            log.warning("retrain finished: exit %s, gate %s", result["exit_code"], result["decision"])
        except Exception as exc:  # noqa: BLE001 - a failed retrain must not stop the outcome store
            log.error("retrain failed: %s", exc)
