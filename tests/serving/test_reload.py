"""Hot reload against a real sqlite MLflow registry: moving the champion alias switches the served version
while requests keep flowing (none fails), and a broken new version is refused while the old one serves."""

from __future__ import annotations

import threading
import time
from typing import Self

import numpy as np
import orjson
import pytest
import requests

from hftpipe.models.bundle import load_bundle
from tests.serving.conftest import WINDOW, ServerProcess, make_bundle, register_version, set_champion

pytestmark = pytest.mark.slow
NAME = "tiny-lob"


class Hammer:
    """Clients posting window and streaming requests in a loop; every answer is recorded."""

    def __init__(self, url: str, book: np.ndarray, clients: int = 2) -> None:
        self.v1 = f"{url}/v1/models/{NAME}:predict"
        self.book = book
        self.stop = threading.Event()
        self.answers: list[tuple[int, str | None, str]] = []  # (status, model_version, mode)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def _run(self, client: int) -> None:
        session = requests.Session()
        i = 0
        while not self.stop.is_set() and i < 20_000:  # bounded even if stop is never set
            end = WINDOW + (i * 7 + client * 13) % (len(self.book) - WINDOW)
            if i % 2:
                body, mode = {"instances": [self.book[end - WINDOW + 1:end + 1].tolist()]}, "window"
            else:
                body, mode = {"symbol": f"S{client}", "book": self.book[end].tolist()}, "stream"
            try:
                r = session.post(self.v1, data=orjson.dumps(body), timeout=10,
                                 headers={"content-type": "application/json"})
                version = r.json().get("model_version") if r.status_code == 200 else None
                self.answers.append((r.status_code, version, mode))
                if r.status_code != 200:
                    self.errors.append(f"{r.status_code}: {r.text[:200]}")
            except requests.RequestException as exc:
                self.errors.append(repr(exc))
            i += 1

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def wait_for(self, version: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(v == version for _, v, _ in self.answers[-20:]):
                return True
            time.sleep(0.1)
        return False


def test_moving_the_champion_switches_version_without_a_failed_request_and_refuses_a_broken_one(
        hftpipe_home, goog_book):
    v1 = register_version(make_bundle(hftpipe_home / "b1", goog_book, seed=1), NAME)
    set_champion(NAME, v1)
    with ServerProcess(f"models:/{NAME}@champion", hftpipe_home,
                       overrides=("serve.reload_interval_s=0.3",)) as server:
        second = make_bundle(hftpipe_home / "b2", goog_book, seed=2)
        v2 = register_version(second, NAME)
        broken = make_bundle(hftpipe_home / "b3", goog_book, seed=3, nan_weights=True)
        v3 = register_version(broken, NAME)
        with Hammer(server.url, goog_book) as hammer:
            assert hammer.wait_for(v1, 20), hammer.errors[:3]
            set_champion(NAME, v2)
            assert hammer.wait_for(v2, 30), server.log()
            set_champion(NAME, v3)  # answers NaN: the smoke test must refuse it
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.metric("hftpipe_model_reloads_total",
                                                                 outcome="failure") < 1:
                time.sleep(0.2)
            after_refusal = len(hammer.answers)
            time.sleep(1.0)  # several reload intervals with the alias on the broken version
        assert hammer.errors == []
        versions = [v for _, v, _ in hammer.answers]
        assert {v1, v2} <= set(versions) and v3 not in versions
        first_v2 = versions.index(v2)
        assert all(v == v2 for v in versions[first_v2 + 4:])  # after the swap (and in-flight ones), only v2
        assert all(v == v2 for v in versions[after_refusal:])
        assert {m for _, _, m in hammer.answers} == {"window", "stream"}
        assert server.metric("hftpipe_model_reloads_total", outcome="success") == 1
        assert server.metric("hftpipe_model_reloads_total", outcome="failure") == 1
        assert server.metric("hftpipe_served_model_version", model_name=NAME) == float(v2)
        assert "refused version " + v3 in server.log(tail=None)
        # The served answers are version 2's, bit for bit.
        window = goog_book[500:500 + WINDOW]
        body = server.post(f"/v1/models/{NAME}:predict", {"instances": [window.tolist()]}).json()
        np.testing.assert_allclose(body["predictions"][0]["probabilities"],
                                   load_bundle(second).predict_proba(window)[0], rtol=1e-12)
