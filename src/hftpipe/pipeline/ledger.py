"""A run ledger: each pipeline step appends its status, duration and outputs to one JSON-lines file.

The local runner executes every step in its own subprocess; the ledger (path in ``HFTPIPE_RUN_LEDGER``)
is how `hftpipe pipeline run` learns per-step times and which step failed. Without the variable (e.g.
on a cluster) steps still run and simply record nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
LEDGER_ENV = "HFTPIPE_RUN_LEDGER"


def _append(record: dict[str, Any]) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


@contextlib.contextmanager
def step(name: str) -> Iterator[dict[str, Any]]:
    """Time a step; the yielded dict collects its outputs; failures are recorded then re-raised."""
    outputs: dict[str, Any] = {}
    start = time.perf_counter()
    _append({"step": name, "status": "started"})
    log.info("step %s started", name)
    try:
        yield outputs
    except BaseException as exc:
        _append({"step": name, "status": "failed", "seconds": round(time.perf_counter() - start, 3),
                 "error": f"{type(exc).__name__}: {exc}",
                 "traceback": "".join(traceback.format_exception(exc))[-4000:]})
        raise
    seconds = round(time.perf_counter() - start, 3)
    _append({"step": name, "status": "succeeded", "seconds": seconds, "outputs": outputs})
    log.info("step %s succeeded in %.1f s", name, seconds)


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ledger file, in order (missing file: none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
