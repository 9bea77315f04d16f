"""Trade-tick loaders on the shipped BTC/USD files, bars built from ticks, bad inputs."""

from __future__ import annotations

import gzip

import pandas as pd
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.data.bars import check_bars, read_bars
from hftpipe.data.market import is_tick_file, load_market
from hftpipe.data.ticks import (
    TICK_COLUMNS,
    TickTable,
    load_ticks,
    read_ticks,
    sniff_tick_format,
    ticks_to_bars,
    write_ticks,
)
from hftpipe.errors import DataFormatError
from hftpipe.prepare import validate_market_path
from hftpipe.validation.bars import validate_ticks
from tests.conftest import RAW

BITSTAMP = RAW / "btcusd-trades-2011-2013" / "bitstampUSD.csv.gz"
MTGOX = RAW / "btcusd-trades-2011-2013" / "trades-mgtox-usd-2013-01-01.csv"


@pytest.fixture(scope="module")
def bitstamp() -> TickTable:
    return load_ticks(BITSTAMP)


def test_bitstamp_trades_in_utc(bitstamp) -> None:
    f = bitstamp.frame
    assert sniff_tick_format(BITSTAMP) == "bitcoincharts"
    assert list(f.columns) == list(TICK_COLUMNS) and str(f["ts"].dtype) == "datetime64[ns, UTC]"
    assert (bitstamp.meta.rows, bitstamp.meta.venue, bitstamp.meta.symbol) == (9999, "Bitstamp", "BTCUSD")
    assert f["ts"].iat[0] == pd.Timestamp("2011-09-13 13:53:36", tz="UTC")
    assert f["ts"].iat[-1] == pd.Timestamp("2012-05-31 08:41:18", tz="UTC")
    first = gzip.decompress(BITSTAMP.read_bytes()).decode().splitlines()[0].split(",")
    assert f.loc[0, ["price", "size"]].tolist() == [float(first[1]), float(first[2])]
    assert f["side"].isna().all()  # bitcoincharts has no side; none is invented
    assert f["ts"].duplicated().any()  # 1-second stamps repeat: allowed for trades
    assert (f["size"] == 0).sum() == 1  # published as such; kept


def test_mtgox_ids_are_microsecond_times_and_sides_are_kept(tmp_path) -> None:
    table = load_ticks(MTGOX)
    f = table.frame
    assert sniff_tick_format(MTGOX) == "mtgox" and table.meta.venue == "Mt.Gox"
    assert f["ts"].iat[0] == pd.Timestamp("2013-01-01 00:04:19.486096", tz="UTC")
    assert f["ts"].iat[-1].floor("s") == pd.Timestamp("2013-01-01 23:58:31", tz="UTC")
    assert f["side"].value_counts().to_dict() == {"ask": 1519, "bid": 812}
    back = read_ticks(write_ticks(table, tmp_path / "t.parquet"))
    pd.testing.assert_frame_equal(back.frame, f)
    assert back.meta == table.meta and is_tick_file(tmp_path / "t.parquet")


def test_ticks_to_bars_by_hand(bitstamp) -> None:
    bars = ticks_to_bars(bitstamp, "1min")
    check_bars(bars.frame)
    trades = bitstamp.frame
    # Recompute the first three bars directly from the trades inside each minute.
    for i in range(3):
        start = bars.frame["ts"].iat[i]
        inside = trades[(trades["ts"] >= start) & (trades["ts"] < start + pd.Timedelta("1min"))]
        expected = [inside["price"].iat[0], inside["price"].max(), inside["price"].min(), inside["price"].iat[-1]]
        assert bars.frame.loc[i, ["open", "high", "low", "close"]].tolist() == expected
        assert bars.frame.loc[i, "volume"] == pytest.approx(inside["size"].sum())
    assert bars.frame["volume"].sum() == pytest.approx(trades["size"].sum())
    assert (bars.meta.bar_size, bars.meta.source_stamp, bars.meta.source_sha256) == (
        "1min", "open", bitstamp.meta.source_sha256)


def test_ge_suite_passes_on_both_trade_files(bitstamp) -> None:
    assert validate_ticks(bitstamp).success
    result = validate_market_path(MTGOX)
    assert result.success and result.subject == "ticks", "\n".join(result.summary_lines())


def _write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("lines,message", [
    (["1315922016,5.8,1.0", "1315922024,5.83,3.0", "1315922020,5.9,1.0"],
     r"row 2 \(line 3\): time 2011-09-13 13:53:40\+00:00 goes backwards after row 1"),
    (["1315922016,5.8,1.0", "1315922024,-5.83,3.0"], r"row 1 \(line 2\): price not positive"),
    (["1315922016,5.8,-1.0", "1315922024,5.83,3.0"], r"row 0 \(line 1\): negative size"),
    (["1315922016,5.8,1.0", "1315922024,abc,3.0"], r"row 1 \(line 2\): price is not a number: 'abc'"),
])
def test_bad_bitcoincharts_files(tmp_path, lines, message) -> None:
    path = _write(tmp_path / "trades.csv", lines)
    with pytest.raises(DataFormatError, match=message) as err:
        load_ticks(path, symbol="BTCUSD")
    assert "\n" not in str(err.value)


def test_bad_mtgox_files(tmp_path) -> None:
    path = _write(tmp_path / "mtgox.csv", ["id,price,amount,type", "1356998659486096,13.5,1.0,sell"])
    with pytest.raises(DataFormatError, match=r"row 0 \(line 2\): type must be ask or bid; got 'sell'"):
        load_ticks(path, symbol="BTCUSD")
    with pytest.raises(DataFormatError, match="no symbol known for this file; pass symbol"):
        load_ticks(_write(tmp_path / "m2.csv", ["id,price,amount,type", "1356998659486096,13.5,1.0,ask"]))
    with pytest.raises(DataFormatError, match="not a trade file"):
        load_ticks(_write(tmp_path / "x.csv", ["a;b", "1;2"]))


def test_market_dispatch_and_cli_ingest_to_bars(tmp_path) -> None:
    assert isinstance(load_market(MTGOX, source_tz="UTC"), TickTable)  # bar-only options are ignored
    out = tmp_path / "btc-1h.parquet"
    result = CliRunner().invoke(main, ["bars", "ingest", str(BITSTAMP), "--to-bars", "1h", "-o", str(out)])
    assert result.exit_code == 0, result.output
    bars = read_bars(out)
    assert bars.meta.bar_size == "1h" and bars.meta.rows == 1600
    assert bars.frame["ts"].is_monotonic_increasing and bars.frame["ts"].is_unique
