"""Market-data loaders into the canonical event table (one row per event, book after the event).

Load, validate and write (``ingest``) is ``hftpipe.prepare``: data/ never imports validation/.
"""

from hftpipe.data.lobster import LobsterSource, discover, load_lobster
from hftpipe.data.schema import (
    EVENT_COLUMNS,
    EventTable,
    book_columns,
    book_matrix,
    read_events,
    write_events,
)

__all__ = [
    "EVENT_COLUMNS",
    "EventTable",
    "LobsterSource",
    "book_columns",
    "book_matrix",
    "discover",
    "load_lobster",
    "read_events",
    "write_events",
]
