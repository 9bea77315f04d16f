"""Users, secrets and production refusals come from the environment, with messages that say what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from hftpipe.errors import ConfigError
from hftpipe.ui import create_app
from hftpipe.ui.security import load_credentials, parse_users
from tests.ui.conftest import closed_port_url, ui_config

HASH = generate_password_hash("s3cret-pass")
KEY = "x" * 48


def test_users_from_the_environment() -> None:
    creds = load_credentials({"HFTPIPE_UI_USERS": f"alice={HASH}, bob={HASH}",
                              "HFTPIPE_UI_USER": "carol", "HFTPIPE_UI_PASSWORD_HASH": HASH})
    assert sorted(creds.users) == ["alice", "bob", "carol"]
    assert creds.verify("carol", "s3cret-pass")
    assert not creds.verify("carol", "wrong")
    assert not creds.verify("mallory", "s3cret-pass")
    assert creds.generated_password is None and not creds.production


@pytest.mark.parametrize("text,message", [
    ("alice", "name=<password hash> pairs"),
    ("=abc$def$ghi", "name=<password hash> pairs"),
    ("alice=hunter2", "not a werkzeug password hash"),
])
def test_malformed_users_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_users(text)


def test_development_mode_generates_a_password() -> None:
    creds = load_credentials({})
    (user,) = creds.users
    assert user == "trader" and creds.generated_password
    assert creds.verify("trader", creds.generated_password)
    assert len(creds.secret_key) >= 32


@pytest.mark.parametrize("env,message", [
    ({"HFTPIPE_ENV": "production", "HFTPIPE_UI_SECRET_KEY": KEY}, "no default password in production"),
    ({"HFTPIPE_ENV": "production", "HFTPIPE_UI_PASSWORD_HASH": HASH}, "HFTPIPE_UI_SECRET_KEY"),
    ({"HFTPIPE_ENV": "production", "HFTPIPE_UI_PASSWORD_HASH": HASH, "HFTPIPE_UI_SECRET_KEY": "short"},
     "at least 32 characters"),
])
def test_production_refuses_to_start_without_secrets(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_credentials(env)


def test_production_app_has_secure_cookies(monkeypatch: pytest.MonkeyPatch, replay_events: Path) -> None:
    monkeypatch.setenv("HFTPIPE_ENV", "production")
    monkeypatch.delenv("HFTPIPE_UI_PASSWORD_HASH", raising=False)
    monkeypatch.delenv("HFTPIPE_UI_USERS", raising=False)
    cfg = ui_config(replay_events, closed_port_url())
    with pytest.raises(ConfigError, match="HFTPIPE_UI_USERS"):
        create_app(cfg)
    monkeypatch.setenv("HFTPIPE_UI_USERS", f"trader={HASH}")
    monkeypatch.setenv("HFTPIPE_UI_SECRET_KEY", KEY)
    app = create_app(cfg)
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
    client = app.test_client()
    page = client.get("/login")
    token = page.text.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post("/login", data={"username": "trader", "password": "s3cret-pass", "csrf_token": token})
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
