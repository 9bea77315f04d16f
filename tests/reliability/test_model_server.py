"""Reliability suite for the model server (issue 10), against the real server on 127.0.0.1.

- schemathesis generates requests for every operation of the server's OpenAPI (valid and invalid ones):
  none may get a 5xx;
- hostile requests (malformed binary tensors, forged names, absurd books, repository calls, broken HTTP):
  each gets a 4xx, no traceback is logged and the server keeps answering;
- idle and half-sent connections are closed by the server, and readiness answers while hundreds are open;
- ``kill -9`` under load, then a restart on the same port: every request after the restart is answered.

The figures each test measured are printed (run with ``-s``) and written to ``reliability-*.json`` in the
test's HFTPIPE_HOME; the README quotes them.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
import requests

from tests.serving.conftest import LEVELS, WINDOW, ServerProcess, make_bundle

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
NAME = "hftpipe-lob"
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"
SETTINGS = ("serve.reload_interval_s=0", "serve.header_timeout_s=2", "serve.keep_alive_timeout_s=2",
            "serve.body_timeout_s=3", "serve.max_connections=64", "serve.max_body_bytes=200000")


def record(home: Path, name: str, figures: dict) -> None:
    """Print the measured figures and keep them next to the test's state."""
    print(f"\n[reliability] {name}: {json.dumps(figures)}")
    (home / f"reliability-{name}.json").write_text(json.dumps(figures, indent=2))


@pytest.fixture(scope="module")
def served(tmp_path_factory, goog_book):
    home = tmp_path_factory.mktemp("reliability_home")
    folder = make_bundle(home / "bundle", goog_book, seed=0)
    with ServerProcess(str(folder), home, overrides=SETTINGS) as server:
        yield server


def test_schemathesis_finds_no_server_error(served):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    server = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    statuses: dict[int, int] = {}
    failures: list[str] = []
    session = requests.Session()

    def check(case) -> None:
        response = case.call(base_url=server.url, session=session, timeout=10)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    start = time.monotonic()
    # Valid requests for the served model (the model name fixed, everything else generated), then invalid
    # requests of every kind, any model name.
    strategies = ((schema.as_strategy(GenerationMode.POSITIVE, path_parameters={"model_name": NAME}), 250),
                  (schema.as_strategy(GenerationMode.NEGATIVE), 250))
    for strategy, examples in strategies:
        run = settings(max_examples=examples, deadline=None, database=None,
                       suppress_health_check=list(HealthCheck))(given(case=strategy)(check))
        run()
    sent = sum(statuses.values())
    record(server.home, "schemathesis", {"requests": sent, "server_errors": len(failures),
                                         "statuses": {str(k): v for k, v in sorted(statuses.items())},
                                         "seconds": round(time.monotonic() - start, 1)})
    assert sent >= 400 and not failures, failures[:5]
    assert server.proc.poll() is None and "Traceback" not in server.log(tail=None)


def _hostile(book: np.ndarray) -> list[tuple[str, str, dict, bytes]]:
    """(case, path, headers, body) of requests a hostile or broken client sends."""
    window = book[:WINDOW][None]
    head = orjson.dumps({"inputs": [{"name": "windows", "shape": list(window.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": window.nbytes}}]})
    octet = {"content-type": "application/octet-stream"}
    crossed = book[5].copy()
    crossed[0] = crossed[2] - 0.01
    huge = book[5].copy()
    huge[4] = 1e308
    return [
        ("FP32 declared, FP64 sent", V2, {**octet, "inference-header-content-length": str(len(head))},
         head + window.tobytes()),
        ("negative binary size", V2, {**octet, "inference-header-content-length": str(len(head))},
         head.replace(str(window.nbytes).encode(), b"-1") + window.tobytes()),
        ("non-numeric header length", V2, {**octet, "inference-header-content-length": "1e3"}, head),
        ("header length past the body", V2, {**octet, "inference-header-content-length": "99999999"}, head),
        ("bogus BYTES length", V2, {**octet, "inference-header-content-length": "95"},
         b'{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":8}}]}'
         .ljust(95) + (2**31).to_bytes(4, "little") + b"GOOG"),
        ("no content type, not JSON", V2, {}, b"\x00\xff garbage"),
        ("model name with a newline", "/v1/models/a%0AERROR%20forged:predict", {}, b"{}"),
        ("crossed book", V1, {"content-type": "application/json"},
         orjson.dumps({"symbol": "GOOG", "book": crossed.tolist()})),
        ("price 1e308", V1, {"content-type": "application/json"},
         orjson.dumps({"instances": [[huge.tolist()] * WINDOW]})),
        ("giant declared shape", V2, {"content-type": "application/json"},
         orjson.dumps({"inputs": [{"name": "windows", "shape": [2**40, WINDOW, 4 * LEVELS], "datatype": "FP64",
                                   "data": [1.0]}]})),
        ("deeply nested JSON", V1, {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000),
        ("not UTF-8", V1, {"content-type": "application/json"}, b'{"instances": "\xff\xfe"}'),
        ("unload without credentials", f"/v2/repository/models/{NAME}/unload", {}, b""),
        ("load without credentials", f"/v2/repository/models/{NAME}/load", {}, b""),
        ("version path", f"/v2/models/{NAME}/versions/7/infer", {"content-type": "application/json"}, b"{}"),
    ]


def test_hostile_requests_get_a_4xx_and_leave_no_traceback(served, goog_book):
    server = served
    before = server.log(tail=None)
    answers = {}
    for case, path, headers, body in _hostile(goog_book):
        r = server.session.post(f"{server.url}{path}", data=body, headers=headers, timeout=10)
        answers[case] = r.status_code
    # Broken HTTP: an invalid request line and an oversized header block.
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            try:
                sock.sendall(raw)
                answers[raw[:12].decode()] = int(sock.recv(64).split(b" ")[1] or 0)
            except (ConnectionResetError, BrokenPipeError, IndexError, ValueError):
                answers[raw[:12].decode()] = 400  # closed on us: refused without an answer
    record(server.home, "hostile", answers)
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert server.session.get(f"{server.url}/v2/health/ready").status_code == 200
    assert server.post(V1, {"instances": [goog_book[:WINDOW].tolist()]}).status_code == 200
    new = server.log(tail=None)[len(before):]
    assert "Traceback" not in new
    assert not any(line.startswith("ERROR forged") for line in new.splitlines())


def test_idle_connections_are_closed_and_readiness_answers_meanwhile(served):
    server = served
    sockets = []
    try:
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", server.port))
            if i % 2:
                sock.sendall(b"POST /v1/models/x:predict HTTP/1.1\r\nHost: x\r\n")  # never finished
            sockets.append(sock)
        start = time.monotonic()
        ready = server.session.get(f"{server.url}/v2/health/ready", timeout=5).status_code
        ready_s = time.monotonic() - start
        time.sleep(3.5)  # header timeout 2 s
        still_open = 0
        for sock in sockets:
            sock.setblocking(False)
            try:
                while sock.recv(4096):
                    pass
            except BlockingIOError:
                still_open += 1  # no EOF: the server has not closed it
            except ConnectionResetError:
                pass
    finally:
        for sock in sockets:
            sock.close()
    record(server.home, "idle-connections", {"opened": 500, "readiness_status": ready,
                                             "readiness_seconds": round(ready_s, 3),
                                             "still_open_after_3_5_s": still_open})
    assert ready == 200 and ready_s < 2
    assert still_open == 0


def test_kill_9_under_load_then_restart_answers_every_request(tmp_path, goog_book):
    folder = make_bundle(tmp_path / "bundle", goog_book, seed=0)
    server = ServerProcess(str(folder), tmp_path, overrides=SETTINGS).__enter__()
    port = server.port
    stop = threading.Event()
    log: list[tuple[float, float, int | str]] = []  # (time sent, time answered, status or error name)
    body = orjson.dumps({"instances": [goog_book[:WINDOW].tolist()]})

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status: int | str = session.post(f"http://127.0.0.1:{port}{V1}", data=body, timeout=5,
                                                 headers={"content-type": "application/json"}).status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
                session = requests.Session()
                time.sleep(0.05)
            log.append((sent, time.monotonic(), status))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    restarted = None
    try:
        for t in threads:
            t.start()
        time.sleep(3)
        killed_at = time.monotonic()
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=10)
        server.__exit__(None, None, None)
        restarted = ServerProcess(str(folder), tmp_path, overrides=SETTINGS, port=port).__enter__()
        ready_at = time.monotonic()
        time.sleep(3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if restarted is not None:
            restarted.__exit__(None, None, None)
        server.__exit__(None, None, None)
    before = [s for _, done, s in log if done < killed_at]
    in_flight = [s for sent, done, s in log if sent < killed_at <= done]  # lost with the process: expected
    outage = [s for sent, _, s in log if killed_at <= sent < ready_at]
    after = [s for sent, _, s in log if sent >= ready_at]
    figures = {"requests": len(log), "before_kill": len(before), "in_flight_at_kill": len(in_flight),
               "during_outage": len(outage), "after_restart": len(after),
               "server_errors": sum(isinstance(s, int) and s >= 500 for _, _, s in log),
               "failed_after_restart": sum(s != 200 for s in after),
               "recovery_seconds": round(ready_at - killed_at, 2)}
    record(tmp_path, "kill-9", figures)
    assert before and after and all(s == 200 for s in before)
    assert figures["server_errors"] == 0 and figures["failed_after_restart"] == 0
