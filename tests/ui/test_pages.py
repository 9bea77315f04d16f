"""Every page through Flask's test client: login, CSRF, headers, serving-down state, registry pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hftpipe.ui import create_app
from hftpipe.ui.app import CSP
from tests.ui.conftest import PASSWORD, USER, closed_port_url, ui_config

PAGES = ["/live", "/models", "/runs", "/health"]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


@pytest.fixture
def csrf_client(replay_events: Path, credentials):
    """An app with CSRF protection on, as in production."""
    app = create_app(ui_config(replay_events, closed_port_url()), settings={"TESTING": True},
                     credentials=credentials)
    return app.test_client()


@pytest.mark.parametrize("path", PAGES + ["/", "/vendor/plotly.min.js"])
def test_pages_need_a_login(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", ["/health/status", "/live/stream?file=0"])
def test_api_endpoints_answer_401_without_a_login(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401 and response.json == {"error": "login required"}


def test_liveness_probe_is_public_and_says_nothing_else(client) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_login_with_the_right_password_and_csrf_token(csrf_client) -> None:
    token = _csrf(csrf_client.get("/login").text)
    response = csrf_client.post("/login?next=/runs", data={"username": USER, "password": PASSWORD,
                                                           "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/runs"
    assert "HttpOnly" in response.headers["Set-Cookie"] and "SameSite=Lax" in response.headers["Set-Cookie"]
    assert csrf_client.get("/live").status_code == 200


def test_login_without_csrf_token_is_refused(csrf_client) -> None:
    response = csrf_client.post("/login", data={"username": USER, "password": PASSWORD})
    assert response.status_code == 400
    assert "security token" in response.text and "Traceback" not in response.text
    assert csrf_client.get("/live").status_code == 302  # still logged out


def test_wrong_password_is_refused(csrf_client) -> None:
    token = _csrf(csrf_client.get("/login").text)
    response = csrf_client.post("/login", data={"username": USER, "password": "nope", "csrf_token": token})
    assert response.status_code == 401 and "Wrong user name or password" in response.text
    assert csrf_client.get("/live").status_code == 302


def test_repeated_failures_are_throttled(auth) -> None:
    for _ in range(5):
        assert auth.login(password="guess").status_code == 401
    response = auth.login()
    assert response.status_code == 429 and "Too many failed attempts" in response.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(auth, target: str) -> None:
    response = auth.client.post(f"/login?next={target}", data={"username": USER, "password": PASSWORD})
    assert response.headers["Location"] == "/live"


def test_logout_needs_csrf_and_ends_the_session(csrf_client) -> None:
    token = _csrf(csrf_client.get("/login").text)
    csrf_client.post("/login", data={"username": USER, "password": PASSWORD, "csrf_token": token})
    assert csrf_client.post("/logout").status_code == 400  # a cross-site form cannot log the user out
    page = csrf_client.get("/live").text
    assert csrf_client.post("/logout", data={"csrf_token": _csrf(page)}).status_code == 302
    assert csrf_client.get("/live").status_code == 302


def test_security_headers(auth) -> None:
    auth.login()
    response = auth.client.get("/live")
    assert response.headers["Content-Security-Policy"] == CSP
    assert "http" not in CSP and "script-src 'self';" in CSP  # no CDN, no inline script
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert "<script>" not in response.text  # every script is a file from this server


def test_live_page_lists_the_replay_day_and_serves_plotly_offline(auth) -> None:
    auth.login()
    page = auth.client.get("/live").text
    assert "GOOG 2012-06-21 (5 levels, 800 events)" in page
    assert 'src="/vendor/plotly.min.js"' in page and "cdn" not in page.lower()
    js = auth.client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and js.mimetype == "text/javascript"
    assert b"plotly.js" in js.data[:2000] and len(js.data) > 1_000_000
    for asset in ("app.css", "live.js", "health.js", "runs.js"):
        assert auth.client.get(f"/static/{asset}").status_code == 200


def test_health_page_and_status_when_the_model_server_is_down(auth, app) -> None:
    auth.login()
    status = auth.client.get("/health/status").json
    assert status["up"] is False and "is not reachable" in status["detail"] and status["retry_s"] > 0
    page = auth.client.get("/health")
    assert page.status_code == 200 and "down" in page.text and app.config["HFTPIPE_CONFIG"].ui.serving_url in page.text
    live = auth.client.get("/live")
    assert 'id="serving-banner"' in live.text and "Model server unavailable" in live.text


def test_live_stream_reports_the_model_server_down(auth) -> None:
    auth.login()
    response = auth.client.get("/live/stream?file=0&speed=20", buffered=False)
    assert response.mimetype == "text/event-stream"
    chunks = response.response  # the streaming body: read the first two events, then hang up
    assert next(chunks).startswith(b"retry:")
    message = json.loads(next(chunks).decode().split("data: ", 1)[1])
    response.close()
    assert message["type"] == "serving_down" and "is not reachable" in message["detail"]
    assert message["retry_in"] > 0


@pytest.mark.parametrize("query,status,text", [
    ("file=7", 404, "no replay file number 7"),
    ("file=0&speed=-1", 400, "speed must be between"),
    ("file=0&speed=1e9", 400, "speed must be between"),
])
def test_live_stream_rejects_bad_parameters(auth, query: str, status: int, text: str) -> None:
    auth.login()
    response = auth.client.get(f"/live/stream?{query}")
    assert response.status_code == status and text in response.json["detail"]


def test_errors_are_pages_not_tracebacks(auth, app) -> None:
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("internal detail that must not leak")

    auth.login()
    response = auth.client.get("/boom")
    assert response.status_code == 500 and "Something went wrong" in response.text
    assert "internal detail" not in response.text and "Traceback" not in response.text
    missing = auth.client.get("/no-such-page")
    assert missing.status_code == 404 and "Not Found" in missing.text
