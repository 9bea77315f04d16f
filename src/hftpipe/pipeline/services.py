"""Start, watch and stop the local model server and UI as background processes (``make run``)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
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
    host: str = ""  # where it binds: checked free before the start, and owned by it once ready
    port: int = 0  # 0: no port check
    port_setting: str = ""  # the config key that moves it (e.g. serve.port), named in the error
    ready_file: str = ""  # bus services: ready once HFTPIPE_HOME/run/<ready_file>.ready names the started pid

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


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of every TCP socket listening on ``port`` (IPv4 and IPv6, any address)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    out.add(target[8:-1])
    return out


def port_owners(port: int) -> list[int]:
    """Pids (of processes we may inspect: our user's) holding a socket that listens on ``port``."""
    inodes = listening_inodes(port)
    if not inodes:
        return []
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and _socket_inodes(int(p)) & inodes)


def owns_port(pid: int, port: int) -> bool:
    """True when ``pid`` or one of its descendants (server workers) listens on ``port``."""
    from hftpipe.proctree import descendants

    inodes = listening_inodes(port)
    return bool(inodes) and any(_socket_inodes(p) & inodes for p in (pid, *descendants(pid)))


def _describe(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({cmd[:80]})"


def port_taken(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now, else who holds it (as far as /proc tells)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a socket in TIME_WAIT from a previous run does not make the port "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            owners = port_owners(port)
            return ", ".join(_describe(p) for p in owners) if owners else "another process"
    return None


def _port_error(service: Service, holder: str) -> PipelineError:
    hint = f" or choose another with -S {service.port_setting}=PORT" if service.port_setting else ""
    return PipelineError(f"{service.name}: port {service.port} on {service.host} is taken by {holder}; "
                         f"stop it{hint}")


def _ready_file_names(name: str, pid: int) -> bool:
    """True once a bus service (hftpipe.bus.lifecycle.ServiceRun) wrote its ready file with this pid."""
    try:
        return (paths.sub("run") / f"{name}.ready").read_text().split(" ", 1)[0].strip() == str(pid)
    except OSError:
        return False


def start(service: Service, timeout: float = 120.0) -> int:
    """Start a service in its own process group, wait until its ready URL answers 200, return its pid.

    With ``service.port`` set, the port must be free before the start (a clear error names who holds it),
    and the answer must come from the started process: another server answering the readiness URL on the
    same port does not count as ours being ready.
    """
    stop(service.name)
    if service.port:
        holder = port_taken(service.host or "127.0.0.1", service.port)
        if holder:
            raise _port_error(service, holder)
    log_fh = open(service.log_file, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    proc = subprocess.Popen(
        [sys.executable, "-m", "hftpipe.cli", *service.args],
        stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **service.env}, start_new_session=True,
    )
    service.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    foreign = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            service.pid_file.unlink(missing_ok=True)
            owners = [p for p in port_owners(service.port) if p != proc.pid] if service.port else []
            if owners:  # it lost the port to a process that bound it after our check
                raise _port_error(service, ", ".join(_describe(p) for p in owners))
            tail = service.log_file.read_text(errors="replace")[-2000:]
            raise PipelineError(f"{service.name} exited with {proc.returncode} while starting; "
                                f"log {service.log_file}:\n{tail}")
        if service.ready_file:
            if _ready_file_names(service.ready_file, proc.pid):
                return proc.pid
            time.sleep(0.2)
            continue
        try:
            answered = requests.get(service.ready_url, timeout=1.0).status_code == 200
        except requests.RequestException:
            answered = False
        if answered and (not service.port or owns_port(proc.pid, service.port)):
            return proc.pid
        foreign = answered  # an answer, but not from the process we started
        time.sleep(0.3)
    stop(service.name)
    if foreign:
        holder = ", ".join(_describe(p) for p in port_owners(service.port)) or "another process"
        raise PipelineError(f"{service.name}: {service.ready_url} answers, but from {holder}, not from the "
                            f"server started here; see {service.log_file}")
    where = f"{paths.sub('run') / service.ready_file}.ready" if service.ready_file else service.ready_url
    raise PipelineError(f"{service.name} did not become ready at {where} within {timeout:.0f} s; "
                        f"see {service.log_file}")
