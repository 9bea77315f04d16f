"""The tamper-evident audit trail: every registry, serving and risk change leaves one chained record.

Callers use :func:`record` (one line at the point of change)::

    from hftpipe import audit
    audit.record(audit.PROMOTE, "hftpipe-lob/3", reason="beat champion", details={"alias": "champion"})

The store comes from ``url``, else ``HFTPIPE_AUDIT_URL``, else SQLite at ``HFTPIPE_HOME/audit.db``.
"""

from __future__ import annotations

import os
from typing import Any

from hftpipe.audit.stores import PostgresStore, SqliteStore, open_store
from hftpipe.audit.trail import (
    ALIAS_MOVE,
    DEPLOY,
    KILL_SWITCH,
    LIMIT_CHANGE,
    LOGIN,
    PROMOTE,
    REGISTER,
    RETRAIN_TRIGGER,
    RISK_STATE,
    ROLLBACK,
    AuditError,
    AuditRecord,
    AuditTampered,
    AuditTrail,
    Verification,
)

__all__ = [
    "ALIAS_MOVE", "DEPLOY", "KILL_SWITCH", "LIMIT_CHANGE", "LOGIN", "PROMOTE", "REGISTER", "RETRAIN_TRIGGER",
    "RISK_STATE", "ROLLBACK", "AuditError", "AuditRecord", "AuditTampered", "AuditTrail", "PostgresStore",
    "SqliteStore", "Verification", "open_trail", "record",
]


def open_trail(url: str | None = None) -> AuditTrail:
    """The audit trail at ``url`` (else ``HFTPIPE_AUDIT_URL``, else HFTPIPE_HOME/audit.db)."""
    return AuditTrail(open_store(url or os.environ.get("HFTPIPE_AUDIT_URL") or None))


def record(action: str, subject: str, reason: str = "", details: dict[str, Any] | None = None,
           actor: str | None = None, url: str | None = None) -> AuditRecord:
    """Append one audit record (who: ``actor``, else HFTPIPE_ACTOR, else the OS user) and return it."""
    with open_trail(url) as trail:
        return trail.record(action, subject, reason, details, actor)
