"""What the signal service has applied, per symbol, kept in a small sqlite file under HFTPIPE_HOME.

For each symbol: the last input seq whose signal was published (or deliberately skipped), and the stream
sequences the service needs to rebuild the symbol's window after a restart (the JetStream sequence of the
oldest state in the window, and of the last one applied). The service writes one transaction per batch,
after the batch's signals are acknowledged by JetStream and before it acknowledges the batch's inputs: a
crash before the write republishes (dropped by the dedup id), a crash after it skips the redelivered inputs.
WAL mode survives ``kill -9`` of the process (not necessarily a power cut, which is not the threat here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hftpipe.sqlite_wal import open_wal, transaction

SCHEMA = (
    ("CREATE TABLE IF NOT EXISTS progress (symbol TEXT PRIMARY KEY, subject TEXT NOT NULL, "
     "last_seq INTEGER NOT NULL, window_first_sseq INTEGER NOT NULL, last_sseq INTEGER NOT NULL)"),
)


@dataclass(frozen=True)
class SymbolState:
    symbol: str
    subject: str
    last_seq: int  # last input seq applied (0: none)
    window_first_sseq: int  # stream sequence of the oldest state in the window (0: empty window)
    last_sseq: int  # stream sequence of the last state applied


class SeqStore:
    """Per-symbol progress of one durable consumer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_wal(self.path, SCHEMA)

    def load(self) -> dict[str, SymbolState]:
        rows = self._db.execute("SELECT symbol, subject, last_seq, window_first_sseq, last_sseq FROM progress")
        return {r[0]: SymbolState(*r) for r in rows}

    def save(self, states: list[SymbolState]) -> None:
        """Record several symbols' progress atomically."""
        if not states:
            return
        with transaction(self._db) as db:
            db.executemany(
                "INSERT INTO progress VALUES (?, ?, ?, ?, ?) ON CONFLICT(symbol) DO UPDATE SET subject=excluded.subject, "
                "last_seq=excluded.last_seq, window_first_sseq=excluded.window_first_sseq, last_sseq=excluded.last_sseq",
                [(s.symbol, s.subject, s.last_seq, s.window_first_sseq, s.last_sseq) for s in states])

    def close(self) -> None:
        self._db.close()
