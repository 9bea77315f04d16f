"""UI roles from config, enforced on the server: the risk page (kill switch, limits), the compliance page,
log-in audit records, and the users file. Real stores under the test's HFTPIPE_HOME (risk.db, audit.db)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from hftpipe import audit
from hftpipe.errors import ConfigError
from hftpipe.trading.limit_store import LimitStore
from hftpipe.trading.risk import RiskState
from hftpipe.trading.state_store import RiskStateStore
from hftpipe.ui import create_app
from hftpipe.ui.security import Credentials, load_credentials, load_users_file
from tests.ui.conftest import closed_port_url, ui_config

PASSWORD = "tr0ub4dor&3-long-enough"
ROLES = {"tina": "trader", "rita": "risk", "adam": "admin"}


@pytest.fixture(scope="module")
def role_credentials() -> Credentials:
    hashed = generate_password_hash(PASSWORD)  # slow on purpose: once per module
    return Credentials(users={name: hashed for name in ROLES}, secret_key="s" * 40, roles=dict(ROLES))


def _app(replay_events: Path, credentials: Credentials, csrf: bool = False):
    return create_app(ui_config(replay_events, closed_port_url()),
                      settings={"TESTING": True, "WTF_CSRF_ENABLED": csrf}, credentials=credentials)


@pytest.fixture
def app(replay_events: Path, role_credentials: Credentials):
    return _app(replay_events, role_credentials)


def _login(client, name: str) -> None:
    response = client.post("/login", data={"username": name, "password": PASSWORD})
    assert response.status_code == 302, response.text


def _records(action: str | None = None) -> list[audit.AuditRecord]:
    with audit.open_trail() as trail:
        return [r for r in trail.records() if action is None or r.action == action]


def _state() -> RiskState:
    store = RiskStateStore()
    try:
        return store.current().state
    finally:
        store.close()


def _post_state(client, action: str, reason: str = "test"):
    return client.post("/risk/state", data={"state-action": action, "state-reason": reason})


def test_trader_may_halt_but_a_trader_resume_is_refused_with_a_clear_message(app) -> None:
    client = app.test_client()
    _login(client, "tina")
    page = client.get("/risk")
    assert page.status_code == 200 and 'id="form-halt"' in page.text
    assert 'id="form-resume"' not in page.text and 'id="form-limit"' not in page.text  # not offered either

    halted = _post_state(client, "halt", "spread blew out")
    assert halted.status_code == 303 and _state() is RiskState.HALTED
    (record,) = _records(audit.KILL_SWITCH)
    assert (record.actor, record.reason, record.details["state"]) == ("tina", "spread blew out", "HALTED")

    refused = _post_state(client, "resume", "looks calm again")
    assert refused.status_code == 403
    assert "Your role (trader) may not resume here; only risk or admin may." in refused.text
    assert _state() is RiskState.HALTED and len(_records()) == 2  # the halt and the log-in: nothing new
    assert _post_state(client, "reduce").status_code == 403 and _state() is RiskState.HALTED


def test_risk_role_resumes_reduces_and_changes_limits(app) -> None:
    client = app.test_client()
    _login(client, "rita")
    for action, state in (("halt", RiskState.HALTED), ("reduce", RiskState.REDUCING), ("resume", RiskState.ACTIVE)):
        response = _post_state(client, action, f"drill {action}")
        assert response.status_code == 303, response.text
        assert _state() is state
    follow = client.get("/risk")
    assert "Trading resumed by rita (change #3); audit record written." in follow.text
    assert [r.action for r in _records() if r.action != audit.LOGIN] == ["kill_switch", "risk_state", "risk_state"]

    raised = client.post("/risk/limits", data={"limit-symbol": "GOOG", "limit-name": "max_position",
                                               "limit-value": "800", "limit-reason": "more room for GOOG"})
    assert raised.status_code == 303, raised.text
    (change,) = _records(audit.LIMIT_CHANGE)
    assert (change.subject, change.actor) == ("risk/GOOG/max_position", "rita")
    assert change.details == {"symbol": "GOOG", "limit": "max_position", "previous": 500.0, "value": 800.0,
                              "raised": True}
    store = LimitStore()
    try:
        assert store.overrides() == {"GOOG": {"max_position": 800.0}}
    finally:
        store.close()
    page = client.get("/risk")
    assert re.search(r"<td>max_position</td><td class=\"num\">500</td><td class=\"num\">800 \*</td>", page.text)

    bad = client.post("/risk/limits", data={"limit-name": "max_position", "limit-value": "-1", "limit-reason": "x"})
    assert bad.status_code == 400 and "must be a number &gt;= 0" in bad.text
    assert len(_records(audit.LIMIT_CHANGE)) == 1


def test_trader_cannot_raise_a_limit(app) -> None:
    client = app.test_client()
    _login(client, "tina")
    response = client.post("/risk/limits", data={"limit-name": "max_position", "limit-value": "100000",
                                                  "limit-reason": "let me trade"})
    assert response.status_code == 403
    assert "Your role (trader) may not change limits here; only risk or admin may." in response.text
    assert _records(audit.LIMIT_CHANGE) == []


def test_a_change_needs_a_reason(app) -> None:
    client = app.test_client()
    _login(client, "adam")
    response = _post_state(client, "halt", "")
    assert response.status_code == 400 and "Give a reason: it goes into the audit trail." in response.text
    assert _state() is RiskState.ACTIVE


def test_forms_are_csrf_protected(replay_events: Path, role_credentials: Credentials) -> None:
    client = _app(replay_events, role_credentials, csrf=True).test_client()
    login = client.get("/login")
    token = login.text.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    assert client.post("/login", data={"username": "adam", "password": PASSWORD, "csrf_token": token}).status_code == 302
    assert _post_state(client, "halt", "no token").status_code == 400 and _state() is RiskState.ACTIVE
    page = client.get("/risk").text
    token = page.split('name="state-csrf_token" value="')[1].split('"')[0]
    response = client.post("/risk/state", data={"state-action": "halt", "state-reason": "with token",
                                                "state-csrf_token": token})
    assert response.status_code == 303 and _state() is RiskState.HALTED


def test_compliance_page_for_risk_and_admin_only_with_filters_and_verification(app) -> None:
    trader = app.test_client()
    _login(trader, "tina")
    assert trader.get("/compliance").status_code == 403
    assert "Compliance" not in trader.get("/risk").text.split("<main>")[0]  # not in the trader's navigation
    _post_state(trader, "halt", "fat finger upstream")

    client = app.test_client()
    _login(client, "rita")
    page = client.get("/compliance")
    assert page.status_code == 200
    assert "audit trail intact: 3 record(s), chain verified" in page.text
    assert page.text.count("<tr><td class=\"num\">") == 3
    only_halts = client.get("/compliance?action=kill_switch")
    assert only_halts.text.count("<tr><td class=\"num\">") == 1 and "fat finger upstream" in only_halts.text
    by_rita = client.get("/compliance?actor=rita")
    assert by_rita.text.count("<tr><td class=\"num\">") == 1 and "log-in succeeded" in by_rita.text
    assert client.get("/compliance?since=2999-01-01").text.count("<tr><td class=\"num\">") == 0
    assert client.get("/compliance?since=yesterday").status_code == 400
    csv_text = client.get("/compliance/export?format=csv&action=login").text
    assert csv_text.splitlines()[0] == "id,time,actor,action,subject,reason,details,prev_hash,hash"
    assert len(csv_text.splitlines()) == 3


def test_logins_success_and_failure_are_audited(app) -> None:
    client = app.test_client()
    assert client.post("/login", data={"username": "tina", "password": "wrong"}).status_code == 401
    _login(client, "tina")
    failure, success = _records(audit.LOGIN)
    assert (failure.actor, failure.details["outcome"], failure.details["role"]) == ("tina", "failure", None)
    assert (success.actor, success.subject, success.details["outcome"], success.details["role"]) == (
        "tina", "ui/tina", "success", "trader")


def test_a_user_without_a_role_sees_nothing(replay_events: Path, role_credentials: Credentials) -> None:
    creds = Credentials(users=dict(role_credentials.users), secret_key="s" * 40,
                        roles={**ROLES, "tina": "nobody"})
    client = _app(replay_events, creds).test_client()
    _login(client, "tina")
    assert client.get("/models").status_code == 403
    assert client.get("/risk").status_code == 403


def test_users_file_roles_and_the_environment_user(tmp_path: Path) -> None:
    hashed = generate_password_hash("x" * 12)
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  tina: {{password_hash: '{hashed}', role: trader}}\n"
                     f"  rita: {{password_hash: '{hashed}', role: risk}}\n")
    creds = load_credentials({"HFTPIPE_UI_USER": "ops", "HFTPIPE_UI_PASSWORD_HASH": hashed}, users_file=users)
    assert {n: creds.role_of(n) for n in ("tina", "rita", "ops", "eve")} == {
        "tina": "trader", "rita": "risk", "ops": "admin", "eve": None}
    assert creds.verify("rita", "x" * 12)
    env_trader = load_credentials({"HFTPIPE_UI_PASSWORD_HASH": hashed, "HFTPIPE_UI_ROLE": "trader"})
    assert env_trader.role_of("trader") == "trader"
    assert load_credentials({}).role_of("trader") == "admin"  # the generated development user


@pytest.mark.parametrize(("text", "message"), [
    ("users:\n  tina: {password_hash: 'scrypt:1$a$b', role: boss}\n", "role 'boss' of user 'tina' is not one of trader, risk, admin"),
    ("users:\n  tina: {password_hash: 'plain', role: trader}\n", "the entry for user 'tina' is not a werkzeug password hash"),
    ("users:\n  tina: {password_hash: 'scrypt:1$a$b', role: trader, admin: true}\n", "unknown key(s) admin"),
    ("users: []\n", "expected a mapping 'users:'"),
])
def test_bad_users_files_are_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_users_file(path)


def test_a_user_in_both_places_and_a_bad_env_role_are_refused(tmp_path: Path) -> None:
    hashed = "scrypt:1$a$b"
    path = tmp_path / "users.yaml"
    path.write_text(f"users:\n  ops: {{password_hash: '{hashed}', role: risk}}\n")
    with pytest.raises(ConfigError, match="user\\(s\\) ops defined both in"):
        load_credentials({"HFTPIPE_UI_USER": "ops", "HFTPIPE_UI_PASSWORD_HASH": hashed}, users_file=path)
    with pytest.raises(ConfigError, match="HFTPIPE_UI_ROLE: role 'root' of environment users is not one of"):
        load_credentials({"HFTPIPE_UI_ROLE": "root"})


def test_ui_user_cli_writes_a_users_file_the_ui_reads(tmp_path: Path) -> None:
    import stat

    from click.testing import CliRunner

    from hftpipe import paths
    from hftpipe.cli import main
    from hftpipe.ui.security import users_file_path

    runner = CliRunner()
    added = runner.invoke(main, ["ui-user", "add", "rita", "--role", "risk"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    path = paths.home() / "ui" / "users.yaml"
    assert f"added rita (risk) in {path}; restart the UI to apply" in added.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    runner.invoke(main, ["ui-user", "add", "tina", "--role", "trader"], input=f"{PASSWORD}\n{PASSWORD}\n")
    changed = runner.invoke(main, ["ui-user", "add", "tina", "--role", "risk"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert "updated tina (risk)" in changed.output
    short = runner.invoke(main, ["ui-user", "add", "x", "--role", "risk"], input="short\nshort\n")
    assert short.exit_code == 2 and "at least 12 characters" in short.output
    assert runner.invoke(main, ["ui-user", "list"]).output == "rita\trisk\ntina\trisk\n"
    assert users_file_path(None) == path
    creds = load_credentials({}, users_file=users_file_path(None))
    assert creds.verify("rita", PASSWORD) and creds.role_of("tina") == "risk"
    assert creds.generated_password is None  # users exist: no generated development password
    with pytest.raises(ConfigError, match="ui.users_file: .*does not exist"):
        users_file_path(str(tmp_path / "missing.yaml"))
