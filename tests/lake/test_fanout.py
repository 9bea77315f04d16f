"""One partition per call (hftpipe.lake.fanout): parallel processes on one root, same outputs as the CLI."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hftpipe.errors import DataFormatError, LakeBusy, PartitionsFailed
from hftpipe.lake import features_dataset, features_dir, ingest_dataset, read_manifest
from hftpipe.lake.dataset import locked, manifest_update, partition_file
from hftpipe.lake.fanout import collect_items, list_items, process_item
from tests.lake.conftest import rewrite_zip

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
GOOG, AAPL = (RAW / f"LOBSTER_SampleFile_{s}_2012-06-21_1.zip" for s in ("GOOG", "AAPL"))
GOOG_KEY, AAPL_KEY = (f"source=lobster_l1/symbol={s}/date=2012-06-21" for s in ("GOOG", "AAPL"))
# Fields that record when or how fast, not what: they differ between any two runs.
VOLATILE = {"written_at", "ingest_seconds", "seconds", "path", "at"}


def _stable(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _stable(v) for k, v in node.items() if k not in VOLATILE}
    return node


def stable_manifest(root: Path) -> dict[str, Any]:
    """The manifest without timings and absolute feature paths (they name the root)."""
    return _stable(read_manifest(root))


def assert_same_outputs(root: Path, expected_root: Path, keys: list[str]) -> None:
    """Same manifest and the same partition and feature tables as another root's."""
    assert stable_manifest(root) == stable_manifest(expected_root)
    for key in keys:
        pd.testing.assert_frame_equal(pd.read_parquet(partition_file(root, key)),
                                      pd.read_parquet(partition_file(expected_root, key)))
        got, want = features_dir(root, key), features_dir(expected_root, key)
        names = sorted(p.name for p in want.iterdir())
        assert names and sorted(p.name for p in got.iterdir()) == names
        for name in names:
            if name.endswith(".parquet"):
                pd.testing.assert_frame_equal(pd.read_parquet(got / name), pd.read_parquet(want / name))


# -- locks (fast) ----------------------------------------------------------------------------------

def _add_keys(root: str, worker: int, n: int) -> None:
    for i in range(n):
        with manifest_update(Path(root)) as manifest:
            manifest["failures"][f"w{worker}-{i}"] = {"reason": "x"}
            time.sleep(0.002)  # widen the read-change-write window: without the lock, updates get lost


def test_manifest_updates_from_parallel_processes_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_keys, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(read_manifest(tmp_path)["failures"]) == sorted(f"w{w}-{i}" for w in range(4) for i in range(25))


def test_partition_tasks_share_the_dataset_but_never_with_a_whole_dataset_run(tmp_path: Path) -> None:
    # two tasks side by side, then a whole-dataset run trying to start
    with locked(tmp_path, shared=True), locked(tmp_path, shared=True), \
            pytest.raises(LakeBusy, match="partition tasks"), locked(tmp_path):
        pass
    with locked(tmp_path), pytest.raises(LakeBusy, match="a whole-dataset hftpipe run is writing"), \
            locked(tmp_path, shared=True):
        pass


def test_a_waiting_task_starts_when_the_whole_dataset_run_ends(tmp_path: Path) -> None:
    held = threading.Event()

    def run() -> None:
        with locked(tmp_path):
            held.set()
            time.sleep(0.3)

    thread = threading.Thread(target=run)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with locked(tmp_path, shared=True, wait=5):
        waited = time.monotonic() - started
    thread.join()
    assert 0.1 < waited < 5


def test_listing_without_inputs_needs_partitions(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no partitions in .*: pass input files"):
        list_items([], tmp_path)
    with pytest.raises(DataFormatError, match="matches no file"):
        list_items([str(tmp_path / "*.zip")], tmp_path)
    assert list_items([str(RAW / "LOBSTER_SampleFile_*_1.zip")], tmp_path) == [str(AAPL), str(GOOG)]


# -- real files (slow: Great Expectations and the feature builder on two small LOBSTER days) ----------

def _process(item: str, root: str, run_id: str, queue: Any) -> None:
    queue.put(process_item(item, root, run_id=run_id, lock_wait=30))


@pytest.fixture(scope="module")
def cli_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GOOG and AAPL 1-level through the whole-dataset path (what `hftpipe lake ingest/features` runs)."""
    root = tmp_path_factory.mktemp("cli") / "lake"
    ingest_dataset([GOOG, AAPL], root, workers=0)
    features_dataset(root, workers=0)
    return root


@pytest.mark.slow
def test_two_partitions_in_parallel_processes_equal_the_cli(tmp_path: Path, cli_root: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    root = tmp_path / "lake"
    procs = [ctx.Process(target=_process, args=(str(f), str(root), "run-1", queue)) for f in (GOOG, AAPL)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted((r["key"], r["status"], r["ingest"], r["features"]) for r in results) == [
        (AAPL_KEY, "written", "written", "written"), (GOOG_KEY, "written", "written", "written")]
    report = collect_items([json.dumps(r) for r in results], root)
    assert sorted(report.written) == [AAPL_KEY, GOOG_KEY] and not report.failed
    assert not (root / ".tmp").exists()
    assert_same_outputs(root, cli_root, [GOOG_KEY, AAPL_KEY])

    # From the manifest: re-validate each partition; features are current, nothing is rewritten.
    feature_file = features_dir(root, GOOG_KEY) / "features.parquet"
    mtime = feature_file.stat().st_mtime_ns
    again = [process_item(key, root) for key in list_items([], root)]
    assert [(r["ingest"], r["features"], r["status"]) for r in again] == [("validated", "unchanged", "unchanged")] * 2
    assert feature_file.stat().st_mtime_ns == mtime
    assert read_manifest(root)["partitions"][GOOG_KEY]["validation"]["at"]


def _truncate_orderbook(name: str, lines: list[str]) -> list[str]:
    return lines[:-5] if "orderbook" in name else lines


def _drop_last_event(name: str, lines: list[str]) -> list[str]:
    return lines[:-1]


@pytest.mark.slow
def test_failures_and_conflicts_are_listed_and_leave_partitions_as_they_were(tmp_path: Path) -> None:
    root, inbox = tmp_path / "lake", tmp_path / "inbox"
    inbox.mkdir()
    goog = inbox / GOOG.name
    shutil.copy(GOOG, goog)
    changed = inbox / "other" / GOOG.name  # same symbol-day, one event fewer: a conflict in one run
    changed.parent.mkdir()
    rewrite_zip(GOOG, changed, _drop_last_event)
    corrupt = inbox / AAPL.name
    rewrite_zip(AAPL, corrupt, _truncate_orderbook)

    first = process_item(str(goog), root, run_id="run-1")
    assert first["status"] == "written"
    sha, rows = (read_manifest(root)["partitions"][GOOG_KEY][k] for k in ("source_sha256", "rows"))
    conflict = process_item(str(changed), root, run_id="run-1")
    assert conflict["status"] == "failed"
    assert conflict["reason"] == f"partition {GOOG_KEY} also comes from {goog} in this run"
    assert read_manifest(root)["partitions"][GOOG_KEY]["source_sha256"] == sha  # the first one stays
    assert process_item(str(goog), root, run_id="run-1")["status"] == "unchanged"  # a retry is no conflict
    broken = process_item(str(corrupt), root, run_id="run-1")
    assert broken["status"] == "failed" and "truncated file" in broken["reason"]
    assert not partition_file(root, AAPL_KEY).exists()

    with pytest.raises(PartitionsFailed, match=r"2 of 3 failed .*other/LOBSTER_SampleFile_GOOG.*also comes from"):
        collect_items([first, conflict, broken], root)
    manifest = read_manifest(root)
    assert set(manifest["failures"]) == {str(changed), str(corrupt)}
    assert manifest["features"][GOOG_KEY]["split"] == "within"

    # A later run may replace the partition with the changed file: the claim was the run's, not forever.
    replaced = process_item(str(changed), root, run_id="run-2")
    assert (replaced["ingest"], replaced["features"]) == ("written", "written")
    manifest = read_manifest(root)
    assert manifest["partitions"][GOOG_KEY]["rows"] == rows - 1 == len(pd.read_parquet(partition_file(root, GOOG_KEY)))
    assert str(changed) not in manifest["failures"]
