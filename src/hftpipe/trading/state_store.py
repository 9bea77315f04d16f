"""The persisted trading state (kill switch): one row in SQLite that the paper trader reads before each order.

``hftpipe risk halt | reduce | resume`` write it; every change also leaves one audit record, in the
same transaction (no state change without its record: if the audit write fails, the change is rolled
back). ``version`` grows by one per change, so a reader can tell cheaply that something changed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from hftpipe.errors import HftpipeError
from hftpipe.trading.risk import RiskEngine, RiskState

CREATE = """CREATE TABLE IF NOT EXISTS risk_state (
    one INTEGER PRIMARY KEY CHECK (one = 1), state TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
    time TEXT NOT NULL, version INTEGER NOT NULL)"""


class RiskStateError(HftpipeError):
    """The risk-state store cannot be read or written, or a change is malformed."""


@dataclass(frozen=True)
class PersistedState:
    state: RiskState
    reason: str
    actor: str
    time: str  # UTC ISO 8601
    version: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


INITIAL = PersistedState(RiskState.ACTIVE, "initial state", "system", "", 0)


class AuditedSqliteStore:
    """A SQLite file under ``HFTPIPE_HOME`` (default ``risk.db``) whose every change is audited atomically.

    Subclasses name their table (``create``) and what they hold (``what``, for error messages); a change runs
    inside :meth:`audited_change`, which checks reason and actor, takes the write lock, and commits only if
    the body (its own write and the audit record) succeeded: no change without its record.
    """

    create: ClassVar[str]
    what: ClassVar[str]
    reason_hint: ClassVar[str] = "a reason (why, for the audit trail)"

    def __init__(self, path: str | Path | None = None) -> None:
        if path is None:
            from hftpipe import paths

            path = paths.home() / "risk.db"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self.conn.execute(self.create)
        except sqlite3.Error as exc:
            raise RiskStateError(f"cannot open the {self.what} store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def audited_change(self, reason: str, actor: str) -> Iterator[sqlite3.Cursor]:
        """A write transaction for one audited change; rolled back if anything in it fails."""
        if not reason or not reason.strip():
            raise RiskStateError(f"a {self.what} change needs {self.reason_hint}")
        if not actor or not actor.strip():
            raise RiskStateError(f"a {self.what} change needs an actor")
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cur.close()

    def close(self) -> None:
        self.conn.close()


class RiskStateStore(AuditedSqliteStore):
    """SQLite store of the global trading state (default ``HFTPIPE_HOME/risk.db``)."""

    create = CREATE
    what = "risk state"
    reason_hint = "--reason TEXT (why, for the audit trail)"

    def current(self) -> PersistedState:
        row = self.conn.execute("SELECT state, reason, actor, time, version FROM risk_state WHERE one = 1").fetchone()
        if row is None:
            return INITIAL
        return PersistedState(RiskState(row[0]), row[1], row[2], row[3], int(row[4]))

    def change(self, state: RiskState, reason: str, actor: str, audit_url: str | None = None) -> PersistedState:
        """Set the state and write its audit record atomically; returns the new state."""
        from hftpipe import audit
        from hftpipe.audit.trail import utc_now

        with self.audited_change(reason, actor) as cur:
            before = self.current()
            new = PersistedState(state, reason, actor, utc_now(), before.version + 1)
            cur.execute("INSERT INTO risk_state (one, state, reason, actor, time, version) VALUES (1, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (one) DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                        "actor = excluded.actor, time = excluded.time, version = excluded.version",
                        (new.state.value, new.reason, new.actor, new.time, new.version))
            action = audit.KILL_SWITCH if state is RiskState.HALTED else audit.RISK_STATE
            audit.record(action, "trading", reason=reason, actor=actor, url=audit_url,
                         details={"previous": before.state.value, "state": state.value, "version": new.version})
        return new

    def apply_to(self, engine: RiskEngine, now: float | None = None) -> bool:
        """Bring an engine to the stored state (the trader calls this before each order); True if it changed."""
        stored = self.current()
        if stored.version == 0 or engine.state is stored.state:
            return False
        if stored.state is RiskState.HALTED:
            engine.halt(stored.reason, stored.actor, now)
        elif stored.state is RiskState.REDUCING:
            engine.reduce(stored.reason, stored.actor, now)
        else:
            engine.resume(stored.reason, stored.actor, now)
        return True
