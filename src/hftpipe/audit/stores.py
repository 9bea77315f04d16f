"""Audit stores: SQLite (stdlib) and PostgreSQL (psycopg 3), one SQL text through a small adapter.

The adapter differs only in the parameter marker (``?`` vs ``%s``), how a writer takes the lock that
serialises appends (SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SELECT ... FOR UPDATE`` on the head row)
and the trigger syntax that makes the log append-only.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from hftpipe.audit.trail import FIELDS, GENESIS, AuditError

CREATE_LOG = """CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY, time TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    subject TEXT NOT NULL, reason TEXT NOT NULL, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"""
CREATE_HEAD = """CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1), last_id BIGINT NOT NULL, last_hash TEXT NOT NULL)"""
CREATE_TIME_INDEX = "CREATE INDEX IF NOT EXISTS audit_log_time ON audit_log (time)"
INSERT_HEAD = "INSERT INTO audit_head (one, last_id, last_hash) VALUES (1, 0, ?) ON CONFLICT (one) DO NOTHING"
SELECT_HEAD = "SELECT last_id, last_hash FROM audit_head WHERE one = 1"
INSERT_RECORD = (f"INSERT INTO audit_log ({', '.join(FIELDS)}) VALUES ({', '.join('?' for _ in FIELDS)})")
UPDATE_HEAD = "UPDATE audit_head SET last_id = ?, last_hash = ? WHERE one = 1"
SELECT_RECORDS = f"SELECT {', '.join(FIELDS)} FROM audit_log"

SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
    """CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
       FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


class SqlStore(abc.ABC):
    """A store over a DB-API connection; subclasses set the dialect."""

    marker = "?"
    triggers: ClassVar[list[str]] = []

    def __init__(self, url: str, conn: Any) -> None:
        self.url = url
        self.conn = conn
        self._setup()

    def _sql(self, text: str) -> str:
        return text if self.marker == "?" else text.replace("?", self.marker)

    def _setup(self) -> None:
        with self._transaction() as cur:
            for stmt in (CREATE_LOG, CREATE_HEAD, CREATE_TIME_INDEX, *self.triggers):
                cur.execute(stmt)
            cur.execute(self._sql(INSERT_HEAD), (GENESIS,))

    @abc.abstractmethod
    def _transaction(self) -> Any:
        """A context manager yielding a cursor inside one transaction (each store's own driver)."""

    def _lock_head(self, cur: Any) -> tuple[int, str]:
        cur.execute(SELECT_HEAD)
        row = cur.fetchone()
        return int(row[0]), str(row[1])

    def append(self, make: Callable[[int, str], dict[str, Any]]) -> dict[str, Any]:
        """Build the next record from the head (under the writer lock), insert it and move the head."""
        with self._transaction() as cur:
            last_id, last_hash = self._lock_head(cur)
            fields = make(last_id, last_hash)
            cur.execute(self._sql(INSERT_RECORD), tuple(fields[k] for k in FIELDS))
            cur.execute(self._sql(UPDATE_HEAD), (fields["id"], fields["hash"]))
        return fields

    def rows(self, since: str | None = None, until: str | None = None) -> Iterator[dict[str, Any]]:
        where, params = [], []
        if since:
            where.append("time >= ?")
            params.append(since)
        if until:
            where.append("time < ?")
            params.append(until)
        sql = SELECT_RECORDS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        cur = self.conn.cursor()
        try:
            cur.execute(self._sql(sql), tuple(params))
            for row in cur.fetchall():
                yield dict(zip(FIELDS, row))
        finally:
            cur.close()
        self._end_read()

    def _end_read(self) -> None:
        pass

    def head(self) -> tuple[int, str]:
        cur = self.conn.cursor()
        try:
            cur.execute(SELECT_HEAD)
            row = cur.fetchone()
        finally:
            cur.close()
        self._end_read()
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def close(self) -> None:
        self.conn.close()


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Cursor:
        self.cur = self.conn.cursor()
        self.cur.execute("BEGIN IMMEDIATE")  # one writer at a time: the head read and the insert are atomic
        return self.cur

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.conn.commit()
        else:
            self.conn.rollback()
        self.cur.close()


class SqliteStore(SqlStore):
    triggers = SQLITE_TRIGGERS

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        super().__init__(f"sqlite:///{path}", conn)

    def _transaction(self) -> _SqliteTx:
        return _SqliteTx(self.conn)


class PostgresStore(SqlStore):
    marker = "%s"
    triggers = POSTGRES_TRIGGERS

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a project dependency
            raise AuditError("PostgreSQL audit store needs psycopg: pip install 'psycopg[binary]'") from exc
        try:
            conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise AuditError(f"cannot connect to the audit database {_redact(url)}: {str(exc).strip()}") from exc
        super().__init__(url, conn)

    def _transaction(self) -> Any:
        return _PgTx(self.conn)

    def _lock_head(self, cur: Any) -> tuple[int, str]:
        cur.execute(SELECT_HEAD + " FOR UPDATE")  # serialises appends across processes
        row = cur.fetchone()
        return int(row[0]), str(row[1])

    def _end_read(self) -> None:
        self.conn.commit()  # do not leave a read transaction open (it would hold back vacuum)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        self.cur = self.conn.cursor()
        return self.cur

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.conn.commit()
        else:
            self.conn.rollback()
        self.cur.close()


def _redact(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def open_store(url: str | None = None) -> SqlStore:
    """A store from a URL: None -> SQLite at HFTPIPE_HOME/audit.db; ``sqlite:///PATH``; ``postgresql://...``."""
    if url is None:
        from hftpipe import paths

        return SqliteStore(paths.home() / "audit.db")
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url)
    raise AuditError(f"unsupported audit store URL {_redact(url)!r}; use sqlite:///PATH or postgresql://...")
