"""Causal replay scoring agrees with the vectorised labels and backtest; the replay survives outages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hftpipe.data import book_matrix, read_events
from hftpipe.evaluation.backtest import backtest
from hftpipe.features.labels import classify, label_return
from hftpipe.features.sampling import sample_indices
from hftpipe.ui.client import ServingUnavailable
from hftpipe.ui.replay import (
    OutcomeTracker,
    Prediction,
    list_replay_files,
    load_replay_day,
    replay_updates,
)


def _signal(n: int, seed: int = 3) -> np.ndarray:
    # Mostly stationary with bursts of up/down: exercises holds, extensions and flips.
    rng = np.random.default_rng(seed)
    return rng.choice([0, 1, 2], size=n, p=[0.15, 0.7, 0.15])


def _run(day, signal: np.ndarray, **kw) -> tuple[OutcomeTracker, list[dict]]:
    tracker = OutcomeTracker(**kw)
    outcomes = []
    for i in range(len(signal)):
        outcomes += tracker.observe(i, float(day.bid[i]), float(day.ask[i]), int(signal[i]))
    return tracker, outcomes


@pytest.mark.parametrize("label", ["forward", "deeplob"])
def test_outcomes_match_the_training_labels(replay_events: Path, label: str) -> None:
    day = load_replay_day(replay_events)
    k, alpha = 10, 2e-5
    signal = _signal(len(day.mid))
    tracker, outcomes = _run(day, signal, horizon=k, alpha=alpha, label=label)
    expected = classify(label_return(day.mid, k, label), alpha)
    got = {o["index"]: o["realised"] for o in outcomes}
    defined = np.flatnonzero(expected >= 0)
    assert sorted(got) == defined.tolist()  # every defined label is realised, nothing else
    assert all(got[i] == expected[i] for i in defined)
    assert all(o["at"] == o["index"] + k for o in outcomes)  # known exactly k events later, not before
    hits = sum(got[i] == signal[i] for i in defined)
    assert tracker.scored == len(defined) and tracker.hits == hits


@pytest.mark.parametrize("latency,fees", [(0, 0.0), (1, 0.0), (3, 0.5)])
def test_pnl_matches_the_evaluation_backtest_event_by_event(replay_events: Path, latency: int, fees: float) -> None:
    day = load_replay_day(replay_events)
    signal = _signal(len(day.mid), seed=latency)
    tracker = OutcomeTracker(horizon=10, alpha=1e-5, fees_bps=fees, latency=latency)
    net, position = [], []
    for i in range(len(signal)):
        tracker.observe(i, float(day.bid[i]), float(day.ask[i]), int(signal[i]))
        net.append(tracker.net_pnl)
        position.append(tracker.position)
    ref = backtest(signal, day.bid, day.ask, horizon=10, fees_bps=fees, latency=latency)
    live = slice(0, len(signal) - 1)  # the backtest forces a flat book at the very last event
    assert np.array_equal(np.array(position)[live], ref.position[live])
    liquidation = np.where(ref.position > 0, day.bid, day.ask)
    closing_fee = np.abs(ref.position) * liquidation * fees / 1e4
    # The running figure is the backtest's equity marked to liquidation, net of the fee to close.
    np.testing.assert_allclose(np.array(net)[live], (ref.equity_net - closing_fee)[live], atol=1e-8)
    assert 0 < tracker.trades <= ref.n_trades


def test_outcome_by_hand() -> None:
    # Forward label, k=2: at t=0 mid 100, next mids 100.02 and 100.04 -> mean 100.03, +3 bps > alpha: up.
    tracker = OutcomeTracker(horizon=2, alpha=1e-4, label="forward")
    quotes = [(99.99, 100.01), (100.01, 100.03), (100.03, 100.05)]
    assert tracker.observe(0, *quotes[0], cls=2) == []
    assert tracker.observe(1, *quotes[1], cls=0) == []
    (outcome,) = tracker.observe(2, *quotes[2], cls=None)
    assert outcome["index"] == 0 and outcome["label"] == "up" and outcome["hit"]
    assert outcome["ret_bps"] == pytest.approx(3.0, abs=1e-6)
    assert tracker.hit_rate == 1.0


def test_events_must_arrive_in_order() -> None:
    tracker = OutcomeTracker(horizon=2, alpha=0.0)
    tracker.observe(5, 10.0, 10.1)
    with pytest.raises(ValueError, match="in order"):
        tracker.observe(5, 10.0, 10.1)


def test_top_of_book_sampling_replays_the_training_stream(replay_events: Path) -> None:
    book = book_matrix(read_events(replay_events).frame)
    day = load_replay_day(replay_events, "top_of_book")
    assert len(day.mid) == len(sample_indices(book, "top_of_book"))
    assert len(day.mid) < len(load_replay_day(replay_events).mid)


def test_replay_files_lists_only_ingested_tables(replay_events: Path, tmp_path: Path) -> None:
    folder = tmp_path / "processed"
    folder.mkdir()
    main = folder / "events.parquet"
    main.write_bytes(replay_events.read_bytes())
    (folder / "other.parquet").write_bytes(replay_events.read_bytes())
    pq.write_table(pa.table({"x": [1, 2]}), folder / "not-events.parquet")
    files = list_replay_files(main)
    assert [f.path.name for f in files] == ["events.parquet", "other.parquet"]
    assert files[0].symbol == "GOOG" and files[0].levels == 5 and "GOOG 2012-06-21" in files[0].title


class _FlakyServer:
    """Answers like the model server, but is down for the first ``down`` calls."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.calls = 0

    def __call__(self, book: np.ndarray) -> Prediction:
        self.calls += 1
        if self.calls <= self.down:
            raise ServingUnavailable("model server at http://127.0.0.1:1 is not reachable (ConnectionError)")
        return Prediction(ready=True, cls=2, label="up", probabilities=(0.1, 0.2, 0.7))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
        self.slept += s


def test_replay_reports_an_outage_and_retries_the_same_event(replay_events: Path) -> None:
    day = load_replay_day(replay_events)
    clock = _Clock()
    server = _FlakyServer(down=2)
    messages = list(replay_updates(day, server, OutcomeTracker(horizon=5, alpha=0.0), speed=0, stop=50,
                                   unavailable=ServingUnavailable, retry_s=(1.0, 2.0), clock=clock,
                                   sleep=clock.sleep))
    kinds = [m["type"] for m in messages]
    assert kinds[:3] == ["serving_down", "serving_down", "serving_up"] and kinds[-1] == "done"
    assert [m["retry_in"] for m in messages[:2]] == [1.0, 2.0]
    assert "not reachable" in messages[0]["detail"]
    ticks = [t for m in messages if m["type"] == "ticks" for t in m["ticks"]]
    assert [t["i"] for t in ticks] == list(range(50))  # no event lost or repeated
    assert messages[-1]["stats"]["scored"] == 45


def test_replay_paces_at_the_requested_speed(replay_events: Path) -> None:
    day = load_replay_day(replay_events)
    clock = _Clock()
    messages = list(replay_updates(day, _FlakyServer(down=0), None, speed=20.0, stop=41, clock=clock,
                                   sleep=clock.sleep))
    assert clock.slept == pytest.approx(40 / 20.0)  # 41 events, 20 per second: 2 s of replay
    assert len([m for m in messages if m["type"] == "ticks"]) > 1  # flushed in several pushes, not at the end
    assert messages[-1]["stats"] is None  # unscored without a tracker


def test_default_start_is_the_test_split_unless_asked_for_the_whole_day() -> None:
    from hftpipe.config import Config, UIConfig
    from hftpipe.ui.live import default_start

    cfg = Config()
    assert cfg.ui.replay_from == "test"
    # 70% train + 15% validation: a fresh replay of 10,000 events begins at event 8,500.
    assert default_start(cfg, 10_000) == 8_500
    whole = cfg.replace(ui=UIConfig(replay_from="start"))
    assert default_start(whole, 10_000) == 0


def _synthetic(mids: list[float]) -> tuple[np.ndarray, np.ndarray]:
    mid = np.asarray(mids, dtype=np.float64)
    return mid - 50.0, mid + 50.0  # a one-tick spread, the tick being 100 price units here


@pytest.mark.parametrize("min_move,hits", [(100.0, 2), (0.0, 4)])
def test_sub_tick_moves_are_not_up_or_down_hits(min_move: float, hits: int) -> None:
    m = 5_800_000.0
    bid, ask = _synthetic([m, m, m + 50, m + 50, m + 50, m + 250, m + 250, m + 250])
    tracker = OutcomeTracker(horizon=2, alpha=0.0, min_move=min_move)  # a fitted alpha can be 0
    outcomes = []
    for i in range(len(bid)):
        outcomes += tracker.observe(i, float(bid[i]), float(ask[i]), 2 if i < 6 else None)  # "up" every time
    # Smoothed moves: +25, +50, 0, +100, +200, 0 (price units). Under one tick they are stationary.
    assert [o["realised"] for o in outcomes] == ([1, 1, 1, 2, 2, 1] if min_move else [2, 2, 1, 2, 2, 1])
    assert tracker.scored == 6 and tracker.hits == hits


def test_the_replay_day_knows_its_tick(replay_events: Path) -> None:
    assert load_replay_day(replay_events).tick == 0.01  # one cent


def test_baselines_match_their_vectorised_definitions(replay_events: Path) -> None:
    day = load_replay_day(replay_events)
    k, alpha = 10, 2e-5
    tracker, _ = _run(day, _signal(len(day.mid)), horizon=k, alpha=alpha)
    labels = classify(label_return(day.mid, k, "forward"), alpha)
    n = len(day.mid)
    scored = range(k, n - k)  # the model is scored up to n-k-1; both baselines need k events of past
    momentum_ret = (day.mid[k:] - day.mid[:-k]) / day.mid[:-k]
    momentum_ret[np.abs(momentum_ret) < 1e-12] = 0.0
    momentum = np.concatenate([np.full(k, -1), classify(momentum_ret, alpha)])
    stats = tracker.stats()["baselines"]
    assert stats["persistence"]["scored"] == stats["momentum"]["scored"] == len(scored)
    assert stats["persistence"]["hits"] == sum(int(labels[t - k] == labels[t]) for t in scored)
    assert stats["momentum"]["hits"] == sum(int(momentum[t] == labels[t]) for t in scored)
    assert 0.0 < stats["persistence"]["hit_rate"] < 1.0


def test_clock_time_outcomes_match_the_training_labels_and_are_known_only_after_t_plus_h(replay_events: Path) -> None:
    from hftpipe.evaluation.baselines import min_history
    from hftpipe.features.labels import clock_forward_return

    day = load_replay_day(replay_events)
    h, alpha = 1.0, 2e-5
    signal = _signal(len(day.mid))
    tracker = OutcomeTracker(horizon="1s", alpha=alpha)
    outcomes = []
    for i in range(len(signal)):
        outcomes += tracker.observe(i, float(day.bid[i]), float(day.ask[i]), int(signal[i]), time=float(day.time[i]))
    expected = classify(clock_forward_return(day.mid, day.time, h), alpha)
    got = {o["index"]: o for o in outcomes}
    final = np.flatnonzero(day.time + h < day.time[-1])  # an event strictly after t + h has been seen
    assert sorted(got) == final.tolist() and len(final) > 100
    assert all(got[i]["realised"] == expected[i] for i in final)
    first_after = np.searchsorted(day.time, day.time + h, side="right")
    assert all(got[i]["at"] == first_after[i] for i in final)  # known at the first event after t + h, not before
    assert tracker.scored == len(final) and tracker.hits == sum(expected[i] == signal[i] for i in final)
    # momentum is scored from h seconds into the replay on, as the evaluation scores it
    assert tracker.baselines["momentum"].scored == int((final >= min_history("1s", day.time)).sum())


def test_clock_time_positions_are_held_h_seconds_and_need_the_event_times() -> None:
    tracker = OutcomeTracker(horizon="1s", alpha=0.0, latency=0)
    positions = []
    for i, (t, cls) in enumerate([(0.0, 2), (0.5, 1), (0.99, 1), (1.0, 1), (1.2, 0), (2.1, 1), (2.3, 1)]):
        tracker.observe(i, 99.99, 100.01, cls, time=t)
        positions.append(tracker.position)
    assert positions == [1, 1, 1, 0, -1, -1, 0]  # long for 1 s, flat, short at 1.2 until 2.2
    with pytest.raises(ValueError, match="needs each event's time"):
        tracker.observe(10, 99.99, 100.01, 1)
    with pytest.raises(ValueError, match="defined in events only"):
        OutcomeTracker(horizon="1s", alpha=0.0, label="deeplob")
