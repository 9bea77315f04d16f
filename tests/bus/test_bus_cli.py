"""`hftpipe bus up | status | tail | down` against the real nats-server binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hftpipe.contracts import Gap, encode
from tests.online_fixtures import free_port

pytestmark = pytest.mark.slow


def _cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "HFTPIPE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "hftpipe.cli", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=timeout)


def test_up_status_tail_down(hftpipe_home: Path) -> None:
    port, monitor = free_port(), free_port()
    sets = ["-S", f"bus.port={port}", "-S", f"bus.monitor_port={monitor}"]
    up = _cli(hftpipe_home, *sets, "bus", "up")
    try:
        assert up.returncode == 0, up.stderr
        assert f"nats://127.0.0.1:{port}" in up.stdout and "created streams MD, SIG, DLQ" in up.stdout
        pid = int((hftpipe_home / "nats" / "nats-server.pid").read_text())
        assert (hftpipe_home / "nats" / "jetstream").is_dir()
        again = _cli(hftpipe_home, *sets, "bus", "up")  # idempotent: same server, streams kept
        assert again.returncode == 0 and f"pid {pid}" in again.stdout and "created" not in again.stdout
        status = _cli(hftpipe_home, *sets, "bus", "status")
        assert status.returncode == 0 and "stream MD: 0 message(s)" in status.stdout

        import asyncio

        import nats

        async def _publish() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            await nc.jetstream().publish("md.NASDAQ.GOOG", encode(
                Gap(venue="NASDAQ", symbol="GOOG", next_seq=5, reason="test", publish_time=1.0)))
            await nc.close()

        asyncio.run(_publish())
        tail = _cli(hftpipe_home, *sets, "bus", "tail", "md.>", "--history", "--count", "1", "--json",
                    "--timeout", "5")
        assert tail.returncode == 0, tail.stderr
        line = json.loads(tail.stdout.strip())
        assert line == {"type": "gap", "venue": "NASDAQ", "symbol": "GOOG", "next_seq": 5, "reason": "test",
                        "publish_time": 1.0, "subject": "md.NASDAQ.GOOG"}
        quiet = _cli(hftpipe_home, *sets, "bus", "tail", "sig.>", "--timeout", "0.5")
        assert quiet.returncode == 0 and quiet.stdout == ""
    finally:
        down = _cli(hftpipe_home, *sets, "bus", "down")
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (hftpipe_home / "nats" / "nats-server.pid").exists()
    status = _cli(hftpipe_home, *sets, "bus", "status")
    assert status.returncode == 1 and "not running" in status.stdout


def test_port_taken_is_one_clear_line(hftpipe_home: Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = _cli(hftpipe_home, "-S", f"bus.port={port}", "-S", "bus.monitor_port=0", "bus", "up")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: 127.0.0.1:{port} is taken")
