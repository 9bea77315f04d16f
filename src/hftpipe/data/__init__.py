"""Market-data loaders into the canonical event table (one row per event, book after the event)."""

from hftpipe.data.schema import (
    EVENT_COLUMNS,
    EventTable,
    book_columns,
    book_matrix,
    read_events,
    write_events,
)
from hftpipe.data.lobster import LobsterSource, discover, ingest, load_events, load_lobster

__all__ = [
    "EVENT_COLUMNS",
    "EventTable",
    "LobsterSource",
    "book_columns",
    "book_matrix",
    "discover",
    "ingest",
    "load_events",
    "load_lobster",
    "read_events",
    "write_events",
]
