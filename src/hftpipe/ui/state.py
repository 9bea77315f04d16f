"""Log-in state that must outlive one request, one process and a restart: sessions and failed log-ins.

Both live in one sqlite file under ``HFTPIPE_HOME`` (``ui/state.sqlite``), shared by every server
worker. The signed session cookie only carries a random session id; the server keeps the session's
row, so logging out (or the idle / absolute lifetime running out) ends it for every copy of the
cookie. Session ids are stored hashed: reading the file gives nobody a live session.

Failed log-ins are counted per account and per client address with exponential backoff
(:class:`LoginThrottle`); see its docstring for how the real user still gets in during an attack.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    sid_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL,
    last_attempt REAL NOT NULL
);
"""


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class UiState:
    """The sqlite file holding sessions and failure counters (one short connection per operation, so
    threads and forked workers never share one)."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock  # wall time: lifetimes must survive a restart
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the one writer
            db.executescript(SCHEMA)
        self.path.chmod(0o600)  # session hashes and user names: nobody else's business

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    # -- sessions -----------------------------------------------------------------------------------

    def open_session(self, user: str, now: float | None = None) -> str:
        """Start a session for ``user``; return its id (goes into the signed cookie, never stored)."""
        now = self.clock() if now is None else now
        sid = secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_hash(sid), user, now, now))
        return sid

    def session_user(self, sid: str | None, idle_s: float, max_s: float, now: float | None = None) -> str | None:
        """The user of a live session, refreshing its last use; None when ended, idle or too old."""
        if not sid or not isinstance(sid, str):
            return None
        now = self.clock() if now is None else now
        key = _hash(sid)
        with self._db() as db:
            row = db.execute("SELECT user, created, last_seen FROM sessions WHERE sid_hash = ?", (key,)).fetchone()
            if row is None:
                return None
            user, created, last_seen = row
            if now - last_seen > idle_s or now - created > max_s:
                db.execute("DELETE FROM sessions WHERE sid_hash = ?", (key,))
                return None
            # One write per few seconds of activity, not per request (a page pulls several assets).
            if now - last_seen > min(30.0, idle_s / 10):
                db.execute("UPDATE sessions SET last_seen = ? WHERE sid_hash = ?", (now, key))
        return str(user)

    def end_session(self, sid: str | None) -> None:
        if sid and isinstance(sid, str):
            with self._db() as db:
                db.execute("DELETE FROM sessions WHERE sid_hash = ?", (_hash(sid),))

    def prune_sessions(self, idle_s: float, max_s: float, now: float | None = None) -> int:
        """Delete sessions past their lifetime (called at log-in so the table stays small)."""
        now = self.clock() if now is None else now
        with self._db() as db:
            return db.execute("DELETE FROM sessions WHERE last_seen < ? OR created < ?",
                              (now - idle_s, now - max_s)).rowcount

    # -- failed log-ins -----------------------------------------------------------------------------

    def failures(self, key: str) -> tuple[int, float, float]:
        """(failures, last failure, last checked attempt) of ``key``; zeros when unknown."""
        with self._db() as db:
            row = db.execute("SELECT failures, last_failure, last_attempt FROM login_failures WHERE key = ?",
                             (key,)).fetchone()
        return (int(row[0]), float(row[1]), float(row[2])) if row else (0, 0.0, 0.0)

    def put_failures(self, key: str, failures: int, last_failure: float, last_attempt: float) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO login_failures VALUES (?, ?, ?, ?)",
                       (key, failures, last_failure, last_attempt))

    def clear_failures(self, key: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM login_failures WHERE key = ?", (key,))


@dataclass(frozen=True)
class Refusal:
    """Why a log-in attempt was not even checked, and when to try again."""

    retry_after_s: float
    reason: str

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.retry_after_s))


def backoff_s(failures: int, free: int, base_s: float, cap_s: float) -> float:
    """Lockout after ``failures`` consecutive failures: none for the first ``free - 1``, then
    ``base_s``, doubling with each further failure, capped at ``cap_s``."""
    if failures < free:
        return 0.0
    return min(base_s * 2.0 ** min(failures - free, 60), cap_s)


class LoginThrottle:
    """Exponential backoff on failed log-ins, per account and per client address, persisted in :class:`UiState`.

    - Account: after ``FREE`` failures (from anywhere) the account is locked for 1 s, doubling per failure
      up to ``ACCOUNT_CAP_S`` (30 s). During the lock, an address with no recent failure (the real
      user's, not the attacker's) is still checked: a flood on the account from elsewhere cannot keep its
      owner out; an address that failed is refused until the lock ends.
    - Address: after ``FREE`` failures it is locked for 1 s, doubling up to ``ADDRESS_CAP_S`` (1 h).
      During the lock one attempt per ``PROBE_S`` (2 s) is still checked: the right password gets in
      after that short delay; a guesser from that address gets one guess per 2 s.
    - Counters reset ``FORGET_S`` after the last failure, and a good log-in clears its account's (not
      its address's: logging into one's own account must not launder an address that guesses others').
    """

    FREE = 5
    BASE_S = 1.0
    ACCOUNT_CAP_S = 30.0
    ADDRESS_CAP_S = 3600.0
    PROBE_S = 2.0
    FORGET_S = 3600.0

    def __init__(self, state: UiState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock

    def _get(self, key: str, now: float) -> tuple[int, float, float]:
        failures, last_failure, last_attempt = self.state.failures(key)
        if failures and now - last_failure > self.FORGET_S:
            return 0, 0.0, last_attempt
        return failures, last_failure, last_attempt

    def check(self, user: str, address: str) -> Refusal | None:
        """None when this attempt's password may be checked now, else why not and for how long."""
        now = self.clock()
        a_fail, a_last, _ = self._get(f"user:{user}", now)
        i_fail, i_last, i_attempt = self._get(f"addr:{address}", now)
        address_until = i_last + backoff_s(i_fail, self.FREE, self.BASE_S, self.ADDRESS_CAP_S)
        if now < address_until and now - i_attempt < self.PROBE_S:
            return Refusal(min(address_until, i_attempt + self.PROBE_S) - now, "address")
        account_until = a_last + backoff_s(a_fail, self.FREE, self.BASE_S, self.ACCOUNT_CAP_S)
        if now < account_until and i_fail > 0:
            return Refusal(account_until - now, "account")
        return None

    def record(self, user: str, address: str, ok: bool) -> None:
        """Count a checked attempt's outcome."""
        now = self.clock()
        i_fail, i_last, _ = self._get(f"addr:{address}", now)
        if ok:
            self.state.clear_failures(f"user:{user}")
            self.state.put_failures(f"addr:{address}", i_fail, i_last, now)
            return
        a_fail, _, _ = self._get(f"user:{user}", now)
        self.state.put_failures(f"user:{user}", a_fail + 1, now, now)
        self.state.put_failures(f"addr:{address}", i_fail + 1, now, now)
        # One line when backoff starts, then at 2x, 4x... the failures: a flood cannot flood the log.
        if any(n >= self.FREE and (n == self.FREE or n & (n - 1) == 0) for n in (a_fail + 1, i_fail + 1)):
            log.warning("failed log-in %d for account %r, %d from address %s: backing off",
                        a_fail + 1, user[:64], i_fail + 1, address)
