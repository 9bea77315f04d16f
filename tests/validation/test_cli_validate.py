"""`hftpipe validate PATH`: exit 0 on every shipped file; exit 1 naming the failed expectation on corruptions.

Each corruption is made from a real slice of the GOOG level-10 file, written as a LOBSTER CSV pair.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import lobster_zip
from tests.data.lobster_pairs import ASK_SENTINEL, BID_SENTINEL, pair_name, raw_slice, write_pair
from tests.validation.conftest import run_cli

ROWS = 2000
# Raw LOBSTER column positions: messages (time, type, order_id, size, price, direction); book per level k
# (1-based): ask price 4(k-1), ask size 4(k-1)+1, bid price 4(k-1)+2, bid size 4(k-1)+3.
TIME, TYPE, SIZE, PRICE, DIRECTION = 0, 1, 3, 4, 5


def ask_p(k: int) -> int:
    return 4 * (k - 1)


def ask_s(k: int) -> int:
    return 4 * (k - 1) + 1


def bid_p(k: int) -> int:
    return 4 * (k - 1) + 2


def bid_s(k: int) -> int:
    return 4 * (k - 1) + 3


@pytest.mark.parametrize("symbol,levels", [("GOOG", 1), ("GOOG", 5), ("GOOG", 10), ("AAPL", 1)])
def test_every_shipped_file_passes(symbol: str, levels: int, reports: Path) -> None:
    result = run_cli("validate", str(lobster_zip(symbol, levels)))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PASSED: all ")
    assert f"{symbol}, 2012-06-21, {levels} level(s)" in result.stdout
    assert len(list(reports.glob("*.json"))) == 1


def _corrupt_and_validate(tmp_path: Path, corrupt: Callable[[pd.DataFrame, pd.DataFrame], None]) -> str:
    """Write a corrupted GOOG slice as a CSV pair, validate it, check exit 1, return the output."""
    messages, book = raw_slice(ROWS)
    corrupt(messages, book)
    path = write_pair(tmp_path, messages, book)
    result = run_cli("validate", str(path))
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("FAILED: ")
    return result.stdout


def _failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("  [")]


def test_crossed_book(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[500:503, ask_p(1)] = book.iloc[500:503, bid_p(1)] - 100  # ask one cent below the bid

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert ("[book] expect_column_pair_values_a_to_be_greater_than_b (ask_price_1, bid_price_1): "
            "3 unexpected") in out
    assert "neither crossed nor locked" in out
    assert "row 500:" in out and "row 502:" in out
    assert len(_failed_lines(out)) == 1  # nothing else is blamed


def test_locked_book(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[600, ask_p(1)] = book.iloc[600, bid_p(1)]

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "(ask_price_1, bid_price_1): 1 unexpected" in out
    assert "row 600:" in out


def test_unsorted_time(tmp_path) -> None:
    def corrupt(messages, book):
        messages.iloc[[800, 900], TIME] = messages.iloc[[900, 800], TIME].to_numpy()

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_be_increasing (time)" in out
    assert "never goes backwards" in out


def test_nan_price_in_messages(tmp_path) -> None:
    def corrupt(messages, book):
        messages[PRICE] = messages[PRICE].astype(float)
        messages.iloc[300, PRICE] = np.nan  # an empty field in the CSV

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_not_be_null (price): 1 unexpected" in out
    assert "row 300: time=" in out


def test_nan_size_in_book(tmp_path) -> None:
    def corrupt(messages, book):
        book[ask_s(2)] = book[ask_s(2)].astype(float)
        book.iloc[40, ask_s(2)] = np.nan

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[book] expect_column_values_to_not_be_null (ask_size_{k}): 1 unexpected" in out
    assert "row 40: k=2" in out and "ask_size_2=nan" in out


def test_negative_size_in_book(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[1000, bid_s(3)] = -5

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[book] expect_column_values_to_be_between (bid_size_{k}): 1 unexpected" in out
    assert "bid sizes are non-negative and finite" in out
    assert "row 1000: k=3" in out and "bid_size_3=-5" in out


def test_negative_size_in_messages(tmp_path) -> None:
    def corrupt(messages, book):
        messages.iloc[1100, SIZE] = -100

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_be_between (size): 1 unexpected" in out
    assert "size=-100" in out


def test_unknown_event_type(tmp_path) -> None:
    def corrupt(messages, book):
        messages.iloc[1200, TYPE] = 6

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_be_in_set (type): 1 unexpected" in out
    assert "row 1200:" in out and "type=6" in out


def test_unknown_direction(tmp_path) -> None:
    def corrupt(messages, book):
        messages.iloc[1250, DIRECTION] = 0

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_be_in_set (direction): 1 unexpected" in out


def test_non_monotone_ask_levels(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[1300, ask_p(4)] = book.iloc[1300, ask_p(3)] - 100  # level 4 ask below level 3

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[book] expect_column_pair_values_a_to_be_greater_than_b (ask_price_{next}, ask_price_{k})" in out
    assert "ask prices strictly increase with depth" in out
    assert "row 1300: k=3, next=4" in out


def test_non_monotone_bid_levels(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[1350, bid_p(2)] = book.iloc[1350, bid_p(1)]  # equal prices on two levels

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "(bid_price_{k}, bid_price_{next}): 1 unexpected" in out
    assert "bid prices strictly decrease with depth" in out


def test_gap_between_occupied_levels(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[1400, [ask_p(2), ask_s(2)]] = [ASK_SENTINEL, 0]  # level 2 empty, level 3 still quoted

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[book] expect_column_values_to_be_null (ask_price_{next})" in out
    assert "occupied ask levels are contiguous" in out


def test_zero_size_on_an_occupied_level(tmp_path) -> None:
    def corrupt(messages, book):
        book.iloc[50, bid_s(1)] = 0

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "bid size is positive on every occupied level" in out
    assert "row 50: k=1" in out


def test_price_without_size_is_not_an_empty_level(tmp_path) -> None:
    def corrupt(messages, book):
        for k in range(5, 11):  # bid side 4 levels deep, but level 5 keeps its shares: not a real empty level
            book.iloc[60, [bid_p(k), bid_s(k)]] = [BID_SENTINEL, 300 if k == 5 else 0]

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[book] expect_column_values_to_not_be_null (bid_price_{k})" in out
    assert "a bid price is NaN only on an empty level" in out
    assert "row 60: k=5" in out and "bid_size_5=300" in out
    assert len(_failed_lines(out)) == 1


def test_time_outside_session(tmp_path) -> None:
    def corrupt(messages, book):
        messages.iloc[-1, TIME] = 57_700.0  # after the 57,600 s session end the file name declares

    out = _corrupt_and_validate(tmp_path, corrupt)
    assert "[messages] expect_column_values_to_be_between (time): 1 unexpected" in out
    assert "inside the trading session" in out


def test_truncated_orderbook_file(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book.iloc[:-50])

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "[structure] expect_readable_lobster_file" in result.stdout
    assert "truncated file: message file has 2000 rows but orderbook file has 1950" in result.stdout


def test_file_cut_in_the_middle_of_a_line(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book)
    book_path = tmp_path / pair_name("GOOG", "2012-06-21", 10, "orderbook")
    text = book_path.read_text()
    book_path.write_text(text[: len(text) - 120])  # a download cut short: the last line loses its tail

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "row 1999: k=" in result.stdout
    assert "expect_column_values_to_not_be_null (" in result.stdout


def test_wrong_column_count(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book.iloc[:, :-1], levels=10)  # 39 book columns, name says 10

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "[structure] expect_readable_lobster_file" in result.stdout
    assert "wrong column count: orderbook file" in result.stdout and "has 39 columns, expected 40" in result.stdout


def test_wrong_message_column_count(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    messages[6] = 0
    path = write_pair(tmp_path, messages, book)

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "wrong column count: message file" in result.stdout and "has 7 columns, expected 6" in result.stdout


def test_unparseable_numbers(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    messages[PRICE] = messages[PRICE].astype(object)
    messages.iloc[10, PRICE] = "5794OOO"
    path = write_pair(tmp_path, messages, book)

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "[structure] expect_readable_lobster_file" in result.stdout
    assert "cannot be parsed as numbers" in result.stdout


def test_missing_partner_file(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path, messages, book)
    (tmp_path / pair_name("GOOG", "2012-06-21", 10, "orderbook")).unlink()

    result = run_cli("validate", str(path))

    assert result.exit_code == 1
    assert "partner file" in result.stdout and "is missing" in result.stdout


def test_folder_holding_a_pair_passes(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    write_pair(tmp_path / "day", messages, book, symbol="NVDA", date="2024-03-01")

    result = run_cli("validate", str(tmp_path / "day"))

    assert result.exit_code == 0, result.stdout
    assert "(NVDA, 2024-03-01, 10 level(s), 2000 rows)" in result.stdout


def test_corrupted_pair_inside_a_zip(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    book.iloc[700, ask_p(1)] = book.iloc[700, bid_p(1)] - 500
    path = write_pair(tmp_path / "csv", messages, book)
    archive = tmp_path / "LOBSTER_GOOG_2012-06-21_10.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for member in path.parent.iterdir():
            zf.write(member, member.name)

    result = run_cli("validate", str(archive))

    assert result.exit_code == 1
    assert "(ask_price_1, bid_price_1): 1 unexpected" in result.stdout and "row 700:" in result.stdout


def test_zip_without_an_orderbook(tmp_path) -> None:
    messages, book = raw_slice(ROWS)
    path = write_pair(tmp_path / "csv", messages, book)
    archive = tmp_path / "only_messages.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, path.name)

    result = run_cli("validate", str(archive))

    assert result.exit_code == 1
    assert "[structure] expect_readable_lobster_file" in result.stdout
    assert "found 1 and 0" in result.stdout
