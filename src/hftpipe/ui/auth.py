"""Login and logout; every other page requires a logged-in user."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from threading import Lock
from typing import Any

from flask import Blueprint, Flask, current_app, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

bp = Blueprint("auth", __name__)

# Reachable without a session: the login form itself, its stylesheet and the bare liveness probe.
PUBLIC_ENDPOINTS = {"auth.login", "static", "health.healthz"}
MAX_FAILURES = 5  # per client address within FAILURE_WINDOW_S, then logins are refused for a while
FAILURE_WINDOW_S = 300.0


class LoginForm(FlaskForm):
    username = StringField("User", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class _Throttle:
    """Counts failed logins per client address to slow down password guessing."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > FAILURE_WINDOW_S:
            times.popleft()
        return times

    def blocked(self, key: str) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= MAX_FAILURES

    def fail(self, key: str) -> None:
        with self._lock:
            self._recent(key, time.monotonic()).append(time.monotonic())

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("live.page")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Show the login form; on a good password start a fresh session."""
    from hftpipe.ui.app import CREDENTIALS_KEY

    form = LoginForm()
    error = None
    status = 200
    throttle: _Throttle = current_app.extensions.setdefault("hftpipe.login_throttle", _Throttle())
    client_key = request.remote_addr or "unknown"
    if form.validate_on_submit():
        if throttle.blocked(client_key):
            error, status = "Too many failed attempts: wait a few minutes and try again.", 429
        elif current_app.config[CREDENTIALS_KEY].verify(form.username.data, form.password.data):
            throttle.clear(client_key)
            session.clear()  # no session fixation: a new session starts at login
            session.permanent = True
            session["user"] = form.username.data
            return redirect(_safe_next(request.args.get("next")))
        else:
            throttle.fail(client_key)
            error, status = "Wrong user name or password.", 401
    elif request.method == "POST":
        error, status = "Enter your user name and password.", 400
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
def logout() -> Response:
    """End the session (a POST with the CSRF token, so another site cannot log the user out)."""
    session.clear()
    return redirect(url_for("auth.login"))


def install_login_guard(app: Flask) -> None:
    """Require a session on every endpoint except :data:`PUBLIC_ENDPOINTS`."""

    @app.before_request
    def _require_login() -> Any:
        if request.endpoint in PUBLIC_ENDPOINTS or session.get("user"):
            return None
        if request.endpoint is None:
            return None  # unknown URL: let the 404 page answer
        wants_json = request.path.startswith(("/health/status", "/live/stream", "/api/"))
        if wants_json:
            return {"error": "login required"}, 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
