"""OHLCV bars (minute, hour) from vendor exports into one canonical bar table, time zones made explicit.

The canonical bar table (:class:`BarTable`) has one row per bar, in strictly increasing time:

- ``ts``: the bar's OPEN time, ``datetime64[ns, UTC]``. The bar covers ``[ts, ts + bar_size)``; its
  close is known at ``ts + bar_size`` (:func:`bar_end`).
- ``open``, ``high``, ``low``, ``close`` (float64, the source's price unit), ``volume`` (float64, the
  source's unit: shares, or the vendor's undefined tick/notional volume for FX), ``symbol`` (str).

Its metadata (:class:`BarMeta`) says where the bars came from and how their clock was read: the
source's time zone and whether it stamps a bar at its open or its end, the exchange's time zone (so
exchange local time is derivable: :func:`exchange_time`), the bar size and the file's sha256.

Time zones and daylight saving (DST), deliberately:

- Stamps in UTC (the NinjaTrader SPY export and the EUR/USD file, see ``data/raw/README.md``) are
  taken as they are.
- Local stamps (the S&P 500 file is America/New_York) are converted with :mod:`zoneinfo` by
  :func:`local_to_utc`. A local time that does not exist (the spring-forward hour, e.g. 02:30 on
  2019-03-10 in New York) is an error naming the row: no clock showed it, so the file is wrong or
  its zone is. A local time that exists twice (the fall-back hour, e.g. 01:30 on 2019-11-03) is
  resolved by ``ambiguous``: ``"infer"`` (default) reads it from the order of the rows -- a run of
  ambiguous rows is first daylight time, then, after the one place where the local clock steps
  back (or repeats), standard time; a run with no such step cannot be told apart and is an error
  asking for ``"earliest"`` (daylight time) or ``"latest"`` (standard time). ``"raise"`` rejects
  any ambiguous time.
- A source that stamps bars at their END (NinjaTrader) is converted to UTC first and then shifted
  back by one bar, so ``ts`` is always the open; shifting in UTC keeps bar lengths exact across a
  switch.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from hftpipe.data.schema import read_table, write_table
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

BAR_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume", "symbol")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
META_KEY = b"hftpipe_bars"
FORMAT_VERSION = 1
BAR_FORMATS = ("ninjatrader", "dukascopy", "ohlcv_csv", "parquet")
Ambiguous = Literal["infer", "earliest", "latest", "raise"]
Stamp = Literal["open", "end"]


@dataclass(frozen=True)
class BarMeta:
    """What a bar table says about itself (stored in the Parquet file's metadata)."""

    symbol: str
    venue: str  # exchange or market, as far as the source says
    source_tz: str  # zone of the source's timestamps (IANA name), e.g. UTC or America/New_York
    exchange_tz: str  # zone of exchange local time, for :func:`exchange_time`
    bar_size: str  # pandas offset alias: "1min", "1h"
    source_stamp: Stamp  # the source stamps a bar at its "open" or its "end"
    rows: int
    start: str  # first bar's open, ISO 8601 UTC
    end: str  # last bar's open, ISO 8601 UTC
    source: str
    source_sha256: str
    source_format: str  # ninjatrader / dukascopy / ohlcv_csv
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def bar_delta(self) -> pd.Timedelta:
        return pd.Timedelta(self.bar_size)


@dataclass(frozen=True)
class BarTable:
    """A canonical bar table and its metadata."""

    frame: pd.DataFrame
    meta: BarMeta

    def exchange_time(self) -> pd.Series:
        return exchange_time(self)


@dataclass(frozen=True)
class KnownSource:
    """Facts about a shipped file that its content does not state (checked in data/raw/README.md)."""

    symbol: str
    venue: str
    source_tz: str
    exchange_tz: str
    stamp: Stamp


# Keyed by file name (a trailing .gz ignored). Each zone and stamp was checked on the data itself.
KNOWN_SOURCES: dict[str, KnownSource] = {
    # UTC, bar END: the full hours are 14:00-20:59 and the last regular bar is 21:00 = 16:00 EST;
    # pyalgotrade's NinjaTrader reader (the file's source) reads these stamps as UTC too.
    "nt-spy-minute-2011.csv": KnownSource("SPY", "US equities, SPY lists on NYSE Arca (NinjaTrader export)", "UTC", "America/New_York",
                                          "end"),
    # New York local, bar OPEN: 09:30 to 15:59.
    "SP500_NOV2019_IDayRVol.csv": KnownSource("SP500", "S&P 500 index", "America/New_York",
                                              "America/New_York", "open"),
    # UTC, bar OPEN: the weekly 17:00 New York open is at 22:00 in winter and 21:00 in summer.
    "FOREX_EURUSD_1H_ASK.csv": KnownSource("EURUSD", "OTC FX, ask side (vendor unknown)", "UTC",
                                           "America/New_York", "open"),
}

_NINJA_LINE = re.compile(rb"^\d{8} \d{6};")
_TIME_NAMES = ("ts", "time", "date", "datetime", "timestamp", "gmt time", "local time")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic (the shipped .csv.gz files)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: truncated or corrupt gzip file ({exc})") from exc
    return raw


def _where(row: int, line_offset: int) -> str:
    """'row 5 (line 7)': the frame row, and the file line when the caller knows the header size."""
    return f"row {row} (line {row + line_offset})" if line_offset else f"row {row}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise DataFormatError(f"unknown time zone {name!r}; use an IANA name such as UTC or "
                              "America/New_York") from exc


def sniff_bar_format(path: str | Path) -> str:
    """Name the layout of a bar file: ninjatrader, dukascopy, ohlcv_csv or parquet."""
    path = Path(path)
    if path.suffix == ".parquet":
        return "parquet"
    head = read_bytes_maybe_gzip(path)[:4096]
    lines = head.splitlines() + [b"", b""]
    first, second = lines[0], lines[1]
    if _NINJA_LINE.match(first):
        return "ninjatrader"
    if re.match(rb"^\d{2}\.\d{2}\.\d{4} \d{2}:\d{2}", second):
        return "dukascopy"
    if b"," in first and any(c.isalpha() for c in first.decode(errors="replace")):
        return "ohlcv_csv"
    raise DataFormatError(f"{path}: not a bar file hftpipe can read; expected a NinjaTrader export "
                          "(YYYYMMDD HHMMSS;o;h;l;c;v) or a CSV with a header holding a time column and "
                          "open, high, low, close, volume")


# --------------------------------------------------------------------------------------------------
# Time zones


def local_to_utc(local: pd.Series | pd.DatetimeIndex, tz: str, ambiguous: Ambiguous = "infer",
                 line_offset: int = 0) -> pd.Series:
    """Convert naive local wall-clock times in zone ``tz`` to UTC, DST switches handled explicitly.

    Args:
        local: naive timestamps as the source wrote them, in file order.
        tz: IANA zone of those timestamps.
        ambiguous: how a fall-back time that exists twice is read (see the module docstring).
        line_offset: added to a row number to name the file line in errors (header lines).
    Raises:
        DataFormatError: a local time that does not exist in ``tz`` (spring-forward gap), or an
            ambiguous one that ``ambiguous`` cannot resolve; the message names the row.
    """
    if ambiguous not in ("infer", "earliest", "latest", "raise"):
        raise DataFormatError(f"ambiguous must be infer, earliest, latest or raise; got {ambiguous!r}")
    local = pd.Series(pd.DatetimeIndex(local))
    if local.dt.tz is not None:
        raise DataFormatError("local_to_utc expects naive wall-clock times; these already carry a zone")
    zone = _zone(tz)
    if tz in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        return local.dt.tz_localize("UTC")
    n = len(local)
    # Both readings of every row: daylight (fold=0, the first occurrence) and standard (fold=1).
    first = local.dt.tz_localize(zone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    second = local.dt.tz_localize(zone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    missing = first.isna() & local.notna()
    if missing.any():
        i = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataFormatError(
            f"{_where(i, line_offset)}: local time {local.iat[i]} does not exist in {tz} "
            "(skipped by the daylight-saving spring-forward); the file's time zone or that row is wrong")
    amb = (first != second).to_numpy() & local.notna().to_numpy()
    if not amb.any():
        return first.dt.tz_convert("UTC")
    choose_second = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(amb)
    if ambiguous == "raise":
        i = int(rows[0])
        raise DataFormatError(f"{_where(i, line_offset)}: local time {local.iat[i]} is ambiguous in "
                              f"{tz} (daylight-saving fall-back); pass ambiguous='infer', 'earliest' or "
                              "'latest'")
    if ambiguous == "latest":
        choose_second[rows] = True
    elif ambiguous == "infer":
        # Runs of consecutive ambiguous rows; one fall-back hour each.
        runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
        values = local.to_numpy()
        for run in runs:
            steps = np.flatnonzero(values[run][1:] <= values[run][:-1]) + 1  # local clock steps back/repeats
            if len(steps) > 1:
                i = int(run[steps[1]])
                raise DataFormatError(f"{_where(i, line_offset)}: local time {local.iat[i]} goes "
                                      f"backwards twice inside one {tz} fall-back hour; rows must be in "
                                      "time order")
            if len(steps) == 0:
                i = int(run[0])
                raise DataFormatError(
                    f"{_where(i, line_offset)}: local time {local.iat[i]} is ambiguous in {tz} "
                    "(daylight-saving fall-back) and the rows never repeat that hour, so their order "
                    "cannot tell which; pass ambiguous='earliest' (daylight time) or 'latest' (standard)")
            choose_second[run[steps[0]:]] = True
    out = first.where(~choose_second, second)
    return out.dt.tz_convert("UTC")


def exchange_time(bars: BarTable | pd.DataFrame, tz: str | None = None,
                  column: str = "ts") -> pd.Series:
    """The bars' times in exchange local time (tz-aware, DST applied per row by zoneinfo).

    ``bars`` is a :class:`BarTable` (its ``meta.exchange_tz``) or a frame whose ``attrs`` carry the
    metadata (set by the loaders) -- or pass ``tz``.
    """
    if isinstance(bars, BarTable):
        frame, zone = bars.frame, tz or bars.meta.exchange_tz
    else:
        frame = bars
        zone = tz or (frame.attrs.get("hftpipe") or {}).get("exchange_tz")
    if not zone:
        raise DataFormatError("exchange_time: the frame carries no exchange time zone; pass tz=")
    ts = frame[column]
    if getattr(ts.dt, "tz", None) is None:
        raise DataFormatError(f"exchange_time: column {column} is naive; canonical bars hold UTC times")
    return ts.dt.tz_convert(_zone(zone))


def bar_end(table: BarTable) -> pd.Series:
    """When each bar closes (UTC): its open plus the bar size."""
    return table.frame["ts"] + table.meta.bar_delta


# --------------------------------------------------------------------------------------------------
# Checks


def check_bars(frame: pd.DataFrame, source: str = "bars", line_offset: int = 0) -> None:
    """Raise :class:`DataFormatError` on the first structural problem, naming the row.

    Missing columns, a naive or null ``ts``, time not strictly increasing (within a symbol), a
    non-finite or non-positive price, high below low (or below open/close, low above them), negative
    volume. The Great Expectations suite ``bars.json`` checks the same and reports every row.
    """
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{source}: missing column(s) {', '.join(missing)}; a bar table needs "
                              f"{', '.join(BAR_COLUMNS)}")

    def fail(mask: np.ndarray, what: str, cols: tuple[str, ...]) -> None:
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            cells = ", ".join(f"{c}={frame[c].iat[i]}" for c in cols)
            raise DataFormatError(f"{source} {_where(i, line_offset)}: {what} ({cells}); "
                                  f"{int(mask.sum())} row(s) in all -- fix or drop them")

    ts = frame["ts"]
    if getattr(ts.dt, "tz", None) is None:
        raise DataFormatError(f"{source}: ts must be timezone-aware UTC; convert with local_to_utc first")
    fail(ts.isna().to_numpy(), "missing time", ("ts",))
    values = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()  # datetime64, not Timestamp objects
    same = (frame["symbol"].to_numpy()[1:] == frame["symbol"].to_numpy()[:-1])
    back = np.zeros(len(frame), dtype=bool)
    back[1:] = (values[1:] <= values[:-1]) & same
    if back.any():
        i = int(np.flatnonzero(back)[0])
        word = "repeats" if values[i] == values[i - 1] else "goes backwards"
        raise DataFormatError(f"{source} {_where(i, line_offset)}: time {ts.iat[i]} {word} after row "
                              f"{i - 1} ({ts.iat[i - 1]}); bars must be in strictly increasing time order, "
                              "one row per bar")
    prices = frame[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    fail(~np.isfinite(prices).all(axis=1), "missing or non-finite price", PRICE_COLUMNS)
    fail((prices <= 0).any(axis=1), "price not positive", PRICE_COLUMNS)
    o, h, lo, c = prices.T
    fail(h < lo, "high below low", ("high", "low"))
    fail(h < np.maximum(o, c), "high below open or close", PRICE_COLUMNS)
    fail(lo > np.minimum(o, c), "low above open or close", PRICE_COLUMNS)
    vol = frame["volume"].to_numpy(dtype=np.float64)
    fail(~np.isfinite(vol), "missing or non-finite volume", ("volume",))
    fail(vol < 0, "negative volume", ("volume",))


# --------------------------------------------------------------------------------------------------
# Readers: each returns (naive or aware timestamps, prices frame, header lines) in file order


def _read_ninjatrader(path: Path) -> tuple[pd.Series, pd.DataFrame, int]:
    names = ["datetime", "open", "high", "low", "close", "volume"]
    try:
        raw = pd.read_csv(io.BytesIO(read_bytes_maybe_gzip(path)), sep=";", header=None, names=names,
                          dtype={"datetime": str})
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a NinjaTrader export (datetime;open;high;low;close;volume): "
                              f"{exc}") from exc
    if raw.shape[1] != 6 or raw[names[1:]].isna().all(axis=0).any():
        raise DataFormatError(f"{path}: a NinjaTrader export has 6 fields per line "
                              "(YYYYMMDD HHMMSS;open;high;low;close;volume)")
    stamps = _parse_times(raw["datetime"], "%Y%m%d %H%M%S", path, line_offset=1)
    return stamps, raw[names[1:]], 1


def _parse_times(text: pd.Series, fmt: str | None, path: Path, line_offset: int) -> pd.Series:
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"{path} {_where(i, line_offset)}: unreadable time {text.iat[i]!r}"
                              + (f"; expected {fmt}" if fmt else ""))
    return parsed


def _read_header_csv(path: Path, fmt: str | None) -> tuple[pd.Series, pd.DataFrame, int]:
    try:
        raw = pd.read_csv(io.BytesIO(read_bytes_maybe_gzip(path)), dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise DataFormatError(f"{path}: unreadable CSV ({exc})") from exc
    lower = {c.strip().lower(): c for c in raw.columns}
    time_col = next((lower[n] for n in _TIME_NAMES if n in lower), None)
    missing = [c for c in ("open", "high", "low", "close", "volume") if c not in lower]
    if time_col is None or missing:
        need = (["a time column (Date, Time, Datetime or Timestamp)"] if time_col is None else []) + missing
        raise DataFormatError(f"{path}: missing column(s) {', '.join(need)}; header is "
                              f"{', '.join(map(str, raw.columns))} (names are matched case-insensitively)")
    stamps = _parse_times(raw[time_col].str.strip(), fmt, path, line_offset=2)
    values = {}
    for name in ("open", "high", "low", "close", "volume"):
        col = pd.to_numeric(raw[lower[name]], errors="coerce")
        bad = col.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{path} {_where(i, 2)}: {lower[name]} is not a number: "
                                  f"{raw[lower[name]].iat[i]!r}")
        values[name] = col
    return stamps, pd.DataFrame(values), 2


def _infer_bar_size(stamps: pd.Series) -> str:
    diffs = stamps.diff().dropna()
    diffs = diffs[diffs > pd.Timedelta(0)]
    if diffs.empty:
        raise DataFormatError("cannot infer the bar size from fewer than two distinct times; pass bar_size")
    step = diffs.mode().iloc[0]
    return bar_size_alias(step)


def bar_size_alias(step: pd.Timedelta) -> str:
    """A pandas offset alias for a bar length: 1min, 1h, 30s."""
    seconds = int(step.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}min"
    return f"{seconds}s"


def load_bars(
    path: str | Path,
    *,
    symbol: str | None = None,
    source_tz: str | None = None,
    exchange_tz: str | None = None,
    stamp: Stamp | None = None,
    bar_size: str | None = None,
    venue: str | None = None,
    ambiguous: Ambiguous = "infer",
    fmt: str | None = None,
    check: bool = True,
) -> BarTable:
    """Load a bar file (format sniffed) into the canonical bar table.

    Defaults for the shipped files come from :data:`KNOWN_SOURCES`; for any other file pass at least
    ``source_tz`` (the zone its stamps are in) and ``symbol``.

    Args:
        path: a NinjaTrader export, a Dukascopy-style or header CSV (optionally gzip), or a Parquet
            file written by :func:`write_bars`.
        source_tz: zone of the file's stamps; overrides the known default.
        exchange_tz: zone of exchange local time (default: the known one, else ``source_tz``).
        stamp: the file stamps bars at their ``open`` or ``end`` (NinjaTrader: end).
        bar_size: pandas alias ("1min", "1h"); default: the most common gap between bars.
        ambiguous: reading of fall-back times that exist twice (see :func:`local_to_utc`).
        check: run :func:`check_bars` (set False to hand a broken file to the GE suite for a report).
    Raises:
        DataFormatError: unreadable file, missing columns, a bad time (nonexistent / unresolvable
            ambiguous local time) or, with ``check``, the first structural problem.
    """
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    fmt = fmt or sniff_bar_format(path)
    if fmt == "parquet":
        table = read_bars(path)
        if check:
            check_bars(table.frame, str(path))
        return table
    known = KNOWN_SOURCES.get(path.name.removesuffix(".gz"))
    if fmt == "ninjatrader":
        local, values, offset = _read_ninjatrader(path)
        default_tz, default_stamp = "UTC", "end"  # NinjaTrader stamps a bar at its end
    elif fmt == "dukascopy":
        local, values, offset = _read_header_csv(path, "%d.%m.%Y %H:%M:%S.%f")
        default_tz, default_stamp = "UTC", "open"
    elif fmt == "ohlcv_csv":
        local, values, offset = _read_header_csv(path, None)
        default_tz, default_stamp = None, "open"
    else:
        raise DataFormatError(f"unknown bar format {fmt!r}; use one of {', '.join(BAR_FORMATS)}")
    tz = source_tz or (known.source_tz if known else default_tz)
    if tz is None:
        raise DataFormatError(f"{path}: the file does not say its time zone; pass source_tz "
                              "(--tz), e.g. America/New_York or UTC")
    stamp = stamp or (known.stamp if known else default_stamp)
    if stamp not in ("open", "end"):
        raise DataFormatError(f"stamp must be 'open' or 'end'; got {stamp!r}")
    symbol = symbol or (known.symbol if known else None)
    if not symbol:
        raise DataFormatError(f"{path}: no symbol known for this file; pass symbol (--symbol)")
    exchange_tz = exchange_tz or (known.exchange_tz if known else tz)
    _zone(exchange_tz)
    if local.dt.tz is not None:  # an ISO stamp with an offset: already absolute
        utc = local.dt.tz_convert("UTC")
    else:
        utc = local_to_utc(local, tz, ambiguous, line_offset=offset)
    size = bar_size or _infer_bar_size(utc)
    delta = pd.Timedelta(size)
    if stamp == "end":
        utc = utc - delta  # in UTC, so a bar across a DST switch keeps its length
    frame = pd.DataFrame({"ts": utc.astype("datetime64[ns, UTC]")})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = values[col].to_numpy(dtype=np.float64)
    frame["symbol"] = symbol
    if check:
        check_bars(frame, str(path), line_offset=offset)
    meta = BarMeta(
        symbol=symbol,
        venue=venue or (known.venue if known else "unknown"),
        source_tz=tz,
        exchange_tz=exchange_tz,
        bar_size=bar_size_alias(delta),
        source_stamp=stamp,
        rows=len(frame),
        start=frame["ts"].iat[0].isoformat() if len(frame) else "",
        end=frame["ts"].iat[-1].isoformat() if len(frame) else "",
        source=str(path),
        source_sha256=sha256_of(path),
        source_format=fmt,
    )
    frame.attrs["hftpipe"] = meta.to_dict()
    log.info("loaded %d %s bars of %s from %s (%s, stamped at %s)", meta.rows, meta.bar_size, symbol, path,
             tz, stamp)
    return BarTable(frame=frame, meta=meta)


def write_bars(table: BarTable, path: str | Path) -> Path:
    """Write the bar table as Parquet with its metadata; the file is replaced atomically."""
    return write_table(table.frame[list(BAR_COLUMNS)], table.meta.to_dict(), path, META_KEY)


def read_bars(path: str | Path) -> BarTable:
    """Read a bar table written by :func:`write_bars`."""
    frame, raw = read_table(path, "does not exist; run `hftpipe bars ingest` first",
                            "has no hftpipe bar metadata; it was not written by `hftpipe bars ingest`", META_KEY)
    meta = BarMeta(**raw)
    frame.attrs["hftpipe"] = meta.to_dict()
    return BarTable(frame=frame, meta=meta)


def with_frame(table: BarTable, frame: pd.DataFrame) -> BarTable:
    """The same metadata over another frame (row count and time range updated)."""
    meta = replace(table.meta, rows=len(frame),
                   start=frame["ts"].iat[0].isoformat() if len(frame) else "",
                   end=frame["ts"].iat[-1].isoformat() if len(frame) else "")
    frame = frame.reset_index(drop=True)
    frame.attrs["hftpipe"] = meta.to_dict()
    return BarTable(frame=frame, meta=meta)
