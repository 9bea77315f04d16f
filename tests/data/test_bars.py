"""Bar loaders: real files around their boundaries, hand-made daylight-saving switches, bad inputs."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.data.bars import (
    BAR_COLUMNS,
    bar_end,
    check_bars,
    exchange_time,
    load_bars,
    local_to_utc,
    read_bars,
    sniff_bar_format,
    write_bars,
)
from hftpipe.errors import DataFormatError
from hftpipe.prepare import validate_market_path
from hftpipe.validation.bars import validate_bars
from tests.conftest import RAW, REPO

SPY = RAW / "spy-1min-2011-01" / "nt-spy-minute-2011.csv.gz"
SP500 = RAW / "sp500-1min-2019-11" / "SP500_NOV2019_IDayRVol.csv"
EURUSD = RAW / "eurusd-1h-2017" / "FOREX_EURUSD_1H_ASK.csv"
NY = "America/New_York"


@pytest.fixture(scope="module")
def spy():
    return load_bars(SPY)


def _spy_lines() -> list[str]:
    return gzip.decompress(SPY.read_bytes()).decode().splitlines()


# --------------------------------------------------------------------------------------------------
# Real SPY slice: UTC NinjaTrader stamps at bar END, January 2011 (EST, no switch inside)


def test_spy_first_and_last_bar_in_utc_and_exchange_time(spy) -> None:
    lines = _spy_lines()
    assert lines[0].startswith("20110103 090100;") and lines[-1].startswith("20110201 010000;")
    f = spy.frame
    assert list(f.columns) == list(BAR_COLUMNS) and str(f["ts"].dtype) == "datetime64[ns, UTC]"
    assert spy.meta.rows == len(lines) == 14180 and spy.meta.bar_size == "1min"
    assert (spy.meta.source_tz, spy.meta.source_stamp, spy.meta.exchange_tz) == ("UTC", "end", NY)
    # Stamped 09:01 at its end: the bar opened 09:00 UTC = 04:00 EST, the start of US pre-market.
    assert f["ts"].iat[0] == pd.Timestamp("2011-01-03 09:00", tz="UTC")
    assert bar_end(spy).iat[0] == pd.Timestamp("2011-01-03 09:01", tz="UTC")
    local = exchange_time(spy)
    assert local.iat[0] == pd.Timestamp("2011-01-03 04:00", tz=NY)
    assert local.iat[0].utcoffset() == pd.Timedelta(hours=-5)
    # Month boundary: the last bar is on 1 February in UTC but still 31 January in New York.
    assert f["ts"].iat[-1] == pd.Timestamp("2011-02-01 00:59", tz="UTC")
    assert local.iat[-1] == pd.Timestamp("2011-01-31 19:59", tz=NY)
    # Values are the file's, row for row.
    first = [float(x) for x in lines[0].split(";")[1:]]
    assert f.loc[0, ["open", "high", "low", "close", "volume"]].tolist() == first


def test_spy_day_boundaries_follow_the_exchange_day_not_the_utc_day(spy) -> None:
    local = exchange_time(spy)
    utc_dates = spy.frame["ts"].dt.date
    # Late after-hours bars fall on the next UTC day (up to 01:00 UTC) but belong to the same NY day.
    rolled = utc_dates != local.dt.date
    # Exactly the bars opening 00:00-00:59 UTC (stamped 00:01-01:00): 623 of them.
    assert (rolled == (spy.frame["ts"].dt.hour == 0)).all() and rolled.sum() == 623
    assert (local[rolled].dt.hour == 19).all()
    # UTC Saturdays hold Friday evening bars: no bar trades on a New York weekend.
    assert set(spy.frame["ts"].dt.dayofweek.unique()) >= {5}
    assert set(local.dt.dayofweek.unique()) == {0, 1, 2, 3, 4}
    # The exchange days are exactly NYSE's trading days of January 2011 (MLK day, the 17th, closed).
    days = sorted(set(local.dt.date))
    expected = [date(2011, 1, d) for d in (3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 18, 19, 20, 21, 24, 25, 26,
                                           27, 28, 31)]
    assert days == expected


def test_spy_extended_hours_in_exchange_time(spy) -> None:
    local = exchange_time(spy)
    minute = local.dt.hour * 60 + local.dt.minute
    assert minute.min() == 4 * 60 and minute.max() == 19 * 60 + 59  # 04:00 to 20:00 ET
    regular = (minute >= 9 * 60 + 30) & (minute < 16 * 60)
    assert (~regular & (minute < 9 * 60 + 30)).sum() > 0 and (minute >= 16 * 60).sum() > 0
    # The regular session is complete: 390 one-minute bars on each of the 20 days.
    assert regular.sum() == 20 * 390
    assert (local[regular].dt.strftime("%H:%M").groupby(local[regular].dt.date).first() == "09:30").all()


def test_spy_roundtrips_through_parquet(spy, tmp_path) -> None:
    path = write_bars(spy, tmp_path / "spy.parquet")
    back = read_bars(path)
    pd.testing.assert_frame_equal(back.frame, spy.frame)
    assert back.meta == spy.meta
    assert load_bars(path).meta.source_sha256 == spy.meta.source_sha256
    assert exchange_time(back.frame).iat[0] == pd.Timestamp("2011-01-03 04:00", tz=NY)


# --------------------------------------------------------------------------------------------------
# Real S&P 500 slice: New York local stamps at bar OPEN; EUR/USD: UTC across its own DST dates


def test_sp500_local_new_york_times_become_utc() -> None:
    table = load_bars(SP500)
    f = table.frame
    assert sniff_bar_format(SP500) == "ohlcv_csv" and table.meta.source_tz == NY
    assert f["ts"].iat[0] == pd.Timestamp("2019-11-05 14:30", tz="UTC")  # 09:30 EST (after 3 Nov)
    assert f["ts"].iat[-1] == pd.Timestamp("2019-11-08 20:59", tz="UTC")
    local = exchange_time(table)
    clock = local.dt.strftime("%H:%M")
    assert (clock.groupby(local.dt.date).first() == "09:30").all()
    # 09:30-15:59, plus a 16:00 bar (the closing print, tiny range) on 5, 6 and 7 November.
    assert sorted(local[clock == "16:00"].dt.day) == [5, 6, 7] and clock.max() == "16:00"
    # The column order in the file is Date,Open,Close,High,Low: read by name, not by position.
    assert f.loc[0, ["open", "high", "low", "close"]].tolist() == [3080.8, 3081.47, 3080.3, 3080.49]


def test_eurusd_utc_stamps_across_the_new_york_switches() -> None:
    """The weekly FX open is 17:00 New York all year: 22:00 UTC in winter, 21:00 UTC in summer."""
    table = load_bars(EURUSD)
    f = table.frame
    assert (table.meta.source_tz, table.meta.bar_size, sniff_bar_format(EURUSD)) == ("UTC", "1h", "dukascopy")
    gap = f["ts"].diff() > pd.Timedelta(hours=24)
    opens = f["ts"][gap]
    sundays = opens[opens.dt.dayofweek == 6]
    local = exchange_time(table)[sundays.index]
    christmas_eve = sundays.dt.date == date(2017, 12, 24)  # the market reopened late that Sunday
    assert (local[~christmas_eve].dt.hour == 17).all()
    utc_hour = sundays[~christmas_eve].dt.hour
    summer = (sundays >= pd.Timestamp("2017-03-12", tz="UTC")) & (sundays < pd.Timestamp("2017-11-05", tz="UTC"))
    assert set(utc_hour[summer[~christmas_eve]]) == {21}
    assert set(utc_hour[~summer[~christmas_eve]]) == {22}
    # Offsets on either side of each New York switch, read from zoneinfo per row.
    for before, after in (("2017-03-10 20:00", "2017-03-13 20:00"), ("2017-11-03 20:00", "2017-11-06 20:00")):
        b = exchange_time(table)[f["ts"] == pd.Timestamp(before, tz="UTC")].iat[0]
        a = exchange_time(table)[f["ts"] == pd.Timestamp(after, tz="UTC")].iat[0]
        assert b.utcoffset() != a.utcoffset()


# --------------------------------------------------------------------------------------------------
# Hand-made daylight-saving cases


def _local_minutes(start: str, end: str) -> pd.Series:
    return pd.Series(pd.date_range(start, end, freq="1min"))


def _write_csv(path: Path, stamps: list[str] | pd.Series, **extra: list[float]) -> Path:
    n = len(stamps)
    frame = pd.DataFrame({"Date": list(stamps), "Open": extra.get("open", [10.0] * n),
                          "High": extra.get("high", [11.0] * n), "Low": extra.get("low", [9.0] * n),
                          "Close": extra.get("close", [10.5] * n), "Volume": extra.get("volume", [100.0] * n)})
    frame.to_csv(path, index=False)
    return path


def test_us_spring_forward_minutes_are_continuous_in_utc(tmp_path) -> None:
    # 2019-03-10: New York clocks jump from 01:59:59 EST to 03:00:00 EDT; 02:xx never happens.
    local = pd.concat([_local_minutes("2019-03-10 01:50", "2019-03-10 01:59"),
                       _local_minutes("2019-03-10 03:00", "2019-03-10 03:09")], ignore_index=True)
    path = _write_csv(tmp_path / "spring.csv", local.dt.strftime("%Y-%m-%d %H:%M:%S"))
    table = load_bars(path, symbol="XYZ", source_tz=NY)
    ts = table.frame["ts"]
    assert ts.iat[0] == pd.Timestamp("2019-03-10 06:50", tz="UTC")
    assert (ts.diff().dropna() == pd.Timedelta("1min")).all()  # 01:59 EST -> 03:00 EDT is one minute
    assert ts.iat[10] == pd.Timestamp("2019-03-10 07:00", tz="UTC")
    assert [t.utcoffset() for t in exchange_time(table).iloc[[9, 10]]] == [pd.Timedelta(hours=-5),
                                                                          pd.Timedelta(hours=-4)]


def test_nonexistent_spring_forward_time_is_an_error_naming_the_row(tmp_path) -> None:
    stamps = ["2019-03-10 01:59:00", "2019-03-10 02:30:00", "2019-03-10 03:00:00"]
    path = _write_csv(tmp_path / "gap.csv", stamps)
    with pytest.raises(DataFormatError) as err:
        load_bars(path, symbol="XYZ", source_tz=NY)
    msg = str(err.value)
    assert "row 1 (line 3)" in msg and "2019-03-10 02:30:00 does not exist in America/New_York" in msg
    assert "\n" not in msg


def test_us_fall_back_hour_is_inferred_from_row_order(tmp_path) -> None:
    # 2019-11-03: 01:00-01:59 happens twice in New York (EDT, then EST).
    local = pd.concat([_local_minutes("2019-11-03 00:55", "2019-11-03 01:59"),
                       _local_minutes("2019-11-03 01:00", "2019-11-03 02:05")], ignore_index=True)
    path = _write_csv(tmp_path / "fall.csv", local.dt.strftime("%Y-%m-%d %H:%M:%S"))
    table = load_bars(path, symbol="XYZ", source_tz=NY)
    ts = table.frame["ts"]
    assert len(ts) == 65 + 66
    assert ts.iat[0] == pd.Timestamp("2019-11-03 04:55", tz="UTC")
    assert (ts.diff().dropna() == pd.Timedelta("1min")).all()
    assert ts.iat[-1] == pd.Timestamp("2019-11-03 07:05", tz="UTC")
    ex = exchange_time(table)
    first_0100 = ex[ex.dt.strftime("%H:%M") == "01:00"]
    assert [t.utcoffset() for t in first_0100] == [pd.Timedelta(hours=-4), pd.Timedelta(hours=-5)]


def test_fall_back_with_bar_end_stamps_keeps_every_bar_one_hour(tmp_path) -> None:
    # Hourly bars opening 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, stamped at their end, local time.
    lines = ["20191103 010000;1;2;1;2;5", "20191103 010000;2;3;2;3;5", "20191103 020000;3;4;3;4;5",
             "20191103 030000;4;5;4;5;5"]
    path = tmp_path / "nt-xyz-hour.txt"
    path.write_text("\n".join(lines) + "\n")
    table = load_bars(path, symbol="XYZ", source_tz=NY, stamp="end", bar_size="1h")
    assert table.frame["ts"].tolist() == [pd.Timestamp(f"2019-11-03 0{h}:00", tz="UTC") for h in (4, 5, 6, 7)]
    assert bar_end(table).iat[-1] == pd.Timestamp("2019-11-03 08:00", tz="UTC")


def test_fall_back_without_a_repeat_needs_a_choice(tmp_path) -> None:
    stamps = ["2019-11-03 00:30:00", "2019-11-03 01:30:00", "2019-11-03 02:30:00"]
    path = _write_csv(tmp_path / "once.csv", stamps)
    with pytest.raises(DataFormatError, match=r"row 1 \(line 3\).*ambiguous.*'earliest'.*'latest'"):
        load_bars(path, symbol="XYZ", source_tz=NY)
    early = load_bars(path, symbol="XYZ", source_tz=NY, ambiguous="earliest", bar_size="1h")
    late = load_bars(path, symbol="XYZ", source_tz=NY, ambiguous="latest", bar_size="1h")
    assert early.frame["ts"].iat[1] == pd.Timestamp("2019-11-03 05:30", tz="UTC")
    assert late.frame["ts"].iat[1] == pd.Timestamp("2019-11-03 06:30", tz="UTC")
    with pytest.raises(DataFormatError, match="ambiguous"):
        load_bars(path, symbol="XYZ", source_tz=NY, ambiguous="raise")


@pytest.mark.parametrize("stamps,expected_utc", [
    # EU spring-forward 2019-03-31 02:00 CET -> 03:00 CEST (01:00 UTC).
    (["2019-03-31 00:00", "2019-03-31 01:00", "2019-03-31 03:00", "2019-03-31 04:00"],
     ["2019-03-30 23:00", "2019-03-31 00:00", "2019-03-31 01:00", "2019-03-31 02:00"]),
    # EU fall-back 2019-10-27 03:00 CEST -> 02:00 CET: 02:00 happens twice.
    (["2019-10-27 01:00", "2019-10-27 02:00", "2019-10-27 02:00", "2019-10-27 03:00"],
     ["2019-10-26 23:00", "2019-10-27 00:00", "2019-10-27 01:00", "2019-10-27 02:00"]),
])
def test_eu_switches_in_a_european_zone(stamps, expected_utc) -> None:
    utc = local_to_utc(pd.Series(pd.to_datetime(stamps)), "Europe/Berlin")
    assert utc.tolist() == [pd.Timestamp(s, tz="UTC") for s in expected_utc]


def test_eu_and_us_switch_on_different_dates() -> None:
    """Between 2019-03-10 and 2019-03-31 New York is on summer time and Berlin is not: 5 hours apart."""
    utc = pd.Series(pd.to_datetime(["2019-03-20 14:00"]).tz_localize("UTC"))
    frame = pd.DataFrame({"ts": utc})
    ny, berlin = exchange_time(frame, NY).iat[0], exchange_time(frame, "Europe/Berlin").iat[0]
    assert (ny.hour, berlin.hour) == (10, 15)


# --------------------------------------------------------------------------------------------------
# Bad inputs: one line each, naming what to fix


def _good_rows(n: int = 5) -> dict[str, list]:
    stamps = [f"2019-06-03 10:0{i}:00" for i in range(n)]
    return {"stamps": stamps, "open": [10.0] * n, "high": [11.0] * n, "low": [9.0] * n, "close": [10.5] * n,
            "volume": [100.0] * n}


@pytest.mark.parametrize("change,message", [
    (lambda r: r.update(stamps=r["stamps"][:2] + [r["stamps"][1]] + r["stamps"][3:]),
     r"row 2 \(line 4\): time 2019-06-03 10:01:00\+00:00 repeats after row 1"),
    (lambda r: r.update(stamps=[r["stamps"][0], r["stamps"][2], r["stamps"][1]] + r["stamps"][3:]),
     r"row 2 \(line 4\): time 2019-06-03 10:01:00\+00:00 goes backwards after row 1"),
    (lambda r: r["low"].__setitem__(3, 12.0), r"row 3 \(line 5\): high below low \(high=11.0, low=12.0\)"),
    (lambda r: r["high"].__setitem__(1, 10.2), r"row 1 \(line 3\): high below open or close"),
    (lambda r: r["volume"].__setitem__(4, -1.0), r"row 4 \(line 6\): negative volume \(volume=-1.0\)"),
    (lambda r: r["open"].__setitem__(0, 0.0), r"row 0 \(line 2\): price not positive"),
    (lambda r: r["stamps"].__setitem__(2, "2019-06-03 25:00:00"), r"row 2 \(line 4\): unreadable time"),
])
def test_bad_bars_are_one_line_errors(tmp_path, change, message) -> None:
    rows = _good_rows()
    change(rows)
    path = _write_csv(tmp_path / "bad.csv", rows["stamps"], **{k: v for k, v in rows.items() if k != "stamps"})
    with pytest.raises(DataFormatError, match=message) as err:
        load_bars(path, symbol="XYZ", source_tz="UTC")
    assert "\n" not in str(err.value)


def test_missing_columns_are_named(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("Date,Open,High,Close\n2019-06-03 10:00:00,1,2,1.5\n")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) low, volume; header is Date, Open, High, Close"):
        load_bars(path, symbol="XYZ", source_tz="UTC")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) volume, symbol"):
        check_bars(pd.DataFrame(columns=["ts", "open", "high", "low", "close"]))


def test_a_file_without_a_known_zone_asks_for_one(tmp_path) -> None:
    path = _write_csv(tmp_path / "bars.csv", _good_rows()["stamps"])
    with pytest.raises(DataFormatError, match=r"does not say its time zone; pass source_tz \(--tz\)"):
        load_bars(path, symbol="XYZ")
    with pytest.raises(DataFormatError, match="unknown time zone 'Mars/Olympus'"):
        load_bars(path, symbol="XYZ", source_tz="Mars/Olympus")


# --------------------------------------------------------------------------------------------------
# Great Expectations and the CLI


def test_ge_suite_reports_every_broken_bar(tmp_path) -> None:
    rows = _good_rows(6)
    rows["low"][2] = 12.0
    rows["volume"][4] = -5.0
    rows["stamps"][5] = rows["stamps"][4]
    path = _write_csv(tmp_path / "bad.csv", rows["stamps"], **{k: v for k, v in rows.items() if k != "stamps"})
    result = validate_market_path(path, symbol="XYZ", source_tz="UTC")
    assert not result.success and result.subject == "bars"
    failed = {(f.expectation, f.columns) for f in result.failures}
    assert ("expect_column_pair_values_a_to_be_greater_than_b", ("high", "low")) in failed
    assert ("expect_column_values_to_be_increasing", ("ts",)) in failed
    assert ("expect_column_values_to_be_between", ("volume",)) in failed
    pair = next(f for f in result.failures if f.columns == ("high", "low"))
    assert pair.sample[0]["row"] == 2 and pair.unexpected_count == 1


def test_ge_suite_passes_on_shipped_bar_files(spy) -> None:
    result = validate_bars(spy)
    assert result.success, "\n".join(result.summary_lines())
    assert result.meta["symbol"] == "SPY" and result.meta["source_tz"] == "UTC"
    for path in (SP500, EURUSD):
        assert validate_market_path(path).success


def test_unreadable_file_is_one_structural_failure(tmp_path) -> None:
    path = _write_csv(tmp_path / "gap.csv", ["2019-03-10 01:59:00", "2019-03-10 02:30:00"])
    result = validate_market_path(path, symbol="XYZ", source_tz=NY)
    assert [f.expectation for f in result.failures] == ["expect_readable_bars_file"]
    assert "does not exist in America/New_York" in result.failures[0].detail


def test_cli_bars_validate_ingest_features(tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "spy.parquet"
    ingest = runner.invoke(main, ["bars", "ingest", str(SPY), "-o", str(out)])
    assert ingest.exit_code == 0, ingest.output
    assert "ingested 14180 1min bars: SPY 2011-01-03T09:00:00+00:00" in ingest.output
    assert read_bars(out).meta.source_stamp == "end"
    valid = runner.invoke(main, ["bars", "validate", str(out), "--report-dir", str(tmp_path / "r")])
    assert valid.exit_code == 0 and "PASSED" in valid.output
    feats = runner.invoke(main, ["bars", "features", str(out), "--horizons", "1,5", "-o", str(tmp_path / "f.parquet")])
    assert feats.exit_code == 0, feats.output
    assert "h=5 bars: alpha=" in feats.output
    assert "label_k5" in pd.read_parquet(tmp_path / "f.parquet").columns
    stored = json.loads(pq.read_schema(tmp_path / "f.parquet").metadata[b"hftpipe_bar_features"])
    assert stored["horizons_in_bars"] == [1, 5] and stored["bars"]["symbol"] == "SPY"
    bad = _write_csv(tmp_path / "gap.csv", ["2019-03-10 01:59:00", "2019-03-10 02:30:00"])
    failed = runner.invoke(main, ["bars", "validate", str(bad), "--symbol", "XYZ", "--tz", NY,
                                  "--report-dir", str(tmp_path / "r")])
    assert failed.exit_code == 1 and "does not exist in America/New_York" in failed.output
    refused = runner.invoke(main, ["bars", "ingest", str(bad), "--symbol", "XYZ", "--tz", NY, "-o",
                                   str(tmp_path / "x.parquet")])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert refused.output.startswith("error: ") and len(refused.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()
    np.testing.assert_array_equal(read_bars(out).frame["close"].to_numpy(), load_bars(SPY).frame["close"].to_numpy())


@pytest.mark.parametrize("name", ["bars", "ticks"])
def test_stored_suites_are_valid_great_expectations_suites(name: str) -> None:
    import great_expectations as gx  # imported here: about 3 s, only this test needs it directly

    raw = json.loads((REPO / "expectations" / f"{name}.json").read_text())
    suite = gx.ExpectationSuite(name=name, expectations=raw["expectations"])
    assert len(suite.expectations) == len(raw["expectations"])
