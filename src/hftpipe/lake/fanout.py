"""One partition per call, for callers that fan the dataset out themselves (the KFP lake pipeline).

``ingest_dataset`` and ``features_dataset`` run a whole dataset from one driver under the exclusive
dataset lock. Here each partition is its own call, possibly in its own pod:

- :func:`list_items` names the work: the files behind input paths and globs, or, without inputs, the
  partitions of the manifest;
- :func:`process_item` runs one item: a file is loaded, validated and committed as its partition
  (``stage_file``, as ``hftpipe lake ingest`` does), a partition key is re-validated
  (``validate_partition``, as ``hftpipe lake validate``); then the partition's features are built
  (``build_partition``, as ``hftpipe lake features``) unless they are current;
- :func:`collect_items` assigns the splits across partitions (``assign_splits``) and reports every
  failure at once.

Concurrency. Each :func:`process_item` holds the dataset lock shared, so tasks run side by side but
never beside a whole-dataset run, and changes the manifest only through ``manifest_update`` (a second,
exclusive lock held for one read-change-replace). :func:`collect_items` takes the dataset lock
exclusively: every task has finished. Two files of one run naming the same partition: the first to
commit wins and the other fails without touching it (the CLI decides by input order; here completion
order decides, and the run fails either way). A retry of the same item by the orchestrator is not a
conflict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hftpipe.config import DataConfig, FeaturesConfig, ValidateConfig
from hftpipe.errors import DataFormatError
from hftpipe.lake.dataset import (
    TMP_DIR,
    Failure,
    IngestOptions,
    RunReport,
    expand_inputs,
    known_hashes,
    locked,
    manifest_update,
    now_iso,
    partition_file,
    read_manifest,
    resolve_root,
    stage_file,
    validate_partition,
    write_manifest,
)
from hftpipe.lake.features import (
    assign_splits,
    build_partition,
    config_fingerprint,
    features_current,
    features_entry,
)

log = logging.getLogger(__name__)

KEY_PREFIX = "source="  # a partition key is relative and starts so; listed files are absolute paths


def is_partition_key(item: str) -> bool:
    return item.startswith(KEY_PREFIX)


def list_items(inputs: Sequence[str | Path], root: str | Path | None = None) -> list[str]:
    """The work of one fanned-out run: absolute file paths behind ``inputs``, or every partition key.

    Raises:
        DataFormatError: an input that does not exist, a glob that matches nothing, no data file, or
            (without inputs) a dataset with no partition.
    """
    if inputs:
        files = expand_inputs(inputs)
        if not files:
            raise DataFormatError(f"no data files in {', '.join(map(str, inputs))}")
        return [str(f.resolve()) for f in files]
    root = resolve_root(root)
    keys = sorted(read_manifest(root)["partitions"])
    if not keys:
        raise DataFormatError(f"no partitions in {root}: pass input files or globs to ingest")
    return keys


def process_item(item: str, root: str | Path | None = None, *, validate_cfg: ValidateConfig | None = None,
                 data_cfg: DataConfig | None = None, features_cfg: FeaturesConfig | None = None,
                 tick_bars: str = "1min", market_options: dict[str, Any] | None = None, run_id: str = "",
                 lock_wait: float = 0.0) -> dict[str, Any]:
    """Ingest (a file) or re-validate (a partition key) one partition, then build its features.

    Never raises for the partition's own failure (a corrupt file, a failed suite, a crash in the
    builder): the returned dict says ``status`` "failed" and why, so that one bad partition does not
    stop the others and the collect step can list them all.

    Args:
        item: an absolute file path (ingest) or a partition key ``source=.../symbol=.../date=...``.
        run_id: the orchestrator's run; two files of one run naming the same partition conflict.
        lock_wait: seconds to wait while a whole-dataset run holds the dataset.
    Returns:
        ``item``, ``key``, ``status`` (written / unchanged / failed), ``ingest`` and ``features`` (what
        each half did), ``reason`` when failed, ``seconds``.
    Raises:
        LakeBusy: a whole-dataset run kept the dataset for more than ``lock_wait`` seconds.
    """
    started = time.perf_counter()
    root = resolve_root(root)
    out: dict[str, Any] = {"item": item, "key": None, "status": "failed", "ingest": None, "features": None,
                           "reason": None}
    with locked(root, shared=True, wait=lock_wait):
        if is_partition_key(item):
            out["key"], out["ingest"], out["reason"] = _revalidate(root, item, validate_cfg or ValidateConfig())
        else:
            opts = IngestOptions(validate=validate_cfg or ValidateConfig(), halts=(data_cfg or DataConfig()).halts,
                                 market=dict(market_options or {}))
            out["key"], out["ingest"], out["reason"] = _ingest(root, item, opts, run_id)
        if out["reason"] is None:
            out["features"], out["reason"] = _features(root, out["key"], features_cfg or FeaturesConfig(),
                                                       tick_bars)
    if out["reason"] is None:
        out["status"] = "written" if "written" in (out["ingest"], out["features"]) else "unchanged"
    out["seconds"] = round(time.perf_counter() - started, 3)
    log.info("%s %s: %s%s", item, out["key"] or "", out["status"], f" ({out['reason']})" if out["reason"] else "")
    return out


def _claim(root: Path, run_id: str, key: str, item: str) -> str | None:
    """Record that ``item`` makes ``key`` in this run; the other item when one already did (call under
    the manifest lock)."""
    if not run_id:
        return None
    folder = root / TMP_DIR / f"run-{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / hashlib.sha256(key.encode()).hexdigest()
    if claim.exists():
        holder = claim.read_text()
        return None if holder == item else holder
    claim.write_text(item)
    return None


def _ingest(root: Path, item: str, opts: IngestOptions, run_id: str) -> tuple[str | None, str, str | None]:
    """(key, "written" / "unchanged" / "failed", reason) of one file, committed as ``ingest_dataset`` does."""
    # A snapshot is enough to skip an unchanged file; commits below re-read under the manifest lock.
    known = known_hashes(root, read_manifest(root))
    tmp_dir = root / TMP_DIR / f"task-{uuid.uuid4().hex}"
    tmp_dir.mkdir(parents=True)
    try:
        res = stage_file(item, tmp_dir, known, opts)
        with manifest_update(root) as manifest:
            if res["status"] == "unchanged":
                manifest["failures"].pop(item, None)
                return res["key"], "unchanged", None
            if res["status"] == "staged":
                other = _claim(root, run_id, res["key"], item)
                if other is None:
                    target = partition_file(root, res["key"])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(res["tmp"], target)  # atomic: readers see the old file or the new one
                    manifest["partitions"][res["key"]] = res["entry"]
                    manifest["features"].pop(res["key"], None)  # stale: rebuilt just below
                    manifest["failures"].pop(item, None)
                    return res["key"], "written", None
                reason = f"partition {res['key']} also comes from {other} in this run"
            else:
                where = f" (partition {res['key']} left as it was)" if res.get("key") else ""
                reason = res["reason"] + where
            manifest["failures"][item] = {"reason": reason, "at": now_iso()}
            return res.get("key"), "failed", reason
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _revalidate(root: Path, key: str, vcfg: ValidateConfig) -> tuple[str, str, str | None]:
    """(key, "validated" / "failed", reason) of one stored partition, recorded as ``validate_dataset`` does."""
    if key not in read_manifest(root)["partitions"]:
        return key, "failed", f"no partition {key} in {root}; see `hftpipe lake ls`"
    try:
        res = validate_partition(root, key, vcfg)
    except Exception as exc:  # an unreadable partition is this partition's failure
        log.exception("validate %s failed", key)
        return key, "failed", _reason(exc)
    reason = res.pop("reason", None)
    with manifest_update(root) as manifest:
        manifest["partitions"][key]["validation"] = res | {"at": now_iso()}
    return key, "failed" if reason else "validated", reason


def _features(root: Path, key: str, cfg: FeaturesConfig, tick_bars: str) -> tuple[str, str | None]:
    """("written" / "unchanged" / "failed", reason) of one partition's features, as ``features_dataset``."""
    fingerprint = config_fingerprint(cfg, tick_bars)
    if features_current(root, read_manifest(root), key, fingerprint):
        return "unchanged", None
    try:
        built = build_partition(root, key, cfg, tick_bars)
    except Exception as exc:  # one partition's crash is listed, not fatal
        log.exception("features %s failed", key)
        with manifest_update(root) as manifest:
            manifest["features"].pop(key, None)
        return "failed", _reason(exc)
    with manifest_update(root) as manifest:
        manifest["features"][key] = features_entry(root, manifest, key, built, fingerprint)
    return "written", None


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


def collect_items(results: Sequence[dict[str, Any] | str], root: str | Path | None = None, *,
                  features_cfg: FeaturesConfig | None = None, split: str = "by_date", keep_going: bool = False,
                  lock_wait: float = 60.0) -> RunReport:
    """Assign splits across partitions, clear staged leftovers, and report the run's items.

    Args:
        results: what :func:`process_item` returned for every item (dicts, or their JSON).
    Raises:
        PartitionsFailed: some items failed and ``keep_going`` is false (each is named with its reason).
        LakeBusy: the dataset stayed locked for ``lock_wait`` seconds (a task or another run still writes).
    """
    started = time.perf_counter()
    root = resolve_root(root)
    cfg = features_cfg or FeaturesConfig()
    parsed = [json.loads(r) if isinstance(r, str) else r for r in results]
    report = RunReport(root=root, action="lake pipeline")
    with locked(root, wait=lock_wait):  # exclusive: no task is running, so .tmp holds only leftovers
        manifest = read_manifest(root)
        for key, name in assign_splits(manifest, cfg.train_frac, cfg.val_frac, split).items():
            manifest["features"][key]["split"] = name
        write_manifest(root, manifest)
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)
    for res in sorted(parsed, key=lambda r: r["item"]):
        if res["status"] == "failed":
            report.failed.append(Failure(res["item"], res["reason"]))
        else:
            (report.written if res["status"] == "written" else report.unchanged).append(res["key"])
    report.seconds = time.perf_counter() - started
    for line in report.summary_lines():
        log.info(line)
    if not keep_going:
        report.raise_if_failed()
    return report
