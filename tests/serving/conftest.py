"""Serving test helpers: tiny bundles on real GOOG book rows, and the real server as a subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import requests
import torch

from hftpipe.config import Config
from hftpipe.data import book_matrix, load_lobster
from hftpipe.features.window import fit_window_stats
from hftpipe.models.bundle import save_bundle
from hftpipe.models.nets import build_model
from tests.conftest import lobster_zip

WINDOW = 20
LEVELS = 10
ROWS = 2000  # real GOOG book states used by the serving tests


@pytest.fixture(scope="session")
def goog_book() -> np.ndarray:
    """The first ROWS raw book states (ROWS, 40) of the shipped GOOG 10-level sample."""
    return book_matrix(load_lobster(lobster_zip("GOOG", LEVELS)).frame)[:ROWS]


def make_bundle(directory: Path, book: np.ndarray, seed: int = 0, hidden: int = 8, model: str = "lstm",
                window: int = WINDOW, nan_weights: bool = False, horizon: int | str = 10) -> Path:
    """A tiny bundle with random weights and window stats fitted on the first rows of ``book``."""
    torch.manual_seed(seed)
    levels = book.shape[1] // 4
    module = build_model(model, levels, window, hidden, 0.0)
    if nan_weights:
        # Loads fine, answers NaN: the smoke test must refuse it.
        with torch.no_grad():
            for p in module.parameters():
                p.fill_(float("nan"))
    stats = fit_window_stats(book, np.arange(window, len(book) // 2), window)
    return save_bundle(directory, module, config=Config().to_dict(), model_name=model, levels=levels,
                       window=window, horizon=horizon, alpha=1e-5, stats=stats, hidden=hidden, dropout=0.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``hftpipe serve`` as a subprocess on 127.0.0.1 and a free port; always stopped on exit."""

    def __init__(self, model_uri: str, home: Path, overrides: tuple[str, ...] = (), timeout_s: float = 90.0,
                 log_path: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()  # a fixed port: a restart in place, as a supervisor would do
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log_path = log_path or home / f"serve-{self.port}.log"
        sets = [a for o in ("serve.torch_threads=1", *overrides) for a in ("-S", o)]
        # -v: the CLI logs warnings only by default; the tests read the server's info lines (binding, reloads).
        self.cmd = [sys.executable, "-m", "hftpipe.cli", "-v", *sets, "serve", "--model-uri", model_uri,
                    "--host", "127.0.0.1", "--port", str(self.port)]
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()

    def __enter__(self) -> Self:
        # The server must see the test's HFTPIPE_HOME (its MLflow registry); no tracking URI override.
        env = {**os.environ, "HFTPIPE_HOME": str(self.home), "OMP_NUM_THREADS": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self._log = open(self.log_path, "ab")  # a restart on the same port appends to the same log
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.home)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.session.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"server not ready after {self.timeout_s} s:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def log(self, tail: int | None = 4000) -> str:
        text = self.log_path.read_text(errors="replace")
        return text[-tail:] if tail else text

    def post(self, path: str, body: Any = None, data: bytes | None = None, **kw: Any) -> requests.Response:
        if data is None:
            import orjson

            data = orjson.dumps(body)
        headers = {"content-type": "application/json", **kw.pop("headers", {})}
        return self.session.post(f"{self.url}{path}", data=data, headers=headers, timeout=10, **kw)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one Prometheus sample (0.0 when absent)."""
        text = self.session.get(f"{self.url}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def register_version(bundle_dir: Path, name: str) -> str:
    """Log a bundle as a pyfunc model in a new run and register it as a new version of ``name``.

    The real sqlite MLflow store under the test's HFTPIPE_HOME, through hftpipe.registry's helpers; the
    promotion gate is not the subject here, so aliases are moved by the caller.
    """
    import mlflow

    from hftpipe.registry.pyfunc import log_bundle_model
    from hftpipe.registry.tracker import client, ensure_experiment, fluent_store

    mc = client()
    run_id = mc.create_run(ensure_experiment(mc, "serving-tests")).info.run_id
    with fluent_store():
        info = log_bundle_model(bundle_dir, run_id)
        version = str(mlflow.register_model(info.model_uri, name).version)
    mc.set_terminated(run_id)
    return version


def set_champion(name: str, version: str) -> None:
    from hftpipe.registry.tracker import client

    client().set_registered_model_alias(name, "champion", version)
