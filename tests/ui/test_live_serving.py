"""The live replay against a REAL model server (``hftpipe serve`` subprocess with a tiny bundle)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hftpipe.ui import create_app
from hftpipe.ui.client import ServingClient, ServingRejected
from tests.ui.conftest import HORIZON, PASSWORD, REPLAY_ROWS, USER, WINDOW, ui_config

pytestmark = pytest.mark.slow


def _messages(response) -> list[dict]:
    out = []
    for chunk in response.response:
        for block in chunk.decode().split("\n\n"):
            data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
            if data:
                out.append(json.loads(data[0]))
    return out


def test_client_against_the_real_server(model_server) -> None:
    server, _ = model_server
    client = ServingClient(server.url, timeout_s=5)
    status = client.status()
    assert status.up and status.model_name == "hftpipe-lob" and status.latency_ms > 0
    with pytest.raises(ServingRejected, match="each book state must have 20 values"):
        client.predict_book("GOOG", [1.0, 2.0])


def test_replay_streams_predictions_and_realised_outcomes(model_server, replay_events: Path, credentials) -> None:
    server, features_dir = model_server
    cfg = ui_config(replay_events, server.url, output=str(features_dir))
    app = create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=credentials)
    client = app.test_client()
    client.post("/login", data={"username": USER, "password": PASSWORD})
    messages = _messages(client.get("/live/stream?file=0&speed=0", buffered=False))

    start = messages[0]
    assert start["type"] == "start" and start["symbol"] == "GOOG" and start["events"] == REPLAY_ROWS
    meta = json.loads((features_dir / "features_meta.json").read_text())
    assert start["model"]["horizon"] == HORIZON
    assert start["model"]["alpha"] == pytest.approx(meta["alpha"][str(HORIZON)])
    assert start["model"]["name"] == "hftpipe-lob" and start["model"]["version"].startswith("local-")

    ticks = [t for m in messages if m["type"] == "ticks" for t in m["ticks"]]
    assert [t["i"] for t in ticks] == list(range(REPLAY_ROWS))
    assert not any(t["ready"] for t in ticks[: WINDOW - 1])  # the server fills its window first
    ready = [t for t in ticks if t["ready"]]
    assert len(ready) == REPLAY_ROWS - WINDOW + 1
    assert all(np.isclose(sum(t["p"]), 1.0, atol=1e-3) and t["label"] in ("down", "stationary", "up")
               for t in ready)
    outcomes = [o for t in ticks for o in t["outcomes"]]
    assert len(outcomes) == len(ready) - HORIZON  # every prediction but the last k gets its outcome
    assert all(o["at"] == o["index"] + HORIZON for o in outcomes)
    done = messages[-1]
    assert done["type"] == "done"
    assert done["stats"]["scored"] == len(outcomes)
    assert done["stats"]["hits"] == sum(o["hit"] for o in outcomes)
    assert np.isfinite(done["stats"]["net_pnl"])
