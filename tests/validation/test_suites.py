"""Stored suites are plain GE suites; templates expand for any level count; the GOOG level-10 run is fast."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import great_expectations as gx
import numpy as np
import pandas as pd
import pytest

from hftpipe.config import ValidateConfig
from hftpipe.data import load_lobster
from hftpipe.data.schema import EventTable
from hftpipe.prepare import validate_path
from hftpipe.validation import Templates, validate_table
from hftpipe.validation.suites import expand_suite, fill, load_suite_json
from tests.conftest import REPO, lobster_zip
from tests.data.lobster_pairs import ASK_SENTINEL, BID_SENTINEL, raw_slice, write_pair

ROWS = 1000


@pytest.mark.parametrize("name", ["messages", "book", "features"])
def test_stored_suites_load_as_great_expectations_suites(name: str) -> None:
    raw = json.loads((REPO / "expectations" / f"{name}.json").read_text())
    suite = gx.ExpectationSuite(**raw)
    assert suite.name == name and len(suite.expectations) == len(raw["expectations"])
    templates = Templates(levels=3, horizons=(10, 50), features=("spread", "ofi_10"))
    concrete = [fill(e.config, dict(s)) for e in expand_suite(raw, templates) for s in e.subs]
    assert not [c for c in concrete if re.search(r"\{(k|next|h|feature)\}", json.dumps(c["kwargs"]))]
    gx.ExpectationSuite(name=f"{name}-expanded", expectations=concrete)  # every expansion is a valid expectation


def test_templates_cover_every_level_and_adjacent_pair() -> None:
    book = load_suite_json("book")
    for levels in (1, 3, 50):
        entries = expand_suite(book, Templates(levels=levels))
        kinds = {e.kind: len(e.subs) for e in entries if e.kind}
        assert kinds.get("level") == levels
        assert kinds.get("adjacent_level", 0) == levels - 1  # a one-level book has no depth ordering to check


def _deep_book(book: pd.DataFrame, levels: int, occupied: int) -> pd.DataFrame:
    """Extend a real 10-level book to ``levels``: one-tick steps beyond level 10, empty beyond ``occupied``."""
    cols = {}
    for k in range(1, levels + 1):
        if k <= 10:
            ask_p, ask_s, bid_p, bid_s = (book[4 * (k - 1) + j] for j in range(4))
        elif k <= occupied:
            ask_p, bid_p = book[36] + 100 * (k - 10), book[38] - 100 * (k - 10)
            ask_s, bid_s = book[37], book[39]
        else:
            ask_p, bid_p = pd.Series(ASK_SENTINEL, book.index), pd.Series(BID_SENTINEL, book.index)
            ask_s = bid_s = pd.Series(0, book.index)
        for j, col in enumerate((ask_p, ask_s, bid_p, bid_s)):
            cols[4 * (k - 1) + j] = col
    return pd.DataFrame(cols)


def test_fifty_levels_with_empty_tail_pass(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, _deep_book(book, 50, occupied=10))

    result = validate_path(path, ValidateConfig())

    assert result.success, "\n".join(result.summary_lines())
    assert result.meta["levels"] == 50


def test_fifty_levels_corruption_at_depth_is_located(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    deep = _deep_book(book, 50, occupied=45)
    deep.loc[321, 4 * 37] = deep.loc[321, 4 * 36]  # ask at level 38 equals level 37
    path = write_pair(tmp_path, messages, deep)

    result = validate_path(path, ValidateConfig())

    (failure,) = result.failures
    assert failure.columns == ("ask_price_{next}", "ask_price_{k}") and failure.unexpected_count == 1
    assert failure.sample[0]["row"] == 321 and failure.sample[0]["k"] == "37" and "ask_price_38" in failure.sample[0]
    assert "checked at each of 49 adjacent-level pairs" in failure.detail


def test_declared_levels_must_match_the_table(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    table = load_lobster(write_pair(tmp_path, messages, book))
    wrong = EventTable(table.frame, dataclasses.replace(table.meta, levels=12))

    result = validate_table(wrong, ValidateConfig())

    names = {f.expectation for f in result.failures}
    assert {"expect_table_column_count_to_equal", "expect_table_columns_to_match_ordered_list"} <= names
    assert any("missing column(s): ask_price_11" in f.detail for f in result.failures)


def test_rows_must_match_the_metadata(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    table = load_lobster(write_pair(tmp_path, messages, book))
    short = EventTable(table.frame.iloc[:-3], table.meta)

    result = validate_table(short, ValidateConfig())

    (failure,) = result.failures
    assert failure.expectation == "expect_table_row_count_to_equal" and failure.observed == ROWS - 3


def test_goog_level10_validates_in_a_few_cpu_seconds() -> None:
    table = load_lobster(lobster_zip("GOOG", 10))
    small = EventTable(table.frame.iloc[:100], dataclasses.replace(table.meta, rows=100))
    validate_table(small, ValidateConfig())  # pays for the GE import and context once

    start = time.process_time()  # CPU time: the machine's other jobs do not count
    result = validate_table(table, ValidateConfig())
    cpu = time.process_time() - start

    assert result.success and result.meta["rows"] == 147916
    assert cpu < 5.0, f"validating GOOG level 10 took {cpu:.2f} CPU s"
    assert np.isfinite(result.seconds)
