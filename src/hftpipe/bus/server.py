"""The local broker: ``nats-server -js`` on loopback, its store and pid file under HFTPIPE_HOME.

``hftpipe bus up`` starts it in the background (its own session, so the shell's Ctrl-C does not reach it)
and returns once it accepts connections; ``bus down`` stops the process named in the pid file, after
checking that it is a nats-server (a stale pid file must never kill an unrelated process).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hftpipe import paths
from hftpipe.config import BusConfig
from hftpipe.errors import BusError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusServer:
    """Where the local broker lives and whether it runs."""

    pid: int | None
    running: bool
    url: str
    store_dir: Path
    pid_file: Path
    log_file: Path


def _state_dir() -> Path:
    return paths.sub("nats")


def store_dir(cfg: BusConfig) -> Path:
    path = Path(cfg.store_dir).expanduser() if cfg.store_dir else _state_dir() / "jetstream"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def nats_binary() -> str:
    found = shutil.which("nats-server") or (os.path.exists("/usr/sbin/nats-server") and "/usr/sbin/nats-server")
    if not found:
        raise BusError("nats-server is not installed: run `apt-get install -y nats-server` (or `make run`, "
                       "which installs it)")
    return str(found)


def server_command(cfg: BusConfig) -> list[str]:
    """The nats-server command line: JetStream on, loopback only, store under HFTPIPE_HOME."""
    cmd = [nats_binary(), "-js", "-a", cfg.host, "-p", str(cfg.port), "-sd", str(store_dir(cfg)),
           "-n", "hftpipe"]
    if cfg.monitor_port:
        cmd += ["-m", str(cfg.monitor_port)]
    return cmd


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def _is_nats(pid: int) -> bool:
    try:
        return b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def server_status(cfg: BusConfig) -> BusServer:
    state = _state_dir()
    pid_file, log_file = state / "nats-server.pid", state / "nats-server.log"
    pid = _read_pid(pid_file)
    alive = pid is not None and _is_nats(pid)
    return BusServer(pid=pid if alive else None, running=alive and _port_open(cfg.host, cfg.port),
                     url=f"nats://{cfg.host}:{cfg.port}", store_dir=store_dir(cfg), pid_file=pid_file,
                     log_file=log_file)


def wait_ready(cfg: BusConfig, timeout_s: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Block until the server accepts connections (and says healthy when monitoring is on).

    Raises:
        BusError: it exited or did not come up in time (the log file says why).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BusError(f"nats-server exited with status {proc.returncode}; see {_state_dir() / 'nats-server.log'}")
        if _port_open(cfg.host, cfg.port):
            if not cfg.monitor_port:
                return
            try:
                with urllib.request.urlopen(f"http://{cfg.host}:{cfg.monitor_port}/healthz?js-enabled-only=true",
                                            timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.1)
    raise BusError(f"nats-server did not accept connections on {cfg.host}:{cfg.port} within {timeout_s:.0f} s; "
                   f"see {_state_dir() / 'nats-server.log'}")


def start_server(cfg: BusConfig, timeout_s: float = 15.0) -> BusServer:
    """Start the broker in the background unless it already runs; return once it accepts connections.

    Raises:
        BusError: nats-server missing, the port taken by something else, or no start within ``timeout_s``.
    """
    status = server_status(cfg)
    if status.running:
        log.info("nats-server already running (pid %s) at %s", status.pid, status.url)
        return status
    if _port_open(cfg.host, cfg.port):
        raise BusError(f"{cfg.host}:{cfg.port} is taken by another process; stop it or set bus.port")
    cmd = server_command(cfg)
    with open(status.log_file, "ab") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    status.pid_file.write_text(f"{proc.pid}\n")
    try:
        wait_ready(cfg, timeout_s, proc)
    except BusError:
        if proc.poll() is None:
            proc.terminate()
        status.pid_file.unlink(missing_ok=True)
        raise
    log.info("nats-server pid %d at nats://%s:%d, store %s", proc.pid, cfg.host, cfg.port, status.store_dir)
    return server_status(cfg)


def stop_server(cfg: BusConfig, timeout_s: float = 10.0) -> bool:
    """Stop the broker of the pid file (SIGTERM, then SIGKILL); False when none was running."""
    status = server_status(cfg)
    if status.pid is None:
        status.pid_file.unlink(missing_ok=True)
        return False
    os.kill(status.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _is_nats(status.pid):
        time.sleep(0.05)
    if _is_nats(status.pid):
        log.warning("nats-server pid %d ignored SIGTERM for %.0f s; killing it", status.pid, timeout_s)
        os.kill(status.pid, signal.SIGKILL)
    status.pid_file.unlink(missing_ok=True)
    return True
