"""Fixtures for the online half: a real nats-server with JetStream on a free loopback port, and helpers to
run hftpipe services as subprocesses and read streams back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """``nats-server -js`` on 127.0.0.1 with its store in a temp folder; restartable on the same port/store."""

    def __init__(self, store: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not os.path.exists(binary):
            pytest.fail("nats-server is not installed: run `apt-get install -y nats-server`")
        self.binary = binary
        self.store = store
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = store.parent / f"nats-{self.port}.log"

    def start(self) -> NatsServer:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held open while the process runs
        self.proc = subprocess.Popen([self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd",
                                      str(self.store)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None:
            self._log.close()
        self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def overrides(self) -> list[str]:
        """``-S`` options pointing a hftpipe command at this server (metrics ports off)."""
        sets = [f"bus.port={self.port}", "bus.monitor_port=0", "feed.metrics_port=0", "signals.metrics_port=0"]
        return [a for s in sets for a in ("-S", s)]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh JetStream server per test (its own port and store), always stopped."""
    server = NatsServer(tmp_path / "jetstream").start()
    try:
        yield server
    finally:
        server.stop()


class Service:
    """An ``hftpipe`` command as a subprocess; waits for its ready file; SIGTERM (or kill -9) to stop."""

    def __init__(self, args: list[str], home: Path, ready: str | None, name: str = "service",
                 env: dict[str, str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "hftpipe.cli", "-v", *args]
        self.home = home
        self.ready = home / "run" / f"{ready}.ready" if ready else None
        self.log_path = home / f"{name}-{time.monotonic_ns()}.log"
        self.env = {**os.environ, "HFTPIPE_HOME": str(home), "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> Service:
        if self.ready is not None:
            self.ready.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - held open while the process runs
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parents[1])
        if self.ready is None:
            return self
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready.exists():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd} exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.cmd} not ready after {timeout_s} s:\n{self.log()}")

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout_s)
        self._log.close()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, timeout_s: float = 10.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()
        return time.monotonic() - t0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def read_stream(url: str, subject: str, timeout_s: float = 2.0) -> list:
    """Every message the stream holds for ``subject``, decoded (undecodable ones as raw bytes)."""
    import nats

    from hftpipe.contracts import ContractError, decode

    async def _read() -> list:
        nc = await nats.connect(url)
        js = nc.jetstream()
        out = []
        try:
            sub = await js.subscribe(subject, ordered_consumer=True)
            while True:
                try:
                    msg = await sub.next_msg(timeout=timeout_s)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                try:
                    out.append(decode(msg.data))
                except ContractError:
                    out.append(msg.data)
                if msg.metadata.num_pending == 0:
                    break
            await sub.unsubscribe()
        finally:
            await nc.close()
        return out

    return asyncio.run(_read())


def stream_count(url: str, stream: str) -> int:
    import nats

    async def _count() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(stream)).state.messages
        except Exception:  # noqa: BLE001 - not created yet
            return 0
        finally:
            await nc.close()

    return asyncio.run(_count())
