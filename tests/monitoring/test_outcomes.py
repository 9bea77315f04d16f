"""The outcome join: exactly the training label, baselines as the evaluation computes them, no look-ahead."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hftpipe.contracts import Signal
from hftpipe.errors import ModelError
from hftpipe.evaluation.baselines import momentum_baseline, persistence_baseline
from hftpipe.features.labels import classify, label_return
from hftpipe.features.sampling import sample_indices
from hftpipe.monitoring.outcomes import LabelSpec, OutcomeJoiner, classify_return
from tests.conftest import lobster_zip


def _signal(seq: int, predicted: int = 1, horizon: int = 3, symbol: str = "GOOG") -> Signal:
    p = [0.1, 0.1, 0.1]
    p[predicted] = 0.8
    return Signal(symbol=symbol, venue="NASDAQ", seq=seq, event_time=float(seq), input_publish_time=0.0,
                  publish_time=0.0, probabilities=p, predicted=predicted, model_name="m", model_version="1",
                  horizon=horizon)


def _book(mid: float, spread: float = 0.02) -> list[float]:
    return [mid + spread / 2, 100.0, mid - spread / 2, 100.0]


def test_hand_made_sequence_forward_label() -> None:
    # k=2, alpha=0.001. mids: 100, 100, 100.5, 100.5, 99 -> r_0 = (100.25-100)/100 = 0.0025 up,
    # r_1 = (100.5 - 100)/100 = 0.005 up, r_2 = (99.75-100.5)/100.5 < -alpha down.
    joiner = OutcomeJoiner(LabelSpec(horizon=2, alpha=0.001))
    mids = [100.0, 100.0, 100.5, 100.5, 99.0]
    for seq in (1, 2, 3):
        assert joiner.on_signal(_signal(seq, predicted=2, horizon=2)) == []  # before their book: held
    got = []
    for seq, mid in enumerate(mids, start=1):
        got += [(seq, o.seq, o.realised) for o in joiner.on_book("GOOG", seq, float(seq), _book(mid))]
    assert got == [(3, 1, 2), (4, 2, 2), (5, 3, 0)]


def test_stationary_band_is_inclusive_and_round_off_is_snapped() -> None:
    assert classify_return(0.001, 0.001) == 1 and classify_return(-0.001, 0.001) == 1
    assert classify_return(0.0011, 0.001) == 2 and classify_return(math.nan, 0.001) == -1
    joiner = OutcomeJoiner(LabelSpec(horizon=3, alpha=0.0))
    joiner.on_signal(_signal(1))
    outs = []
    for seq in range(1, 5):  # an unchanged mid: exactly 0, stationary even with a zero-width band
        outs += joiner.on_book("GOOG", seq, float(seq), _book(580.37))
    assert [(o.realised, o.label_return) for o in outs] == [(1, 0.0)]


@pytest.mark.parametrize("kind,sampling", [("forward", "all"), ("deeplob", "all"), ("forward", "top_of_book")])
def test_matches_the_offline_label_and_baselines_bit_for_bit(kind: str, sampling: str) -> None:
    from hftpipe.data import book_matrix, load_lobster

    book = book_matrix(load_lobster(lobster_zip("GOOG", 1)).frame)[:6000]
    k = 10
    index = sample_indices(book, sampling)
    mid = (book[index, 0] + book[index, 2]) * 0.5
    r = label_return(mid, k, kind)
    alpha = float(np.quantile(np.abs(r[np.isfinite(r)]), 1 / 3))
    labels = classify(r, alpha)
    joiner = OutcomeJoiner(LabelSpec(horizon=k, alpha=alpha, kind=kind, sampling=sampling))
    sampled = set(index.tolist())
    outcomes = {}
    for i in range(len(book)):
        seq = i + 1
        joiner.on_signal(_signal(seq, horizon=k))
        for o in joiner.on_book("GOOG", seq, float(i), book[i].tolist()):
            outcomes[o.seq] = o
    # Every sampled event with k sampled successors has an outcome; no other event has one.
    position = {row: p for p, row in enumerate(index.tolist())}
    expected_seqs = [row + 1 for row in index[: len(index) - k].tolist()]
    assert sorted(outcomes) == expected_seqs
    assert joiner.stats.dropped.get("not_sampled", 0) == len(book) - len(sampled)
    got_labels = np.array([outcomes[s].realised for s in expected_seqs])
    got_r = np.array([outcomes[s].label_return for s in expected_seqs])
    np.testing.assert_array_equal(got_labels, labels[: len(index) - k])
    np.testing.assert_array_equal(got_r, r[: len(index) - k])  # bit-identical, NaN where undefined
    rows = np.arange(k, len(index) - k)
    pers = persistence_baseline(labels, rows, k)
    mom = momentum_baseline(mid, rows, k, alpha)
    seqs = [int(index[p]) + 1 for p in rows]
    np.testing.assert_array_equal([outcomes[s].persistence for s in seqs], pers)
    np.testing.assert_array_equal([outcomes[s].momentum for s in seqs], mom)
    assert all(outcomes[int(index[p]) + 1].persistence == -1 for p in range(k))  # no past yet: not scored
    assert position  # (used for clarity above)


def test_no_look_ahead_outcome_only_after_k_events() -> None:
    """An outcome appears exactly when the k-th later event is applied, and changing any event after that
    (or before the signal's own event) leaves it unchanged, while changing one inside changes it."""
    k = 5
    rng = np.random.default_rng(0)
    mids = 100 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], size=60))

    def run(m: np.ndarray) -> dict[int, tuple[int, int, float]]:
        joiner = OutcomeJoiner(LabelSpec(horizon=k, alpha=1e-5))
        seen: dict[int, tuple[int, int, float]] = {}
        for i, x in enumerate(m):
            seq = i + 1
            joiner.on_signal(_signal(seq, horizon=k))
            for o in joiner.on_book("GOOG", seq, float(seq), _book(float(x))):
                assert o.seq not in seen
                seen[o.seq] = (seq, o.realised, o.label_return)
                assert o.outcome_time == float(seq)
        return seen

    base = run(mids)
    assert {s: v[0] for s, v in base.items()} == {s: s + k for s in range(1, len(mids) - k + 1)}
    target = 20  # seq 20 is row 19; its window is rows 20..24 (seqs 21..25)
    for changed_seq, inside in ((target + k + 1, False), (target + k + 10, False), (target + 3, True)):
        m = mids.copy()
        m[changed_seq - 1] += 0.5
        other = run(m)
        assert (other[target] == base[target]) != inside


def test_signal_after_its_outcome_is_known_gets_it_at_once_and_only_once() -> None:
    joiner = OutcomeJoiner(LabelSpec(horizon=2, alpha=0.0))
    for seq, mid in enumerate([10.0, 10.0, 11.0, 11.0], start=1):
        joiner.on_book("X", seq, float(seq), _book(mid))
    [out] = joiner.on_signal(_signal(1, horizon=2, symbol="X"))
    assert (out.seq, out.realised, out.outcome_time) == (1, 2, 3.0)
    assert joiner.on_signal(_signal(1, horizon=2, symbol="X")) == []  # replay of the same signal
    assert joiner.stats.duplicates == 1
    assert joiner.on_signal(_signal(3, horizon=2, symbol="X")) == []  # not known yet (needs seq 5)
    assert [o.seq for o in joiner.on_book("X", 5, 5.0, _book(11.0))] == [3]


def test_gap_drops_pending_outcomes_and_restarts_the_label() -> None:
    joiner = OutcomeJoiner(LabelSpec(horizon=2, alpha=0.0))
    joiner.on_book("X", 1, 1.0, _book(10.0))
    joiner.on_signal(_signal(1, horizon=2, symbol="X"))
    joiner.on_book("X", 2, 2.0, _book(10.0))
    assert joiner.on_book("X", 5, 5.0, _book(10.0)) == []  # seq jump 2 -> 5: a gap
    assert joiner.stats.dropped == {"gap": 1}
    joiner.on_signal(_signal(5, horizon=2, symbol="X"))
    assert joiner.on_book("X", 6, 6.0, _book(10.0)) == []
    [out] = joiner.on_book("X", 7, 7.0, _book(12.0))
    assert (out.seq, out.realised, out.persistence) == (5, 2, -1)  # baselines need k events of the new segment
    assert joiner.on_book("X", 7, 7.0, _book(12.0)) == [] and joiner.stats.duplicates == 1


def test_state_round_trip_continues_identically() -> None:
    import json

    rng = np.random.default_rng(1)
    mids = 50 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], size=40))
    spec = LabelSpec(horizon=4, alpha=1e-4)

    def feed(j: OutcomeJoiner, lo: int, hi: int) -> list:
        out = []
        for i in range(lo, hi):
            out += j.on_signal(_signal(i + 1, horizon=4))
            out += j.on_book("GOOG", i + 1, float(i), _book(float(mids[i])))
        return [(o.seq, o.realised, o.label_return, o.persistence, o.momentum) for o in out]

    whole = feed(OutcomeJoiner(spec), 0, 40)
    first = OutcomeJoiner(spec)
    part = feed(first, 0, 17)
    second = OutcomeJoiner(spec)
    second.restore("GOOG", json.loads(json.dumps(first.state_of("GOOG"))))
    assert part + feed(second, 17, 40) == whole


def test_horizon_mismatch_and_bad_spec() -> None:
    joiner = OutcomeJoiner(LabelSpec(horizon=3, alpha=0.0))
    assert joiner.on_signal(_signal(1, horizon=10)) == []
    assert joiner.stats.dropped == {"horizon_mismatch": 1}
    with pytest.raises(ModelError, match="alpha must be a finite number"):
        LabelSpec(horizon=3, alpha=-1.0)
    with pytest.raises(ModelError, match="feedback.alpha"):
        LabelSpec.from_bundle(type("B", (), {"alpha": None, "horizon": 3})())


# ---- clock-time horizons ----------------------------------------------------------------------------------

def _clock_signal(seq: int, horizon: str = "1s", predicted: int = 1, symbol: str = "GOOG") -> Signal:
    from hftpipe.contracts import horizon_fields

    p = [0.1, 0.1, 0.1]
    p[predicted] = 0.8
    return Signal(symbol=symbol, venue="NASDAQ", seq=seq, event_time=float(seq), input_publish_time=0.0,
                  publish_time=0.0, probabilities=p, predicted=predicted, model_name="m", model_version="1",
                  **horizon_fields(horizon))


def test_clock_outcome_is_the_mid_in_force_at_t_plus_h_and_final_only_after_it() -> None:
    # h = 1 s, alpha 0.001. Event 1 at t=0 (mid 100); events 3 and 4 share t=1.0 = t_1 + h: the mid in force
    # then is event 4's (101), known only once event 5 (t=1.5, strictly after t + h) arrives.
    joiner = OutcomeJoiner(LabelSpec(horizon="1s", alpha=0.001))
    joiner.on_signal(_clock_signal(1, predicted=2))
    events = [(0.0, 100.0), (0.4, 99.0), (1.0, 100.05), (1.0, 101.0), (1.5, 90.0)]
    emitted = []
    for seq, (t, mid) in enumerate(events, start=1):
        emitted += [(seq, o) for o in joiner.on_book("GOOG", seq, t, _book(mid))]
    [(at, out)] = emitted
    assert at == 5 and out.seq == 1 and out.outcome_time == 1.5  # not at seq 3 or 4: more could share t=1.0
    assert out.label_return == pytest.approx(0.01) and out.realised == 2 and out.outcome_mid == 101.0
    assert (out.horizon, out.horizon_s) == (0, 1.0) and out.label_horizon.describe() == "1 s"
    # a move inside (t, t + h) that is undone by t + h is no move: event 2 (99) does not count
    joiner2 = OutcomeJoiner(LabelSpec(horizon="1s", alpha=0.001))
    joiner2.on_signal(_clock_signal(1))
    outs = [o for seq, (t, mid) in enumerate([(0.0, 100.0), (0.5, 98.0), (0.9, 100.0), (2.0, 100.0)], start=1)
            for o in joiner2.on_book("GOOG", seq, t, _book(mid))]
    assert [(o.realised, o.label_return) for o in outs] == [(1, 0.0)]


@pytest.mark.parametrize(("horizon", "sampling"), [("1s", "all"), ("0.25s", "top_of_book")])
def test_clock_matches_the_offline_label_and_baselines_bit_for_bit(horizon: str, sampling: str) -> None:
    from hftpipe.data import book_matrix, load_lobster
    from hftpipe.evaluation.baselines import min_history
    from hftpipe.features.labels import horizon_return

    frame = load_lobster(lobster_zip("GOOG", 1)).frame
    book = book_matrix(frame)[:6000]
    times = frame["time"].to_numpy(dtype=np.float64)[:6000]
    h = float(horizon.rstrip("s"))
    index = sample_indices(book, sampling)
    mid = (book[index, 0] + book[index, 2]) * 0.5
    time = times[index]
    r = horizon_return(mid, time, horizon)  # what build_features writes for this horizon
    alpha = float(np.quantile(np.abs(r[np.isfinite(r)]), 1 / 3))
    labels = classify(r, alpha)
    joiner = OutcomeJoiner(LabelSpec(horizon=horizon, alpha=alpha, sampling=sampling))
    outcomes = {}
    for i in range(len(book)):
        seq = i + 1
        joiner.on_signal(_clock_signal(seq, horizon))
        for o in joiner.on_book("GOOG", seq, float(times[i]), book[i].tolist()):
            assert o.outcome_time > o.event_time + h  # never before t + h has passed
            outcomes[o.seq] = o
    # Outcomes for exactly the sampled events some later sampled event is strictly after t + h of.
    final = np.flatnonzero(time + h < time[-1])
    assert sorted(outcomes) == [int(index[p]) + 1 for p in final]
    assert (labels[final] >= 0).all() and len(final) > 1000 and (labels >= 0).sum() - len(final) <= 1
    seqs = [int(index[p]) + 1 for p in final]
    np.testing.assert_array_equal([outcomes[s].realised for s in seqs], labels[final])
    np.testing.assert_array_equal([outcomes[s].label_return for s in seqs], r[final])  # bit-identical
    first = min_history(horizon, time)
    rows = final[final >= first]
    pers = persistence_baseline(labels, rows, horizon, time)
    mom = momentum_baseline(mid, rows, horizon, alpha, time)
    np.testing.assert_array_equal([outcomes[int(index[p]) + 1].persistence for p in rows], pers)
    np.testing.assert_array_equal([outcomes[int(index[p]) + 1].momentum for p in rows], mom)
    assert len(set(mom.tolist())) == 3 and len(set(pers.tolist())) == 3  # the comparison is not vacuous
    assert all(outcomes[int(index[p]) + 1].persistence == -1 for p in final[final < first])  # not scored


def test_clock_no_look_ahead() -> None:
    """What is emitted while applying event i depends on events up to i only, and a clock outcome depends on
    the mid in force at t + h and on nothing later."""
    rng = np.random.default_rng(3)
    n = 300
    times = np.cumsum(rng.choice([0.0, 0.1, 0.35], size=n))  # ties included
    mids = 100 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], size=n))
    h = 1.0

    def run(t: np.ndarray, m: np.ndarray) -> list[tuple[int, int, int, float, int, int]]:
        joiner = OutcomeJoiner(LabelSpec(horizon="1s", alpha=1e-5))
        emitted = []
        for i in range(n):
            joiner.on_signal(_clock_signal(i + 1))
            emitted += [(i, o.seq, o.realised, o.label_return, o.persistence, o.momentum)
                        for o in joiner.on_book("GOOG", i + 1, float(t[i]), _book(float(m[i])))]
        return emitted

    base = run(times, mids)
    assert len(base) > 200
    for cut in (50, 151, 240):  # rewrite the future after `cut`: nothing emitted before it may change
        m, t = mids.copy(), times.copy()
        m[cut:] += rng.normal(0, 0.5, n - cut)
        t[cut:] += 0.05
        other = run(t, m)
        assert [e for e in other if e[0] < cut] == [e for e in base if e[0] < cut]
    j = 100  # event seq 101: changing the mid in force at t + h changes its outcome, one after it does not
    e = int(np.searchsorted(times, times[j] + h, side="right")) - 1
    after = e + 1
    label = {s: (r, ret) for _, s, r, ret, _, _ in base}
    for row, matters in ((e, True), (after, False)):
        m = mids.copy()
        m[row] += 0.5
        changed = {s: (r, ret) for _, s, r, ret, _, _ in run(times, m)}
        assert (changed[j + 1] != label[j + 1]) == matters


def test_clock_state_round_trip_gap_and_horizon_mismatch() -> None:
    import json

    rng = np.random.default_rng(4)
    times = np.cumsum(rng.choice([0.0, 0.2, 0.5], size=60))
    mids = 50 + np.cumsum(rng.choice([-0.01, 0.0, 0.01], size=60))
    spec = LabelSpec(horizon="500ms", alpha=1e-4)
    assert spec.horizon == "0.5s" and spec.label_horizon.describe() == "0.5 s"

    def feed(j: OutcomeJoiner, lo: int, hi: int) -> list:
        out = []
        for i in range(lo, hi):
            out += j.on_signal(_clock_signal(i + 1, "0.5s"))
            out += j.on_book("GOOG", i + 1, float(times[i]), _book(float(mids[i])))
        return [(o.seq, o.realised, o.label_return, o.persistence, o.momentum, o.outcome_time) for o in out]

    whole = feed(OutcomeJoiner(spec), 0, 60)
    first = OutcomeJoiner(spec)
    part = feed(first, 0, 23)
    second = OutcomeJoiner(spec)
    second.restore("GOOG", json.loads(json.dumps(first.state_of("GOOG"))))
    assert part + feed(second, 23, 60) == whole and len(whole) > 30

    joiner = OutcomeJoiner(LabelSpec(horizon="1s", alpha=0.0))
    assert joiner.on_signal(_signal(1, horizon=1)) == []  # 1 event is not 1 s
    assert joiner.on_signal(_clock_signal(2, "2s")) == []
    assert joiner.stats.dropped == {"horizon_mismatch": 2}
    events = OutcomeJoiner(LabelSpec(horizon=1, alpha=0.0))
    assert events.on_signal(_clock_signal(1, "1s")) == [] and events.stats.dropped == {"horizon_mismatch": 1}
    # a clock going backwards restarts the label like a gap; the pending outcome is dropped, not misdated
    joiner.on_book("X", 1, 10.0, _book(10.0))
    joiner.on_signal(_clock_signal(1, "1s", symbol="X"))
    assert joiner.on_book("X", 2, 9.0, _book(10.0)) == [] and joiner.stats.dropped["time_reversal"] == 1
    assert joiner.on_book("X", 3, 20.0, _book(10.0)) == []
    with pytest.raises(ModelError, match="defined in events only"):
        LabelSpec(horizon="1s", alpha=0.0, kind="deeplob")
    with pytest.raises(ModelError, match="is not a horizon"):
        LabelSpec(horizon="10", alpha=0.0)
