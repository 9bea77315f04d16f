"""promtool checks the generated config and the rules, and runs the rules' unit tests; every alert has a
firing and a silent case."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hftpipe.config import Config
from hftpipe.monitoring.prometheus import RULES_FILE, scrape_targets, write_config

HERE = Path(__file__).resolve().parent
RULES_TEST = HERE / "rules_test.yml"
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) missing")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], check=False, capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", str(RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_config_passes_promtool_check(tmp_path: Path) -> None:
    path = write_config(Config(), tmp_path)
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    cfg = yaml.safe_load(path.read_text())
    jobs = {s["job_name"]: s["static_configs"][0]["targets"][0] for s in cfg["scrape_configs"]}
    assert jobs == {"hftpipe-model-server": "127.0.0.1:8080", "hftpipe-signals": "127.0.0.1:9101",
                    "hftpipe-feed": "127.0.0.1:9102", "hftpipe-trader": "127.0.0.1:9103",
                    "hftpipe-monitor": "127.0.0.1:9104", "hftpipe-ui": "127.0.0.1:5000",
                    "prometheus": "127.0.0.1:9090"}
    assert cfg["rule_files"] == ["rules.yml"] and (tmp_path / "rules.yml").read_text() == RULES_FILE.read_text()


def test_targets_follow_the_config() -> None:
    import dataclasses

    cfg = Config()
    cfg = cfg.replace(serve=dataclasses.replace(cfg.serve, host="0.0.0.0", port=8181),
                      paper=dataclasses.replace(cfg.paper, metrics_port=9333),
                      feedback=dataclasses.replace(cfg.feedback, metrics_port=9444))
    got = {t.job: t.address for t in scrape_targets(cfg)}
    assert got["hftpipe-model-server"] == "127.0.0.1:8181" and got["hftpipe-trader"] == "127.0.0.1:9333"
    assert got["hftpipe-monitor"] == "127.0.0.1:9444"  # the outcome service's own port


def test_rule_unit_tests_pass(tmp_path: Path) -> None:
    shutil.copyfile(RULES_FILE, tmp_path / "rules.yml")
    shutil.copyfile(RULES_TEST, tmp_path / "rules_test.yml")
    done = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_unit_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    """The unit tests can fail: an alert whose threshold moved is caught."""
    text = RULES_FILE.read_text().replace("hftpipe:dead_letters:increase5m > 0", "hftpipe:dead_letters:increase5m > 10")
    (tmp_path / "rules.yml").write_text(text)
    shutil.copyfile(RULES_TEST, tmp_path / "rules_test.yml")
    done = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert done.returncode != 0 and "HftpipeDeadLetters" in done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {"HftpipeModelServerDown", "HftpipeInferenceLatencyHigh", "HftpipeConsumerLagHigh", "HftpipeDeadLetters",
            "HftpipeLiveQualityBelowBaseline", "HftpipeDrift", "HftpipeRiskHalt"} <= alerts
    fires, silent = set(), set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert alerts == fires, f"alerts without a firing case: {alerts - fires}"
    assert alerts == silent, f"alerts without a silent case: {alerts - silent}"


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus missing")
def test_cli_starts_and_stops_prometheus_in_the_background(tmp_path: Path, hftpipe_home: Path) -> None:
    import os
    import sys

    import requests

    from tests.serving.conftest import free_port

    port = free_port()
    env = {**os.environ, "HFTPIPE_HOME": str(hftpipe_home)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hftpipe.cli", "monitor", "prometheus", *args], env=env,
                              check=False, capture_output=True, text=True, timeout=90, cwd=tmp_path)

    started = cli("--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        assert f"Prometheus http://127.0.0.1:{port}" in started.stdout
        state = hftpipe_home / "prometheus"
        assert (state / "prometheus.pid").is_file() and (state / "data").is_dir()
        assert requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=5).status_code == 200
        again = cli("--port", str(port))
        assert again.returncode != 0 and "already runs" in again.stderr and "Traceback" not in again.stderr
    finally:
        stopped = cli("--stop")
    assert stopped.returncode == 0 and "stopped Prometheus (pid" in stopped.stdout
    assert not (hftpipe_home / "prometheus" / "prometheus.pid").exists()
    assert "was not running" in cli("--stop").stdout
