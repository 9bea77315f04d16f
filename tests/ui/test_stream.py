"""The stream page: server-sent events fed from a real NATS server, several browsers on one stream."""

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
from hftpipe.contracts import BookUpdate, Signal, encode
from hftpipe.ui import create_app
from tests.online_fixtures import Service
from tests.ui.conftest import PASSWORD, USER, UIServer

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _config(port: int) -> Config:
    cfg = Config()
    return cfg.replace(bus=cfg.bus.__class__(**{**cfg.bus.__dict__, "port": port}))


def _publish(url: str, messages: list[tuple[str, bytes]]) -> None:
    import nats

    async def _go() -> None:
        nc = await nats.connect(url)
        for subject, data in messages:
            await nc.publish(subject, data)
        await nc.flush()
        await nc.close()

    asyncio.run(_go())


def _read_events(response: requests.Response, want: int, out: list, timeout_s: float = 20.0) -> None:
    kind = None
    deadline = time.monotonic() + timeout_s
    for line in response.iter_lines():
        if time.monotonic() > deadline or len([e for e in out if e[0] == "signal"]) >= want:
            break
        if line.startswith(b"event: "):
            kind = line[7:].decode()
        elif line.startswith(b"data: "):
            out.append((kind, json.loads(line[6:])))


def test_two_browsers_follow_the_same_signals(nats_server, credentials) -> None:
    app = create_app(_config(nats_server.port), settings={"WTF_CSRF_ENABLED": False}, credentials=credentials)
    with UIServer(app) as ui:
        sessions = [requests.Session() for _ in range(2)]
        assert requests.get(f"{ui.url}/stream/events", timeout=5, allow_redirects=False).status_code in (302, 401)
        for s in sessions:
            assert s.post(f"{ui.url}/login", data={"username": USER, "password": PASSWORD}).ok
        page = sessions[0].get(f"{ui.url}/stream")
        assert page.status_code == 200 and 'id="stream"' in page.text
        streams = [s.get(f"{ui.url}/stream/events", stream=True, timeout=30) for s in sessions]
        assert all(r.headers["content-type"].startswith("text/event-stream") for r in streams)
        received: list[list] = [[], []]
        readers = [threading.Thread(target=_read_events, args=(r, 3, out)) for r, out in zip(streams, received)]
        for t in readers:
            t.start()
        deadline = time.monotonic() + 10
        while not app.extensions["hftpipe.stream_hub"].connected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        book = [580.5, 100.0, 580.0, 200.0]
        messages = [("md.NASDAQ.GOOG", encode(BookUpdate(venue="NASDAQ", symbol="GOOG", seq=1, event_time=1.0,
                                                         recv_time=1.0, publish_time=1.0, levels=1, book=book)))]
        for seq in (20, 21, 22):
            messages.append(("sig.GOOG", encode(Signal(
                symbol="GOOG", venue="NASDAQ", seq=seq, event_time=1.0, input_publish_time=1.0, publish_time=1.002,
                probabilities=[0.1, 0.2, 0.7], predicted=2, model_name="hftpipe-lob", model_version="4",
                horizon=10))))
        _publish(nats_server.url, messages)
        for t in readers:
            t.join(timeout=30)
        for r in streams:
            r.close()
        app.extensions["hftpipe.stream_hub"].stop()
    for events in received:
        signals = [e for kind, e in events if kind == "signal"]
        assert [s["seq"] for s in signals] == [20, 21, 22]
        assert signals[0]["predicted"] == 2 and signals[0]["latency_ms"] == pytest.approx(2.0, abs=0.01)
        assert signals[0]["horizon_text"] == "10 events"
        books = [e for kind, e in events if kind == "book"]
        assert books and books[0]["mid"] == pytest.approx(580.25)
        assert events[0][0] == "status" and events[0][1]["bus_connected"] in (True, False)


def test_browser_follows_a_live_signal(nats_server, credentials, hftpipe_home: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from hftpipe.data import book_matrix, load_lobster
    from tests.conftest import lobster_zip
    from tests.serving.conftest import make_bundle

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run `apt-get install -y chromium chromium-driver`")
    path = lobster_zip("GOOG", 10)
    bundle = make_bundle(tmp_path / "bundle", book_matrix(load_lobster(path).frame)[:2000])
    signals = Service([*nats_server.overrides(), "-S", "signals.reload_interval_s=0", "signals", "--model",
                       str(bundle)], hftpipe_home, ready="signals", name="signals").start()
    app = create_app(_config(nats_server.port), credentials=credentials)
    problems: list[str] = []
    try:
        with UIServer(app) as ui, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"{ui.url}/stream")
                assert "/login" in page.url
                page.fill("#username", USER)
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{ui.url}/stream")
                page.wait_for_function("() => document.getElementById('bus-pill').textContent === 'bus up'",
                                       timeout=20_000)
                feed = Service([*nats_server.overrides(), "feed", "replay", str(path), "--speed", "100",
                                "--limit", "300"], hftpipe_home, ready=None, name="feed").start()
                page.wait_for_function("() => parseInt(document.getElementById('stream-count').textContent) >= 5",
                                       timeout=60_000)
                assert page.locator("#stream-signal").inner_text() in ("UP", "DOWN", "STATIONARY")
                assert page.locator("#stream-model").inner_text().startswith("hftpipe-lob vlocal-")
                assert int(page.locator("#stream-seq").inner_text()) >= 20
                assert "GOOG" in page.locator("#stream-symbol").inner_text()
                assert page.locator("#stream-recent tbody tr").count() >= 5
                page.screenshot(path=str(tmp_path / "ui-stream.png"), full_page=True)
                feed.wait(timeout_s=60)
            finally:
                browser.close()
                app.extensions["hftpipe.stream_hub"].stop()
    finally:
        signals.stop()
    assert problems == []
