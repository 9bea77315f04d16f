"""The serving client turns every failure into a clear, retryable error (or a refusal for 4xx)."""

from __future__ import annotations

import socket
import threading

import pytest

from hftpipe.ui.client import ServingClient, ServingUnavailable, parse_stream_response
from tests.ui.conftest import closed_port_url


def test_closed_port_is_down_with_a_clear_reason() -> None:
    url = closed_port_url()
    client = ServingClient(url, timeout_s=0.5)
    status = client.status()
    assert not status.up and status.detail == f"model server at {url} is not reachable (ConnectionError)"
    with pytest.raises(ServingUnavailable, match="is not reachable"):
        client.predict_book("GOOG", [1.0] * 4)


def test_a_server_that_never_answers_is_slow_not_hung() -> None:
    # A real socket that accepts connections and never replies: the timeout must fire.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        client = ServingClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.3, model_name="m")
        status = client.status()
        assert not status.up and "did not answer within 0.3 s" in status.detail
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_stream_answers_are_checked() -> None:
    waiting = parse_stream_response({"ready": False, "filled": 3, "window": 10, "predictions": [],
                                     "model_name": "m", "model_version": 4})
    assert not waiting.ready and waiting.cls is None and waiting.model_version == "4"
    ready = parse_stream_response({"ready": True, "predictions": [
        {"class": 2, "label": "up", "probabilities": [0.1, 0.2, 0.7]}], "horizon": 10, "alpha": 1e-5})
    assert ready.cls == 2 and ready.probabilities == (0.1, 0.2, 0.7)
    assert ready.extra == {"horizon": 10, "alpha": 1e-5}
    with pytest.raises(ServingUnavailable, match="no 'ready' field"):
        parse_stream_response({"predictions": []})
    with pytest.raises(ServingUnavailable, match="malformed prediction"):
        parse_stream_response({"ready": True, "predictions": [{"label": "up"}]})
