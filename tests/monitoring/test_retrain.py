"""The retrain trigger: fires on a drifted sequence, not on a clean one; hold time, new data, cooldown."""

from __future__ import annotations

import numpy as np

from hftpipe.monitoring.quality import RollingQuality
from hftpipe.monitoring.retrain import Decision, Observation, TriggerPolicy, TriggerState, decide
from tests.monitoring.test_quality import outcome

POLICY = TriggerPolicy(min_outcomes=200, decay_margin=0.02, min_hold_s=60.0, min_new_rows=1000,
                       cooldown_s=3600.0)


def _replay(accuracy_of, seconds: int, step: int = 10, seed: int = 0, drift_of=lambda t: False,
            policy: TriggerPolicy = POLICY) -> list[Decision]:
    """Outcomes at 10 per second whose model is right with probability accuracy_of(t); baselines are noise
    around 40 %; the trigger is checked every ``step`` s."""
    rng = np.random.default_rng(seed)
    quality = RollingQuality(window=500)
    state, decisions = TriggerState(), []
    for t in range(seconds):
        for _ in range(10):
            y = int(rng.integers(0, 3))
            model = y if rng.random() < accuracy_of(t) else int(rng.integers(0, 3))
            pers = y if rng.random() < 0.4 else int(rng.integers(0, 3))
            mom = y if rng.random() < 0.4 else int(rng.integers(0, 3))
            quality.add(outcome(y, model, pers, mom))
        if t % step == 0:
            snap = quality.snapshot()
            obs = Observation(time=float(t), rows_recorded=100 * t, outcomes=snap.n,
                              model_macro_f1=snap.scores["model"]["macro_f1"],
                              baseline_macro_f1={b: snap.scores[b]["macro_f1"] for b in ("persistence", "momentum")},
                              drift=drift_of(t))
            decision, state = decide(policy, state, obs)
            decisions.append(decision)
    return decisions


def test_clean_replay_never_fires() -> None:
    decisions = _replay(lambda t: 0.7, 1200)
    assert not any(d.trigger for d in decisions)
    assert not any(d.reasons for d in decisions[10:])  # the model stays above the baselines


def test_decayed_replay_fires_once_held_then_respects_the_cooldown() -> None:
    # The model decays at t=300 s (right 10 % of the time beyond chance): below both baselines from then on.
    decisions = _replay(lambda t: 0.7 if t < 300 else 0.05, 1500)
    fired = [i * 10 for i, d in enumerate(decisions) if d.trigger]
    assert len(fired) == 1  # 1500 s < cooldown: once only, although the decay persists
    first_reason = next(i * 10 for i, d in enumerate(decisions) if "below_baseline" in d.reasons)
    assert 300 <= first_reason < 400
    assert fired[0] - first_reason >= POLICY.min_hold_s
    d = decisions[fired[0] // 10]
    assert d.evidence["model_macro_f1"] < d.evidence["best_baseline_macro_f1"] - POLICY.decay_margin
    assert d.evidence["held_s"] >= 60 and d.evidence["new_rows"] >= 1000
    later = decisions[fired[0] // 10 + 1:]
    assert later and all(d.blocked_by and d.blocked_by.startswith(("cooldown", "held")) for d in later)
    assert any(d.blocked_by.startswith("cooldown") for d in later)


def test_drift_alone_fires_and_a_blip_does_not() -> None:
    drifted = _replay(lambda t: 0.7, 400, drift_of=lambda t: t >= 100)
    assert [i * 10 for i, d in enumerate(drifted) if d.trigger] == [160]  # 100 + 60 s hold
    assert drifted[16].reasons == ("drift",)
    blip = _replay(lambda t: 0.7, 400, drift_of=lambda t: 100 <= t < 150 or 200 <= t < 250)
    assert not any(d.trigger for d in blip)  # 50 s runs never reach the 60 s hold


def test_cooldown_ends_and_new_data_is_required() -> None:
    policy = TriggerPolicy(min_hold_s=0.0, min_new_rows=500, cooldown_s=100.0)
    state = TriggerState()
    seen = []
    for t, rows in ((0, 600), (50, 2000), (99, 3000), (100, 3000), (200, 3200), (300, 3600)):
        d, state = decide(policy, state, Observation(time=float(t), rows_recorded=rows, drift=True))
        seen.append((t, d.trigger, d.blocked_by))
    assert seen[0][1] and not seen[1][1] and seen[1][2].startswith("cooldown")
    assert not seen[2][1]
    assert seen[3][1]  # cooldown over, 2400 new rows
    assert not seen[4][1] and seen[4][2] == "200 new rows of 500"
    assert seen[5][1]


def test_no_drift_detector_and_too_few_outcomes_are_no_reason() -> None:
    d, _ = decide(POLICY, TriggerState(), Observation(time=0.0, rows_recorded=10**6, outcomes=10,
                                                      model_macro_f1=0.1, baseline_macro_f1={"momentum": 0.5}))
    assert d.reasons == () and not d.trigger and d.blocked_by is None
