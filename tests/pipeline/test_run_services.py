"""`hftpipe run` starts the servers it was configured for, and only calls them ready when they are its own.

Issue 10 finding 14: ``-S serve.port=8090 run`` still bound 8080 (the servers re-read params.yaml), and a
foreign process answering the readiness URL on the port was taken for our server being up.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.errors import PipelineError
from hftpipe.pipeline.services import Service, owns_port, port_taken, start
from tests.registry.conftest import _empty_mlflow_db, _fresh_mlflow_store, features_dir  # noqa: F401 - fixtures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _running(pid: int) -> bool:
    """Alive and not a zombie (the servers are children of this test process until it reaps them)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen]]:
    """Another process on a port, answering 200 to the model server's and the UI's readiness URLs."""
    root = tmp_path / "www"
    (root / "v2" / "health").mkdir(parents=True)
    (root / "v2" / "health" / "ready").write_text("ok")
    (root / "login").write_text("ok")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        assert requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_port_owner_is_found_through_proc(impostor) -> None:
    port, proc = impostor
    assert owns_port(proc.pid, port)
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        assert not owns_port(bystander.pid, port)
    finally:
        bystander.kill()
        bystander.wait()
    holder = port_taken("127.0.0.1", port)
    assert holder is not None and f"pid {proc.pid}" in holder and "http.server" in holder
    assert port_taken("127.0.0.1", free_port()) is None


def test_start_refuses_a_port_another_process_answers_on(impostor) -> None:
    port, proc = impostor
    service = Service("serve", ["serve", "--model-uri", "models:/none@champion", "--port", str(port)],
                      f"http://127.0.0.1:{port}/v2/health/ready", {}, host="127.0.0.1", port=port,
                      port_setting="serve.port")
    with pytest.raises(PipelineError, match=rf"serve: port {port} on 127.0.0.1 is taken by pid {proc.pid} "
                                            r"\(.*http.server.*\); stop it or choose another with -S serve.port=PORT"):
        start(service, timeout=20)
    assert not service.pid_file.exists()  # nothing of ours was left behind


@pytest.fixture
def champion(features_dir: Path, tmp_path: Path, _fresh_mlflow_store) -> str:  # noqa: F811 - fixture
    """A registered champion (an untrained MLP through a lenient gate) in this test's store."""
    from hftpipe.evaluation import evaluate
    from hftpipe.registry import register
    from tests.registry.conftest import make_bundle, registry_config

    cfg = registry_config("register.use_interval=false", "register.min_margin=-1.0")
    bundle = make_bundle(tmp_path / "bundle", features_dir, seed=0, cfg=cfg)
    evaluate(cfg, bundle, features_dir, tmp_path / "report")
    result = register(cfg, bundle, tmp_path / "report" / "report.json", features_dir=features_dir)
    assert result.alias == "champion"
    return result.version


@pytest.mark.slow
def test_run_passes_overrides_to_the_servers_and_refuses_a_taken_port(champion: str, impostor,
                                                                     features_dir: Path) -> None:  # noqa: F811
    serve_port, ui_port, bus_port = free_port(), free_port(), free_port()
    events = features_dir.parent / "events.parquet"  # the champion's own data (1 level), replayed by the feed
    prom_port = free_port()
    overrides = ["-S", f"serve.port={serve_port}", "-S", f"ui.port={ui_port}", "-S", "serve.reload_interval_s=0",
                 "-S", f"bus.port={bus_port}", "-S", "bus.monitor_port=0", "-S", f"feed.metrics_port={free_port()}",
                 "-S", f"signals.metrics_port={free_port()}", "-S", f"ui.replay_source={events}",
                 "-S", "feed.speed=20", "-S", f"monitor.prometheus_port={prom_port}",
                 "-S", f"paper.metrics_port={free_port()}", "-S", f"feedback.metrics_port={free_port()}",
                 "-S", "monitor.scrape_interval_s=1"]
    try:
        result = CliRunner().invoke(main, [*overrides, "run", "--skip-pipeline"])
        assert result.exit_code == 0, result.output
        assert f"model server: http://127.0.0.1:{serve_port}" in result.output
        assert f"event bus:    nats://127.0.0.1:{bus_port}" in result.output
        assert "prometheus:   http://127.0.0.1:" in result.output, result.output
        serve_pid = int(Service("serve", [], "", {}).pid_file.read_text())
        ui_pid = int(Service("ui", [], "", {}).pid_file.read_text())
        pids = {name: int(Service(name, [], "", {}).pid_file.read_text()) for name in ("signals", "feed", "trader", "feedback")}
        # The servers bound the overridden ports (not params.yaml's 8080 / 5000), and they are ours.
        assert owns_port(serve_pid, serve_port) and owns_port(ui_pid, ui_port)
        assert requests.get(f"http://127.0.0.1:{serve_port}/v2/health/ready", timeout=5).status_code == 200
        # The online half runs: the feed replays the day onto the bus and the signal service answers it.
        from tests.online_fixtures import stream_count

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and stream_count(f"nats://127.0.0.1:{bus_port}", "SIG") == 0:
            time.sleep(0.5)
        assert stream_count(f"nats://127.0.0.1:{bus_port}", "SIG") > 0, "no signal on the bus"
        # The paper trader follows the book and the signals: it publishes its position per symbol and batch
        # (whether the untrained model's probabilities ever cross the policy's threshold is not the point).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stream_count(f"nats://127.0.0.1:{bus_port}", "POS") == 0:
            time.sleep(0.5)
        assert stream_count(f"nats://127.0.0.1:{bus_port}", "POS") > 0, "no position update from the paper trader"
        # Prometheus scrapes every service `run` started: each target up, and a key series of each present.
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        deadline, health = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            targets = requests.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if health and all(h == "up" for h in health.values()):
                break
            time.sleep(1)
        assert set(health) >= {"hftpipe-model-server", "hftpipe-signals", "hftpipe-feed", "hftpipe-trader",
                               "hftpipe-monitor", "hftpipe-ui"}, health
        assert all(h == "up" for h in health.values()), health
        for series in ("hftpipe_signals_events_in_total", "hftpipe_feed_events_out_total",
                       "hftpipe_paper_position", "hftpipe_served_model_version", "hftpipe_ui_requests_total"):
            found = requests.get(f"{api}/query", params={"query": series}, timeout=5).json()["data"]["result"]
            assert found, f"no {series} in Prometheus"
    finally:
        stopped = CliRunner().invoke(main, [*overrides, "stop"])
    assert stopped.exit_code == 0, stopped.output
    for name in ("ui", "feed", "feedback", "trader", "signals", "serve", "bus", "prometheus"):
        assert f"{name}: stopped" in stopped.output, stopped.output
    for pid in (serve_pid, ui_pid, *pids.values()):
        assert not _running(pid), f"pid {pid} still runs after `hftpipe stop`"

    # Another process answers the readiness URL on the configured port: refused, nothing left running.
    taken, other = impostor
    result = CliRunner().invoke(main, ["-S", f"serve.port={taken}", "-S", f"ui.port={ui_port}", "run",
                                       "--skip-pipeline"])
    assert result.exit_code == 2, result.output
    assert f"error: serve: port {taken} on 127.0.0.1 is taken by pid {other.pid}" in result.output
    assert "-S serve.port=PORT" in result.output and "model server:" not in result.output
    assert not Service("serve", [], "", {}).pid_file.exists()
