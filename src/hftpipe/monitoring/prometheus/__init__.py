"""Prometheus for hftpipe: the scrape configuration of every service, the rules, and Debian's binary on loopback.

``hftpipe monitor prometheus`` writes ``HFTPIPE_HOME/prometheus/prometheus.yml`` (targets from the resolved
config) next to a copy of :data:`RULES_FILE`, then starts ``prometheus`` bound to 127.0.0.1 with its TSDB
under ``HFTPIPE_HOME/prometheus/data``, a pid file and a log; ``--stop`` ends it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import MonitoringError

log = logging.getLogger(__name__)

RULES_FILE = Path(__file__).with_name("rules.yml")
STATE_DIR = "prometheus"  # under HFTPIPE_HOME


@dataclass(frozen=True)
class Target:
    """One scrape job: a service's /metrics endpoint."""

    job: str
    address: str  # host:port
    path: str = "/metrics"


def _local(host: str) -> str:
    # A service bound to every interface is scraped on loopback (Prometheus itself stays on 127.0.0.1).
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def scrape_targets(cfg: Config) -> list[Target]:
    """Every hftpipe service's metrics endpoint, from the resolved config.

    Services whose section has no metrics port yet (paper trader, monitor; signals and feed on a config
    without their sections) take theirs from the ``monitor`` section.
    """
    m = cfg.monitor
    signals = getattr(getattr(cfg, "signals", None), "metrics_port", None) or m.signals_metrics_port
    feed = getattr(getattr(cfg, "feed", None), "metrics_port", None) or m.feed_metrics_port
    trader = getattr(getattr(cfg, "paper", None), "metrics_port", None) or m.trader_metrics_port
    monitor = getattr(getattr(cfg, "feedback", None), "metrics_port", None) or m.metrics_port  # the outcome service
    return [
        Target("hftpipe-model-server", f"{_local(cfg.serve.host)}:{cfg.serve.port}"),
        Target("hftpipe-signals", f"127.0.0.1:{signals}"),
        Target("hftpipe-feed", f"127.0.0.1:{feed}"),
        Target("hftpipe-trader", f"127.0.0.1:{trader}"),
        Target("hftpipe-monitor", f"127.0.0.1:{monitor}"),
        Target("hftpipe-ui", f"{_local(cfg.ui.host)}:{cfg.ui.port}"),
        Target("prometheus", f"127.0.0.1:{m.prometheus_port}"),
    ]


def prometheus_config(cfg: Config, rules_path: str | Path = "rules.yml") -> dict[str, Any]:
    """The Prometheus configuration (as data) scraping :func:`scrape_targets` and loading the rules."""
    interval = f"{cfg.monitor.scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "external_labels": {"system": "hftpipe"}},
        "rule_files": [str(rules_path)],
        "scrape_configs": [
            {"job_name": t.job, "metrics_path": t.path, "static_configs": [{"targets": [t.address]}]}
            for t in scrape_targets(cfg)
        ],
    }


def write_config(cfg: Config, directory: str | Path | None = None) -> Path:
    """Write ``prometheus.yml`` and a copy of the rules into ``directory`` (default HFTPIPE_HOME/prometheus)."""
    directory = Path(directory) if directory else paths.sub(STATE_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(RULES_FILE, directory / "rules.yml")
    path = directory / "prometheus.yml"
    text = "# Written by `hftpipe monitor prometheus` from the resolved config; do not edit.\n"
    path.write_text(text + yaml.safe_dump(prometheus_config(cfg, "rules.yml"), sort_keys=False))
    log.info("Prometheus config written to %s", path)
    return path


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise MonitoringError(f"`{name}` is not installed; install Debian's package: apt-get install -y prometheus")
    return found


def check_config(path: str | Path) -> None:
    """``promtool check config`` (which also checks the rule files it names).

    Raises:
        MonitoringError: promtool refuses the file (its output is in the message).
    """
    done = subprocess.run([_binary("promtool"), "check", "config", str(path)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise MonitoringError(f"promtool refused {path}: {(done.stdout + done.stderr).strip()}")


@dataclass(frozen=True)
class PrometheusFiles:
    """Where a local Prometheus keeps its state."""

    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "prometheus.yml"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def pid(self) -> Path:
        return self.directory / "prometheus.pid"

    @property
    def log(self) -> Path:
        return self.directory / "prometheus.log"

    def running_pid(self) -> int | None:
        """The pid of a live Prometheus started from this folder, or None."""
        try:
            pid = int(self.pid.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:  # a recycled pid belongs to another program: not ours
            if "prometheus" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return None
        except OSError:
            pass
        return pid


def files(directory: str | Path | None = None) -> PrometheusFiles:
    return PrometheusFiles(Path(directory) if directory else paths.sub(STATE_DIR))


def start(cfg: Config, port: int | None = None, directory: str | Path | None = None,
          wait_s: float = 30.0) -> tuple[int, str]:
    """Write the config and start Prometheus on 127.0.0.1 in the background; return (pid, URL).

    Raises:
        MonitoringError: already running, the config is refused, or it did not become ready.
    """
    import dataclasses

    if port is not None:
        cfg = cfg.replace(monitor=dataclasses.replace(cfg.monitor, prometheus_port=port))
    f = files(directory)
    if (pid := f.running_pid()) is not None:
        raise MonitoringError(f"Prometheus already runs from {f.directory} (pid {pid}); "
                              "stop it with `hftpipe monitor prometheus --stop`")
    write_config(cfg, f.directory)
    check_config(f.config)
    address = f"127.0.0.1:{cfg.monitor.prometheus_port}"
    cmd = [_binary("prometheus"), f"--config.file={f.config}", f"--storage.tsdb.path={f.data}",
           f"--storage.tsdb.retention.time={cfg.monitor.retention}", f"--web.listen-address={address}",
           "--web.enable-lifecycle"]
    with open(f.log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=f.directory)
    f.pid.write_text(f"{proc.pid}\n")
    url = f"http://{address}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            f.pid.unlink(missing_ok=True)
            tail = f.log.read_text(errors="replace")[-600:]
            raise MonitoringError(f"Prometheus exited with {proc.returncode} (port {address} taken?): {tail.strip()}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    log.info("Prometheus ready at %s (pid %d, data %s)", url, proc.pid, f.data)
                    return proc.pid, url
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    stop(f.directory)
    raise MonitoringError(f"Prometheus did not become ready on {address} in {wait_s:g} s; see {f.log}")


def stop(directory: str | Path | None = None, timeout_s: float = 20.0) -> int | None:
    """Stop the Prometheus started from ``directory`` (SIGTERM, then SIGKILL); return its pid or None."""
    f = files(directory)
    pid = f.running_pid()
    if pid is None:
        f.pid.unlink(missing_ok=True)
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        try:  # our own child (tests, same process): reap it so it does not linger as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    f.pid.unlink(missing_ok=True)
    return pid
