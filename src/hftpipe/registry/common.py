"""Helpers every part of the registry shares: the alias names, alias look-ups, tags, audit records."""

from __future__ import annotations

import json
import time
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe.errors import RegistryError

CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"
_TAG_MAX = 5000  # MLflow's limit on a model-version tag value


def _alias_version(mc: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the model or the alias does not exist."""
    try:
        return mc.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _require_model(mc: MlflowClient, name: str) -> None:
    try:
        mc.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no registered model named {name!r} in {mc.tracking_uri}; run `hftpipe "
                                "register` first (or set MLFLOW_TRACKING_URI / HFTPIPE_HOME)") from exc
        raise


def _tag(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _TAG_MAX else text[: _TAG_MAX - 3] + "..."


def _set_version_tags(mc: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        if value is not None:
            mc.set_model_version_tag(name, version, key, _tag(value))


def _utc(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((ms or 0) / 1000))


def _audit(trail: Any, action: str, subject: str, reason: str, details: dict[str, Any], actor: str | None,
           undone: str) -> None:
    """Append one audit record; any failure becomes an :class:`AuditError` saying what was (not) done."""
    from hftpipe.audit import AuditError

    try:
        trail.record(action, subject, reason=reason, details=details, actor=actor)
    except Exception as exc:  # sqlite3 / psycopg / OS errors alike: the change must not go unrecorded
        raise AuditError(f"audit record '{action}' for {subject} could not be written ({exc}); {undone}. "
                         "Fix the audit store (audit.url / HFTPIPE_AUDIT_URL) and try again") from exc


def _open_audit(url: str | None) -> Any:
    """The audit trail, opened before anything changes so an unreachable store refuses the whole operation."""
    from hftpipe import audit
    from hftpipe.audit import AuditError

    try:
        return audit.open_trail(url)
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"cannot open the audit trail ({exc}); nothing was changed. Fix audit.url / "
                         "HFTPIPE_AUDIT_URL (or HFTPIPE_HOME/audit.db) and try again") from exc
