"""The Flask application factory: security settings, blueprints, offline chart JavaScript, error pages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, render_template, request, send_file
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from hftpipe import paths
from hftpipe.config import Config, load_config
from hftpipe.errors import HftpipeError
from hftpipe.ui.client import ServingClient
from hftpipe.ui.keys import CONFIG_KEY, CREDENTIALS_KEY, MLFLOW_PROBE_KEY, SERVING_KEY
from hftpipe.ui.security import Credentials, load_credentials, users_file_path

log = logging.getLogger(__name__)

# No CDN anywhere: scripts, styles and images come from this server. Plotly sets inline style attributes
# on the SVG it draws, hence 'unsafe-inline' for styles only; scripts stay strictly 'self'.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

csrf = CSRFProtect()


class MlflowProbe:
    """Whether links to the MLflow UI lead anywhere: ``ui.mlflow_links`` show/hide, or (auto) whether
    ``ui.mlflow_ui_url`` answers, re-checked at most every ``ttl_s`` seconds."""

    def __init__(self, url: str, mode: str, timeout_s: float = 0.5, ttl_s: float = 30.0) -> None:
        self.url, self.mode, self.timeout_s, self.ttl_s = url, mode, timeout_s, ttl_s
        self._checked = -float("inf")
        self._answer = False
        self._lock = threading.Lock()

    def available(self) -> bool:
        if self.mode != "auto":
            return self.mode == "show"
        with self._lock:
            if time.monotonic() - self._checked < self.ttl_s:
                return self._answer
            self._checked = time.monotonic()
        import requests

        try:
            answer = requests.get(self.url, timeout=self.timeout_s, allow_redirects=False).status_code < 500
        except requests.RequestException:
            answer = False
        self._answer = answer
        return answer


def plotly_js_path() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` PyPI package (installed at set-up; no CDN)."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise HftpipeError(f"{path} is missing: reinstall the plotly package (pip install plotly)")
    return path


def create_app(config: Config | None = None, settings: Mapping[str, Any] | None = None,
               credentials: Credentials | None = None) -> Flask:
    """Build the trader UI.

    Args:
        config: the resolved config (default: ``params.yaml`` of the current directory).
        settings: extra Flask settings (tests use ``TESTING``, ``WTF_CSRF_ENABLED``...).
        credentials: users and secret key (default: :func:`hftpipe.ui.security.load_credentials`, i.e.
            the environment; in development a generated password is logged once when none is set).

    Raises:
        ConfigError: production mode without users or secret key, or an unknown ``HFTPIPE_ENV``.
    """
    config = config or load_config()
    if credentials is None:
        credentials = load_credentials(users_file=users_file_path(config.ui.users_file))
        if credentials.generated_password:
            user = next(iter(credentials.users))
            log.warning("development mode: no HFTPIPE_UI_USERS set; log in as %r with password %s",
                        user, credentials.generated_password)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=credentials.secret_key,
        SESSION_COOKIE_NAME="hftpipe_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # Strict would drop the session on links from the MLflow UI
        SESSION_COOKIE_SECURE=credentials.production,
        # The cookie's own expiry is the idle lifetime (refreshed on every request); the server-side
        # session row enforces it and the absolute lifetime whatever the browser does with the cookie.
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.ui.session_idle_minutes),
        MAX_CONTENT_LENGTH=64 * 1024,  # only small forms are ever posted
        WTF_CSRF_TIME_LIMIT=int(config.ui.session_max_hours * 3600),
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config[CONFIG_KEY] = config
    app.config[CREDENTIALS_KEY] = credentials
    if settings:
        app.config.update(settings)
    csrf.init_app(app)
    if config.ui.proxy_hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Login throttling is per client address: behind an ingress every request would come from the
        # proxy's address. Trust exactly that many X-Forwarded-For hops (never more: it is forgeable).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=config.ui.proxy_hops,  # type: ignore[method-assign]
                                x_proto=config.ui.proxy_hops)
    app.extensions[SERVING_KEY] = ServingClient(config.ui.serving_url, timeout_s=config.ui.serving_timeout_s)

    from hftpipe.ui import auth, health, live, models, monitoring, runs
    from hftpipe.ui.state import LoginThrottle, UiState

    state = UiState(paths.sub("ui") / "state.sqlite")
    app.extensions[auth.STATE_KEY] = state
    app.extensions[auth.THROTTLE_KEY] = LoginThrottle(state)
    app.extensions[MLFLOW_PROBE_KEY] = MlflowProbe(config.ui.mlflow_ui_url, config.ui.mlflow_links)

    for module in (auth, live, models, runs, health, monitoring):
        app.register_blueprint(module.bp)
    from hftpipe.ui import stream
    app.register_blueprint(stream.bp)
    from hftpipe.ui import trading
    app.register_blueprint(trading.bp)
    auth.install_login_guard(app)
    from hftpipe.ui import cards, compliance, risk, roles  # roles: risk page, compliance, model cards

    for module in (risk, compliance, cards):
        app.register_blueprint(module.bp)
    roles.install(app)
    _install_headers(app)
    _install_error_pages(app)

    @app.get("/vendor/plotly.min.js")
    def plotly_js() -> Response:
        """Serve the chart library from the installed package (cached by the browser for a day)."""
        return send_file(plotly_js_path(), mimetype="text/javascript", max_age=86400)

    @app.context_processor
    def _globals() -> dict[str, Any]:
        cfg: Config = current_app.config[CONFIG_KEY]
        probe: MlflowProbe = current_app.extensions[MLFLOW_PROBE_KEY]
        # A callable: only pages that show MLflow links pay for the probe.
        return {"serving_url": cfg.ui.serving_url, "mlflow_ui_url": cfg.ui.mlflow_ui_url,
                "production": credentials.production, "mlflow_links": probe.available}

    return app


def _install_headers(app: Flask) -> None:
    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint not in ("static", "plotly_js"):
            response.headers.setdefault("Cache-Control", "no-store")  # pages show live, per-user data
        return response


def _install_error_pages(app: Flask) -> None:
    """Every failure becomes a short page (or JSON for API calls); tracebacks go to the log only."""

    def _render(status: int, title: str, detail: str) -> tuple[Any, int]:
        if request.path.startswith(("/api/", "/health/status", "/live/stream")) or request.accept_mimetypes.best == "application/json":
            return {"error": title, "detail": detail}, status
        return render_template("error.html", status=status, title=title, detail=detail), status

    @app.errorhandler(CSRFError)
    def _csrf(exc: CSRFError) -> tuple[Any, int]:
        return _render(400, "Form expired or invalid", "The form's security token was missing or stale: "
                       "reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Any, int]:
        return _render(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(HftpipeError)
    def _ours(exc: HftpipeError) -> tuple[Any, int]:
        log.warning("request %s failed: %s", request.path, exc)
        return _render(503, "Not available", str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Any, int]:
        log.exception("unexpected error on %s", request.path)
        return _render(500, "Something went wrong", "The error was logged on the server.")
