"""The compliance page: the audit trail listed and filtered (action, actor, time range), its chain verified.

Risk and admin roles only (:mod:`hftpipe.ui.roles`). The same filters export CSV or JSON, as
``hftpipe audit export`` does.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template, request

from hftpipe.ui import roles
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)

bp = Blueprint("compliance", __name__)

MAX_ROWS = 1000  # newest first; narrow the filters (or export) to see older records


def _filters() -> dict[str, str]:
    return {k: request.args.get(k, "").strip()[:64] for k in ("action", "actor", "since", "until")}


def _select(filters: dict[str, str]) -> tuple[list[Any], Any, str | None]:
    """(matching records oldest first, verification, error) for the filters."""
    from hftpipe import audit
    from hftpipe.audit.trail import normalise_time

    try:
        since = normalise_time(filters["since"]) if filters["since"] else None
        until = normalise_time(filters["until"]) if filters["until"] else None
    except audit.AuditError as exc:
        abort(400, description=str(exc))
    try:
        with audit.open_trail(current_app.config[CONFIG_KEY].audit.url) as trail:
            records = trail.records(since, until)
            verification = trail.verify()
    except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors of the store: shown, never a 500
        log.warning("audit trail unreadable: %s", exc)
        return [], None, f"The audit trail cannot be read: {exc}"
    records = [r for r in records
               if (not filters["action"] or r.action == filters["action"])
               and (not filters["actor"] or r.actor == filters["actor"])]
    return records, verification, None


@bp.get("/compliance")
@roles.require(roles.AUDIT)
def page() -> Any:
    """Audit records newest first with the chain's verification."""
    from hftpipe import audit

    filters = _filters()
    records, verification, error = _select(filters)
    shown = records[::-1][:MAX_ROWS]
    actions = sorted({audit.REGISTER, audit.PROMOTE, audit.ROLLBACK, audit.ALIAS_MOVE, audit.DEPLOY,
                      audit.RETRAIN_TRIGGER, audit.RISK_STATE, audit.LIMIT_CHANGE, audit.KILL_SWITCH, audit.LOGIN})
    return render_template("compliance.html", active="compliance", records=shown, total=len(records),
                           verification=verification, error=error, filters=filters, actions=actions,
                           max_rows=MAX_ROWS)


@bp.get("/compliance/export")
@roles.require(roles.AUDIT)
def export() -> Response:
    """The filtered records as CSV (``?format=csv``, default) or JSON, oldest first."""
    import json

    from hftpipe.audit.trail import FIELDS, canonical_json

    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "json"):
        abort(400, description="format must be csv or json")
    records, _, error = _select(_filters())
    if error:
        abort(503, description=error)
    if fmt == "json":
        body = json.dumps([r.to_dict() for r in records], indent=2, ensure_ascii=False) + "\n"
        return Response(body, mimetype="application/json",
                        headers={"Content-Disposition": "attachment; filename=audit.json"})
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in records:
        row = r.to_dict()
        row["details"] = canonical_json(row["details"])
        writer.writerow([row[k] for k in FIELDS])
    return Response(buf.getvalue(), mimetype="text/csv", headers={"Content-Disposition": "attachment; filename=audit.csv"})
