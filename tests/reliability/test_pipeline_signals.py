"""SIGTERM to a real `hftpipe pipeline run` / `hftpipe retrain` leaves no process behind (issue 10 finding 6).

Each test starts the CLI in a session of its own on a small GOOG slice with a training step long enough to
be interrupted, waits until the train step's MLflow run is RUNNING, records every process of the run
(walking /proc), sends SIGTERM to the CLI process only (what `kill PID` or a supervisor does), and checks:
no recorded process and nothing in the run's session survives, the MLflow runs of the run are KILLED, and
`retrain` holds its lock until the last child is gone. Before the fix the parent died at once and the train
step (with its torchrun ranks) ran on, its MLflow run left RUNNING.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pipeline.test_pipeline_e2e import FAST, write_slice
from tests.registry.conftest import features_dir  # noqa: F401 - a small real feature set (session fixture)

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

# FAST's small slice, but a training step that would run for minutes: it is interrupted long before.
LONG_TRAIN = [*FAST, "-S", "train.model=lstm", "-S", "train.epochs=500", "-S", "train.patience=500"]


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, session id) from /proc, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[3])


def _live(pid: int) -> bool:
    info = _stat(pid)
    return info is not None and info[1] != "Z"  # a zombie has exited; it only waits to be reaped


def _tree(root: int) -> set[int]:
    """Live descendants of ``root`` (an independent /proc walk: not the code under test)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            parents[int(entry)] = info[0]  # zombies too: their children may still be listed under them
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {pid for pid in found if _live(pid)}


def _session(sid: int) -> set[int]:
    return {int(e) for e in os.listdir("/proc") if e.isdigit() and (i := _stat(int(e))) and i[2] == sid
            and i[1] != "Z"}


def _runs(home: Path) -> list[tuple[str, str, str]]:
    """(run id, status, step tag) of every MLflow run, read straight from sqlite (no migrations, no writes)."""
    db = home / "mlflow" / "mlflow.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT r.run_uuid, r.status, t.value FROM runs r LEFT JOIN tags t "
                                "ON t.run_uuid = r.run_uuid AND t.key = 'step'").fetchall()
    except sqlite3.Error:  # the schema is still being created by the step
        return []


def _start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HFTPIPE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "hftpipe.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for_training(proc: subprocess.Popen, home: Path, log: Path, ranks: int, timeout: float = 420.0
                       ) -> set[int]:
    """Wait until the train step's MLflow run is RUNNING and its processes are up; return every pid seen."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before training: {log.read_text()[-3000:]}"
        seen |= _tree(proc.pid)
        training = [r for r in _runs(home) if r[1] == "RUNNING" and r[2] == "train"]
        if training and len(_tree(proc.pid)) >= 2 + ranks:  # kfp step + (torchrun +) ranks
            time.sleep(1.0)  # let the ranks settle, then take the last snapshot
            return seen | _tree(proc.pid)
        time.sleep(0.5)
    raise AssertionError(f"training did not start within {timeout:.0f} s: {log.read_text()[-3000:]}")


def _cleanup(pids: set[int]) -> None:
    """Whatever the outcome, leave nothing running on the shared machine."""
    for pid in pids:
        if _live(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _assert_all_stopped(pids: set[int], sid: int, log: Path | None = None) -> None:
    survivors = {pid for pid in pids if _live(pid)} | _session(sid)
    details = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in survivors
               if Path(f"/proc/{pid}/cmdline").exists()}
    tail = log.read_text()[-2000:] if log else ""
    assert not survivors, f"processes of the interrupted run still alive: {details}\n{tail}"


def test_sigterm_stops_every_process_and_kills_the_mlflow_runs(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "run.log"
    source = write_slice(tmp_path / "slice")
    # nproc 2: the train step runs torchrun, whose ranks each live in a session of their own.
    proc = _start([*LONG_TRAIN, "pipeline", "run", "--data", str(source), "--nproc", "2"], home, log)
    seen: set[int] = set()
    try:
        seen = _wait_for_training(proc, home, log, ranks=2)
        assert len(seen) >= 4, seen
        os.kill(proc.pid, signal.SIGTERM)
        started = time.monotonic()
        returncode = proc.wait(timeout=90)
        stop_seconds = time.monotonic() - started
        _assert_all_stopped(seen, proc.pid, log)
    finally:
        _cleanup(seen | _tree(proc.pid))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert returncode == 128 + signal.SIGTERM, output
    assert "error: pipeline interrupted by SIGTERM during step 'train'" in output
    assert "Traceback" not in output
    runs = _runs(home)
    assert runs and all(status != "RUNNING" for _, status, _ in runs), runs
    assert [status for _, status, step in runs if step == "train"] == ["KILLED"]
    print(f"stopped {len(seen)} processes in {stop_seconds:.1f} s")  # the figure the README quotes


def test_retrain_holds_its_lock_until_no_child_is_left(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "retrain.out"
    source = write_slice(tmp_path / "slice")
    proc = _start([*LONG_TRAIN, "retrain", "--data", str(source)], home, log)
    seen: set[int] = set()
    try:
        seen = _wait_for_training(proc, home, log, ranks=0)
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        with open(home / "retrain.lock", "w") as lock:
            while True:  # the moment a second retrain could take the lock ...
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the interrupted retrain never released its lock"
                    time.sleep(0.02)
            alive = {pid for pid in seen if _live(pid)}  # ... none of the first one's processes may run
            fcntl.flock(lock, fcntl.LOCK_UN)
        assert not alive, f"the lock was free while these processes of the first retrain still ran: {alive}"
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        _assert_all_stopped(seen, proc.pid, log)
    finally:
        _cleanup(seen | _tree(proc.pid))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    retrain_log = (home / "logs" / "retrain.log").read_text()
    assert "retrain started" in retrain_log and "step train started" in retrain_log
    assert "retrain failed: pipeline interrupted by SIGTERM during step 'train'" in retrain_log
    assert [status for _, status, step in _runs(home) if step == "train"] == ["KILLED"]


def test_sigterm_to_distributed_train_stops_its_ranks(features_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """`hftpipe train --nproc 2` alone: torchrun's ranks sit in sessions of their own; SIGTERM must reach them."""
    home, log = tmp_path / "home", tmp_path / "train.out"
    args = ["-S", "features.horizons=[10]", "-S", "train.horizon=10", "-S", "train.window=10", "-S",
            "train.model=lstm", "-S", "train.epochs=500", "-S", "train.patience=500",
            "-v", "train", str(features_dir), "-o", str(tmp_path / "model"), "--nproc", "2", "--no-tracking"]
    proc = _start(args, home, log)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while len(_tree(proc.pid)) < 3:  # torchrun and its two ranks
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no ranks after 180 s: {log.read_text()[-3000:]}"
            time.sleep(0.3)
        time.sleep(3.0)  # the ranks are past start-up (a signal before that is as good, but less telling)
        seen = _tree(proc.pid)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()[-3000:]
        _assert_all_stopped(seen, proc.pid, log)
    finally:
        _cleanup(seen | _tree(proc.pid))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
