"""The lake pipeline's steps as plain functions of strings: what its KFP components call.

Each one resolves the config (``config_json``, as the training pipeline's steps do) and makes one call
into :mod:`hftpipe.lake.fanout`; results travel between tasks as JSON strings, never data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hftpipe.lake.fanout import collect_items, list_items, process_item
from hftpipe.pipeline.steps import resolve_config

# A partition task that finds a whole-dataset run (`hftpipe lake ...`) writing the dataset waits this
# long for it before failing: the pod is already scheduled, and such runs take minutes, not hours.
LOCK_WAIT_SECONDS = 600.0


def lake_list_step(inputs: list[str], root: str, config_json: str) -> list[str]:
    """The items of a run: files behind ``inputs`` (paths, folders, globs), or every partition key."""
    cfg = resolve_config(config_json)
    return list_items(inputs, root or cfg.lake.root)


def lake_partition_step(item: str, root: str, config_json: str, run_id: str) -> str:
    """Ingest or re-validate one partition and build its features; the result as JSON."""
    cfg = resolve_config(config_json)
    result = process_item(item, root or cfg.lake.root, validate_cfg=cfg.validate, data_cfg=cfg.data,
                          features_cfg=cfg.features, tick_bars=cfg.lake.tick_bars, run_id=run_id,
                          lock_wait=LOCK_WAIT_SECONDS)
    return json.dumps(result, sort_keys=True)


def lake_collect_step(results: list[str], root: str, config_json: str, report_path: str) -> dict[str, Any]:
    """Splits across partitions, the run's report (JSON at ``report_path``), and failure when any item failed.

    Raises:
        PartitionsFailed: some items failed and ``lake.keep_going`` is false; the report names them all.
    """
    cfg = resolve_config(config_json)
    report = collect_items(results, root or cfg.lake.root, features_cfg=cfg.features, split=cfg.lake.split,
                           keep_going=True, lock_wait=LOCK_WAIT_SECONDS)
    summary = {"root": str(report.root), "written": report.written, "unchanged": report.unchanged,
               "failed": [{"item": f.item, "reason": f.reason} for f in report.failed]}
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(summary, indent=1))
    if not cfg.lake.keep_going:
        report.raise_if_failed()
    return summary
