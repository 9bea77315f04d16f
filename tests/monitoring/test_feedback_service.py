"""The outcome store end to end: real nats-server, `hftpipe feed replay` of a real LOBSTER slice, the signal
service and `monitor run` as subprocesses; outcomes read back from the bus and from the Parquet data set."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hftpipe.contracts import Outcome
from tests.online_fixtures import Service, free_port, read_stream, stream_count
from tests.pipeline.test_pipeline_e2e import FAST, write_slice
from tests.serving.conftest import WINDOW, make_bundle

pytestmark = pytest.mark.slow

K = 10


def _wait_for(predicate, timeout_s: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


def _bundle(folder: Path, source: Path, horizon: int | str = K) -> Path:
    from hftpipe.data import book_matrix, load_lobster

    book = book_matrix(load_lobster(source).frame)[:2000]
    return make_bundle(folder / "bundle", book, horizon=horizon)


def _feedback(nats_server, home: Path, bundle: Path, *sets: str) -> Service:
    args = [a for s in ("bus.monitor_port=0", f"bus.port={nats_server.port}", *sets) for a in ("-S", s)]
    service = Service([], home, ready="feedback", name="feedback")
    service.cmd = [sys.executable, "-m", "hftpipe.cli.monitor_live", "-v", *args, "run", "--model", str(bundle)]
    return service


def _start_pipeline(nats_server, home: Path, source: Path, bundle: Path, rows: int, *feedback_sets: str,
                    signal_sets: tuple[str, ...] = ()) -> tuple[Service, Service]:
    feed = Service([*nats_server.overrides(), "feed", "replay", str(source), "--speed", "max", "--limit", str(rows)],
                   home, ready=None, name="feed")
    assert feed.start().wait(timeout_s=120) == 0, feed.log()
    sets = [a for s in ("signals.backlog=all", "signals.reload_interval_s=0", *signal_sets) for a in ("-S", s)]
    signals = Service([*nats_server.overrides(), *sets, "signals", "--model", str(bundle)], home, ready="signals",
                      name="signals").start()
    feedback = _feedback(nats_server, home, bundle, *feedback_sets).start()
    return signals, feedback


def test_live_macro_f1_equals_hftpipe_evaluate_on_the_same_rows(nats_server, hftpipe_home: Path,
                                                                tmp_path: Path) -> None:
    import requests

    from hftpipe.config import Config, EvaluateConfig
    from hftpipe.evaluation.evaluate import evaluate_source
    from hftpipe.monitoring.feedback_store import read_table
    from hftpipe.monitoring.quality import RollingQuality

    rows = 2500
    source = write_slice(tmp_path / "slice", rows=rows)  # a real GOOG slice as a LOBSTER CSV pair
    bundle = _bundle(tmp_path, source)
    port = free_port()
    signals, feedback = _start_pipeline(nats_server, hftpipe_home, source, bundle, rows,
                                        f"feedback.metrics_port={port}", "feedback.flush_rows=1000",
                                        "feedback.flush_interval_s=0.5")
    try:
        expected = rows - K - WINDOW + 1  # signals from seq T on; the last k events have no outcome yet
        _wait_for(lambda: stream_count(nats_server.url, "OUT") >= expected, 120, "outcomes", feedback.log)
        time.sleep(1.0)  # anything extra (a duplicate, a look-ahead outcome) would arrive now
        outcomes = [m for m in read_stream(nats_server.url, "out.>") if isinstance(m, Outcome)]
        assert sorted(o.seq for o in outcomes) == list(range(WINDOW, rows - K + 1))
        assert all(o.outcome_time >= o.event_time for o in outcomes)
        live = RollingQuality(window=None)
        for o in outcomes:
            live.add(o)
        snap = live.snapshot()

        # `hftpipe evaluate` on the same file, every row (scope all), same model and label.
        cfg = Config().replace(evaluate=EvaluateConfig(bootstrap=20))
        report = evaluate_source(cfg, bundle, source, tmp_path / "report", scope="all").report
        assert report["data"]["scored_rows"] == snap.n
        assert snap.scores["model"]["macro_f1"] == report["model"]["macro_f1"]
        assert snap.scores["model"]["accuracy"] == report["model"]["accuracy"]
        for name in ("persistence", "momentum"):
            assert snap.scores[name]["macro_f1"] == report["baselines"][name]["macro_f1"]

        # The same figures as Prometheus gauges, and the same outcomes in the Parquet data set.
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        gauges = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                  if line.startswith(("hftpipe_feedback_", "hftpipe_live_", "hftpipe_outcomes_"))}
        for source in ("model", "persistence", "momentum"):  # the names the alert rules and dashboards read
            assert gauges[f'hftpipe_live_macro_f1{{source="{source}",symbol="GOOG"}}'] == pytest.approx(
                snap.scores[source]["macro_f1"], abs=1e-12)
            assert f'hftpipe_live_hit_rate{{source="{source}",symbol="GOOG"}}' in gauges
        assert gauges['hftpipe_live_brier{symbol="GOOG"}'] == pytest.approx(snap.brier, abs=1e-12)
        assert gauges['hftpipe_outcomes_total{symbol="GOOG"}'] == expected
        assert gauges["hftpipe_feedback_books_total"] == rows
        assert feedback.stop() < 10.0 and feedback.proc.returncode == 0  # SIGTERM: flush, clean exit
        frame = read_table(hftpipe_home / "feedback", "outcomes", "GOOG")
        assert list(frame["seq"]) == list(range(WINDOW, rows - K + 1))
        assert set(frame["date"]) == {"2012-06-21"}
        np.testing.assert_array_equal(frame["realised"].to_numpy(), [o.realised for o in
                                                                      sorted(outcomes, key=lambda o: o.seq)])
        books = read_table(hftpipe_home / "feedback", "books", "GOOG")
        assert list(books["seq"]) == list(range(1, rows + 1))
        parts = sorted((hftpipe_home / "feedback" / "books" / "symbol=GOOG" / "date=2012-06-21").glob("*.parquet"))
        assert parts and not list(parts[0].parent.glob(".part-*"))  # no temporary file left behind
    finally:
        feedback.stop()
        signals.stop()


def test_clock_time_model_live_macro_f1_equals_hftpipe_evaluate_on_the_same_rows(nats_server, hftpipe_home: Path,
                                                                                tmp_path: Path) -> None:
    """The same acceptance check for a model trained at a clock-time horizon (2 s): outcomes mature at the first
    event strictly after t + 2 s and score exactly as `hftpipe evaluate` does on the same file."""
    from hftpipe.config import Config, EvaluateConfig
    from hftpipe.evaluation.evaluate import evaluate_source
    from hftpipe.feeds.replay import load_replay
    from hftpipe.horizons import Horizon
    from hftpipe.monitoring.quality import RollingQuality

    rows, h = 2500, 2.0
    source = write_slice(tmp_path / "slice", rows=rows)
    bundle = _bundle(tmp_path, source, horizon="2s")
    times = load_replay(source).event_time  # what the feed publishes: epoch seconds
    # Final live outcomes: signals (from seq T on) of events some later event is strictly after t + h of.
    expected_seqs = [s for s in range(WINDOW, rows + 1) if times[s - 1] + h < times[-1]]
    assert rows - WINDOW + 1 - len(expected_seqs) > K  # the last ~2 s have no outcome yet
    signals, feedback = _start_pipeline(nats_server, hftpipe_home, source, bundle, rows,
                                        "feedback.flush_interval_s=0.5")
    try:
        _wait_for(lambda: stream_count(nats_server.url, "OUT") >= len(expected_seqs), 120, "outcomes",
                  feedback.log)
        time.sleep(1.0)  # anything extra (a duplicate, a look-ahead outcome) would arrive now
        outcomes = [m for m in read_stream(nats_server.url, "out.>") if isinstance(m, Outcome)]
        assert sorted(o.seq for o in outcomes) == expected_seqs
        assert all(o.label_horizon == Horizon(seconds=h) and o.horizon == 0 for o in outcomes)
        assert all(o.outcome_time > o.event_time + h for o in outcomes)  # no look-ahead
        assert {o.realised for o in outcomes} == {0, 1, 2}
        live = RollingQuality(window=None)
        for o in outcomes:
            live.add(o)
        snap = live.snapshot()
        cfg = Config().replace(evaluate=EvaluateConfig(bootstrap=20))
        report = evaluate_source(cfg, bundle, source, tmp_path / "report", scope="all").report
        assert report["model_info"]["horizon_unit"] == "seconds"
        assert report["data"]["scored_rows"] == snap.n > 1000
        assert snap.scores["model"]["macro_f1"] == report["model"]["macro_f1"]
        assert snap.scores["model"]["accuracy"] == report["model"]["accuracy"]
        for name in ("persistence", "momentum"):
            assert snap.scores[name]["macro_f1"] == report["baselines"][name]["macro_f1"]
    finally:
        feedback.stop()
        signals.stop()


def test_trigger_fires_on_live_decay_and_retrains_on_the_recorded_data_through_the_gate(
        nats_server, hftpipe_home: Path, tmp_path: Path) -> None:
    """A random-weight model is far below the momentum baseline live: the trigger fires once (then the
    cooldown holds), audits its evidence, and the local pipeline retrains on the recorded live day, whose
    registration goes through the promotion gate."""
    from hftpipe import audit
    from hftpipe.registry.registry import CHALLENGER, CHAMPION
    from tests.pipeline.test_pipeline_e2e import SLICE_ROWS

    rows = SLICE_ROWS
    source = write_slice(tmp_path / "slice", rows=rows)
    bundle = _bundle(tmp_path, source)
    fast = [FAST[i + 1] for i in range(0, len(FAST), 2)]  # the pipeline tests' cheap settings
    trigger = ["feedback.retrain=true", "feedback.retrain_check_s=1.0", "feedback.retrain_min_outcomes=1000",
               "feedback.retrain_min_hold_s=0", f"feedback.retrain_min_new_rows={rows}",
               "feedback.retrain_cooldown_s=3600", "feedback.metrics_port=0", "feedback.flush_rows=4000",
               f"feedback.retrain_original={source}"]
    signals, feedback = _start_pipeline(nats_server, hftpipe_home, source, bundle, rows, *fast, *trigger)

    def retrain_records() -> list:
        with audit.open_trail() as trail:
            # The monitor's own records (the trigger and the retrain's result); `hftpipe retrain` itself also
            # records its start, with reason "hftpipe retrain".
            return [r for r in trail.records() if r.action == audit.RETRAIN_TRIGGER and r.reason != "hftpipe retrain"]

    try:
        _wait_for(lambda: len(retrain_records()) >= 2, 420, "the retrain to finish", feedback.log)
        time.sleep(3.0)  # further checks happen every second: the cooldown must keep them quiet
        fired, finished = retrain_records()[:2]
        assert len(retrain_records()) == 2
        assert "below_baseline" in fired.reason
        evidence = fired.details["evidence"]
        assert evidence["new_rows"] == rows and evidence["outcomes"] >= 1000
        assert evidence["model_macro_f1"] < evidence["best_baseline_macro_f1"]
        result = finished.details
        assert result["exit_code"] == 0, feedback.log()
        assert result["status"] == "succeeded" and result["rows"] == rows
        assert result["original"] == str(source)  # trained on the original day plus the live one
        assert result["decision"] in (CHAMPION, CHALLENGER) and result["gate_reasons"]  # the gate decided, with reasons
        assert result["version"] is not None  # the retrained model was registered
        assert finished.reason == f"retrain on live data finished: exit 0, gate {result['decision']}"
        assert feedback.proc.poll() is None  # the outcome store kept running through the retrain
        with audit.open_trail() as trail:  # and the retrain it started left its own record
            assert [r.reason for r in trail.records() if r.action == audit.RETRAIN_TRIGGER].count("hftpipe retrain") == 1
    finally:
        feedback.stop()
        signals.stop()


def _widen_spreads(source: Path) -> None:
    """The drift acceptance's change, on a LOBSTER pair: every spread doubled (asks up, bids down by half of it)."""
    import pandas as pd

    book_path = next(source.parent.glob("*_orderbook_*.csv"))
    book = pd.read_csv(book_path, header=None)
    half = (book[0] - book[2]) // 2  # integer price units (1e-4 dollars)
    for col in range(0, book.shape[1], 4):
        book[col] += half
        book[col + 2] -= half
    book.to_csv(book_path, header=False, index=False)


def _bundle_with_reference(folder: Path, source: Path, rows: int) -> Path:
    """A random-weight bundle with the drift reference of the clean day's book states (as training saves it)."""
    import json

    from hftpipe.data import book_matrix, load_lobster
    from hftpipe.evaluation.drift import build_reference

    bundle = _bundle(folder, source)
    book = book_matrix(load_lobster(source).frame)[:rows]
    info = json.loads((bundle / "bundle.json").read_text())
    info["drift_reference"] = build_reference(book).to_dict()
    (bundle / "bundle.json").write_text(json.dumps(info))
    return bundle


@pytest.mark.parametrize("drifted", [False, True], ids=["clean", "drifted"])
def test_drift_trigger_fires_on_a_drifted_replay_only_then_cools_down_and_retrains_through_the_gate(
        nats_server, hftpipe_home: Path, tmp_path: Path, drifted: bool) -> None:
    """The bus end to end with the live drift detector: a replay of the real day with its spreads widened fires
    the trigger once (drift), the cooldown keeps the still-holding reason quiet, and the retrain on the original
    day plus the recorded one is registered through the promotion gate; the clean replay never fires."""
    import requests

    from hftpipe import audit
    from hftpipe.registry.registry import CHALLENGER, CHAMPION

    rows = 4000
    # What the model "trained" on: the day's first 8,000 events (a reference of fewer rows measures so much
    # natural variation between its fifths that even doubled spreads stay under the cut-off); live: the first 4,000.
    original = write_slice(tmp_path / "original", rows=2 * rows)
    bundle = _bundle_with_reference(tmp_path, original, 2 * rows)
    live = write_slice(tmp_path / "live", rows=rows)
    if drifted:
        _widen_spreads(live)
    port = free_port()
    fast = [FAST[i + 1] for i in range(0, len(FAST), 2)]
    trigger = ["feedback.retrain=true", "feedback.retrain_check_s=0.5", "feedback.retrain_min_outcomes=1000000000",
               "feedback.retrain_min_hold_s=0", f"feedback.retrain_min_new_rows={rows}", "feedback.retrain_drift=true",
               "feedback.retrain_cooldown_s=3600", f"feedback.metrics_port={port}", "feedback.flush_rows=4000",
               f"feedback.retrain_original={original}"]  # decay cannot fire (min outcomes): drift alone decides
    signals, feedback = _start_pipeline(nats_server, hftpipe_home, live, bundle, rows, *fast, *trigger)

    def records() -> list:
        with audit.open_trail() as trail:
            return [r for r in trail.records() if r.action == audit.RETRAIN_TRIGGER and r.reason != "hftpipe retrain"]

    def gauges() -> dict[str, float]:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                if line.startswith("hftpipe_feedback_")}

    try:
        _wait_for(lambda: stream_count(nats_server.url, "OUT") >= rows - K - WINDOW + 1, 120, "outcomes", feedback.log)
        if not drifted:
            time.sleep(3.0)  # six more checks of the trigger on the whole recorded day
            assert records() == []
            g = gauges()
            assert g["hftpipe_feedback_retrain_triggers_total"] == 0
            assert g['hftpipe_feedback_retrain_reason{reason="drift"}'] == 0
            return
        _wait_for(lambda: len(records()) >= 2, 420, "the retrain to finish", feedback.log)
        time.sleep(2.0)  # four more checks: the drift still holds, the cooldown keeps them quiet
        assert len(records()) == 2
        g = gauges()
        assert g["hftpipe_feedback_retrain_triggers_total"] == 1
        assert g['hftpipe_feedback_retrain_reason{reason="drift"}'] == 1  # the reason holds, the cooldown blocks
        fired, finished = records()
        assert fired.reason == "drift"
        evidence = fired.details["evidence"]
        assert evidence["drift"] is True and "spread_bps" in evidence["drift_detail"]["drifted_features"]
        result = finished.details
        assert result["exit_code"] == 0, feedback.log()
        assert result["status"] == "succeeded" and result["original"] == str(original) and result["rows"] == rows
        assert result["decision"] in (CHAMPION, CHALLENGER) and result["gate_reasons"]
        assert result["version"] is not None
    finally:
        feedback.stop()
        signals.stop()


def test_kill_9_mid_stream_then_restart_no_outcome_lost_or_doubled(nats_server, hftpipe_home: Path,
                                                                   tmp_path: Path) -> None:
    from hftpipe.monitoring.feedback_store import read_table

    rows = 3000
    source = write_slice(tmp_path / "slice", rows=rows)
    bundle = _bundle(tmp_path, source)
    sets = ("feedback.metrics_port=0", "feedback.pull_batch=50", "feedback.flush_rows=400",
            "feedback.flush_interval_s=0.3")
    signals, feedback = _start_pipeline(nats_server, hftpipe_home, source, bundle, rows, *sets)
    expected = list(range(WINDOW, rows - K + 1))
    try:
        _wait_for(lambda: stream_count(nats_server.url, "OUT") >= 300, 120, "the first outcomes", feedback.log)
        feedback.kill9()
        assert stream_count(nats_server.url, "OUT") < len(expected), "finished before the kill: not mid-stream"
        feedback = _feedback(nats_server, hftpipe_home, bundle, *sets).start()
        _wait_for(lambda: stream_count(nats_server.url, "OUT") >= len(expected), 120, "all outcomes", feedback.log)
        time.sleep(1.5)
        seqs = [m.seq for m in read_stream(nats_server.url, "out.>") if isinstance(m, Outcome)]
        assert sorted(seqs) == expected  # none lost, none twice
        assert "resumed 1 symbol(s): GOOG after seq" in feedback.log()
        assert feedback.stop() < 10.0
        root = hftpipe_home / "feedback"
        import pyarrow.parquet as pq

        for table, want in (("outcomes", expected), ("books", list(range(1, rows + 1)))):
            files = sorted((root / table / "symbol=GOOG" / "date=2012-06-21").glob("part-*.parquet"))
            raw = [int(s) for f in files for s in pq.read_table(f, columns=["seq"]).column("seq").to_pylist()]
            assert sorted(raw) == want, table  # the files themselves hold every row once
        assert list(read_table(root, "outcomes")["seq"]) == expected
    finally:
        feedback.stop()
        signals.stop()
