"""Issue 10 against the real model server (subprocess on 127.0.0.1): repository API off or behind a token,
readiness false without a model, 400 for malformed binary tensors and bad books, one escaped log line per
client error, timeouts and the connection cap, flood-resistant streaming, Triton's client in both modes,
and the fallback to the previous alias when the champion's artifact is corrupt."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest

from hftpipe.models.bundle import load_bundle
from tests.serving.conftest import (
    LEVELS,
    WINDOW,
    ServerProcess,
    make_bundle,
    register_version,
    set_champion,
)

pytestmark = pytest.mark.slow
NAME = "hftpipe-lob"
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"
HARDENED = ("serve.reload_interval_s=0", "serve.header_timeout_s=1", "serve.keep_alive_timeout_s=1",
            "serve.body_timeout_s=2", "serve.max_connections=40", "serve.max_symbols=8",
            "serve.max_new_symbols_per_client=30")


@pytest.fixture(scope="module")
def served(tmp_path_factory, goog_book):
    home = tmp_path_factory.mktemp("hardened_home")
    folder = make_bundle(home / "bundle", goog_book, seed=0)
    with ServerProcess(str(folder), home, overrides=HARDENED) as server:
        yield server, load_bundle(folder)


def _window(book: np.ndarray, end: int = WINDOW) -> list:
    return [book[end - WINDOW:end].tolist()]


# ------------------------------------------------------------------------------------ repository (1)

def test_repository_endpoints_are_off_by_default(served, goog_book):
    server, _ = served
    for action in ("unload", "load"):
        r = server.post(f"/v2/repository/models/{NAME}/{action}", {})
        assert r.status_code == 404, r.text  # before the fix: 200, and every prediction 404 afterwards
    assert server.post(V1, {"instances": _window(goog_book)}).status_code == 200
    assert server.session.get(f"{server.url}/v2/health/ready").status_code == 200
    paths = server.session.get(f"{server.url}/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/v2/repository")]


def test_repository_api_needs_a_token_and_unload_makes_readiness_false(tmp_path, goog_book, monkeypatch):
    folder = make_bundle(tmp_path / "bundle", goog_book)
    token = "t0ken-for-the-repository-api"
    # Switched on without a token: the server refuses to start, in one line.
    monkeypatch.delenv("HFTPIPE_REPOSITORY_TOKEN", raising=False)
    refused = subprocess.run([sys.executable, "-m", "hftpipe.cli", "-S", "serve.repository_api=true", "serve",
                              "--model-uri", str(folder), "--port", "1"], check=False, capture_output=True, text=True,
                             timeout=120, cwd=tmp_path)
    assert refused.returncode == 2 and "HFTPIPE_REPOSITORY_TOKEN" in refused.stderr
    assert "Traceback" not in refused.stderr
    monkeypatch.setenv("HFTPIPE_REPOSITORY_TOKEN", token)
    with ServerProcess(str(folder), tmp_path, overrides=("serve.repository_api=true", "serve.reload_interval_s=0")
                       ) as server:
        unload = f"/v2/repository/models/{NAME}/unload"
        assert server.post(unload, {}).status_code == 401
        assert server.post(unload, {}, headers={"authorization": "Bearer wrong"}).status_code == 401
        assert server.post(V1, {"instances": _window(goog_book)}).status_code == 200
        auth = {"authorization": f"Bearer {token}"}
        assert server.post(unload, {}, headers=auth).status_code == 200
        # No model served: readiness must say so (before the fix it stayed 200 while predictions were 404).
        assert server.session.get(f"{server.url}/v2/health/ready").status_code == 503
        assert server.session.get(f"{server.url}/v2/models/{NAME}/ready").status_code == 503
        assert server.session.get(f"{server.url}/v1/models/{NAME}").status_code == 503
        assert server.post(V1, {"instances": _window(goog_book)}).status_code == 503
        assert server.post(f"/v2/repository/models/{NAME}/load", {}, headers=auth).status_code == 200
        assert server.session.get(f"{server.url}/v2/health/ready").status_code == 200
        assert server.post(V1, {"instances": _window(goog_book)}).status_code == 200
        assert server.post("/v2/repository/models/nope/unload", {}, headers=auth).status_code == 404
        assert "repository API: hftpipe-lob unloaded" in server.log(tail=None)


# ---------------------------------------------------------------------------- malformed binary (4)

def _binary_post(server: ServerProcess, header: dict, payload: bytes, length: str | None = None):
    head = orjson.dumps(header)
    return server.session.post(f"{server.url}{V2}", data=head + payload, timeout=10,
                               headers={"inference-header-content-length": length or str(len(head)),
                                        "content-type": "application/octet-stream"})


def _windows_header(size, datatype="FP32"):
    return {"inputs": [{"name": "windows", "shape": [1, WINDOW, 4 * LEVELS], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


def test_malformed_binary_tensors_get_400_and_no_traceback(served, goog_book):
    server, bundle = served
    fp64 = np.asarray(_window(goog_book)).tobytes()
    cases = [
        (_windows_header(100), fp64, None, "binary_data_size is 100"),
        (_windows_header(-5), fp64, None, "binary_data_size must be a non-negative integer"),
        (_windows_header(len(fp64)), fp64, "abc", "must be a whole number of bytes"),
        (_windows_header(len(fp64)), fp64, None, "FP64 data sent as FP32?"),
        ({"inputs": [{"name": "windows", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
         (4000).to_bytes(4, "little") + b"GOOG", None, "declares 4000 bytes"),
    ]
    before = server.log(tail=None)
    for header, payload, length, message in cases:
        r = _binary_post(server, header, payload, length)
        assert r.status_code == 400 and message in r.text, (message, r.status_code, r.text)
    ok = _binary_post(server, _windows_header(len(fp64), "FP64"), fp64)
    assert ok.status_code == 200, ok.text
    np.testing.assert_allclose(ok.json()["outputs"][2]["data"],
                               bundle.predict_proba(np.asarray(_window(goog_book)))[0], rtol=1e-12)
    new_log = server.log(tail=None)[len(before):]
    assert "Traceback" not in new_log and new_log.count("400 POST") == len(cases)


# ---------------------------------------------------------------------------------- book rules (17)

@pytest.mark.parametrize("column, value, reason", [(0, 579.30, "crossed"), (0, 579.40, "locked"),
                                                   (4, 1e308, "between 1e-08"), (6, 1e-300, "between 1e-08")])
def test_absurd_books_get_400_with_the_reason(served, goog_book, column, value, reason):
    server, _ = served
    window = np.asarray(_window(goog_book))
    window[0, 3, column] = value
    r = server.post(V1, {"instances": window.tolist()})
    assert r.status_code == 400 and reason in r.text
    state = goog_book[5].copy()
    state[column] = value
    r = server.post(V2, {"parameters": {"symbol": "GOOG"},
                         "inputs": [{"name": "book", "shape": [40], "datatype": "FP64", "data": state.tolist()}]})
    assert r.status_code == 400 and reason in r.text


# ------------------------------------------------------------------------------------- logging (9)

def test_each_client_error_is_one_escaped_line(served):
    server, _ = served
    before = server.log(tail=None)
    r = server.session.post(f"{server.url}/v1/models/x%0AERROR%20hftpipe%20forged:predict", data=b"{}",
                            headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 404
    for i in range(30):
        server.session.post(f"{server.url}/v1/models/nope{i}:predict", data=b"{}", timeout=10)
    time.sleep(0.3)
    new = server.log(tail=None)[len(before):]
    lines = new.splitlines()
    assert not any(line.startswith("ERROR hftpipe forged") for line in lines)  # no forged line
    assert sum("x\\nERROR hftpipe forged" in line for line in lines) == 1
    assert "Traceback" not in new
    assert len(lines) <= 21  # at most 20 lines an interval, the rest summed up in one line later
    assert len(new) < 21 * 300  # before the fix: about 1.25 KB of traceback per request


# -------------------------------------------------------------------------- timeouts and cap (5)

def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes, float]:
    """Wait for the server to close ``sock``; return (closed, what it sent, seconds taken)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received, time.monotonic() - start
    except ConnectionResetError:
        pass
    return True, received, time.monotonic() - start


def test_idle_half_sent_and_slow_body_connections_are_closed(served):
    server, _ = served
    before = server.log(tail=None)
    idle = socket.create_connection(("127.0.0.1", server.port))
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST " + V1.encode() + b" HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 5000\r\n\r\n{\"inst")  # body never finished
    try:
        for sock, limit in ((idle, 3.0), (half, 3.0), (slow, 4.0)):
            closed, sent, took = _closed_within(sock, limit)
            assert closed, f"still open after {took:.1f} s"  # before the fix: held forever
            assert sent.startswith(b"HTTP/1.1 408") or sent == b"", sent[:80]
    finally:
        for sock in (idle, half, slow):
            sock.close()
    time.sleep(0.3)
    assert "Traceback" not in server.log(tail=None)[len(before):]  # a timed-out client is not our error


def test_readiness_answers_while_many_idle_connections_are_open(served):
    server, _ = served
    sockets = []
    try:
        for _ in range(200):  # five times serve.max_connections
            sockets.append(socket.create_connection(("127.0.0.1", server.port)))
        start = time.monotonic()
        r = server.session.get(f"{server.url}/v2/health/ready", timeout=5)
        assert r.status_code == 200 and time.monotonic() - start < 2
    finally:
        for sock in sockets:
            sock.close()


# -------------------------------------------------------------------------------- streaming (13)

def test_a_symbol_flood_gets_429_and_keeps_the_real_symbol(served, goog_book):
    server, bundle = served
    for i in range(WINDOW):
        assert server.post(V1, {"symbol": "REAL", "book": goog_book[100 + i].tolist()}).status_code == 200
    before = server.log(tail=None)
    statuses = [server.post(V1, {"symbol": f"F{i}", "book": goog_book[0].tolist()}).status_code for i in range(60)]
    assert statuses.count(200) <= 30 and statuses.count(429) >= 30  # the per-client budget (30 a minute)
    r = server.post(V1, {"symbol": "REAL", "book": goog_book[100 + WINDOW].tolist()}).json()
    assert r["ready"] and r["filled"] == WINDOW  # its window survived the flood
    expected = bundle.predict_proba(goog_book[101:101 + WINDOW])[0]
    np.testing.assert_allclose(r["predictions"][0]["probabilities"], expected, rtol=1e-12)
    new = server.log(tail=None)[len(before):]
    assert new.count("dropped") <= 1  # one summary line, not one per eviction


# ------------------------------------------------------------------------------ Triton client (18)

def test_tritonclient_discovers_the_model_and_infers_in_json_and_binary_mode(served, goog_book):
    import tritonclient.http as triton

    server, bundle = served
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_ready() and client.is_model_ready(NAME)
        meta = client.get_model_metadata(NAME)
        inputs = {i["name"]: i for i in meta["inputs"]}
        assert inputs["windows"] == {"name": "windows", "datatype": "FP64", "shape": [-1, WINDOW, 4 * LEVELS]}
        assert {o["name"] for o in meta["outputs"]} == {"class", "label", "probabilities"}
        window = np.asarray(_window(goog_book, 700))
        expected = bundle.predict_proba(window)
        for binary in (False, True):  # JSON mode: tritonclient sends no content type (400 before the fix)
            tensor = triton.InferInput("windows", list(window.shape), inputs["windows"]["datatype"])
            tensor.set_data_from_numpy(window, binary_data=binary)
            outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
                       triton.InferRequestedOutput("label", binary_data=binary)]
            result = client.infer(NAME, [tensor], outputs=outputs)
            np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-12)
            label = result.as_numpy("label")[0]
            assert (label.decode() if isinstance(label, bytes) else label) == bundle.class_names[expected.argmax()]
    finally:
        client.close()


# ------------------------------------------------------------------------------- fallback (7)

@pytest.fixture
def registry_with_a_corrupt_champion(tmp_path, goog_book, hftpipe_home):
    """fb-lob v1 (alias previous) and v2 (alias champion) whose stored artifact is corrupt."""
    from hftpipe.registry.tracker import client

    name = "fb-lob"
    v1 = register_version(make_bundle(tmp_path / "v1", goog_book, seed=1), name)
    bundle2 = make_bundle(tmp_path / "v2", goog_book, seed=2)
    v2 = register_version(bundle2, name)
    client().set_registered_model_alias(name, "previous", v1)
    set_champion(name, v2)
    good = (bundle2 / "model.pt").read_bytes()
    stored = [p for p in hftpipe_home.rglob("model.pt")
              if "model_cache" not in str(p) and tmp_path / "v2" not in p.parents and p.read_bytes() == good]
    assert stored
    for p in stored:
        p.write_bytes(b"corrupted upload")
    return name, v1, v2, stored, good


def test_a_corrupt_champion_falls_back_to_previous_then_recovers_when_restored(
        registry_with_a_corrupt_champion, hftpipe_home, goog_book):
    name, v1, v2, stored, good = registry_with_a_corrupt_champion
    uri = f"models:/{name}@champion"
    # Fallback forbidden: the server does not start, and says what to do.
    refused = subprocess.run([sys.executable, "-m", "hftpipe.cli", "-S", "serve.allow_fallback=false", "serve",
                              "--model-uri", uri, "--port", "1"], check=False, capture_output=True, text=True, timeout=180,
                             cwd=hftpipe_home, env={**os.environ, "HFTPIPE_HOME": str(hftpipe_home)})
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "artifact in the registry is corrupt" in refused.stderr and "registry rollback" in refused.stderr
    with ServerProcess(uri, hftpipe_home, overrides=("serve.reload_interval_s=0.5", "serve.retry_refused_s=2"),
                       timeout_s=150) as server:
        assert "FALLBACK" in server.log(tail=None)
        detail = server.session.get(f"{server.url}/v2/health/detail").json()
        (model,) = detail["models"]
        assert detail["ready"] and model["served_version"] == v1 and model["source_version"] == v2
        assert model["in_sync"] is False and model["fallback"] is True and v2 in model["refused"]
        assert server.metric("hftpipe_served_model_in_sync", model_name=name) == 0.0
        r = server.post(f"/v1/models/{name}:predict", {"instances": _window(goog_book)})
        assert r.status_code == 200 and r.json()["model_version"] == v1
        for p in stored:  # the artifact is restored: the server picks the champion up by itself
            p.write_bytes(good)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            model = server.session.get(f"{server.url}/v2/health/detail").json()["models"][0]
            if model["in_sync"]:
                break
            time.sleep(0.5)
        assert model["served_version"] == v2 and model["in_sync"] and not model["fallback"], model
        assert "hot reload: now serving" in server.log(tail=None)
        assert server.post(f"/v1/models/{name}:predict",
                           {"instances": _window(goog_book)}).json()["model_version"] == v2


def test_detail_shows_in_sync_for_a_plain_start(served):
    server, _ = served
    detail = server.session.get(f"{server.url}/v2/health/detail").json()
    assert detail["ready"] is True
    assert detail["models"][0]["in_sync"] is True and detail["models"][0]["fallback"] is False

