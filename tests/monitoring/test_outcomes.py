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
