"""Append-only, hash-chained audit trail: who did what, when, to what, and why.

Each record holds ``id`` (1, 2, 3, ... without gaps), ``time`` (UTC, ISO 8601 with microseconds),
``actor``, ``action``, ``subject``, ``reason``, ``details`` (a JSON object), ``prev_hash`` (the hash of
the record before; 64 zeros for the first) and ``hash`` = sha256 of the canonical JSON (sorted keys, no
spaces, UTF-8) of all the other fields. Editing a record breaks its hash; deleting or reordering
records breaks an id or a ``prev_hash`` link; deleting the newest records is caught by the head row
(last id and hash) written in the same transaction as every append. The database also refuses UPDATE
and DELETE on the log (triggers): that stops accidents, the chain proves the rest.

Stores (:mod:`hftpipe.audit.stores`): SQLite (default ``HFTPIPE_HOME/audit.db``) and PostgreSQL, same
SQL through a small adapter.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, Self

from hftpipe.errors import HftpipeError

GENESIS = "0" * 64
FIELDS = ("id", "time", "actor", "action", "subject", "reason", "details", "prev_hash", "hash")

# The actions the project records (any non-empty string is accepted; these are the shared names).
REGISTER, PROMOTE, ROLLBACK, ALIAS_MOVE, DEPLOY = "register", "promote", "rollback", "alias_move", "deploy"
RETRAIN_TRIGGER, RISK_STATE, LIMIT_CHANGE, KILL_SWITCH, LOGIN = (
    "retrain_trigger", "risk_state", "limit_change", "kill_switch", "login")


class AuditError(HftpipeError):
    """The audit store cannot be opened or written, or an audit record is malformed."""


class AuditTampered(HftpipeError):
    """``audit verify`` found a record that was edited, deleted or reordered."""

    exit_code = 1


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(fields: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a record's fields other than ``hash`` (prev_hash included)."""
    body = {k: fields[k] for k in FIELDS if k != "hash"}
    if isinstance(body["details"], str):
        body["details"] = json.loads(body["details"])
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    id: int
    time: str
    actor: str
    action: str
    subject: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verification:
    ok: bool
    records: int
    first_bad: int | None = None  # id of the first bad record (or the position where one is missing)
    problem: str = ""

    def message(self) -> str:
        if self.ok:
            return f"audit trail intact: {self.records} record(s), chain verified"
        return f"audit trail TAMPERED at record {self.first_bad}: {self.problem}"


class AuditStore(Protocol):
    """What a store must do (see :mod:`hftpipe.audit.stores`)."""

    url: str

    def append(self, make: Any) -> dict[str, Any]: ...

    def rows(self, since: str | None = None, until: str | None = None) -> Iterator[dict[str, Any]]: ...

    def head(self) -> tuple[int, str]: ...

    def close(self) -> None: ...


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def normalise_time(text: str) -> str:
    """An ISO date or datetime (naive = UTC) as the trail's UTC ISO string, for --since/--until."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise AuditError(f"{text!r} is not an ISO date or time (e.g. 2026-12-01 or 2026-12-01T09:30:00Z)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def default_actor() -> str:
    """Who is acting: ``HFTPIPE_ACTOR`` or the operating-system user."""
    return os.environ.get("HFTPIPE_ACTOR") or getpass.getuser()


class AuditTrail:
    """The trail over one store: append records, read them back, verify the chain, export."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def record(self, action: str, subject: str, reason: str = "", details: dict[str, Any] | None = None,
               actor: str | None = None, at: str | None = None) -> AuditRecord:
        """Append one record (atomically chained to the last one) and return it."""
        actor = actor or default_actor()
        for name, value in (("action", action), ("subject", subject), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise AuditError(f"an audit record needs a non-empty {name}")
        details = dict(details or {})
        try:
            details_text = canonical_json(details)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit details must be plain JSON data: {exc}") from exc
        time = at or utc_now()

        def make(last_id: int, last_hash: str) -> dict[str, Any]:
            fields = {"id": last_id + 1, "time": time, "actor": actor, "action": action, "subject": subject,
                      "reason": reason or "", "details": details_text, "prev_hash": last_hash}
            fields["hash"] = record_hash(fields)
            return fields

        row = self.store.append(make)
        return _to_record(row)

    def records(self, since: str | None = None, until: str | None = None) -> list[AuditRecord]:
        return [_to_record(r) for r in self.store.rows(since, until)]

    def verify(self) -> Verification:
        """Walk the chain from the first record: ids contiguous, links intact, hashes recomputed, head matches."""
        expected_id, prev = 1, GENESIS
        count = 0
        for row in self.store.rows():
            count += 1
            rid = int(row["id"])
            if rid != expected_id:
                return Verification(False, count, expected_id,
                                    f"record {expected_id} is missing (next stored id is {rid}): deleted or reordered")
            if row["prev_hash"] != prev:
                return Verification(False, count, rid, "prev_hash does not match the record before: "
                                                       "a record was deleted, inserted or reordered")
            try:
                recomputed = record_hash(row)
            except (ValueError, TypeError):
                recomputed = ""
            if recomputed != row["hash"]:
                return Verification(False, count, rid, "hash does not match the content: the record was edited")
            prev = row["hash"]
            expected_id += 1
        head_id, head_hash = self.store.head()
        if head_id != expected_id - 1 or head_hash != prev:
            return Verification(False, count, min(expected_id, head_id),
                                f"the head says the last record is {head_id} but the log ends at {expected_id - 1}: "
                                "the newest record(s) were deleted")
        return Verification(True, count)

    def export(self, since: str | None = None, until: str | None = None, fmt: str = "json") -> str:
        """Records with ``since <= time < until`` as JSON (a list) or CSV (details as JSON text)."""
        records = self.records(since, until)
        if fmt == "json":
            return json.dumps([r.to_dict() for r in records], indent=2, ensure_ascii=False) + "\n"
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(FIELDS)
            for r in records:
                row = r.to_dict()
                row["details"] = canonical_json(row["details"])
                writer.writerow([row[k] for k in FIELDS])
            return buf.getvalue()
        raise AuditError(f"unknown export format {fmt!r}; use csv or json")

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_record(row: dict[str, Any]) -> AuditRecord:
    details = row["details"]
    return AuditRecord(id=int(row["id"]), time=row["time"], actor=row["actor"], action=row["action"],
                       subject=row["subject"], reason=row["reason"],
                       details=json.loads(details) if isinstance(details, str) else dict(details),
                       prev_hash=row["prev_hash"], hash=row["hash"])
