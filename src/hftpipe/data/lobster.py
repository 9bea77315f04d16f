"""LOBSTER message + orderbook pairs, from the zip archive or the CSV pair, for any level count."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from hftpipe.config import DataConfig
from hftpipe.data.schema import EVENT_COLUMNS, EVENT_DTYPES, EventMeta, EventTable, book_columns, write_events
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

# TICKER_DATE_START_END_{message|orderbook}_L.csv, START/END in milliseconds after midnight.
NAME_RE = re.compile(
    r"^(?P<symbol>[A-Za-z0-9.\-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
    r"(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$"
)
ASK_SENTINEL = 9_999_999_999
BID_SENTINEL = -9_999_999_999
PRICE_SCALE = 10_000.0
HALT_TYPE = 7


@dataclass(frozen=True)
class LobsterSource:
    """Where a message/orderbook pair lives and what its names say."""

    path: Path  # the zip, or the message CSV
    message: str  # member name inside the zip, or CSV path
    orderbook: str
    in_zip: bool
    symbol: str | None
    date: str | None
    levels: int | None
    session_start: float | None  # seconds after midnight
    session_end: float | None

    def open(self, member: str) -> IO[bytes]:
        if self.in_zip:
            return zipfile.ZipFile(self.path).open(member)
        return open(member, "rb")

    def sha256(self) -> str:
        """sha256 of the zip, or of the message file followed by the orderbook file."""
        digest = hashlib.sha256()
        files = [str(self.path)] if self.in_zip else [self.message, self.orderbook]
        for name in files:
            with open(name, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        return digest.hexdigest()


def _parse_name(name: str) -> dict[str, str] | None:
    match = NAME_RE.match(Path(name).name)
    return match.groupdict() if match else None


def discover(path: str | Path) -> LobsterSource:
    """Find the message/orderbook pair behind a zip, a folder, or either CSV of the pair."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    if path.is_dir():
        messages = sorted(path.glob("*message*.csv"))
        if len(messages) != 1:
            raise DataFormatError(f"{path}: expected exactly one *message*.csv, found {len(messages)}")
        path = messages[0]
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        msgs = [n for n in names if "message" in Path(n).name and n.endswith(".csv")]
        books = [n for n in names if "orderbook" in Path(n).name and n.endswith(".csv")]
        if len(msgs) != 1 or len(books) != 1:
            raise DataFormatError(
                f"{path}: a LOBSTER zip holds one *message*.csv and one *orderbook*.csv; "
                f"found {len(msgs)} and {len(books)}"
            )
        message, orderbook, in_zip = msgs[0], books[0], True
    else:
        if path.suffix.lower() != ".csv":
            raise DataFormatError(f"{path}: expected a LOBSTER .zip, a message/orderbook .csv or a folder")
        name = path.name
        if "message" in name:
            other = path.with_name(name.replace("message", "orderbook"))
            message, orderbook = str(path), str(other)
        elif "orderbook" in name:
            other = path.with_name(name.replace("orderbook", "message"))
            message, orderbook = str(other), str(path)
        else:
            raise DataFormatError(f"{path}: a CSV of a LOBSTER pair has 'message' or 'orderbook' in its name")
        if not Path(other).exists():
            raise DataFormatError(f"{path}: its partner file {other} is missing (truncated pair?)")
        in_zip = False
    parsed = _parse_name(message) or _parse_name(orderbook)
    return LobsterSource(
        path=path,
        message=message,
        orderbook=orderbook,
        in_zip=in_zip,
        symbol=parsed["symbol"] if parsed else None,
        date=parsed["date"] if parsed else None,
        levels=int(parsed["levels"]) if parsed else None,
        session_start=int(parsed["start"]) / 1000.0 if parsed else None,
        session_end=int(parsed["end"]) / 1000.0 if parsed else None,
    )


def _read_csv(fh: IO[bytes], what: str) -> np.ndarray:
    try:
        frame = pd.read_csv(io.BufferedReader(fh) if not hasattr(fh, "peek") else fh, header=None,
                            dtype=np.float64, engine="c")
    except pd.errors.EmptyDataError as exc:
        raise DataFormatError(f"{what} is empty") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataFormatError(f"{what} cannot be parsed as numbers: {exc}") from exc
    return frame.to_numpy()


def read_pair(source: LobsterSource, levels: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Read the raw message (n, 6) and orderbook (n, 4L) arrays; check columns and row counts."""
    with source.open(source.message) as fh:
        messages = _read_csv(fh, f"message file {source.message}")
    with source.open(source.orderbook) as fh:
        book = _read_csv(fh, f"orderbook file {source.orderbook}")
    if messages.shape[1] != 6:
        raise DataFormatError(
            f"wrong column count: message file {source.message} has {messages.shape[1]} columns, expected 6 "
            "(time, type, order_id, size, price, direction)"
        )
    declared = levels or source.levels
    if declared is None:
        if book.shape[1] % 4:
            raise DataFormatError(
                f"wrong column count: orderbook file has {book.shape[1]} columns, not a multiple of 4"
            )
        declared = book.shape[1] // 4
    if book.shape[1] != 4 * declared:
        raise DataFormatError(
            f"wrong column count: orderbook file {source.orderbook} has {book.shape[1]} columns, "
            f"expected {4 * declared} for {declared} level(s)"
        )
    if len(messages) != len(book):
        raise DataFormatError(
            f"truncated file: message file has {len(messages)} rows but orderbook file has {len(book)}; "
            "row i of each must describe the same event"
        )
    if len(messages) == 0:
        raise DataFormatError(f"{source.path}: no events")
    return messages, book, declared


def to_canonical(messages: np.ndarray, book: np.ndarray, levels: int) -> pd.DataFrame:
    """Raw LOBSTER arrays to the canonical frame (dollars, NaN for empty levels, halts kept)."""
    frame = pd.DataFrame(
        {
            "time": messages[:, 0],
            # NaN-safe casts: a NaN here is a corrupt row; keep it visible to validation as -1.
            "type": np.nan_to_num(messages[:, 1], nan=-1).astype(np.int8),
            "order_id": np.nan_to_num(messages[:, 2], nan=-1).astype(np.int64),
            "size": np.nan_to_num(messages[:, 3], nan=-1).astype(np.int64),
            "price": messages[:, 4] / PRICE_SCALE,
            "direction": np.nan_to_num(messages[:, 5], nan=0).astype(np.int8),
        }
    )
    out = book.astype(np.float64, copy=True)
    prices = out[:, 0::2]
    empty = (prices >= ASK_SENTINEL) | (prices <= BID_SENTINEL)
    prices[empty] = np.nan
    # LOBSTER's empty levels already carry size 0; a sentinel price with shares is corrupt, and the size
    # is kept as read so that validation ("price NaN only on an empty level") reports it.
    prices /= PRICE_SCALE
    out[:, 0::2] = prices
    cols = book_columns(levels)
    frame = pd.concat([frame, pd.DataFrame(out, columns=cols)], axis=1)
    return frame.astype(EVENT_DTYPES)


def load_lobster(
    path: str | Path,
    *,
    symbol: str | None = None,
    date: str | None = None,
    levels: int | None = None,
    halts: str = "drop",
    session: tuple[float, float] = (34200.0, 57600.0),
) -> EventTable:
    """Load a LOBSTER zip or CSV pair into the canonical table.

    Raises:
        DataFormatError: wrong column count, truncated pair, unreadable numbers, no name and no symbol.
    """
    source = discover(path)
    messages, book, levels = read_pair(source, levels)
    frame = to_canonical(messages, book, levels)
    halt_rows = frame["type"].to_numpy() == HALT_TYPE
    halt_list = [
        {"time": float(t), "code": float(p * PRICE_SCALE)}
        for t, p in zip(frame.loc[halt_rows, "time"], frame.loc[halt_rows, "price"])
    ]
    if halts == "drop" and halt_rows.any():
        log.info("dropping %d trading-halt messages (kept in metadata)", int(halt_rows.sum()))
        frame = frame.loc[~halt_rows].reset_index(drop=True)
    sym = symbol or source.symbol
    if sym is None:
        raise DataFormatError(f"{path}: the file name does not say the symbol; set data.symbol")
    meta = EventMeta(
        symbol=sym,
        date=date or source.date or "unknown",
        levels=levels,
        rows=len(frame),
        source=str(path),
        source_sha256=source.sha256(),
        session_start=source.session_start if source.session_start is not None else session[0],
        session_end=source.session_end if source.session_end is not None else session[1],
        halts=halt_list,
    )
    return EventTable(frame=frame[list(EVENT_COLUMNS) + book_columns(levels)], meta=meta)


def load_events(path: str | Path, cfg: DataConfig, *, session: tuple[float, float] = (34200.0, 57600.0),
                symbol: str | None = None) -> EventTable:
    """Load any supported raw format (LOBSTER, Bitstamp L3 capture) into the canonical table."""
    from hftpipe.data.bitstamp import is_bitstamp_capture, load_bitstamp

    if is_bitstamp_capture(path):
        return load_bitstamp(path, levels=cfg.levels, symbol=cfg.symbol, date=cfg.date)
    return load_lobster(path, symbol=symbol or cfg.symbol, date=cfg.date, levels=cfg.levels, halts=cfg.halts,
                        session=session)


def ingest(cfg: DataConfig, source: str | Path | None = None, output: str | Path | None = None,
           validate_cfg: object | None = None) -> EventTable:
    """Load, validate and write the canonical table; on failed validation nothing is written.

    Raises:
        DataFormatError: the file is not a readable LOBSTER pair.
        ValidationFailed: the data breaks an expectation (the report says which).
    """
    from hftpipe.config import ValidateConfig
    from hftpipe.validation import validate_table

    vcfg = validate_cfg if isinstance(validate_cfg, ValidateConfig) else ValidateConfig()
    src = source or cfg.source
    table = load_events(src, cfg, session=(vcfg.session_start, vcfg.session_end))
    result = validate_table(table, vcfg)
    if not result.success:
        json_report, _ = result.write_reports()  # the user needs the details; the data is not written
        log.error("validation failed; report %s", json_report)
    result.raise_if_failed()
    out = Path(output or cfg.output)
    write_events(table, out)
    log.info("wrote %d events of %s %s (%d levels) to %s", table.meta.rows, table.meta.symbol,
             table.meta.date, table.meta.levels, out)
    if table.meta.source_report:
        log.info("loader report: %s", table.meta.source_report)
    return table
