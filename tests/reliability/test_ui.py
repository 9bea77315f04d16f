"""The UI as ``hftpipe ui`` serves it (gunicorn) on loopback, probed as a hostile client would.

Time limits are shortened through ``-S`` so the test runs in seconds: an idle connection is closed
after ``keepalive_s`` (2 s), a stalled request after ``request_timeout_s`` (2 s).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
import requests
from werkzeug.security import generate_password_hash

from hftpipe.data import load_lobster, write_events
from hftpipe.data.schema import EventTable
from tests.conftest import lobster_zip
from tests.ui.conftest import closed_port_url, free_port

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

USER, PASSWORD = "trader", "reliable-password-1"
KEEPALIVE_S = 2
REQUEST_TIMEOUT_S = 2


class GunicornUI:
    """``hftpipe ui`` in a subprocess on a free loopback port; always stopped."""

    def __init__(self, replay: Path, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "ui.log"
        self.cmd = [sys.executable, "-m", "hftpipe.cli", "-S", f"ui.replay_source={replay}",
                    "-S", f"ui.serving_url={closed_port_url()}", "-S", f"ui.keepalive_s={KEEPALIVE_S}",
                    "-S", f"ui.request_timeout_s={REQUEST_TIMEOUT_S}", "-S", "ui.server_threads=4",
                    "-S", "ui.serving_timeout_s=0.5", "ui", "--port", str(self.port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HFTPIPE_UI_", "HFTPIPE_ENV"))}
        self.env = {**env, "HFTPIPE_HOME": str(home), "HFTPIPE_UI_USER": USER,
                    "HFTPIPE_UI_PASSWORD_HASH": generate_password_hash(PASSWORD),
                    "HFTPIPE_UI_SECRET_KEY": "s" * 48}
        self.home = home

    def __enter__(self) -> Self:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.home, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the UI did not start:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornUI]:
    table = load_lobster(lobster_zip("GOOG", 1))
    frame = table.frame.iloc[:400].reset_index(drop=True)
    replay = tmp_path_factory.mktemp("events") / "GOOG.parquet"
    write_events(EventTable(frame=frame, meta=table.meta.__class__(**{**table.meta.to_dict(), "rows": 400})), replay)
    with GunicornUI(replay, tmp_path_factory.mktemp("ui_home")) as server:
        yield server


def raw(port: int, data: bytes, timeout: float = 10.0) -> tuple[int | None, bytes]:
    """Send raw bytes, return (status or None when the server only closed, the answer's head)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match.group(1)) if match else None), answer.split(b"\r\n\r\n")[0]


def logged_in(ui: GunicornUI) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{ui.url}/login", timeout=5).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    answer = session.post(f"{ui.url}/login", data={"username": USER, "password": PASSWORD, "csrf_token": token},
                          timeout=10)
    assert answer.status_code == 200 and answer.url.endswith("/live"), answer.status_code
    return session


def test_no_server_software_or_version_in_headers(ui: GunicornUI) -> None:
    for status, head in (raw(ui.port, b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                         raw(ui.port, b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
                         raw(ui.port, b"GARBAGE\r\n\r\n")):
        text = head.decode("latin-1").lower()
        assert "werkzeug" not in text and "gunicorn" not in text and "python" not in text, text
        server = re.search(r"^server: (.*)$", text, re.MULTILINE)
        assert server is None or server.group(1).strip() == "hftpipe", text


def test_an_idle_connection_is_closed_after_the_keepalive(ui: GunicornUI) -> None:
    with socket.create_connection(("127.0.0.1", ui.port), timeout=30) as sock:
        start = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, nothing sent
        waited = time.monotonic() - start
    assert KEEPALIVE_S - 0.5 <= waited <= KEEPALIVE_S + 3, waited


def test_a_half_sent_request_is_dropped_after_the_request_timeout(ui: GunicornUI) -> None:
    with socket.create_connection(("127.0.0.1", ui.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        start = time.monotonic()
        assert sock.recv(1) == b""
        waited = time.monotonic() - start
    assert waited <= REQUEST_TIMEOUT_S + 3, waited


def _half_sent(port: int, count: int) -> list[socket.socket]:
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    return socks


def _timed_get(url: str) -> float:
    start = time.monotonic()
    assert requests.get(url, timeout=30).status_code == 200
    return time.monotonic() - start


def test_many_idle_connections_do_not_stop_a_real_request(ui: GunicornUI) -> None:
    idle = [socket.create_connection(("127.0.0.1", ui.port), timeout=30) for _ in range(300)]
    slow = _half_sent(ui.port, 3)  # fewer stalled requests than threads (4 here)
    try:
        time.sleep(0.3)
        took = _timed_get(f"{ui.url}/healthz")
        assert took < 1.0, took  # silent connections hold no thread
        time.sleep(KEEPALIVE_S + 2)
        closed = 0
        for sock in idle:
            sock.settimeout(2)
            closed += sock.recv(1) == b""
        assert closed == len(idle)  # every silent connection was let go
    finally:
        for sock in idle + slow:
            sock.close()


def test_stalled_requests_hold_threads_for_a_bounded_time(ui: GunicornUI) -> None:
    slow = _half_sent(ui.port, 8)  # twice the threads: a real request queues behind two rounds at most
    try:
        time.sleep(0.3)
        took = _timed_get(f"{ui.url}/healthz")
        assert took < 2 * REQUEST_TIMEOUT_S + 2, took
    finally:
        for sock in slow:
            sock.close()


def test_a_trickled_request_is_cut_at_the_request_timeout(ui: GunicornUI) -> None:
    with socket.create_connection(("127.0.0.1", ui.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        start = time.monotonic()
        closed = False
        for i in range(REQUEST_TIMEOUT_S * 4):  # a header byte every 0.5 s, each pause well under the limit
            try:
                sock.sendall(b"X-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            time.sleep(0.5)
        if not closed:
            sock.settimeout(5)
            closed = sock.recv(100) == b""
        assert closed and time.monotonic() - start <= REQUEST_TIMEOUT_S + 3


HOSTILE_RAW = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"FOO /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /login?next=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(80)) + b"\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n",
    b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"GET /login HTTP/1.1\r\nHost: x\r\nCookie: hftpipe_session=" + b"c" * 4000 + b"\r\nConnection: close\r\n\r\n",
    b"GET /live HTTP/1.1\r\nHost: x\r\nCookie: hftpipe_session=forged.cookie.value\r\nConnection: close\r\n\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /static/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /static/%2e%2e%2f%2e%2e%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /\xc3\xbcn\xc3\xafcode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /login HTTP/1.0\r\n\r\n",
    b"GET http://evil.example/login HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", HOSTILE_RAW, ids=range(len(HOSTILE_RAW)))
def test_malformed_requests_get_4xx_never_5xx(ui: GunicornUI, request_bytes: bytes) -> None:
    status, head = raw(ui.port, request_bytes)
    assert status is None or 400 <= status < 500 or status in (200, 302), head[:200]


def test_hostile_requests_through_the_app_get_no_5xx(ui: GunicornUI) -> None:
    anonymous = requests.Session()
    anonymous.headers["Connection"] = "close"  # see below
    statuses = {
        "login without token": anonymous.post(f"{ui.url}/login", data={"username": USER, "password": "x"}),
        "login bad token": anonymous.post(f"{ui.url}/login", data={"username": USER, "password": "x",
                                                                     "csrf_token": "forged"}),
        "oversized body": anonymous.post(f"{ui.url}/login", data={"username": "u" * 200_000, "password": "x"}),
        "multipart garbage": anonymous.post(f"{ui.url}/login", data=b"--x\r\ngarbage",
                                            headers={"Content-Type": "multipart/form-data; boundary=x"}),
        "json to a form": anonymous.post(f"{ui.url}/login", json={"username": USER}),
        "stream anonymous": anonymous.get(f"{ui.url}/live/stream?file=0"),
    }
    session = logged_in(ui)
    # One connection per request: with the 2 s keep-alive of this fixture, a busy machine can let a reused
    # connection expire between two requests (a client-side race, not a server error).
    session.headers["Connection"] = "close"
    statuses.update({
        "logout without token": session.post(f"{ui.url}/logout"),
        "stream bad file": session.get(f"{ui.url}/live/stream?file=-1"),
        "stream nan speed": session.get(f"{ui.url}/live/stream?file=0&speed=nan"),
        "stream inf speed": session.get(f"{ui.url}/live/stream?file=0&speed=inf"),
        "stream text file": session.get(f"{ui.url}/live/stream?file=abc&speed=1e400"),
        "runs bad step": session.get(f"{ui.url}/runs?step=%00%27%22"),
        "put a page": session.put(f"{ui.url}/live", data="x"),
        "delete a page": session.delete(f"{ui.url}/runs"),
        "vendor traversal": session.get(f"{ui.url}/vendor/..%2f..%2fetc%2fpasswd"),
    })
    bad = {name: r.status_code for name, r in statuses.items() if r.status_code >= 500}
    assert not bad, bad
    assert statuses["oversized body"].status_code == 413
    assert statuses["login bad token"].status_code == 400 and statuses["logout without token"].status_code == 400
    assert "Traceback" not in ui.log()


def test_server_sent_events_stream_under_gunicorn(ui: GunicornUI) -> None:
    session = logged_in(ui)
    with session.get(f"{ui.url}/live/stream?file=0&speed=20", stream=True, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines).startswith(b"retry:")
        event = next(line for line in lines if line.startswith(b"data:"))
    assert b'"serving_down"' in event  # the model server is down here: the stream says so and retries
