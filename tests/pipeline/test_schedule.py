"""Cron expressions for KFP recurring runs, and the cron-safe `hftpipe retrain` lock."""

from __future__ import annotations

import fcntl

import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.errors import ConfigError
from hftpipe.pipeline.runner import validate_cron


@pytest.mark.parametrize("expr", ["0 0 2 * * 1-5", "0 */15 9-16 * * MON-FRI", "30 0 2 1,15 * ?",
                                  "0 0 0 * JAN-MAR *"])
def test_good_cron_is_accepted(expr: str) -> None:
    assert validate_cron(expr) == expr


@pytest.mark.parametrize(
    "expr,message",
    [
        ("0 2 * * 1-5", "has 5 fields; KFP cron has 6 with seconds first, e.g. '0 0 2 * * 1-5'"),
        ("0 0 25 * * *", "'25' is not a valid hour (0-23)"),
        ("0 61 2 * * *", "'61' is not a valid minute (0-59)"),
        ("0 0 2 * * FUNDAY", "'FUNDAY' is not a valid day of week"),
        ("0 0 2 * * 1-5 2027", "has 7 fields"),
        ("0 */0 2 * * *", "bad step '/0'"),
    ],
)
def test_bad_cron_is_refused_with_a_clear_message(expr: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_cron(expr)
    assert message in str(info.value)


def test_schedule_cli_refuses_bad_cron_before_contacting_the_host() -> None:
    # Port 9 on loopback has nothing listening: reaching the network would fail differently.
    result = CliRunner().invoke(main, ["pipeline", "schedule", "--cron", "0 2 * * *",
                                       "--host", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "KFP cron has 6" in result.output


def test_retrain_refuses_to_overlap(hftpipe_home) -> None:
    lock_path = hftpipe_home / "retrain.lock"
    with open(lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(main, ["retrain"])
    assert result.exit_code == 75
    assert "another retrain is running" in result.output
    assert "another retrain holds" in (hftpipe_home / "logs" / "retrain.log").read_text()


def test_cluster_steps_share_the_tracking_server(monkeypatch) -> None:
    import json
    import os

    from hftpipe.config import Config, PipelineConfig
    from hftpipe.pipeline.steps import resolve_config

    # setenv first so teardown removes what resolve_config sets (delenv alone would not undo it).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    cfg = Config().replace(pipeline=PipelineConfig(tracking_uri="http://hftpipe-mlflow.hftpipe:5000"))
    resolved = resolve_config(json.dumps(cfg.to_dict()))
    assert resolved == cfg
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://hftpipe-mlflow.hftpipe:5000"


@pytest.mark.parametrize("host", ["http://127.0.0.1:9", "http://kfp.invalid"])
@pytest.mark.parametrize("command", [["pipeline", "schedule", "--cron", "0 0 2 * * 1-5"], ["pipeline", "run"]])
def test_unreachable_kfp_host_is_one_line_not_a_traceback(host: str, command: list[str], capfd) -> None:
    """Issue 10 finding 16: `pipeline schedule` with an unreachable host printed a 126-line traceback."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hftpipe.cli", *command, "--host", host],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"error: cannot reach Kubeflow Pipelines at {host}: ")
    assert "Traceback" not in done.stderr
