"""Login and logout; every other page requires a logged-in user with a live server-side session."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from hftpipe.ui.keys import CONFIG_KEY, CREDENTIALS_KEY
from hftpipe.ui.state import LoginThrottle, UiState

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

# Reachable without a session: the login form itself, its stylesheet and the bare liveness probe.
PUBLIC_ENDPOINTS = {"auth.login", "static", "health.healthz", "monitoring.metrics"}
STATE_KEY = "hftpipe.ui_state"
THROTTLE_KEY = "hftpipe.login_throttle"
# Browsers drop tabs and newlines from URLs and read "\\" as "/": "/\t/evil.example" and "/\\evil.example"
# both become "//evil.example" there. Remove what a browser would ignore, then judge what is left.
_IGNORED_IN_URLS = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]")


class LoginForm(FlaskForm):
    username = StringField("User", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


def safe_next(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site, else ``default`` (no open redirect after log-in).

    Control characters and white space are removed first (as a browser would), then anything with a
    scheme, a host, a backslash or a leading ``//`` is refused.
    """
    if not target:
        return default
    cleaned = _IGNORED_IN_URLS.sub("", target)
    if not cleaned.startswith("/") or cleaned.startswith("//") or "\\" in cleaned:
        return default
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc:
        return default
    return cleaned


def ui_state() -> UiState:
    return current_app.extensions[STATE_KEY]


def _lifetimes() -> tuple[float, float]:
    ui = current_app.config[CONFIG_KEY].ui
    return ui.session_idle_minutes * 60.0, ui.session_max_hours * 3600.0


def current_user() -> str | None:
    """The logged-in user when the cookie's session is still live on the server (once per request)."""
    if "hftpipe_user" not in g:
        user = session.get("user")
        live = ui_state().session_user(session.get("sid"), *_lifetimes()) if user else None
        g.hftpipe_user = user if live is not None and live == user else None
    return g.hftpipe_user


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the login form; on a good password start a fresh session (throttled on failures)."""

    form = LoginForm()
    error = None
    status = 200
    headers: dict[str, str] = {}
    if form.validate_on_submit():
        throttle: LoginThrottle = current_app.extensions[THROTTLE_KEY]
        user, address = form.username.data, request.remote_addr or "unknown"
        refusal = throttle.check(user, address)
        if refusal is not None:
            error, status = f"Too many failed attempts: wait {refusal.retry_after} s and try again.", 429
            headers["Retry-After"] = str(refusal.retry_after)
        elif current_app.config[CREDENTIALS_KEY].verify(user, form.password.data):
            throttle.record(user, address, ok=True)
            _audit_login(user, address, ok=True)
            state = ui_state()
            state.prune_sessions(*_lifetimes())
            session.clear()  # no session fixation: a new session starts at login
            session.permanent = True  # the cookie expires after the idle lifetime, refreshed on each request
            session["user"] = user
            session["sid"] = state.open_session(user)
            return redirect(safe_next(request.args.get("next"), url_for("live.page")))
        else:
            throttle.record(user, address, ok=False)
            _audit_login(user, address, ok=False)
            error, status = "Wrong user name or password.", 401
    elif request.method == "POST":
        error, status = "Enter your user name and password.", 400
    return render_template("login.html", form=form, error=error), status, headers


def _audit_login(user: str, address: str, ok: bool) -> None:
    """One ``login`` audit record per checked attempt (throttled refusals are not checked, not recorded).

    Best effort, unlike registry and risk changes: an unreachable audit store must not lock the risk
    officer out of the kill switch (whose own change is refused without its record). The failure is logged.
    """
    from hftpipe import audit

    role = current_app.config[CREDENTIALS_KEY].role_of(user) if ok else None
    try:
        audit.record(audit.LOGIN, f"ui/{user[:64]}", reason="log-in succeeded" if ok else "wrong user name or password",
                     details={"outcome": "success" if ok else "failure", "address": address, "role": role},
                     actor=user[:64], url=current_app.config[CONFIG_KEY].audit.url)
    except Exception:  # the store's own errors of any kind: logged, the log-in itself goes on
        log.exception("audit record of the log-in of %r from %s could not be written", user[:64], address)


@bp.post("/logout")
def logout() -> Response:
    """End the session on the server too, so a copy of the cookie is worthless (a POST with the CSRF
    token, so another site cannot log the user out)."""
    ui_state().end_session(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))


def install_login_guard(app: Flask) -> None:
    """Require a live session on every endpoint except :data:`PUBLIC_ENDPOINTS`."""

    @app.before_request
    def _require_login() -> Any:
        if session.get("user") and current_user() is None:
            session.clear()  # ended by logout, idle too long or past its absolute lifetime
        if request.endpoint in PUBLIC_ENDPOINTS or session.get("user"):
            return None
        if request.endpoint is None:
            return None  # unknown URL: let the 404 page answer
        wants_json = request.path.startswith(("/health/status", "/live/stream", "/api/"))
        if wants_json:
            return {"error": "login required"}, 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
