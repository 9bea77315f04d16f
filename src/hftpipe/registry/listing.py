"""List registered versions; move the champion: rollback, promote, alias moves (each audited)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe.errors import RegistryError
from hftpipe.registry.common import (
    CHAMPION,
    PREVIOUS,
    _alias_version,
    _audit,
    _open_audit,
    _require_model,
    _set_version_tags,
    _utc,
)
from hftpipe.registry.download import _parse_models_uri
from hftpipe.registry.tracker import client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as ``hftpipe registry list`` shows it."""

    version: str
    aliases: list[str]
    decision: str | None  # gate.decision tag
    reasons: list[str]
    metrics: dict[str, str]  # metrics.* tags (as stored)
    created: str  # UTC time
    run_id: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class RollbackResult:
    model_name: str
    demoted: str  # the champion before the rollback
    restored: str  # the champion now
    previous: str | None  # where the previous alias points now (None: removed)


@dataclass(frozen=True)
class PromotionResult:
    model_name: str
    champion: str  # the champion now
    replaced: str | None  # the champion before (now ``previous``)
    forced: bool  # promoted although its gate decision was not pass



def list_versions(name: str) -> list[VersionInfo]:
    """Every version of ``name``, newest first, with aliases, gate decision and key metrics.

    Raises:
        RegistryError: no such registered model.
    """
    mc = client()
    _require_model(mc, name)
    versions = mc.search_model_versions(f"name = '{name}'")
    # Search results do not carry aliases on every store; the registered model holds them all.
    aliases: dict[str, list[str]] = {}
    for alias, version in (mc.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        tags = dict(mv.tags or {})
        out.append(VersionInfo(
            version=str(mv.version),
            aliases=sorted(aliases.get(str(mv.version), [])),
            decision=tags.get("gate.decision"),
            reasons=[r for r in tags.get("gate.reasons", "").split("\n") if r],
            metrics={k.removeprefix("metrics."): v for k, v in tags.items() if k.startswith("metrics.")},
            created=_utc(mv.creation_timestamp),
            run_id=mv.run_id,
            tags=tags,
        ))
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def rollback(name: str, actor: str | None = None, reason: str = "", audit_url: str | None = None) -> RollbackResult:
    """Move ``champion`` back to the ``previous`` version; the demoted version is tagged as rolled back.

    ``previous`` then points at the champion the restored version had replaced (so repeated rollbacks walk
    back through the promotion history), or is removed when there is none.

    One ``rollback`` audit record (who: ``actor``; why: ``reason``) is written before any alias moves;
    when it cannot be written nothing moves.

    Raises:
        RegistryError: no such model, no champion, or no previous version to restore.
        AuditError: the audit record could not be written (nothing was changed).
    """
    from hftpipe import audit

    mc = client()
    _require_model(mc, name)
    champion = _alias_version(mc, name, CHAMPION)
    if champion is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = _alias_version(mc, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"{name} has no 'previous' version to roll back to (champion is v{champion.version}); "
                            "set one with `mlflow` or register a new model")
    demoted, restored = str(champion.version), str(previous.version)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    older = (previous.tags or {}).get("promotion.replaced")
    new_previous = older if older and older not in (demoted, restored) and _version_exists(mc, name, older) else None
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.ROLLBACK, name, reason or f"rollback of v{demoted}",
               {"model_name": name, "demoted": demoted, "restored": restored, "previous": new_previous},
               actor, "nothing was rolled back")
    finally:
        trail.close()
    mc.set_registered_model_alias(name, CHAMPION, restored)
    _set_version_tags(mc, name, demoted, {"rollback.demoted": "true", "rollback.at": now,
                                          "rollback.replaced_by": restored})
    _set_version_tags(mc, name, restored, {"rollback.restored_at": now})
    if new_previous is not None:
        mc.set_registered_model_alias(name, PREVIOUS, new_previous)
    else:
        mc.delete_registered_model_alias(name, PREVIOUS)
    log.info("%s: champion rolled back from v%s to v%s (previous -> %s)", name, demoted, restored, new_previous)
    return RollbackResult(name, demoted, restored, new_previous)


def promote(name: str, version: str, reason: str, actor: str | None = None, audit_url: str | None = None,
            force: bool = False) -> PromotionResult:
    """Make ``version`` the champion by hand (e.g. after a canary); the old champion becomes ``previous``.

    One ``promote`` audit record is written before any alias moves; without it nothing moves. A version
    whose gate decision is not ``pass`` needs ``force`` (and the record says so).

    Raises:
        RegistryError: unknown model or version, no reason, already champion, or a failed gate without force.
        AuditError: the audit record could not be written (nothing was changed).
    """
    from hftpipe import audit

    if not reason or not reason.strip():
        raise RegistryError("a manual promotion needs --reason TEXT (why, for the audit trail)")
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    version = str(mv.version)
    champion = _alias_version(mc, name, CHAMPION)
    old = str(champion.version) if champion is not None else None
    if old == version:
        raise RegistryError(f"{name} v{version} is already the champion")
    decision = (mv.tags or {}).get("gate.decision")
    if decision != "pass" and not force:
        raise RegistryError(f"{name} v{version} did not pass the promotion gate (gate.decision={decision}); "
                            "promote it anyway only with --force and a reason")
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.PROMOTE, f"{name}/{version}", reason,
               {"model_name": name, "champion": version, "replaced": old, "previous": old, "manual": True,
                "gate": decision, "forced": decision != "pass"}, actor, "nothing was promoted")
    finally:
        trail.close()
    if old is not None:
        mc.set_registered_model_alias(name, PREVIOUS, old)
    mc.set_registered_model_alias(name, CHAMPION, version)
    _set_version_tags(mc, name, version, {"promotion.replaced": old, "promotion.by": actor or _actor(),
                                          "promotion.manual": "true"})
    log.info("%s: v%s promoted by hand (previous champion %s)", name, version, old)
    return PromotionResult(name, version, old, forced=decision != "pass")


def move_alias(name: str, alias: str, version: str, reason: str, actor: str | None = None,
               audit_url: str | None = None) -> str | None:
    """Point ``alias`` (not ``champion``: see :func:`promote` and :func:`rollback`) at ``version``; one
    ``alias_move`` audit record first. Returns the version the alias pointed at before (None: new alias).

    Raises:
        RegistryError: champion, unknown version, bad alias name or no reason. AuditError: nothing moved.
    """
    from hftpipe import audit

    if alias == CHAMPION:
        raise RegistryError("the champion moves only through the gate (hftpipe register), hftpipe registry promote "
                            "or hftpipe registry rollback, each with its audit record")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,62}", alias):
        raise RegistryError(f"{alias!r} is not an alias name (letters, digits, - and _, starting with a letter)")
    if not reason or not reason.strip():
        raise RegistryError("an alias move needs --reason TEXT (why, for the audit trail)")
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    before = _alias_version(mc, name, alias)
    old = str(before.version) if before is not None else None
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.ALIAS_MOVE, f"{name}/{mv.version}", reason,
               {"model_name": name, "alias": alias, "version": str(mv.version), "was": old}, actor, "nothing was moved")
    finally:
        trail.close()
    mc.set_registered_model_alias(name, alias, str(mv.version))
    return old


def _actor() -> str:
    from hftpipe.audit.trail import default_actor

    return default_actor()


def _version_exists(mc: MlflowClient, name: str, version: str) -> bool:
    try:
        mc.get_model_version(name, version)
    except MlflowException:
        return False
    return True
