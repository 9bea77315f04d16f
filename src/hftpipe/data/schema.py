"""The canonical event table every loader produces and every feature consumes.

One row per event, ordered by event time:

- ``time`` (float64, seconds after midnight), ``type`` (int8, LOBSTER codes 1-5, 7 only when halts are
  kept), ``order_id`` (int64), ``size`` (int64 shares), ``price`` (float64 dollars), ``direction``
  (int8, +1 buy / -1 sell limit order);
- the book just after the event, level k = 1..L, in LOBSTER's order: ``ask_price_k``, ``ask_size_k``,
  ``bid_price_k``, ``bid_size_k``. Prices are dollars (float64), sizes shares (float64). An empty level
  has price NaN and size 0 (LOBSTER's +/-9999999999 sentinels are converted on load).

Other sources (tick/quote CSVs, crypto L2) only need a loader that produces this table; features never
look at the source format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hftpipe.errors import DataFormatError

EVENT_COLUMNS: tuple[str, ...] = ("time", "type", "order_id", "size", "price", "direction")
EVENT_DTYPES: dict[str, str] = {
    "time": "float64",
    "type": "int8",
    "order_id": "int64",
    "size": "int64",
    "price": "float64",
    "direction": "int8",
}
META_KEY = b"hftpipe"
FORMAT_VERSION = 1


def book_columns(levels: int) -> list[str]:
    """Book column names for ``levels`` levels, in LOBSTER's interleaved order."""
    cols: list[str] = []
    for k in range(1, levels + 1):
        cols += [f"ask_price_{k}", f"ask_size_{k}", f"bid_price_{k}", f"bid_size_{k}"]
    return cols


def levels_of(frame: pd.DataFrame) -> int:
    """Number of book levels held by a canonical table."""
    return sum(1 for c in frame.columns if c.startswith("ask_price_"))


def book_matrix(frame: pd.DataFrame, levels: int | None = None) -> np.ndarray:
    """The book as an (n, 4L) float64 array in LOBSTER order (ask_p, ask_s, bid_p, bid_s per level)."""
    levels = levels or levels_of(frame)
    return frame[book_columns(levels)].to_numpy(dtype=np.float64, copy=False)


@dataclass(frozen=True)
class EventMeta:
    """What the Parquet file says about itself."""

    symbol: str
    date: str
    levels: int
    rows: int
    source: str
    source_sha256: str
    session_start: float
    session_end: float
    halts: list[dict[str, float]] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    venue: str = ""  # exchange, e.g. "bitstamp"; empty for LOBSTER files (NASDAQ)
    source_report: dict[str, int] = field(default_factory=dict)  # loader counts (L3: unknown deletes, repairs...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EventTable:
    """A canonical event table and its metadata."""

    frame: pd.DataFrame
    meta: EventMeta

    @property
    def levels(self) -> int:
        return self.meta.levels

    def book(self) -> np.ndarray:
        return book_matrix(self.frame, self.meta.levels)


def write_table(frame: pd.DataFrame, meta: dict[str, Any], path: str | Path, key: bytes = META_KEY) -> Path:
    """Write ``frame`` as zstd Parquet with ``meta`` under ``key``; the file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(arrow.schema.metadata or {})
    schema_meta[key] = json.dumps(meta).encode()
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow.replace_schema_metadata(schema_meta), tmp, compression="zstd")
    tmp.replace(path)
    return path


def read_table(path: str | Path, missing: str, no_meta: str,
               key: bytes = META_KEY) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(frame, metadata) of a file written by :func:`write_table`; the messages say what to do instead."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} {missing}")
    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(key)
    if raw is None:
        raise DataFormatError(f"{path} {no_meta}")
    return arrow.to_pandas(), json.loads(raw)


def write_events(table: EventTable, path: str | Path) -> Path:
    """Write the table as Parquet with its metadata; the file is replaced atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table.frame, preserve_index=False)
    meta = dict(arrow.schema.metadata or {})
    meta[META_KEY] = json.dumps(table.meta.to_dict()).encode()
    arrow = arrow.replace_schema_metadata(meta)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow, tmp, compression="zstd")
    tmp.replace(path)
    return path


def read_events(path: str | Path) -> EventTable:
    """Read a canonical table written by :func:`write_events`."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist; run `hftpipe ingest` first")
    arrow = pq.read_table(path)
    raw = (arrow.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise DataFormatError(f"{path} has no hftpipe metadata; it was not written by `hftpipe ingest`")
    meta = EventMeta(**json.loads(raw))
    return EventTable(frame=arrow.to_pandas(), meta=meta)
