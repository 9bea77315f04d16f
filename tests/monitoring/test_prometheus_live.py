"""Acceptance: Debian's prometheus (the real binary) scrapes a real model server and a real UI on loopback,
evaluates the repository's rules, and the UI's monitoring page draws a panel from its HTTP API."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import requests

from hftpipe.config import Config
from hftpipe.data import book_matrix, load_lobster
from hftpipe.monitoring import prometheus as prom
from tests.conftest import lobster_zip
from tests.serving.conftest import ServerProcess, free_port, make_bundle

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus (Debian) missing")]
NAME = "hftpipe-lob"


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen in {timeout_s} s (last: {last!r})")


class UIProcess:
    """``hftpipe ui`` (gunicorn) on a free loopback port, with one log-in; always stopped."""

    def __init__(self, home: Path, serving_url: str, prometheus_port: int) -> None:
        self.port = free_port()
        self.prometheus_port = prometheus_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.home, self.serving_url = home, serving_url
        self.proc: subprocess.Popen[str] | None = None
        self.password = ""

    def __enter__(self) -> Self:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HFTPIPE_UI_", "HFTPIPE_ENV"))}
        env["HFTPIPE_HOME"] = str(self.home)
        cmd = [sys.executable, "-m", "hftpipe.cli", "-S", f"ui.serving_url={self.serving_url}",
               "-S", f"monitor.prometheus_port={self.prometheus_port}", "ui", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     cwd=self.home)
        first = self.proc.stdout.readline() if self.proc.stdout else ""
        match = re.search(r"password (\S+)", first)
        assert match, first
        self.password = match.group(1)
        wait_for(lambda: requests.get(f"{self.url}/healthz", timeout=2).ok, 60, "the UI")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            if self.proc.stdout:
                self.proc.stdout.close()

    def session(self) -> requests.Session:
        s = requests.Session()
        page = s.get(f"{self.url}/login", timeout=5)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        s.post(f"{self.url}/login", data={"username": "trader", "password": self.password, "csrf_token": token},
               timeout=10).raise_for_status()
        return s


def query(url: str, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_the_model_server_and_the_ui(tmp_path: Path, hftpipe_home: Path) -> None:
    book = book_matrix(load_lobster(lobster_zip("GOOG", 10)).frame)[:600]
    bundle = make_bundle(tmp_path / "bundle", book)
    prom_port = free_port()
    with ServerProcess(str(bundle), hftpipe_home) as server:
        window = np.nan_to_num(book[:20]).tolist()
        for _ in range(3):
            assert server.post(f"/v1/models/{NAME}:predict", {"instances": [window]}).status_code == 200
        with UIProcess(hftpipe_home, server.url, prom_port) as ui:
            cfg = Config()
            cfg = cfg.replace(serve=dataclasses.replace(cfg.serve, port=server.port),
                              ui=dataclasses.replace(cfg.ui, port=ui.port),
                              monitor=dataclasses.replace(cfg.monitor, scrape_interval_s=1.0,
                                                          signals_metrics_port=free_port(),
                                                          feed_metrics_port=free_port(),
                                                          trader_metrics_port=free_port(),
                                                          metrics_port=free_port()))
            directory = tmp_path / "prometheus"
            pid, url = prom.start(cfg, prom_port, directory)
            try:
                assert url == f"http://127.0.0.1:{prom_port}"
                with pytest.raises(Exception, match="already runs"):
                    prom.start(cfg, prom_port, directory)

                def up() -> dict[str, str]:
                    targets = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                    health = {t["labels"]["job"]: t["health"] for t in targets}
                    want = ("hftpipe-model-server", "hftpipe-ui", "prometheus")
                    return health if all(health.get(j) == "up" for j in want) else {}

                health = wait_for(up, 60, "model server, UI and Prometheus up")
                # Every configured job is scraped; the services not running here are down, not missing.
                assert set(health) == {t.job for t in prom.scrape_targets(cfg)}
                assert health["hftpipe-signals"] == "down"
                wait_for(lambda: query(url, "hftpipe_predictions_total"), 30, "hftpipe_predictions_total")
                for expr in ("request_predict_seconds_bucket", f'hftpipe_served_model_info{{model_name="{NAME}"}} == 1',
                             'hftpipe_ui_requests_total{endpoint="health.healthz"}', "up"):
                    assert wait_for(lambda e=expr: query(url, e), 20, expr)
                assert sum(float(r["value"][1]) for r in query(url, "hftpipe_predictions_total")) == 3
                # The rules loaded and evaluate without errors; the recording rule produces a series.
                groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
                assert {g["name"] for g in groups} == {"hftpipe.recording", "hftpipe.alerts"}
                assert all(r["health"] in ("ok", "unknown") for g in groups for r in g["rules"]), groups
                wait_for(lambda: query(url, "hftpipe:predictions:rate5m"), 30, "recording rule output")
                # The model server is up: its alert stays silent; the down signal service is pending.
                wait_for(lambda: query(url, 'ALERTS{alertname="HftpipeServiceDown", job="hftpipe-signals"}'), 30,
                         "HftpipeServiceDown pending")
                assert not query(url, 'ALERTS{alertname="HftpipeModelServerDown"}')
                # The UI's monitoring page draws the serving panel from the real query_range API.
                session = ui.session()
                page = session.get(f"{ui.url}/monitoring", timeout=10)
                assert page.status_code == 200 and 'data-panel="serving-rate"' in page.text
                data = session.get(f"{ui.url}/api/monitoring/panel/serving-rate?minutes=5", timeout=20).json()
                assert data["series"] and {s["name"] for s in data["series"]} <= {"down", "stationary", "up"}
                assert all(len(s["t"]) == len(s["v"]) > 0 for s in data["series"])
                assert session.get(f"{ui.url}/api/monitoring/panel/nope", timeout=5).status_code == 404
                assert session.get(f"{ui.url}/api/monitoring/panel/serving-rate?minutes=x", timeout=5).status_code == 400
            finally:
                assert prom.stop(directory) == pid
            assert prom.files(directory).running_pid() is None
            # Prometheus gone: the page says so with a 502, never a 500.
            gone = ui.session().get(f"{ui.url}/api/monitoring/panel/serving-rate", timeout=20)
            assert gone.status_code == 502 and "not answering" in gone.json()["error"]
