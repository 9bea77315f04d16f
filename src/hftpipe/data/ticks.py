"""Trade ticks (one row per executed trade) into one canonical tick table, and time bars built from them.

The canonical tick table (:class:`TickTable`), in non-decreasing time (several trades may share a
stamp: the bitcoincharts files have 1-second resolution):

- ``ts``: trade time, ``datetime64[ns, UTC]``;
- ``price`` (float64, quote currency), ``size`` (float64, base units; 0 is kept: the Bitstamp file
  publishes one trade of amount 0);
- ``side``: the source's own trade-side field when it has one (Mt.Gox: ``ask``/``bid``), else missing.
  It is kept as published and NOT turned into an aggressor sign: Mt.Gox never documented which side
  ``type`` names, so a sign would be a guess;
- ``symbol`` (str).

Both shipped formats stamp trades in UTC (Unix seconds; Mt.Gox ids in microseconds since the
epoch), so no local-time conversion is involved; the exchange time zone is UTC.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hftpipe.data.bars import BarMeta, BarTable, bar_size_alias, read_bytes_maybe_gzip, sha256_of
from hftpipe.data.schema import read_table, write_table
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

TICK_COLUMNS: tuple[str, ...] = ("ts", "price", "size", "side", "symbol")
TICK_FORMATS = ("bitcoincharts", "mtgox", "parquet")
META_KEY = b"hftpipe_ticks"
FORMAT_VERSION = 1

# Defaults for the shipped files (see data/raw/README.md): symbol and venue are not in the files.
KNOWN_TICK_SOURCES: dict[str, tuple[str, str]] = {
    "bitstampUSD.csv": ("BTCUSD", "Bitstamp"),
    "trades-mgtox-usd-2013-01-01.csv": ("BTCUSD", "Mt.Gox"),
}


@dataclass(frozen=True)
class TickMeta:
    """What a tick table says about itself."""

    symbol: str
    venue: str
    rows: int
    start: str  # ISO 8601 UTC
    end: str
    source: str
    source_sha256: str
    source_format: str
    source_tz: str = "UTC"
    exchange_tz: str = "UTC"
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TickTable:
    frame: pd.DataFrame
    meta: TickMeta


def sniff_tick_format(path: str | Path) -> str:
    """Name the layout of a trade file: bitcoincharts (time,price,amount; no header), mtgox or parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        return "parquet"
    first = (read_bytes_maybe_gzip(path)[:1024].splitlines() or [b""])[0].strip().lower()
    fields = first.split(b",")
    if fields[:3] == [b"id", b"price", b"amount"]:
        return "mtgox"
    if len(fields) == 3:
        try:
            [float(f) for f in fields]
            return "bitcoincharts"
        except ValueError:
            pass
    raise DataFormatError(f"{path}: not a trade file hftpipe can read; expected bitcoincharts "
                          "(unix_time,price,amount without header) or Mt.Gox (id,price,amount,type)")


def check_ticks(frame: pd.DataFrame, source: str = "ticks", line_offset: int = 0) -> None:
    """Raise :class:`DataFormatError` on the first structural problem (missing column, time order, price, size)."""
    missing = [c for c in TICK_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{source}: missing column(s) {', '.join(missing)}; a tick table needs "
                              f"{', '.join(TICK_COLUMNS)}")

    def where(i: int) -> str:
        return f"row {i} (line {i + line_offset})" if line_offset else f"row {i}"

    def fail(mask: np.ndarray, what: str, col: str) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            raise DataFormatError(f"{source} {where(i)}: {what} ({col}={frame[col].iat[i]}); "
                                  f"{int(mask.sum())} row(s) in all -- fix or drop them")

    ts = frame["ts"]
    if getattr(ts.dt, "tz", None) is None:
        raise DataFormatError(f"{source}: ts must be timezone-aware UTC")
    fail(ts.isna().to_numpy(), "missing time", "ts")
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()  # datetime64, not Timestamp objects
    back = np.zeros(len(frame), dtype=bool)
    back[1:] = values[1:] < values[:-1]
    if back.any():
        i = int(np.flatnonzero(back)[0])
        raise DataFormatError(f"{source} {where(i)}: time {ts.iat[i]} goes backwards after row {i - 1} "
                              f"({ts.iat[i - 1]}); trades must be in time order")
    price = frame["price"].to_numpy(dtype=np.float64)
    fail(~np.isfinite(price), "missing or non-finite price", "price")
    fail(price <= 0, "price not positive", "price")
    size = frame["size"].to_numpy(dtype=np.float64)
    fail(~np.isfinite(size), "missing or non-finite size", "size")
    fail(size < 0, "negative size", "size")


def _numeric(raw: pd.DataFrame, col: str, path: Path, offset: int) -> np.ndarray:
    values = pd.to_numeric(raw[col], errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{path} row {i} (line {i + offset}): {col} is not a number: {raw[col].iat[i]!r}")
    return values.to_numpy()


def load_ticks(path: str | Path, *, symbol: str | None = None, venue: str | None = None,
               fmt: str | None = None, check: bool = True) -> TickTable:
    """Load a trade file (format sniffed) into the canonical tick table.

    Raises:
        DataFormatError: unreadable file, missing fields, or (with ``check``) the first bad row.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    fmt = fmt or sniff_tick_format(path)
    if fmt == "parquet":
        table = read_ticks(path)
        if check:
            check_ticks(table.frame, str(path))
        return table
    data = io.BytesIO(read_bytes_maybe_gzip(path))
    try:
        if fmt == "bitcoincharts":
            offset = 1
            raw = pd.read_csv(data, header=None, names=["unix_time", "price", "amount"], dtype=str)
            seconds = _numeric(raw, "unix_time", path, offset)
            ts = pd.to_datetime(seconds, unit="s", utc=True)
            side = pd.Series([None] * len(raw), dtype=object)
        elif fmt == "mtgox":
            offset = 2
            raw = pd.read_csv(data, dtype=str)
            missing = [c for c in ("id", "price", "amount", "type") if c not in raw.columns]
            if missing:
                raise DataFormatError(f"{path}: missing column(s) {', '.join(missing)}; a Mt.Gox file has "
                                      "id,price,amount,type")
            # Mt.Gox trade ids are the trade time in microseconds since the epoch.
            ts = pd.to_datetime(_numeric(raw, "id", path, offset).astype(np.int64), unit="us", utc=True)
            side = raw["type"].str.strip().str.lower().astype(object)
            bad = ~side.isin(["ask", "bid"])
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataFormatError(f"{path} row {i} (line {i + offset}): type must be ask or bid; "
                                      f"got {raw['type'].iat[i]!r}")
        else:
            raise DataFormatError(f"unknown tick format {fmt!r}; use one of {', '.join(TICK_FORMATS)}")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: unreadable CSV ({exc})") from exc
    amount_col = "amount"
    frame = pd.DataFrame({
        "ts": pd.DatetimeIndex(ts).astype("datetime64[ns, UTC]"),
        "price": _numeric(raw, "price", path, offset).astype(np.float64),
        "size": _numeric(raw, amount_col, path, offset).astype(np.float64),
        "side": side.to_numpy(),
    })
    known = KNOWN_TICK_SOURCES.get(path.name.removesuffix(".gz"))
    symbol = symbol or (known[0] if known else None)
    if not symbol:
        raise DataFormatError(f"{path}: no symbol known for this file; pass symbol (--symbol)")
    frame["symbol"] = symbol
    if check:
        check_ticks(frame, str(path), line_offset=offset)
    meta = TickMeta(
        symbol=symbol,
        venue=venue or (known[1] if known else "unknown"),
        rows=len(frame),
        start=frame["ts"].iat[0].isoformat() if len(frame) else "",
        end=frame["ts"].iat[-1].isoformat() if len(frame) else "",
        source=str(path),
        source_sha256=sha256_of(path),
        source_format=fmt,
    )
    frame.attrs["hftpipe"] = meta.to_dict()
    log.info("loaded %d %s trades from %s (%s)", meta.rows, symbol, path, fmt)
    return TickTable(frame=frame, meta=meta)


def ticks_to_bars(table: TickTable, bar_size: str = "1min") -> BarTable:
    """Time bars from trades: OHLC of price and summed size per ``[t, t + bar_size)`` (UTC-aligned).

    Intervals without a trade get no bar (as in the vendor minute files).
    """
    delta = pd.Timedelta(bar_size)
    if delta <= pd.Timedelta(0):
        raise DataFormatError(f"bar size must be positive; got {bar_size!r}")
    frame = table.frame
    key = frame["ts"].dt.floor(delta)
    grouped = frame.groupby(key, sort=True)
    bars = pd.DataFrame({
        "open": grouped["price"].first(),
        "high": grouped["price"].max(),
        "low": grouped["price"].min(),
        "close": grouped["price"].last(),
        "volume": grouped["size"].sum(),
    })
    bars.index.name = "ts"
    bars = bars.reset_index()
    bars["symbol"] = table.meta.symbol
    bars["ts"] = bars["ts"].astype("datetime64[ns, UTC]")
    m = table.meta
    meta = BarMeta(symbol=m.symbol, venue=m.venue, source_tz="UTC", exchange_tz=m.exchange_tz,
                   bar_size=bar_size_alias(delta), source_stamp="open", rows=len(bars),
                   start=bars["ts"].iat[0].isoformat() if len(bars) else "",
                   end=bars["ts"].iat[-1].isoformat() if len(bars) else "",
                   source=m.source, source_sha256=m.source_sha256, source_format=f"ticks:{m.source_format}")
    bars.attrs["hftpipe"] = meta.to_dict()
    return BarTable(frame=bars, meta=meta)


def write_ticks(table: TickTable, path: str | Path) -> Path:
    """Write the tick table as Parquet with its metadata; the file is replaced atomically."""
    return write_table(table.frame[list(TICK_COLUMNS)], table.meta.to_dict(), path, META_KEY)


def read_ticks(path: str | Path) -> TickTable:
    """Read a tick table written by :func:`write_ticks`."""
    frame, raw = read_table(path, "does not exist; run `hftpipe bars ingest` first",
                            "has no hftpipe tick metadata; it was not written by `hftpipe bars ingest`", META_KEY)
    meta = TickMeta(**raw)
    frame.attrs["hftpipe"] = meta.to_dict()
    return TickTable(frame=frame, meta=meta)
