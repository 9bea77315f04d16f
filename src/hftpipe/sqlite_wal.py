"""The small sqlite files in which the bus services commit their progress, one transaction per batch.

The signal service's :class:`~hftpipe.streaming.state.SeqStore`, the paper trader's
:class:`~hftpipe.trading.paper_store.PaperStore` and the outcome monitor's
:class:`~hftpipe.monitoring.feedback_store.RowBuffer` each commit a batch's progress BEFORE the batch is
acknowledged on the bus. WAL mode with ``synchronous=NORMAL`` survives ``kill -9`` of the process (not
necessarily a power cut, which is not the threat here) and keeps a commit cheap.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def open_wal(path: Path, schema: Iterable[str] = ()) -> sqlite3.Connection:
    """Open (creating its folder) one service's sqlite file in WAL mode and run its ``CREATE ... IF NOT EXISTS``.

    Autocommit (``isolation_level=None``): transactions are explicit, see :func:`transaction`. Usable from the
    service's worker threads (the service serialises the calls).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for statement in schema:
        db.execute(statement)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """All statements of the block commit together, or (on any exception) none of them."""
    db.execute("BEGIN")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
