"""The real model server as a subprocess on 127.0.0.1: V1/V2 equal the in-process model, streaming equals
window mode, bad input gets a precise 4xx and the server keeps answering, metrics, loopback bind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from hftpipe.models.bundle import load_bundle
from hftpipe.serving.runtime import synthetic_window
from tests.serving.conftest import LEVELS, WINDOW, ServerProcess, make_bundle

pytestmark = pytest.mark.slow
NAME = "hftpipe-lob"  # register.model_name: the endpoint name of a local bundle
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def served(tmp_path_factory, goog_book):
    home = tmp_path_factory.mktemp("serve_home")
    folder = make_bundle(home / "bundle", goog_book, seed=0)
    with ServerProcess(str(folder), home, overrides=("serve.symbols=[GOOG, MSFT]", "serve.max_body_bytes=200000",
                                                     "serve.reload_interval_s=0")) as server:
        yield server, load_bundle(folder)


def _v2_windows(windows: np.ndarray) -> dict:
    return {"inputs": [{"name": "windows", "shape": list(windows.shape), "datatype": "FP64",
                        "data": windows.ravel().tolist()}]}


def _v2_probabilities(body: dict) -> np.ndarray:
    out = {o["name"]: o for o in body["outputs"]}
    return np.asarray(out["probabilities"]["data"]).reshape(out["probabilities"]["shape"])


def test_v1_and_v2_window_mode_equal_the_in_process_model(served, goog_book):
    server, bundle = served
    windows = np.stack([goog_book[e - WINDOW + 1:e + 1] for e in (WINDOW - 1, 700, 1500)])
    expected = bundle.predict_proba(windows)
    r1 = server.post(V1, {"instances": windows.tolist()})
    assert r1.status_code == 200, r1.text
    body = r1.json()
    np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], expected, rtol=1e-12)
    assert [p["class"] for p in body["predictions"]] == expected.argmax(axis=1).tolist()
    assert [p["label"] for p in body["predictions"]] == [bundle.class_names[c] for c in expected.argmax(axis=1)]
    assert body["model_name"] == NAME and body["model_version"].startswith("local-")
    r2 = server.post(V2, _v2_windows(windows))
    assert r2.status_code == 200, r2.text
    body2 = r2.json()
    np.testing.assert_allclose(_v2_probabilities(body2), expected, rtol=1e-12)
    outputs = {o["name"]: o["data"] for o in body2["outputs"]}
    assert outputs["class"] == expected.argmax(axis=1).tolist()
    assert outputs["label"] == [bundle.class_names[c] for c in expected.argmax(axis=1)]
    assert body2["model_name"] == NAME and body2["model_version"] == body["model_version"]
    only = server.post(V2, {**_v2_windows(windows), "outputs": [{"name": "probabilities"}]}).json()
    assert [o["name"] for o in only["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(_v2_probabilities(only), expected, rtol=1e-12)


def test_streaming_mode_equals_window_mode_on_the_same_rows(served, goog_book):
    server, bundle = served
    start, count = 1000, WINDOW + 15
    for i in range(start, start + count):
        state = goog_book[i].tolist()
        body = server.post(V1, {"symbol": "GOOG", "book": state}).json()
        # V2 streams a second symbol with the same rows: its own rolling window, same answers.
        v2 = server.post(V2, {"parameters": {"symbol": "MSFT"},
                              "inputs": [{"name": "book", "shape": [4 * LEVELS], "datatype": "FP64",
                                          "data": state}]}).json()
        filled = i - start + 1
        if filled < WINDOW:
            assert body["ready"] is False and body["filled"] == filled and body["predictions"] == []
            assert v2["parameters"]["ready"] is False and _v2_probabilities(v2).shape == (0, 3)
            continue
        window = goog_book[i - WINDOW + 1:i + 1]
        expected = bundle.predict_proba(window)[0]
        assert body["ready"] is True and body["filled"] == WINDOW and body["window"] == WINDOW
        assert (body["horizon"], body["horizon_unit"], body["alpha"]) == (10, "events", 1e-5)  # what classes mean
        np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected, rtol=1e-12)
        np.testing.assert_allclose(_v2_probabilities(v2)[0], expected, rtol=1e-12)
        window_mode = server.post(V1, {"instances": [window.tolist()]}).json()
        assert window_mode["predictions"] == body["predictions"]
    reset = server.post(V1, {"symbol": "GOOG", "reset": True}).json()
    assert reset["ready"] is False and reset["filled"] == 0



BAD = [
    ("not json", V1, b"{instances:", 400, "Unrecognized request format"),
    ("NaN literal", V1, b'{"instances": [[[NaN]]]}', 400, "Unrecognized request format"),
    ("not an object", V1, b"[1, 2, 3]", 400, "must be a JSON object, got list"),
    ("missing fields", V1, b'{"instance": []}', 400, "missing fields"),
    ("wrong shape", V1, orjson.dumps({"instances": [[[1.0] * 40] * 5]}), 400, "must have shape (B, 20, 40)"),
    ("wrong dtype", V1, orjson.dumps({"instances": [[["x"] * 40] * 20]}), 400, "got strings"),
    ("overflow to inf", V1, b'{"symbol": "GOOG", "book": [' + b",".join([b"1e999"] * 40) + b"]}", 400,
     "infinity"),
    ("unknown symbol", V1, orjson.dumps({"symbol": "AAPL", "book": [100.0, 1.0] * 20}), 400,
     "unknown symbol 'AAPL'"),
    ("book too short", V1, orjson.dumps({"symbol": "GOOG", "book": [100.0] * 8}), 400, "must have 40 values"),
    ("null size", V1, orjson.dumps({"symbol": "GOOG", "book": [100.0, None] * 20}), 400,
     "only prices may be null"),
    ("oversized body", V1, orjson.dumps({"instances": [[[100.0] * 40] * 20] * 60}), 413,
     "the limit is 200000 bytes"),
    ("v2 wrong datatype", V2, orjson.dumps({"inputs": [{"name": "windows", "shape": [1, 20, 40],
                                                        "datatype": "INT64", "data": [1] * 800}]}), 400,
     "datatype 'INT64'"),
    ("v2 size mismatch", V2, orjson.dumps({"inputs": [{"name": "windows", "shape": [1, 20, 40],
                                                       "datatype": "FP64", "data": [1.0] * 10}]}), 400,
     "needs 800 values, got 10"),
    ("v2 NaN literal", V2, (b'{"inputs": [{"name": "book", "shape": [2], "datatype": "FP64", '
                            b'"data": [NaN, 1.0]}], "parameters": {"symbol": "GOOG"}}'), 400, "non-finite"),
    ("v2 missing symbol", V2, orjson.dumps({"inputs": [{"name": "book", "shape": [40], "datatype": "FP64",
                                                        "data": [100.0] * 40}]}), 400, "parameter 'symbol'"),
    ("v2 unknown input", V2, orjson.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP64",
                                                       "data": [1.0]}]}), 400, "unknown input 'x'"),
    ("v2 missing inputs", V2, b'{"id": "1"}', 422, "inputs"),
    ("v2 unknown output", V2, orjson.dumps({"inputs": [{"name": "windows", "shape": [1, 20, 40], "datatype": "FP64",
                                                        "data": synthetic_window(WINDOW, LEVELS).ravel().tolist()}],
                                            "outputs": [{"name": "nope"}]}),
     400, "nope"),
    ("unknown model", "/v1/models/nope:predict", b'{"instances": []}', 404, "nope"),
]


@pytest.mark.parametrize("case, path, data, status, message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_precise_4xx_and_the_server_keeps_answering(served, goog_book, case, path, data,
                                                                     status, message):
    server, bundle = served
    response = server.post(path, data=data)
    assert response.status_code == status, response.text
    assert message in response.text
    good = server.post(V1, {"instances": [goog_book[:WINDOW].tolist()]})
    assert good.status_code == 200
    np.testing.assert_allclose(good.json()["predictions"][0]["probabilities"],
                               bundle.predict_proba(goog_book[:WINDOW])[0], rtol=1e-12)
    assert server.proc.poll() is None


def test_metrics_expose_latency_predictions_version_and_bad_requests(served, goog_book):
    server, _ = served
    before = sum(server.metric("hftpipe_predictions_total", label=label) for label in ("down", "stationary", "up"))
    assert server.post(V1, {"instances": [goog_book[:WINDOW].tolist()] * 3}).status_code == 200
    after = sum(server.metric("hftpipe_predictions_total", label=label) for label in ("down", "stationary", "up"))
    assert after - before == 3
    assert server.metric("request_predict_seconds_count", model_name=NAME) >= 1
    version = server.post(V1, {"instances": [goog_book[:WINDOW].tolist()]}).json()["model_version"]
    assert server.metric("hftpipe_served_model_info", model_version=version) == 1.0
    assert server.metric("hftpipe_served_model_version", model_name=NAME) == 0.0  # local bundle
    assert server.post(V1, data=b"[]").status_code == 400
    assert server.metric("hftpipe_bad_requests_total", protocol="v1") >= 1


def test_binds_loopback_only_with_grpc_off(served):
    server, _ = served
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == server.port:
                listening.add(address)
    assert listening == {"0100007F"}  # 127.0.0.1 only, never 0.0.0.0 (00000000)
    assert "gRPC off" in server.log(tail=None)
    assert server.session.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def test_chunked_upload_over_the_limit_is_refused_and_under_it_answered(served, goog_book):
    server, bundle = served
    big = orjson.dumps({"instances": [[[100.0] * 40] * 20] * 60})
    small = orjson.dumps({"instances": [goog_book[:WINDOW].tolist()]})

    def chunks(data: bytes):  # a generator body makes requests use Transfer-Encoding: chunked
        for i in range(0, len(data), 16384):
            yield data[i:i + 16384]

    headers = {"content-type": "application/json"}
    refused = server.session.post(f"{server.url}{V1}", data=chunks(big), headers=headers, timeout=10)
    assert refused.status_code == 413 and "serve.max_body_bytes" in refused.text
    answered = server.session.post(f"{server.url}{V1}", data=chunks(small), headers=headers, timeout=10)
    assert answered.status_code == 200
    np.testing.assert_allclose(answered.json()["predictions"][0]["probabilities"],
                               bundle.predict_proba(goog_book[:WINDOW])[0], rtol=1e-12)
