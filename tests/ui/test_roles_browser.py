"""Roles in a real browser (Debian's chromium via Playwright, CSRF on): a trader halts trading, a trader's
resume is refused with a clear message even when the form is forged, and the risk officer resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from hftpipe import audit
from hftpipe.trading.risk import RiskState
from hftpipe.trading.state_store import RiskStateStore
from hftpipe.ui import create_app
from hftpipe.ui.security import Credentials
from tests.ui.conftest import UIServer, closed_port_url, ui_config
from tests.ui.test_browser import CHROMIUM_ARGS, _chromium, _save

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a long browser passphrase"


def _state() -> RiskState:
    store = RiskStateStore()
    try:
        return store.current().state
    finally:
        store.close()


def _login(page, url: str, user: str) -> None:
    page.goto(f"{url}/risk")
    assert "/login" in page.url
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/risk")


# Clone the halt form into a resume form: what a trader could forge with the browser's developer tools.
FORGE_RESUME = """() => {
  const form = document.getElementById('form-halt').cloneNode(true);
  form.id = 'forged';
  form.querySelector('input[name="state-action"]').value = 'resume';
  form.querySelector('input[name="state-reason"]').value = 'forged resume';
  document.body.appendChild(form);
  form.submit();
}"""


def test_trader_halts_a_forged_resume_is_refused_and_risk_resumes(replay_events: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    hashed = generate_password_hash(PASSWORD)
    creds = Credentials(users={"tina": hashed, "rita": hashed}, secret_key="b" * 40,
                        roles={"tina": "trader", "rita": "risk"})
    app = create_app(ui_config(replay_events, closed_port_url()), credentials=creds)  # CSRF on, as deployed
    problems: list[str] = []
    with UIServer(app) as ui, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            trader = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            trader.on("pageerror", lambda e: problems.append(str(e)))
            _login(trader, ui.url, "tina")
            assert trader.locator("#risk-state").inner_text() == "ACTIVE"
            assert trader.locator("#form-resume").count() == 0 and trader.locator("#form-limit").count() == 0
            assert trader.locator("nav >> text=Compliance").count() == 0
            trader.fill("#form-halt input[name='state-reason']", "venue outage")
            trader.click("#form-halt button")
            trader.wait_for_url(f"{ui.url}/risk")
            assert trader.locator("#risk-state").inner_text() == "HALTED"
            assert "Trading halted by tina" in trader.locator(".flash-ok").inner_text()
            assert _state() is RiskState.HALTED

            with trader.expect_navigation():
                trader.evaluate(FORGE_RESUME)
            assert trader.locator(".flash-error").inner_text() == (
                "Your role (trader) may not resume here; only risk or admin may.")
            assert trader.locator("#risk-state").inner_text() == "HALTED" and _state() is RiskState.HALTED
            _save(trader, tmp_path, "ui-risk-trader-refused.png")

            risk = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            _login(risk, ui.url, "rita")
            risk.fill("#form-resume input[name='state-reason']", "venue back, spreads normal")
            risk.click("#form-resume button")
            risk.wait_for_url(f"{ui.url}/risk")
            assert risk.locator("#risk-state").inner_text() == "ACTIVE" and _state() is RiskState.ACTIVE
            risk.click("nav >> text=Compliance")
            assert "chain verified" in risk.locator("#verify").inner_text()
            _save(risk, tmp_path, "ui-compliance.png")
        finally:
            browser.close()
    assert not problems, problems
    with audit.open_trail() as trail:
        changes = [(r.action, r.actor) for r in trail.records() if r.action != audit.LOGIN]
    assert changes == [("kill_switch", "tina"), ("risk_state", "rita")]  # the forged resume left nothing
