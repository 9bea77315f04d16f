"""A trader in a real browser: Debian's chromium via Playwright, a real model server and the real UI."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hftpipe import paths
from hftpipe.ui import create_app
from tests.ui.conftest import PASSWORD, USER, UIServer, closed_port_url, ui_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
EVENTS_SEEN = """() => {
  const m = document.getElementById('replay-status').textContent.match(/event ([\\d,]+)/);
  return m !== null && parseInt(m[1].replace(/,/g, ''), 10) >= %d;
}"""


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: run `apt-get install -y chromium chromium-driver` "
                    "(Playwright cannot download browsers here)")
    return path


def _login(page, url: str) -> None:
    page.goto(f"{url}/live")
    assert "/login" in page.url  # every page is behind the login
    page.fill("#username", USER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/live")


def _save(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    shutil.copy(shot, paths.reports_dir() / name)
    return shot


def test_trader_sees_live_predictions_and_outcomes(model_server, replay_events: Path, credentials,
                                                   tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    server, features_dir = model_server
    live_app = create_app(ui_config(replay_events, server.url, output=str(features_dir)), credentials=credentials)
    down_app = create_app(ui_config(replay_events, closed_port_url()), credentials=credentials)
    problems: list[str] = []
    with UIServer(live_app) as ui, UIServer(down_app) as ui_down, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            # CSP violations and script errors show up here: the page must run clean with no CDN.
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            _login(page, ui.url)
            page.select_option("#replay-speed", "50")
            page.click("#replay-start")
            page.wait_for_function(EVENTS_SEEN % 350, timeout=120_000)
            assert page.locator("#signal").inner_text() in ("UP", "DOWN", "STATIONARY")
            assert page.locator("#outcomes tbody tr").count() >= 10
            assert "%" in page.locator("#hit-rate").inner_text()
            assert re.search(r"persistence \d+\.\d% · momentum \d+\.\d%", page.locator("#hit-baselines").inner_text())
            assert "$" in page.locator("#pnl").inner_text()
            assert "hftpipe-lob" in page.locator("#model-name").inner_text()
            assert "horizon 10 events" in page.locator("#model-detail").inner_text()
            assert page.locator("#mid-chart .scatterlayer .trace").count() == 3  # Plotly drew mid + signals
            page.wait_for_function("document.getElementById('serving-pill').textContent.includes('up')")
            assert page.locator("#serving-banner").is_hidden()
            shot = _save(page, tmp_path, "ui-live.png")
            assert shot.stat().st_size > 50_000
            page.click("#replay-stop")

            down = browser.new_page(viewport={"width": 1440, "height": 700})
            down.on("pageerror", lambda e: problems.append(str(e)))
            _login(down, ui_down.url)
            down.wait_for_selector("#serving-banner", state="visible", timeout=20_000)
            banner = down.locator("#serving-banner").inner_text()
            assert "Model server unavailable" in banner and "not reachable" in banner and "Retrying" in banner
            _save(down, tmp_path, "ui-serving-down.png")
        finally:
            browser.close()
    assert problems == []
