"""UI test fixtures: a real events slice to replay, the app with known users, login helper, real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import requests
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from hftpipe.config import Config, FeaturesConfig
from hftpipe.data import load_lobster, write_events
from hftpipe.data.schema import EventTable
from hftpipe.ui import create_app
from hftpipe.ui.security import Credentials
from tests.conftest import lobster_zip

USER = "alice"
PASSWORD = "correct horse battery staple"
REPLAY_ROWS = 800  # real GOOG events replayed in the tests: enough for a window, horizons and trades
WINDOW = 10
HORIZON = 10


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def replay_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first REPLAY_ROWS events of the shipped GOOG 5-level day as a canonical events Parquet."""
    table = load_lobster(lobster_zip("GOOG", 5))
    frame = table.frame.iloc[:REPLAY_ROWS].reset_index(drop=True)
    meta = table.meta.__class__(**{**table.meta.to_dict(), "rows": len(frame)})
    path = tmp_path_factory.mktemp("events") / "GOOG_2012-06-21.parquet"
    write_events(EventTable(frame=frame, meta=meta), path)
    return path


@pytest.fixture(scope="session")
def credentials() -> Credentials:
    """One known user (hashing is deliberately slow, so once per session)."""
    return Credentials(users={USER: generate_password_hash(PASSWORD)}, secret_key="k" * 40, production=False)


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


def ui_config(replay_events: Path, serving_url: str, **features: Any) -> Config:
    cfg = Config()
    return cfg.replace(
        ui=cfg.ui.__class__(**{**cfg.ui.__dict__, "serving_url": serving_url,
                                "replay_source": str(replay_events), "serving_timeout_s": 0.5,
                                # The slices here are short: replay all of it (the default starts at the
                                # test split; test_default_start covers that).
                                "replay_from": "start"}),
        features=cfg.features.__class__(**{**cfg.features.__dict__, **features}),
    )


@pytest.fixture
def app(replay_events: Path, credentials: Credentials):
    """The UI pointed at a closed port (model server down), CSRF off for brevity (tested on its own)."""
    return create_app(ui_config(replay_events, closed_port_url()), settings={"TESTING": True,
                                                                             "WTF_CSRF_ENABLED": False},
                      credentials=credentials)


@pytest.fixture
def client(app):
    return app.test_client()


class Auth:
    """Logs the test client in and out."""

    def __init__(self, client) -> None:
        self.client = client

    def login(self, username: str = USER, password: str = PASSWORD):
        return self.client.post("/login", data={"username": username, "password": password})

    def logout(self):
        return self.client.post("/logout")


@pytest.fixture
def auth(client) -> Auth:
    return Auth(client)


def tiny_bundle(directory: Path, events: Path, features_dir: Path) -> Path:
    """A small LSTM (random weights) whose horizon and alpha come from real features of ``events``."""
    import json

    import torch

    from hftpipe.data import book_matrix, read_events
    from hftpipe.features import build_features
    from hftpipe.features.window import fit_window_stats
    from hftpipe.models import build_model, save_bundle

    torch.manual_seed(0)
    build_features(FeaturesConfig(windows=(10,), horizons=(HORIZON,), output=str(features_dir)), events,
                   features_dir)
    meta = json.loads((features_dir / "features_meta.json").read_text())
    book = book_matrix(read_events(events).frame)
    levels = book.shape[1] // 4
    stats = fit_window_stats(book, np.arange(WINDOW, len(book) // 2), WINDOW)
    module = build_model("lstm", levels, WINDOW, 8, 0.0)
    return save_bundle(directory, module, config=Config().to_dict(), model_name="lstm", levels=levels,
                       window=WINDOW, horizon=HORIZON, alpha=float(meta["alpha"][str(HORIZON)]), stats=stats,
                       hidden=8, dropout=0.0, feature_meta=meta)


class ServeProcess:
    """``hftpipe serve`` on a free loopback port as a subprocess; always stopped on exit."""

    def __init__(self, bundle: Path, home: Path, timeout_s: float = 90.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log_path = home / f"serve-{self.port}.log"
        self.cmd = [sys.executable, "-m", "hftpipe.cli", "-S", "serve.torch_threads=1", "serve",
                    "--model-uri", str(bundle), "--host", "127.0.0.1", "--port", str(self.port),
                    "--reload-interval", "0"]
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        env = {**os.environ, "HFTPIPE_HOME": str(self.home), "OMP_NUM_THREADS": "1"}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.home)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hftpipe serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"hftpipe serve not ready after {self.timeout_s} s:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory, replay_events: Path) -> Iterator[tuple[ServeProcess, Path]]:
    """A real model server for a tiny bundle, plus the feature folder that says its horizon and alpha."""
    root = tmp_path_factory.mktemp("served")
    features_dir = root / "features"
    bundle = tiny_bundle(root / "bundle", replay_events, features_dir)
    with ServeProcess(bundle, root) as server:
        yield server, features_dir


class UIServer:
    """The UI app in a werkzeug server thread on a free loopback port."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="ui-test-server", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
