"""Start, watch and stop the local model server and UI as background processes (``make run``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from hftpipe import paths
from hftpipe.errors import PipelineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """A background process of ours: its name, command, readiness URL and log file."""

    name: str
    args: list[str]
    ready_url: str
    env: dict[str, str]

    @property
    def pid_file(self) -> Path:
        return paths.sub("run") / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return paths.logs_dir() / f"{self.name}.log"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop(name: str, timeout: float = 10.0) -> bool:
    """Stop a service started by :func:`start`; True if one was running."""
    pid_file = paths.sub("run") / f"{name}.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if not pid or not _alive(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    log.info("stopped %s (pid %d)", name, pid)
    return True


def start(service: Service, timeout: float = 120.0) -> int:
    """Start a service in its own process group, wait until its ready URL answers 200, return its pid."""
    stop(service.name)
    log_fh = open(service.log_file, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "hftpipe.cli", *service.args],
        stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **service.env}, start_new_session=True,
    )
    service.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = service.log_file.read_text(errors="replace")[-2000:]
            raise PipelineError(f"{service.name} exited with {proc.returncode} while starting; "
                                f"log {service.log_file}:\n{tail}")
        try:
            if requests.get(service.ready_url, timeout=1.0).status_code == 200:
                return proc.pid
        except requests.RequestException:
            pass
        time.sleep(0.3)
    stop(service.name)
    raise PipelineError(f"{service.name} did not become ready at {service.ready_url} within {timeout:.0f} s; "
                        f"see {service.log_file}")
