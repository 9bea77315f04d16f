"""Reports land under HFTPIPE_HOME; a failed validation stops ingest and keeps what is already stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftpipe.config import ValidateConfig
from hftpipe.data import read_events
from hftpipe.errors import ValidationFailed
from hftpipe.prepare import validate_path
from tests.data.lobster_pairs import raw_slice, write_pair
from tests.validation.conftest import run_cli

ROWS = 1500


def _crossed_pair(folder: Path) -> Path:
    messages, book = raw_slice(ROWS)
    book.iloc[100:110, 0] = book.iloc[100:110, 2] - 100  # ask below bid: a crossed book
    return write_pair(folder, messages, book)


def test_reports_written_under_hftpipe_home(tmp_path, hftpipe_home: Path) -> None:
    result = run_cli("validate", str(_crossed_pair(tmp_path / "bad")))

    assert result.exit_code == 1
    folder = hftpipe_home / "reports" / "validation"
    (json_path,) = folder.glob("*.json")
    (md_path,) = folder.glob("*.md")
    assert f"report: {json_path}" in result.stdout
    report = json.loads(json_path.read_text())
    assert report["success"] is False and report["subject"] == "events"
    assert report["meta"]["symbol"] == "GOOG" and report["meta"]["rows"] == ROWS
    (failure,) = report["failures"]
    assert failure["expectation"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert failure["columns"] == ["ask_price_1", "bid_price_1"] and failure["unexpected_count"] == 10
    assert [row["row"] for row in failure["sample"]] == [100, 101, 102, 103, 104]  # validate.sample_rows = 5
    markdown = md_path.read_text()
    assert markdown.startswith("# Validation report: FAILED")
    assert "## [book] expect_column_pair_values_a_to_be_greater_than_b" in markdown
    assert "| row | time | ask_price_1 | bid_price_1 |" in markdown


def test_passing_report_and_report_dir_option(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path / "good", messages, book)

    result = run_cli("validate", str(path), "--report-dir", str(tmp_path / "out"))

    assert result.exit_code == 0, result.stdout
    (json_path,) = (tmp_path / "out").glob("*.json")
    report = json.loads(json_path.read_text())
    assert report["success"] is True and report["failures"] == [] and report["checks"] > 100
    assert "Every expectation holds." in json_path.with_suffix(".md").read_text()


def test_raise_if_failed_is_a_readable_multi_line_message(tmp_path) -> None:
    result = validate_path(_crossed_pair(tmp_path), ValidateConfig(sample_rows=2))

    with pytest.raises(ValidationFailed) as info:
        result.raise_if_failed()

    lines = str(info.value).splitlines()
    assert lines[0].startswith("FAILED: 1 of ") and "GOOG, 2012-06-21, 10 level(s), 1500 rows" in lines[0]
    assert "expect_column_pair_values_a_to_be_greater_than_b (ask_price_1, bid_price_1): 10 unexpected" in lines[1]
    assert lines[2].strip().startswith("row 100: time=") and len(lines) == 4  # two sample rows
    assert info.value.exit_code == 1


def test_ingest_of_a_corrupted_file_fails_and_keeps_the_stored_table(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    good = write_pair(tmp_path / "good", messages, book)
    out = tmp_path / "events.parquet"
    first = run_cli("ingest", str(good), "-o", str(out))
    assert first.exit_code == 0, first.output
    stored = out.read_bytes()

    second = run_cli("ingest", str(_crossed_pair(tmp_path / "bad")), "-o", str(out))

    assert second.exit_code == 1
    assert "error: FAILED: 1 of" in second.stderr
    assert "expect_column_pair_values_a_to_be_greater_than_b (ask_price_1, bid_price_1)" in second.stderr
    assert out.read_bytes() == stored  # nothing already stored is lost
    assert not list(tmp_path.glob("events.parquet.tmp"))
    assert read_events(out).meta.rows == ROWS


def test_ingest_of_an_unreadable_file_writes_nothing(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book.iloc[:-1])  # truncated orderbook
    out = tmp_path / "events.parquet"

    result = run_cli("ingest", str(path), "-o", str(out))

    assert result.exit_code != 0
    assert "truncated file" in result.stderr
    assert not out.exists()


def test_validate_a_canonical_parquet(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    out = tmp_path / "events.parquet"
    assert run_cli("ingest", str(write_pair(tmp_path, messages, book)), "-o", str(out)).exit_code == 0

    result = run_cli("validate", str(out))

    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith("PASSED") and "1500 rows" in result.stdout


def test_a_parquet_without_hftpipe_metadata_is_a_failed_check(tmp_path) -> None:
    import pandas as pd

    path = tmp_path / "other.parquet"
    pd.DataFrame({"time": [1.0, 2.0]}).to_parquet(path)

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "[structure] expect_readable_lobster_file" in result.stdout
    assert "was not written by `hftpipe ingest`" in result.stdout


def test_markdown_lists_template_rows_that_name_different_levels(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    book.iloc[200, 4 * 3 + 1] = -1  # ask size at level 4
    book.iloc[201, 4 * 6 + 1] = -2  # ask size at level 7
    result = validate_path(write_pair(tmp_path, messages, book), ValidateConfig())

    _, md_path = result.write_reports(tmp_path / "reports")

    markdown = md_path.read_text()
    assert "## [book] expect_column_values_to_be_between" in markdown
    assert "- row=200, k=4, time=" in markdown and "ask_size_4=-1" in markdown
    assert "- row=201, k=7, time=" in markdown and "ask_size_7=-2" in markdown
