"""``hftpipe ui`` as a user runs it: dev password printed once, production refusal in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.ui.conftest import closed_port_url, free_port


def _cmd(replay_events: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "hftpipe.cli", "-S", f"ui.replay_source={replay_events}",
            "-S", f"ui.serving_url={closed_port_url()}", "ui", "--port", str(port)]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HFTPIPE_UI_", "HFTPIPE_ENV"))}
    return {**env, "HFTPIPE_HOME": str(home), **extra}


def test_dev_mode_prints_a_generated_password_that_works(replay_events: Path, hftpipe_home: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(_cmd(replay_events, port), env=_env(hftpipe_home), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=hftpipe_home)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        match = re.search(r"log in as 'trader' with password (\S+)", lines[0])
        assert match, lines
        assert f"hftpipe UI on http://127.0.0.1:{port}" in lines[1]
        session = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                page = session.get(f"http://127.0.0.1:{port}/login", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the UI did not start listening"
                time.sleep(0.2)
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
        bad = session.post(f"http://127.0.0.1:{port}/login",
                           data={"username": "trader", "password": "guess", "csrf_token": token}, timeout=5)
        assert bad.status_code == 401
        good = session.post(f"http://127.0.0.1:{port}/login",
                            data={"username": "trader", "password": match.group(1), "csrf_token": token}, timeout=5)
        assert good.status_code == 200 and good.url.endswith("/live") and "Start replay" in good.text
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        proc.stdout.close()


def test_production_mode_refuses_without_secrets(replay_events: Path, hftpipe_home: Path) -> None:
    result = subprocess.run(_cmd(replay_events, free_port()), env=_env(hftpipe_home, HFTPIPE_ENV="production"),
                            capture_output=True, text=True, timeout=120, cwd=hftpipe_home, check=False)
    assert result.returncode == 2
    assert "error: HFTPIPE_ENV=production: set HFTPIPE_UI_USERS or HFTPIPE_UI_PASSWORD_HASH" in result.stderr
    assert "Traceback" not in result.stderr and "password" not in result.stdout


def test_a_mistyped_mode_is_an_error_not_development(replay_events: Path, hftpipe_home: Path) -> None:
    result = subprocess.run(_cmd(replay_events, free_port()), check=False, env=_env(hftpipe_home, HFTPIPE_ENV="prd"),
                            capture_output=True, text=True, timeout=120, cwd=hftpipe_home)
    assert result.returncode == 2
    assert "error: HFTPIPE_ENV='prd' is not a known mode: set it to one of development, production" in result.stderr
    assert "Traceback" not in result.stderr and "password" not in result.stdout
