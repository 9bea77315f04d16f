"""The feedback data set: outcomes and recorded book updates as partitioned Parquet, written atomically.

Layout under ``feedback.output`` (default ``HFTPIPE_HOME/feedback``)::

    outcomes/symbol=GOOG/date=2012-06-21/part-000000000051-000000005050.parquet
    books/symbol=GOOG/date=2012-06-21/part-000000000001-000000005000.parquet
    orders/symbol=GOOG/date=2012-06-21/part-000000000001-000000000412.parquet   (keyed by order id)
    fills/symbol=GOOG/date=2012-06-21/part-000000000001-000000000230.parquet    (keyed by fill id)

One file per flush, one row group per file, named by the first and last seq it holds; a file is written to
a temporary name in the same folder and renamed, so a reader never sees half a file. Rows wait in a small
sqlite buffer (:class:`RowBuffer`, written in the same transaction as the consumer's progress) until a flush:
a crash between writing a file and clearing its rows writes the same file again, never a duplicate row.

:func:`export_lobster` turns the recorded book updates of one symbol and day back into a LOBSTER
message/orderbook CSV pair, the input the training pipeline takes. :func:`read_outcomes` reads the outcomes with
their trade columns recomputed from the ``orders`` and ``fills`` tables (see :mod:`hftpipe.monitoring.trades`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hftpipe.contracts import BookUpdate, Outcome
from hftpipe.data.schema import book_columns
from hftpipe.errors import DataFormatError
from hftpipe.sqlite_wal import open_wal, transaction

log = logging.getLogger(__name__)

TABLES = ("outcomes", "books", "orders", "fills")
TRADE_FIELDS = ("orders", "fills", "filled_qty", "net_qty", "avg_price", "fees", "markout_pnl")
ASK_SENTINEL = 9_999_999_999
BID_SENTINEL = -9_999_999_999
PRICE_SCALE = 10_000.0

BUFFER_SCHEMA = (
    ("CREATE TABLE IF NOT EXISTS buffer (tbl TEXT NOT NULL, symbol TEXT NOT NULL, date TEXT NOT NULL, "
     "seq INTEGER NOT NULL, row TEXT NOT NULL, PRIMARY KEY (tbl, symbol, seq))"),
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def utc_date(event_time: float) -> str:
    return dt.datetime.fromtimestamp(event_time, tz=dt.UTC).date().isoformat()


def outcome_row(o: Outcome) -> dict[str, Any]:
    p = list(o.probabilities) + [math.nan] * (3 - len(o.probabilities))
    return {"symbol": o.symbol, "venue": o.venue, "seq": o.seq, "event_time": o.event_time,
            "outcome_time": o.outcome_time, "publish_time": o.publish_time, "horizon": o.horizon, "alpha": o.alpha,
            "label_return": o.label_return, "realised": o.realised, "predicted": o.predicted, "p_down": p[0],
            "p_stationary": p[1], "p_up": p[2], "persistence": o.persistence, "momentum": o.momentum,
            "model_name": o.model_name, "model_version": o.model_version,
            "signal_publish_time": o.signal_publish_time, "correlation_id": o.correlation_id,
            "outcome_mid": o.outcome_mid, **{f: getattr(o, f) for f in TRADE_FIELDS},
            # h seconds of a clock-time model (horizon is then 0); NaN for k events, so the column stays float
            "horizon_s": math.nan if o.horizon_s is None else o.horizon_s}


def outcome_from_row(row: Any) -> Outcome:
    """An :class:`Outcome` from a row of :func:`read_table` (``itertuples``); trade columns optional (old files)."""
    def opt(name: str, default: float = 0.0) -> Any:
        value = getattr(row, name, default)
        return default if value is None or value != value else value  # NaN: a file written before the column

    return Outcome(symbol=row.symbol, venue=row.venue, seq=int(row.seq), event_time=row.event_time,
                   outcome_time=row.outcome_time, publish_time=row.publish_time, horizon=int(row.horizon),
                   alpha=row.alpha, label_return=row.label_return, realised=int(row.realised),
                   predicted=int(row.predicted), probabilities=[row.p_down, row.p_stationary, row.p_up],
                   persistence=int(row.persistence), momentum=int(row.momentum), model_name=row.model_name,
                   model_version=row.model_version, signal_publish_time=opt("signal_publish_time"),
                   correlation_id=opt("correlation_id", ""), outcome_mid=opt("outcome_mid"),
                   **{f: (int if f in ("orders", "fills") else float)(opt(f)) for f in TRADE_FIELDS},
                   horizon_s=opt("horizon_s", None))


def book_row(u: BookUpdate) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": u.symbol, "venue": u.venue, "seq": u.seq, "event_time": u.event_time,
                           "event_type": u.event_type, "price": u.price, "size": u.size, "direction": u.direction,
                           "levels": u.levels}
    row.update(zip(book_columns(u.levels), u.book))
    return row


class RowBuffer:
    """Rows waiting for a flush, plus the service's small key/value state, in one sqlite file (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = open_wal(self.path, BUFFER_SCHEMA)

    def commit(self, rows: Iterable[tuple[str, str, str, int, dict[str, Any]]], state: dict[str, Any]) -> None:
        """Add rows ``(table, symbol, date, seq, row)`` and set state keys, atomically (replays overwrite)."""
        with transaction(self.db) as db:
            db.executemany("INSERT OR REPLACE INTO buffer VALUES (?, ?, ?, ?, ?)",
                           [(t, s, d, q, json.dumps(r)) for t, s, d, q, r in rows])
            db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in state.items()])

    def state(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM state")}

    def counts(self) -> dict[tuple[str, str, str], int]:
        rows = self.db.execute("SELECT tbl, symbol, date, COUNT(*) FROM buffer GROUP BY tbl, symbol, date")
        return {(t, s, d): n for t, s, d, n in rows}

    def take(self, table: str, symbol: str, date: str, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT row FROM buffer WHERE tbl=? AND symbol=? AND date=? ORDER BY seq LIMIT ?",
                               (table, symbol, date, limit))
        return [json.loads(r[0]) for r in rows]

    def drop(self, table: str, symbol: str, first: int, last: int) -> None:
        self.db.execute("DELETE FROM buffer WHERE tbl=? AND symbol=? AND seq BETWEEN ? AND ?",
                        (table, symbol, first, last))

    def close(self) -> None:
        self.db.close()


def partition_dir(root: Path, table: str, symbol: str, date: str) -> Path:
    return root / table / f"symbol={symbol}" / f"date={date}"


def write_part(root: Path, table: str, symbol: str, date: str, rows: list[dict[str, Any]]) -> Path:
    """Write rows (sorted by seq) as one Parquet file with one row group, atomically; returns its path."""
    folder = partition_dir(root, table, symbol, date)
    folder.mkdir(parents=True, exist_ok=True)
    first, last = rows[0]["seq"], rows[-1]["seq"]
    target = folder / f"part-{first:012d}-{last:012d}.parquet"
    # symbol and date live in the path (hive partitioning); the file holds the other columns.
    data = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "symbol"} for r in rows])
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        pq.write_table(data, tmp, row_group_size=len(rows))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # A crash after a file was written but before its rows left the buffer writes those rows again, starting
    # at the same seq (perhaps with more after them): the older, shorter file is superseded.
    for other in folder.glob(f"part-{first:012d}-*.parquet"):
        if other != target:
            other.unlink(missing_ok=True)
    return target


def flush(buffer: RowBuffer, root: Path, flush_rows: int, partial: bool) -> list[Path]:
    """Write every full ``flush_rows`` chunk (and, with ``partial``, the rest) of the buffer to Parquet."""
    written = []
    for (table, symbol, date), n in sorted(buffer.counts().items()):
        while n >= flush_rows or (partial and n > 0):
            rows = buffer.take(table, symbol, date, flush_rows)
            path = write_part(root, table, symbol, date, rows)
            buffer.drop(table, symbol, rows[0]["seq"], rows[-1]["seq"])
            written.append(path)
            n -= len(rows)
    return written


def read_table(root: Path, table: str, symbol: str | None = None, date: str | None = None) -> Any:
    """A pandas frame of one table (all partitions, or one symbol / day), sorted by symbol and seq."""
    import pandas as pd

    base = root / table
    if not base.exists():
        return pd.DataFrame()
    frames = []
    for sym_dir in sorted(base.glob("symbol=*")):
        sym = sym_dir.name.split("=", 1)[1]
        if symbol is not None and sym != symbol:
            continue
        for day_dir in sorted(sym_dir.glob("date=*")):
            day = day_dir.name.split("=", 1)[1]
            if date is not None and day != date:
                continue
            for part in sorted(day_dir.glob("part-*.parquet")):
                frame = pq.read_table(part).to_pandas()
                frame.insert(0, "date", day)
                frame.insert(0, "symbol", sym)
                frames.append(frame)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out.drop_duplicates(["symbol", "seq"], keep="last").sort_values(["symbol", "seq"], ignore_index=True)


def _midnight(date: str) -> float:
    day = dt.date.fromisoformat(date)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def export_lobster(root: Path, symbol: str, date: str, out_dir: Path, session: tuple[float, float] =
                   (34200.0, 57600.0)) -> Path:
    """Write the recorded book updates of one symbol and day as a LOBSTER CSV pair; returns the message file.

    Raises:
        DataFormatError: nothing was recorded for that symbol and day.
    """
    frame = read_table(root, "books", symbol, date)
    if frame.empty:
        raise DataFormatError(f"no recorded book updates for {symbol} on {date} under {root / 'books'}")
    levels = int(frame["levels"].max())
    cols = book_columns(levels)
    frame = frame.dropna(subset=[c for c in cols if "size" in c], how="all")
    t = frame["event_time"].to_numpy(np.float64) - _midnight(date)
    messages = np.column_stack([
        t, frame["event_type"].to_numpy(np.int64), np.zeros(len(frame), np.int64),
        frame["size"].to_numpy(np.float64).round().astype(np.int64),
        np.rint(frame["price"].to_numpy(np.float64) * PRICE_SCALE).astype(np.int64),
        frame["direction"].to_numpy(np.int64)])
    book = frame[cols].to_numpy(np.float64)
    prices = book[:, 0::2]
    ask = np.isnan(prices[:, 0::2])
    bid = np.isnan(prices[:, 1::2])
    scaled = np.rint(np.nan_to_num(prices, nan=0.0) * PRICE_SCALE).astype(np.int64)
    scaled[:, 0::2][ask] = ASK_SENTINEL
    scaled[:, 1::2][bid] = BID_SENTINEL
    sizes = np.nan_to_num(book[:, 1::2], nan=0.0).round().astype(np.int64)
    out_book = np.empty(book.shape, dtype=np.int64)
    out_book[:, 0::2] = scaled
    out_book[:, 1::2] = sizes
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{symbol}_{date}_{int(session[0] * 1000)}_{int(session[1] * 1000)}"
    message_path = out_dir / f"{stem}_message_{levels}.csv"
    with open(message_path, "w") as fh:
        fh.writelines(f"{ti:.9f},{','.join(str(int(v)) for v in row)}\n" for row, ti in zip(messages[:, 1:].astype(np.int64), t))
    np.savetxt(out_dir / f"{stem}_orderbook_{levels}.csv", out_book, fmt="%d", delimiter=",")
    log.info("exported %d recorded events of %s %s to %s", len(frame), symbol, date, message_path)
    return message_path


def read_outcomes(root: Path, symbol: str | None = None, date: str | None = None) -> Any:
    """The outcomes table with its trade columns recomputed from the ``orders`` and ``fills`` tables.

    An outcome message carries the trades its signal had caused when it was published; orders and fills that
    arrived later are rows of those tables, so the figures here are complete (and the same whatever the order
    in which the streams were consumed). Same formulas as :class:`hftpipe.monitoring.trades.TradeSummary`.
    """
    import pandas as pd

    out = read_table(root, "outcomes", symbol, date)
    if out.empty:
        return out
    fills = read_table(root, "fills", symbol)  # every day: a fill may fall after midnight UTC
    orders = read_table(root, "orders", symbol)
    key = ["symbol", "signal_seq"]
    zero = pd.DataFrame(columns=key)
    if not fills.empty:
        fills = fills[fills["signal_seq"] > 0].assign(
            signed=lambda f: f["side"] * f["qty"], notional=lambda f: f["qty"] * f["price"],
            signed_notional=lambda f: f["side"] * f["qty"] * f["price"])
        per_fill = fills.groupby(key).agg(fills=("qty", "size"), filled_qty=("qty", "sum"), net_qty=("signed", "sum"),
                                         notional=("notional", "sum"), signed_notional=("signed_notional", "sum"),
                                         fees=("fee", "sum")).reset_index()
    else:
        per_fill = zero
    per_order = (orders[orders["signal_seq"] > 0].groupby(key).size().rename("orders").reset_index()
                 if not orders.empty else zero)
    out = out.drop(columns=[c for c in TRADE_FIELDS if c in out.columns])
    for extra in (per_order, per_fill):
        out = out.merge(extra.rename(columns={"signal_seq": "seq"}), on=["symbol", "seq"], how="left")
    for col in ("orders", "fills", "filled_qty", "net_qty", "notional", "signed_notional", "fees"):
        out[col] = out[col].fillna(0).astype(int if col in ("orders", "fills") else float) if col in out else 0
    mid = out["outcome_mid"].fillna(0.0) if "outcome_mid" in out else 0.0
    out["avg_price"] = np.where(out["filled_qty"] > 0, out["notional"] / out["filled_qty"].where(out["filled_qty"] > 0),
                                0.0)
    marked = (out["fills"] > 0) & (mid > 0)
    out["markout_pnl"] = np.where(marked, out["net_qty"] * mid - out["signed_notional"] - out["fees"], 0.0)
    return out.drop(columns=["notional", "signed_notional"])


def data_set_root(config: Any) -> Path:
    """The feedback data set's folder: ``feedback.output``, else ``HFTPIPE_HOME/feedback``."""
    from hftpipe import paths

    return Path(config.feedback.output) if config.feedback.output else paths.home() / "feedback"


def recorded_quality(root: Path, window: int | None, bins: int = 10) -> Any:
    """Live quality (:class:`~hftpipe.monitoring.quality.QualitySnapshot`) of the last ``window`` recorded
    outcomes, all symbols: what the service's rolling window held, as of the last flush."""
    from hftpipe.monitoring.quality import RollingQuality

    quality = RollingQuality(window, bins)
    frame = read_table(root, "outcomes")
    for row in (frame.tail(window) if window else frame).itertuples(index=False):
        quality.add(outcome_from_row(row))
    return quality.snapshot()
