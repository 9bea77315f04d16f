"""The partitioned dataset: inputs, manifest, no-op reruns, atomic replacement, failures kept apart."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.errors import DataFormatError, LakeBusy, PartitionsFailed
from hftpipe.lake import (
    assign_splits,
    expand_inputs,
    ingest_dataset,
    manifest_table,
    read_manifest,
    validate_dataset,
)
from hftpipe.lake.dataset import MANIFEST_FILE, locked, partition_file, write_manifest
from tests.lake.conftest import rewrite_zip

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
MARKET = ["spy-1min-2011-01", "sp500-1min-2019-11", "eurusd-1h-2017", "btcusd-trades-2011-2013"]


def shipped_sha256() -> dict[str, str]:
    """File name -> sha256 from the SHA256SUMS files shipped with the data (an independent record)."""
    sums = {}
    for path in [RAW / "SHA256SUMS", *(RAW / m / "SHA256SUMS" for m in MARKET)]:
        for line in path.read_text().splitlines():
            digest, name = line.split()
            sums[Path(name.lstrip("*")).name] = digest
    return sums


# -- inputs, splits, manifest (fast) ---------------------------------------------------------------

def test_folders_skip_docs_and_count_a_csv_pair_once(tmp_path: Path) -> None:
    pair = tmp_path / "pair"
    pair.mkdir()
    for kind in ("message", "orderbook"):
        (pair / f"X_2012-06-21_0_1_{kind}_1.csv").write_text("1\n")
    (pair / "README.md").write_text("docs")
    (pair / "SHA256SUMS").write_text("x")
    (pair / ".hidden.csv").write_text("x")
    files = expand_inputs([tmp_path, RAW / "spy-1min-2011-01"])
    assert [f.name for f in files] == ["X_2012-06-21_0_1_message_1.csv", "nt-spy-minute-2011.csv.gz"]


def test_glob_and_repeated_inputs_give_each_file_once() -> None:
    files = expand_inputs([str(RAW / "LOBSTER_*_1.zip"), RAW / "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"])
    assert [f.name for f in files] == ["LOBSTER_SampleFile_AAPL_2012-06-21_1.zip",
                                       "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"]


@pytest.mark.parametrize(("item", "message"), [("nowhere/*.zip", "matches no file"),
                                               ("nowhere.zip", "does not exist")])
def test_missing_inputs_are_named(tmp_path: Path, item: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        expand_inputs([str(tmp_path / item)])


def test_whole_days_go_to_one_split_by_date() -> None:
    days = [f"source=lobster_l1/symbol=A/date=2012-06-{d:02d}" for d in range(11, 21)]
    one = ["source=lobster_l1/symbol=B/date=2012-06-21"]
    manifest = {"features": {k: {} for k in days[::-1] + one}}
    splits = assign_splits(manifest, 0.7, 0.15, "by_date")
    assert [splits[k] for k in days] == ["train"] * 7 + ["val", "val"] + ["test"]  # round(1.5) = 2 val days
    assert splits[one[0]] == "within"  # one day: the row split inside the partition applies
    assert set(assign_splits(manifest, 0.7, 0.15, "within").values()) == {"within"}
    three = {"features": {k: {} for k in days[:3]}}
    assert [assign_splits(three, 0.7, 0.15, "by_date")[k] for k in days[:3]] == ["train", "val", "test"]


def test_manifest_is_replaced_whole_and_a_second_writer_is_refused(tmp_path: Path) -> None:
    manifest = read_manifest(tmp_path)
    manifest["partitions"]["source=x/symbol=Y/date=2020-01-01"] = {"rows": 1}
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # no temporary file left behind
    with locked(tmp_path), pytest.raises(LakeBusy, match="wait for it"), locked(tmp_path):
        pass


# -- the shipped files (slow: Great Expectations runs on every file) -------------------------------

@pytest.fixture(scope="module")
def shipped_lake(tmp_path_factory: pytest.TempPathFactory, dask_client) -> tuple[Path, object]:
    """Every shipped LOBSTER zip plus the bar and trade folders, ingested in one call on 2 Dask workers."""
    root = tmp_path_factory.mktemp("lake")
    report = ingest_dataset([str(RAW / "*.zip"), *(RAW / m for m in MARKET)], root, client=dask_client)
    return root, report


@pytest.mark.slow
def test_one_call_ingests_every_shipped_file_with_a_manifest(shipped_lake) -> None:
    root, report = shipped_lake
    assert report.failed == [] and report.unchanged == []
    manifest = read_manifest(root)
    parts = manifest["partitions"]
    expected = {
        "source=lobster_l1/symbol=AAPL/date=2012-06-21", "source=lobster_l1/symbol=GOOG/date=2012-06-21",
        "source=lobster_l5/symbol=GOOG/date=2012-06-21", "source=lobster_l10/symbol=GOOG/date=2012-06-21",
        "source=bars_1min/symbol=SPY/date=2011-01-03_2011-01-31",
        "source=bars_1min/symbol=SP500/date=2019-11-05_2019-11-08",
        "source=bars_1h/symbol=EURUSD/date=2017-01-01_2017-12-29",
        "source=ticks/symbol=BTCUSD/date=2011-09-13_2012-05-31",
        "source=ticks/symbol=BTCUSD/date=2013-01-01",
    }
    assert set(parts) == expected == set(report.written)
    sums = shipped_sha256()
    for key, entry in parts.items():
        assert partition_file(root, key).exists()
        assert entry["source_sha256"] == sums[Path(entry["source"]).name], key
        assert entry["validation"]["success"] and entry["validation"]["checks"] > 0
        assert entry["start"] < entry["end"] and entry["written_at"]
    goog10 = parts["source=lobster_l10/symbol=GOOG/date=2012-06-21"]
    assert goog10["levels"] == 10 and goog10["kind"] == "events"
    # LOBSTER times are New York local: the 09:30-16:00 session is 13:30-20:00 UTC in June (EDT).
    assert goog10["start"].startswith("2012-06-21T13:30") and goog10["end"].startswith("2012-06-21T19:59")
    assert parts["source=bars_1min/symbol=SPY/date=2011-01-03_2011-01-31"]["rows"] == 14180
    assert parts["source=ticks/symbol=BTCUSD/date=2013-01-01"]["rows"] == 2331
    table = manifest_table(root)
    assert len(table) == 9 and table["valid"].all()


@pytest.mark.slow
def test_rerun_is_a_no_op(shipped_lake) -> None:
    root, _ = shipped_lake
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    manifest = (root / MANIFEST_FILE).read_text()
    result = CliRunner().invoke(main, ["lake", "ingest", "--root", str(root), "--workers", "0",
                                       str(RAW / "*.zip"), *(str(RAW / m) for m in MARKET)])
    assert result.exit_code == 0, result.output
    assert "0 written, 9 unchanged, 0 failed" in result.output
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == before
    assert json.loads((root / MANIFEST_FILE).read_text()) == json.loads(manifest)


@pytest.mark.slow
def test_ls_prints_the_manifest(shipped_lake) -> None:
    root, _ = shipped_lake
    result = CliRunner().invoke(main, ["lake", "ls", "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "lobster_l10" in result.output and "EURUSD" in result.output and "2012-06-21" in result.output


# -- a corrupted or changed file (slow: two small LOBSTER files validated) -------------------------

def _drop_last_event(name: str, lines: list[str]) -> list[str]:
    return lines[:-1]


def _truncate_orderbook(name: str, lines: list[str]) -> list[str]:
    return lines[:-5] if "orderbook" in name else lines


@pytest.mark.slow
def test_corrupted_file_fails_only_its_partition_and_a_changed_one_replaces_it(tmp_path: Path) -> None:
    inbox, root = tmp_path / "inbox", tmp_path / "lake"
    inbox.mkdir()
    goog, aapl = (inbox / f"LOBSTER_SampleFile_{s}_2012-06-21_1.zip" for s in ("GOOG", "AAPL"))
    shutil.copy(RAW / goog.name, goog)
    shutil.copy(RAW / aapl.name, aapl)
    ingest_dataset([inbox], root, workers=0)
    goog_key = "source=lobster_l1/symbol=GOOG/date=2012-06-21"
    goog_part = partition_file(root, goog_key)
    old_entry = read_manifest(root)["partitions"][goog_key]
    old_mtime, old_bytes = goog_part.stat().st_mtime_ns, goog_part.read_bytes()

    rewrite_zip(RAW / goog.name, goog, _truncate_orderbook)
    with pytest.raises(PartitionsFailed, match=r"GOOG_2012-06-21_1\.zip: DataFormatError: truncated file"):
        ingest_dataset([inbox], root, workers=0)
    report = ingest_dataset([inbox], root, workers=0, keep_going=True)
    assert [f.item for f in report.failed] == [str(goog)]
    assert "orderbook file has" in report.failed[0].reason
    assert report.unchanged == ["source=lobster_l1/symbol=AAPL/date=2012-06-21"] and report.written == []
    # The old partition survives, byte for byte, and the manifest still describes it.
    assert goog_part.stat().st_mtime_ns == old_mtime and goog_part.read_bytes() == old_bytes
    manifest = read_manifest(root)
    assert manifest["partitions"][goog_key] == old_entry
    assert "truncated" in manifest["failures"][str(goog)]["reason"]
    assert not any((root / ".tmp").iterdir())  # nothing staged is left behind

    # The CLI: exit 1 naming the file, or 0 with --keep-going (the failure still listed).
    failed = CliRunner().invoke(main, ["lake", "ingest", "--root", str(root), "--workers", "0", str(inbox)])
    assert failed.exit_code == 1 and f"FAILED {goog}" in failed.output
    kept = CliRunner().invoke(main, ["lake", "ingest", "--root", str(root), "--workers", "0", "--keep-going",
                                     str(inbox)])
    assert kept.exit_code == 0 and f"FAILED {goog}" in kept.output
    assert "last ingest FAILED" in CliRunner().invoke(main, ["lake", "ls", "--root", str(root)]).output

    # A valid change (one event fewer) replaces the partition; the failure record is cleared.
    rewrite_zip(RAW / goog.name, goog, _drop_last_event)
    report = ingest_dataset([inbox], root, workers=0)
    assert report.written == [goog_key]
    entry = read_manifest(root)["partitions"][goog_key]
    assert entry["rows"] == old_entry["rows"] - 1 and entry["source_sha256"] != old_entry["source_sha256"]
    assert pd.read_parquet(goog_part).shape[0] == old_entry["rows"] - 1
    assert str(goog) not in read_manifest(root)["failures"]
    os.utime(goog)  # a touched but identical file is still a no-op (the hash decides, not the mtime)
    assert ingest_dataset([inbox], root, workers=0).unchanged == [
        "source=lobster_l1/symbol=AAPL/date=2012-06-21", goog_key]


    # Re-validation of the stored partitions; one damaged on disk is listed, the other still passes.
    aapl_key = "source=lobster_l1/symbol=AAPL/date=2012-06-21"
    partition_file(root, aapl_key).write_bytes(b"PAR1 damaged")
    report = validate_dataset(root, workers=0, keep_going=True)
    assert report.written == [goog_key] and [f.item for f in report.failed] == [aapl_key]
    assert read_manifest(root)["partitions"][goog_key]["validation"]["success"]


# -- config and CLI mistakes (fast) ----------------------------------------------------------------

@pytest.mark.parametrize(("override", "message"), [
    ("lake.workers=two", "lake.workers: 'two' is not int or null"),
    ("lake.split=random", "lake.split: 'random' is not one of"),
    ("lake.nodes=3", "unknown key(s) in section 'lake': nodes"),
])
def test_lake_config_is_strict(override: str, message: str) -> None:
    from hftpipe.config import load_config
    from hftpipe.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)


def test_workers_and_scheduler_together_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lake", "ingest", "--root", str(tmp_path), "--workers", "2",
                                       "--scheduler", "tcp://127.0.0.1:1", str(RAW / "README.md")])
    assert result.exit_code == 2 and "pass --workers or --scheduler, not both" in result.output


def test_ls_of_an_empty_dataset_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lake", "ls", "--root", str(tmp_path)])
    assert result.exit_code == 0 and "hftpipe lake ingest PATHS" in result.output


def _unknown_event_type(name: str, lines: list[str]) -> list[str]:
    if "message" not in name:
        return lines
    cells = lines[0].split(",")
    cells[1] = "9"  # LOBSTER event types are 1-5 (7: halt)
    return [",".join(cells), *lines[1:]]


@pytest.mark.slow
def test_a_file_failing_validation_writes_nothing_and_names_the_check(tmp_path: Path) -> None:
    bad = tmp_path / "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"
    rewrite_zip(RAW / bad.name, bad, _unknown_event_type)
    root = tmp_path / "lake"
    report = ingest_dataset([bad], root, workers=0, keep_going=True)
    assert report.written == [] and [f.item for f in report.failed] == [str(bad)]
    reason = report.failed[0].reason
    assert reason.startswith("validation failed (1 of ") and "expect_column_values_to_be_in_set" in reason
    assert "(partition source=lobster_l1/symbol=GOOG/date=2012-06-21 left as it was)" in reason
    assert not partition_file(root, "source=lobster_l1/symbol=GOOG/date=2012-06-21").exists()
    assert read_manifest(root)["partitions"] == {}


def test_unreachable_scheduler_is_a_config_error() -> None:
    from hftpipe.errors import ConfigError
    from hftpipe.lake.runner import dask_client

    refused = pytest.raises(ConfigError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    with refused, dask_client(scheduler="tcp://127.0.0.1:9", connect_timeout="1s"):
        pass


@pytest.mark.slow
def test_an_l3_capture_folder_is_one_partition_built_by_the_book_builder(tmp_path: Path) -> None:
    capture = RAW / "bitstamp-btcusd-l3-2026-05-02"
    assert expand_inputs([capture]) == [capture]  # its trades file is not a second input
    first = ingest_dataset([capture], tmp_path, workers=0)
    assert not first.failed and len(first.written) == 1
    entry = next(iter(json.loads((tmp_path / MANIFEST_FILE).read_text())["partitions"].values()))
    assert entry["levels"] == 10 and entry["loader_report"]["unknown_deletes"] >= 0
    assert ingest_dataset([capture], tmp_path, workers=0).unchanged  # a rerun is a no-op
