"""The risk page: trading state and the kill switch (halt / reduce / resume), limits and their changes.

Same stores as ``hftpipe risk ...``: :class:`~hftpipe.trading.state_store.RiskStateStore` (the paper trader
reads it before each order) and :class:`~hftpipe.trading.limit_store.LimitStore`; each change writes one
audit record with the logged-in user as actor, or is not made. Who may do what: :mod:`hftpipe.ui.roles`
(a trader may halt, never resume, reduce or change a limit; a refused form answers 403 with the reason).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, SelectField, StringField
from wtforms.validators import AnyOf, DataRequired, Length, Optional

from hftpipe.errors import HftpipeError
from hftpipe.trading.state_store import RiskStateError
from hftpipe.ui import roles
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)

bp = Blueprint("risk", __name__)

# Form action -> (stored state, permission, past tense for the message)
ACTIONS = {"halt": ("HALTED", roles.HALT, "halted"), "reduce": ("REDUCING", roles.REDUCE, "set to reduce-only"),
           "resume": ("ACTIVE", roles.RESUME, "resumed")}
RISK_ACTIONS = ("kill_switch", "risk_state", "limit_change")


class StateForm(FlaskForm):
    action = HiddenField(validators=[DataRequired(), AnyOf(list(ACTIONS))])
    reason = StringField("Reason", validators=[DataRequired(message="Give a reason: it goes into the audit trail."),
                                               Length(max=500)])


class LimitForm(FlaskForm):
    symbol = StringField("Symbol", validators=[Optional(), Length(max=32)])
    name = SelectField("Limit", choices=[])
    value = StringField("Value", validators=[DataRequired(), Length(max=32)])
    reason = StringField("Reason", validators=[DataRequired(message="Give a reason: it goes into the audit trail."),
                                               Length(max=500)])


def _cfg() -> Any:
    return current_app.config[CONFIG_KEY]


def _actor() -> str:
    from hftpipe.ui.auth import current_user

    return current_user() or "unknown"


def _limit_form() -> LimitForm:
    from hftpipe.trading.limit_store import LIMIT_NAMES

    form = LimitForm(prefix="limit")
    form.name.choices = [(n, n) for n in LIMIT_NAMES]
    return form


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "off (inf)"
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _view(state_form: StateForm | None = None, limit_form: LimitForm | None = None, status: int = 200) -> Any:
    """The page; store or audit problems are shown, not thrown (the kill switch page must always render)."""
    from hftpipe import audit
    from hftpipe.trading.limit_store import DEFAULT_SYMBOL, LimitStore
    from hftpipe.trading.risk import limits_from_config
    from hftpipe.trading.state_store import RiskStateStore

    cfg = _cfg()
    problems: list[str] = []
    state = None
    limits_rows: list[tuple[str, str, list[str]]] = []
    history: list[Any] = []
    try:
        store = RiskStateStore(cfg.risk.state_db)
        try:
            state = store.current()
        finally:
            store.close()
        limit_store = LimitStore(cfg.risk.state_db)
        try:
            default, per_symbol = limit_store.engine_limits(limits_from_config(cfg.risk))
            overrides = limit_store.overrides()
        finally:
            limit_store.close()
        symbols = sorted(per_symbol)
        for f in dataclasses.fields(default):
            cells = [_fmt(getattr(default, f.name)) + (" *" if f.name in overrides.get(DEFAULT_SYMBOL, {}) else "")]
            cells += [_fmt(getattr(per_symbol[s], f.name)) + (" *" if f.name in overrides.get(s, {}) else "")
                      for s in symbols]
            limits_rows.append((f.name, f.name, cells))
    except HftpipeError as exc:
        problems.append(f"risk store: {exc}")
        symbols = []
    try:
        with audit.open_trail(cfg.audit.url) as trail:
            history = [r for r in trail.records() if r.action in RISK_ACTIONS][-20:][::-1]
    except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors of the audit store: shown on the page
        problems.append(f"audit trail: {exc}")
    return render_template("risk.html", active="risk", state=state, symbols=symbols, limits=limits_rows,
                           history=history, problems=problems, state_form=state_form or StateForm(prefix="state"),
                           limit_form=limit_form or _limit_form(), actions=ACTIONS), status


@bp.get("/risk")
@roles.require(roles.VIEW)
def page() -> Any:
    """Trading state, who set it and why, the kill switch, limits and the latest risk audit records."""
    return _view()


@bp.post("/risk/state")
def change_state() -> Any:
    """Halt, reduce or resume with a reason; refused with 403 and a message when the role may not."""
    from hftpipe.trading.risk import RiskState
    from hftpipe.trading.state_store import RiskStateStore

    form = StateForm(prefix="state")
    action = form.action.data if form.action.data in ACTIONS else None
    if action is not None and not roles.can(ACTIONS[action][1]):
        # Checked before the form's other fields: a refused role learns it may not, whatever it typed.
        flash(roles.refusal(ACTIONS[action][1], action), "error")
        log.warning("risk: %s refused to %s (role %s)", _actor(), action, roles.current_role())
        return _view(state_form=form, status=403)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return _view(state_form=form, status=400)
    state, _, done = ACTIONS[action]  # type: ignore[index]
    store = RiskStateStore(_cfg().risk.state_db)
    try:
        new = store.change(RiskState(state), form.reason.data, _actor(), _cfg().audit.url)
    except RiskStateError as exc:  # the user's input
        flash(f"Trading state NOT changed: {exc}", "error")
        return _view(state_form=form, status=400)
    except Exception as exc:  # the audit store's errors (AuditError, sqlite3, psycopg): the change was rolled back
        log.exception("risk state change failed")
        flash(f"Trading state NOT changed: the audit record could not be written ({exc})", "error")
        return _view(state_form=form, status=503)
    finally:
        store.close()
    flash(f"Trading {done} by {new.actor} (change #{new.version}); audit record written.", "ok")
    return redirect(url_for("risk.page"), code=303)


@bp.post("/risk/limits")
def change_limit() -> Any:
    """Override one limit (blank symbol: the default for every symbol); risk and admin only."""
    from hftpipe.trading.limit_store import LimitStore
    from hftpipe.trading.risk import limits_from_config

    form = _limit_form()
    if not roles.can(roles.LIMITS):
        flash(roles.refusal(roles.LIMITS, "change limits"), "error")
        log.warning("risk: %s refused a limit change (role %s)", _actor(), roles.current_role())
        return _view(limit_form=form, status=403)
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for error in errors:
                flash(str(error), "error")
        return _view(limit_form=form, status=400)
    cfg = _cfg()
    store = LimitStore(cfg.risk.state_db)
    try:
        change = store.set(form.symbol.data, form.name.data, form.value.data.strip(), form.reason.data, _actor(),
                           limits_from_config(cfg.risk), cfg.audit.url)
    except RiskStateError as exc:  # the user's input: unknown limit, bad value, no reason
        flash(f"Limit NOT changed: {exc}", "error")
        return _view(limit_form=form, status=400)
    except Exception as exc:  # the audit store's errors: the change was rolled back
        log.exception("limit change failed")
        flash(f"Limit NOT changed: the audit record could not be written ({exc})", "error")
        return _view(limit_form=form, status=503)
    finally:
        store.close()
    flash(f"{change['limit']} for {change['symbol']}: {change['previous']} -> {change['value']}; "
          "audit record written.", "ok")
    return redirect(url_for("risk.page"), code=303)
