"""The paper trader's own store: its state, the fills and positions, and an outbox, in one sqlite file.

One transaction per batch of inputs holds the core's snapshot (positions, cash, resting orders with their
queue positions, the policy's state, the risk engine, the last applied seq per symbol), the new fills and
positions (for people and the UI) and the batch's output messages (the outbox). The service publishes the
outbox only after the commit and acknowledges its inputs only after JetStream acknowledged the outbox:

- a crash before the commit: the inputs are redelivered and handled again from the previous snapshot; nothing
  of the lost attempt left the process, so nothing is duplicated;
- a crash after it: the restarted service restores the snapshot, publishes the outbox again (the ``Nats-Msg-Id``
  of each message makes JetStream drop copies that did arrive), and skips redelivered inputs by their seq.

WAL mode survives ``kill -9`` of the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hftpipe.contracts import Fill, PositionUpdate
from hftpipe.sqlite_wal import open_wal, transaction

SCHEMA = (
    ("CREATE TABLE IF NOT EXISTS snapshot (one INTEGER PRIMARY KEY CHECK (one = 1), core BLOB NOT NULL, "
     "batches INTEGER NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL, "
     "msg_id TEXT NOT NULL, data BLOB NOT NULL)"),
    ("CREATE TABLE IF NOT EXISTS fills (symbol TEXT NOT NULL, fill_id INTEGER NOT NULL, order_id INTEGER NOT NULL, "
     "side INTEGER NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL, maker INTEGER NOT NULL, "
     "seq INTEGER NOT NULL, event_time REAL NOT NULL, PRIMARY KEY (symbol, fill_id))"),
    ("CREATE TABLE IF NOT EXISTS positions (symbol TEXT PRIMARY KEY, venue TEXT NOT NULL, seq INTEGER NOT NULL, "
     "position REAL NOT NULL, cash REAL NOT NULL, mid REAL, pnl REAL, fees REAL NOT NULL, "
     "open_orders INTEGER NOT NULL, fills INTEGER NOT NULL, risk_state TEXT NOT NULL)"),
)


@dataclass(frozen=True)
class OutboxItem:
    id: int
    subject: str
    msg_id: str
    data: bytes


class PaperStore:
    """sqlite store of one paper trader (default ``HFTPIPE_HOME/paper/<durable>.sqlite``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = open_wal(self.path, SCHEMA)

    def load(self) -> bytes | None:
        row = self._db.execute("SELECT core FROM snapshot WHERE one = 1").fetchone()
        return None if row is None else bytes(row[0])

    def commit(self, core: bytes, outbox: list[tuple[str, str, bytes]], fills: list[Fill],
               positions: list[PositionUpdate]) -> None:
        """Record one batch atomically: the snapshot, its output messages, its fills and positions."""
        with transaction(self._db) as db:
            db.execute("INSERT INTO snapshot VALUES (1, ?, 1) ON CONFLICT(one) DO UPDATE SET core = excluded.core, "
                       "batches = batches + 1", (core,))
            db.executemany("INSERT INTO outbox (subject, msg_id, data) VALUES (?, ?, ?)", outbox)
            db.executemany("INSERT OR IGNORE INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(f.symbol, f.fill_id, f.order_id, f.side, f.qty, f.price, f.fee, int(f.maker), f.seq,
                             f.event_time) for f in fills])
            db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(p.symbol, p.venue, p.seq, p.position, p.cash, p.mid, p.pnl, p.fees, p.open_orders,
                             p.fills, p.risk_state) for p in positions])

    def outbox(self) -> list[OutboxItem]:
        rows = self._db.execute("SELECT id, subject, msg_id, data FROM outbox ORDER BY id")
        return [OutboxItem(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def published(self, up_to_id: int) -> None:
        """JetStream acknowledged the outbox up to this row."""
        self._db.execute("DELETE FROM outbox WHERE id <= ?", (up_to_id,))

    def fills(self, symbol: str | None = None) -> list[tuple]:
        sql = "SELECT symbol, fill_id, order_id, side, qty, price, fee, maker, seq, event_time FROM fills"
        args: tuple = ()
        if symbol is not None:
            sql += " WHERE symbol = ?"
            args = (symbol,)
        return list(self._db.execute(sql + " ORDER BY symbol, fill_id", args))

    def positions(self) -> dict[str, dict]:
        cols = ("symbol", "venue", "seq", "position", "cash", "mid", "pnl", "fees", "open_orders", "fills",
                "risk_state")
        return {r[0]: dict(zip(cols, r)) for r in self._db.execute(f"SELECT {', '.join(cols)} FROM positions")}

    def close(self) -> None:
        self._db.close()
