"""JSON-lines logs with ECS field names, the correlation id, and the CLI switch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from hftpipe.monitoring.logs import EcsJsonFormatter, correlation, wants_json


def _record(msg: str = "hello %s", args: tuple = ("world",), exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad input")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("hftpipe.x", logging.WARNING, __file__, 7, msg, args, exc_info, func="f")
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_ecs_fields() -> None:
    doc = json.loads(EcsJsonFormatter("hftpipe-serve").format(_record()))
    assert doc["message"] == "hello world" and doc["log.level"] == "warning"
    assert doc["log.logger"] == "hftpipe.x" and doc["service.name"] == "hftpipe-serve"
    assert doc["@timestamp"].endswith("Z") and doc["ecs.version"] and doc["process.pid"] == os.getpid()
    assert "trace.id" not in doc and "hftpipe" not in doc


def test_correlation_id_from_extra_or_context_and_errors() -> None:
    fmt = EcsJsonFormatter()
    doc = json.loads(fmt.format(_record(correlation_id="GOOG:42", symbol="GOOG")))
    assert doc["trace.id"] == "GOOG:42" and doc["hftpipe"] == {"symbol": "GOOG"}
    with correlation("GOOG:43"):
        assert json.loads(fmt.format(_record()))["trace.id"] == "GOOG:43"
    assert "trace.id" not in json.loads(fmt.format(_record()))
    doc = json.loads(fmt.format(_record(exc=True)))
    assert doc["error.type"] == "ValueError" and doc["error.message"] == "bad input"
    assert "Traceback" in doc["error.stack_trace"]


def test_env_switch(monkeypatch) -> None:
    monkeypatch.setenv("HFTPIPE_LOG_FORMAT", "JSON")
    assert wants_json()
    monkeypatch.setenv("HFTPIPE_LOG_FORMAT", "text")
    assert not wants_json() and wants_json(True)


def test_cli_logs_json_lines(tmp_path) -> None:
    """A real command's error log line is one JSON object on stderr."""
    env = {**os.environ, "HFTPIPE_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "hftpipe.cli", "-v", "monitor", "prometheus", "--write-only",
                           "--dir", str(tmp_path)], check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines and all("@timestamp" in d and "log.level" in d for d in lines)
    assert any(d["message"].startswith("Prometheus config written") and d["service.name"] == "hftpipe-monitor"
               for d in lines)
    assert not [line for line in done.stderr.splitlines() if line and not line.startswith("{")]
