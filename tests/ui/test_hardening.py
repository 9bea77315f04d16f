"""Issue 10 (UI): open redirect, server-side sessions, login backoff, HFTPIPE_ENV, bad replay files, MLflow links."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hftpipe.config import Config
from hftpipe.errors import ConfigError
from hftpipe.ui import create_app
from hftpipe.ui.auth import STATE_KEY, THROTTLE_KEY, safe_next
from hftpipe.ui.security import load_credentials, runtime_mode
from hftpipe.ui.state import LoginThrottle, UiState, backoff_s
from tests.ui.conftest import PASSWORD, USER, closed_port_url, free_port, ui_config

COOKIE = "hftpipe_session"


class Clock:
    """A settable wall clock for lifetimes and backoff."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _app(replay_events: Path, credentials, **ui: object):
    cfg = ui_config(replay_events, closed_port_url())
    if ui:
        cfg = cfg.replace(ui=cfg.ui.__class__(**{**cfg.ui.__dict__, **ui}))
    return create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=credentials)


def _login(client, password: str = PASSWORD, user: str = USER, address: str = "127.0.0.1", query: str = ""):
    return client.post(f"/login{query}", data={"username": user, "password": password},
                       environ_base={"REMOTE_ADDR": address})


# -- 3. open redirect --------------------------------------------------------------------------------

HOSTILE_NEXT = [
    "/%09/evil.example", "/%0a/evil.example", "/%0d%0a/evil.example", "/%0d/evil.example", "%09//evil.example",
    "%20//evil.example", "/%20/evil.example", "/%00/evil.example", "/%7f/evil.example", "/%c2%a0/evil.example",
    "/%e3%80%80/evil.example", "/%e2%80%a8/evil.example", "//evil.example", "///evil.example", "////evil.example",
    "/%5Cevil.example", "%5C%5Cevil.example", "/%5C/evil.example", "/%09%5C/evil.example",
    "https://evil.example/", "http:evil.example", "https:/evil.example", "javascript:alert(1)",
    "data:text/html,hi", "evil.example", "%2F%2Fevil.example", "/%2F/evil.example", "%09/%09/evil.example",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_login_never_redirects_off_site(client, target: str) -> None:
    response = _login(client, query=f"?next={target}")
    assert response.status_code == 302
    assert response.headers["Location"] == "/live", target


@pytest.mark.parametrize("target,expected", [
    ("/runs", "/runs"), ("/runs?step=evaluate", "/runs?step=evaluate"), ("/models", "/models"),
    ("/health%09", "/health"),  # stripped as a browser would, still on this site
])
def test_login_keeps_same_site_targets(client, target: str, expected: str) -> None:
    response = _login(client, query=f"?next={target.replace('?', '%3F').replace('=', '%3D')}")
    assert response.headers["Location"] == expected


@pytest.mark.parametrize("target", [t.replace("%09", "\t").replace("%0a", "\n").replace("%5C", "\\")
                                    for t in HOSTILE_NEXT if "%" not in t.replace("%09", "").replace("%0a", "").replace("%5C", "")])
def test_safe_next_on_decoded_values(target: str) -> None:
    result = safe_next(target, "/live")
    parts = urlsplit(result)
    assert result == "/live" and not parts.netloc and not parts.scheme


# -- 10. sessions end on the server ------------------------------------------------------------------

def test_a_cookie_copied_before_logout_no_longer_works(replay_events: Path, credentials) -> None:
    app = _app(replay_events, credentials)
    client = app.test_client()
    assert _login(client).status_code == 302
    stolen = client.get_cookie(COOKIE).value
    assert client.get("/live").status_code == 200
    assert client.post("/logout").status_code == 302
    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen)
    response = thief.get("/live")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert thief.get("/health/status").status_code == 401


def test_sessions_end_after_the_idle_and_the_absolute_lifetime(replay_events: Path, credentials) -> None:
    app = _app(replay_events, credentials)
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)  # the cookie's own expiry
    clock = Clock()
    app.extensions[STATE_KEY].clock = clock
    client = app.test_client()
    _login(client)
    clock.now += 29 * 60
    assert client.get("/live").status_code == 200  # used within the idle lifetime: still live
    clock.now += 31 * 60
    assert client.get("/live").status_code == 302  # 31 minutes idle: ended on the server

    _login(client)
    for _ in range(12 * 3 + 1):  # active every 20 minutes for just over 12 hours
        clock.now += 20 * 60
        page = client.get("/live").status_code
    assert page == 302  # past the absolute lifetime, however active


def test_session_lifetimes_are_settings(replay_events: Path, credentials) -> None:
    app = _app(replay_events, credentials, session_idle_minutes=5.0, session_max_hours=1.0)
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=5)
    clock = Clock()
    app.extensions[STATE_KEY].clock = clock
    client = app.test_client()
    _login(client)
    clock.now += 6 * 60
    assert client.get("/live").status_code == 302


# -- 11. login backoff ---------------------------------------------------------------------------------

def test_backoff_doubles_and_is_capped() -> None:
    delays = [backoff_s(n, free=5, base_s=1.0, cap_s=30.0) for n in range(12)]
    assert delays == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 30, 30]


def _throttled_app(replay_events: Path, credentials):
    app = _app(replay_events, credentials)
    clock = Clock()
    app.extensions[THROTTLE_KEY].clock = clock
    return app, clock


def test_backoff_grows_instead_of_a_fixed_lockout(replay_events: Path, credentials) -> None:
    app, clock = _throttled_app(replay_events, credentials)
    client = app.test_client()
    for _ in range(5):
        assert _login(client, "guess").status_code == 401
    refused = _login(client)
    assert refused.status_code == 429 and "Too many failed attempts" in refused.text
    assert refused.headers["Retry-After"] == "1"
    clock.now += 1.5  # one second of backoff after five failures, not five minutes
    assert _login(client, "guess").status_code == 401
    clock.now += 1.5  # the sixth failure doubled it: two seconds
    assert _login(client).status_code == 429
    clock.now += 2.5
    assert _login(client).status_code == 302


@pytest.mark.slow  # tens of password-hash checks
def test_a_flood_on_the_account_does_not_lock_out_its_owner(replay_events: Path, credentials) -> None:
    app, clock = _throttled_app(replay_events, credentials)
    attacker = app.test_client()
    for i in range(40):
        _login(attacker, f"guess-{i}", address=f"203.0.113.{i % 4}")
        clock.now += 0.1
    assert _login(attacker, address="203.0.113.1").status_code == 429  # the guessers wait
    owner = app.test_client()
    assert _login(owner, address="192.0.2.7").status_code == 302  # the owner's address is clean: in at once


@pytest.mark.slow  # tens of password-hash checks
def test_the_right_password_gets_through_an_address_lockout_after_a_short_delay(replay_events: Path,
                                                                                credentials) -> None:
    app, clock = _throttled_app(replay_events, credentials)
    client = app.test_client()
    for i in range(30):  # password spraying from one address: locked out for a long time
        _login(client, "guess", user=f"user{i}")
        clock.now += 0.01
    assert _login(client).status_code == 429
    assert _login(client, "guess").status_code == 429
    clock.now += 2.1  # one checked attempt per 2 s from a locked address
    assert _login(client).status_code == 302
    clock.now += 2.1
    wrong = _login(app.test_client(), "guess", user="someone")
    assert wrong.status_code == 401
    assert _login(app.test_client(), "guess", user="someone").status_code == 429  # still locked for guessers


@pytest.mark.slow  # tens of password-hash checks
def test_a_guessing_flood_logs_a_few_lines_not_one_per_guess(replay_events: Path, credentials,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    app, clock = _throttled_app(replay_events, credentials)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="hftpipe.ui.state"):
        for _ in range(40):
            _login(client, "guess", user="alice\nWARNING forged log line")
            clock.now += 3600  # every guess after its backoff: all 40 are checked and fail
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and all("\n" not in line for line in lines)  # at 5, 8, 16 and 32 failures


def test_backoff_survives_a_restart(replay_events: Path, credentials) -> None:
    app, _ = _throttled_app(replay_events, credentials)
    for _ in range(6):
        _login(app.test_client(), "guess")
    restarted = _app(replay_events, credentials)  # a new process: same HFTPIPE_HOME, fresh memory
    assert _login(restarted.test_client()).status_code == 429


def test_throttle_state_is_in_sqlite_under_hftpipe_home(hftpipe_home: Path) -> None:
    clock = Clock()
    first = LoginThrottle(UiState(hftpipe_home / "ui" / "state.sqlite"), clock=clock)
    for _ in range(7):
        first.record("alice", "10.0.0.1", ok=False)
    again = LoginThrottle(UiState(hftpipe_home / "ui" / "state.sqlite"), clock=clock)
    refusal = again.check("alice", "10.0.0.1")
    assert refusal is not None and refusal.retry_after == 2
    clock.now += 3600 * 2  # an hour after the last failure the counters are forgotten
    assert again.check("alice", "10.0.0.1") is None


# -- 12. HFTPIPE_ENV -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["prd", "staging", "prod", "dev", "test", "production1", "yes"])
def test_unknown_modes_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"HFTPIPE_ENV='{value}' is not a known mode: set it to one of "
                                          "development, production"):
        load_credentials({"HFTPIPE_ENV": value})


@pytest.mark.parametrize("value,mode", [("", "development"), ("development", "development"),
                                        (" Production ", "production"), ("production", "production")])
def test_known_modes(value: str, mode: str) -> None:
    assert runtime_mode({"HFTPIPE_ENV": value}) == mode
    assert runtime_mode({}) == "development"


def test_unknown_mode_stops_the_app_factory(monkeypatch: pytest.MonkeyPatch, replay_events: Path) -> None:
    monkeypatch.setenv("HFTPIPE_ENV", "staging")
    with pytest.raises(ConfigError, match="not a known mode"):
        create_app(ui_config(replay_events, closed_port_url()))


# -- 8. unreadable replay files ------------------------------------------------------------------------

def test_a_replay_file_with_unreadable_metadata_is_skipped_with_one_warning(
        replay_events: Path, credentials, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "replay"
    folder.mkdir()
    good = folder / "events.parquet"
    good.write_bytes(replay_events.read_bytes())
    table = pa.table({"x": [1, 2]})
    for name, meta in (("garbled.parquet", b"{not json"), ("missing.parquet", json.dumps({"symbol": "X"}).encode()),
                       ("wrong.parquet", json.dumps(["a list"]).encode()),
                       ("badlevels.parquet", json.dumps({"symbol": "X", "date": "d", "levels": "many",
                                                         "rows": 1}).encode())):
        pq.write_table(table.replace_schema_metadata({b"hftpipe": meta}), folder / name)
    cfg = ui_config(good, closed_port_url())
    app = create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=credentials)
    client = app.test_client()
    _login(client)
    with caplog.at_level(logging.WARNING, logger="hftpipe.ui.replay"):
        for _ in range(3):
            page = client.get("/live")
            assert page.status_code == 200 and "GOOG 2012-06-21" in page.text
    warnings = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(warnings) == 4  # one per bad file, not one per page view
    assert all("hftpipe metadata is unreadable" in w for w in warnings)
    assert client.get("/live/stream?file=1").status_code == 404  # only the good file is offered


# -- 16. MLflow links only when they lead somewhere ----------------------------------------------------

class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_mlflow_links_are_hidden_unless_the_mlflow_ui_answers(replay_events: Path, credentials) -> None:
    down = closed_port_url()
    client = _app(replay_events, credentials, mlflow_ui_url=down).test_client()
    _login(client)
    page = client.get("/health").text
    assert f'href="{down}"' not in page and "not answering" in page

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        up = f"http://127.0.0.1:{server.server_port}"
        client = _app(replay_events, credentials, mlflow_ui_url=up).test_client()
        _login(client)
        assert f'href="{up}"' in client.get("/health").text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("mode,shown", [("show", True), ("hide", False)])
def test_mlflow_links_setting(replay_events: Path, credentials, mode: str, shown: bool) -> None:
    url = closed_port_url()
    client = _app(replay_events, credentials, mlflow_ui_url=url, mlflow_links=mode).test_client()
    _login(client)
    assert (f'href="{url}"' in client.get("/health").text) is shown


def test_new_ui_settings_have_documented_defaults() -> None:
    ui = Config().ui
    assert (ui.mlflow_links, ui.session_idle_minutes, ui.session_max_hours) == ("auto", 30.0, 12.0)
    assert ui.host == "127.0.0.1"


@pytest.mark.parametrize("hops,owner_status", [(1, 302), (0, 429)])
def test_behind_a_proxy_addresses_come_from_x_forwarded_for(replay_events: Path, credentials, hops: int,
                                                          owner_status: int) -> None:
    app = _app(replay_events, credentials, proxy_hops=hops)
    app.extensions[THROTTLE_KEY].clock = Clock()
    ingress = {"REMOTE_ADDR": "10.0.0.1"}  # every request reaches the pod from the ingress controller
    client = app.test_client()
    for i in range(10):  # spraying other accounts from one client: that client's address is locked
        client.post("/login", data={"username": f"user{i}", "password": "guess"},
                    environ_base=ingress, headers={"X-Forwarded-For": "203.0.113.9"})
    owner = app.test_client().post("/login", data={"username": USER, "password": PASSWORD},
                                   environ_base=ingress, headers={"X-Forwarded-For": "192.0.2.7"})
    assert owner.status_code == owner_status  # without proxy_hops everyone shares the ingress's address


def test_gunicorn_settings_from_the_ui_section() -> None:
    from hftpipe.ui.server import gunicorn_options

    options = gunicorn_options(Config().ui)
    assert options["bind"] == ["127.0.0.1:5000"]  # loopback unless told otherwise
    assert options["worker_class"] == "hftpipe.ui.server.UiWorker"
    assert (options["threads"], options["worker_connections"], options["keepalive"]) == (32, 500, 5)
    assert options["limit_request_line"] <= 8190 and options["limit_request_fields"] <= 100
    assert options["control_socket_disable"] is True and options["accesslog"] is None
    ipv6 = Config().ui.__class__(host="::1", port=5001)
    assert gunicorn_options(ipv6)["bind"] == ["[::1]:5001"]
