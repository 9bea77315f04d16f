"""The trading page: the paper trader's messages from a real NATS server reach browsers as server-sent events,
and the kill-switch state follows `hftpipe risk halt`."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests

from hftpipe.config import Config
from hftpipe.contracts import Fill, Order, PositionUpdate, encode
from hftpipe.trading.risk import RiskState
from hftpipe.trading.state_store import RiskStateStore
from hftpipe.ui import create_app
from tests.ui.conftest import PASSWORD, USER, UIServer

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def credentials():
    """One known user (as tests/ui/conftest.py's fixture, which tests/trading cannot see)."""
    from werkzeug.security import generate_password_hash

    from hftpipe.ui.security import Credentials

    return Credentials(users={USER: generate_password_hash(PASSWORD)}, secret_key="k" * 40, production=False)


def _config(port: int) -> Config:
    import dataclasses

    cfg = Config()
    return cfg.replace(bus=dataclasses.replace(cfg.bus, port=port))


def _messages() -> list[tuple[str, bytes]]:
    order = Order(symbol="GOOG", venue="NASDAQ", status="accepted", order_id=7, side=1, qty=100.0, price=None, seq=41,
                  event_time=1.0, publish_time=1.0, policy="threshold", signal_seq=40)
    denied = Order(symbol="GOOG", venue="NASDAQ", status="denied", order_id=0, side=-1, qty=100.0, price=580.1,
                   seq=42, event_time=1.0, publish_time=1.0, reason="max_position", text="position would reach 600")
    fill = Fill(symbol="GOOG", venue="NASDAQ", fill_id=1, order_id=7, side=1, qty=100.0, price=580.12, fee=0.3,
                maker=False, seq=42, event_time=1.0, publish_time=1.0)
    pos = PositionUpdate(symbol="GOOG", venue="NASDAQ", seq=42, event_time=1.0, position=100.0, cash=-58012.3,
                         mid=580.05, pnl=-7.3, day_pnl=-7.3, fees=0.3, open_orders=0, fills=1, risk_state="ACTIVE",
                         publish_time=1.0)
    return [("ord.GOOG", encode(order)), ("ord.GOOG", encode(denied)), ("fill.GOOG", encode(fill)),
            ("pos.GOOG", encode(pos))]


def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    import nats

    async def _go() -> None:
        nc = await nats.connect(url)
        for subject, data in messages:
            await nc.publish(subject, data)
        await nc.flush()
        await nc.close()

    # Its own thread: playwright's sync API keeps an event loop running in this one.
    worker = threading.Thread(target=asyncio.run, args=(_go(),))
    worker.start()
    worker.join(timeout=30)


def _wait_connected(app) -> None:
    deadline = time.monotonic() + 10
    while not app.extensions["hftpipe.trading_hub"].connected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


def test_trading_events_reach_the_browser_stream(nats_server, credentials, hftpipe_home: Path) -> None:
    app = create_app(_config(nats_server.port), settings={"WTF_CSRF_ENABLED": False}, credentials=credentials)
    with UIServer(app) as ui:
        s = requests.Session()
        assert requests.get(f"{ui.url}/trading/events", timeout=5, allow_redirects=False).status_code in (302, 401)
        assert s.post(f"{ui.url}/login", data={"username": USER, "password": PASSWORD}).ok
        page = s.get(f"{ui.url}/trading")
        assert page.status_code == 200 and 'id="trading"' in page.text and "ACTIVE" in page.text
        stream = s.get(f"{ui.url}/trading/events", stream=True, timeout=30)
        events: list[tuple[str, dict]] = []

        def _read() -> None:
            kind = None
            deadline = time.monotonic() + 20
            for line in stream.iter_lines():
                if time.monotonic() > deadline or any(k == "risk" for k, _ in events):
                    break
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                elif line.startswith(b"data: "):
                    events.append((kind, json.loads(line[6:])))

        reader = threading.Thread(target=_read)
        reader.start()
        _wait_connected(app)
        _publish(nats_server.url, _messages())
        time.sleep(0.5)
        store = RiskStateStore(hftpipe_home / "risk.db")
        store.change(RiskState.HALTED, "desk stop", "alice")  # what `hftpipe risk halt` writes
        store.close()
        reader.join(timeout=30)
        stream.close()
        state = s.get(f"{ui.url}/trading/state").json()
        app.extensions["hftpipe.trading_hub"].stop()
    kinds = [k for k, _ in events]
    assert kinds[0] == "snapshot" and events[0][1]["risk"]["state"] == "ACTIVE"
    assert kinds[1:] == ["order", "order", "fill", "position", "risk"]
    assert events[2][1]["reason"] == "max_position" and events[3][1]["price"] == 580.12
    assert events[4][1]["position"] == 100.0 and events[5][1]["state"] == "HALTED"
    assert state["denials"] == {"max_position": 1} and state["risk"]["actor"] == "alice"
    assert state["positions"][0]["pnl"] == -7.3 and len(state["fills"]) == 1


def test_browser_shows_positions_and_the_halt(nats_server, credentials, hftpipe_home: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `apt-get install -y chromium chromium-driver`")
    app = create_app(_config(nats_server.port), credentials=credentials)
    problems: list[str] = []
    with UIServer(app) as ui, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{ui.url}/trading")
            page.fill("#username", USER)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{ui.url}/trading")
            page.wait_for_function("() => document.getElementById('bus-pill').textContent === 'bus up'",
                                   timeout=20_000)
            _wait_connected(app)
            _publish(nats_server.url, _messages())
            page.wait_for_function("() => document.querySelectorAll('#trading-positions tbody tr').length === 1",
                                   timeout=20_000)
            row = page.inner_text("#trading-positions tbody tr")
            assert "GOOG" in row and "-7.30" in row and "580.05" in row
            assert "max_position" in page.inner_text("#trading-denials")
            assert page.locator("#trading-fills tbody tr").count() == 1
            store = RiskStateStore(hftpipe_home / "risk.db")
            store.change(RiskState.HALTED, "desk stop", "alice")
            store.close()
            page.wait_for_function("() => document.getElementById('risk-state').textContent === 'HALTED'",
                                   timeout=20_000)
            assert page.inner_text("#risk-reason") == "desk stop"
        finally:
            browser.close()
            app.extensions["hftpipe.trading_hub"].stop()
    assert problems == []
