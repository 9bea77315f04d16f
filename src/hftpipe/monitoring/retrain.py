"""The retrain trigger: a pure decision with its evidence (no I/O, no clock of its own).

A retrain starts when a reason holds without interruption for ``min_hold_s``, at least ``min_new_rows``
live book updates were recorded since the last retrain, and the last trigger is ``cooldown_s`` or more in
the past. Reasons:

- ``drift``: the drift detector (``hftpipe.evaluation.drift``) flags the live window;
- ``below_baseline``: on at least ``min_outcomes`` outcomes, the model's live macro-F1 is below the best
  naive baseline's by more than ``decay_margin``;
- ``below_floor``: the model's live macro-F1 is below ``min_macro_f1``.

The caller feeds one :class:`Observation` at a time (e.g. every ``feedback.retrain_check_s``) with the
state returned by the previous call; :func:`decide` returns the decision, its evidence (what the audit
trail records) and the next state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TriggerPolicy:
    min_outcomes: int = 500
    decay_margin: float = 0.0
    min_macro_f1: float | None = None
    use_drift: bool = True
    min_hold_s: float = 300.0
    min_new_rows: int = 20_000
    cooldown_s: float = 86_400.0

    @classmethod
    def from_config(cls, cfg: Any) -> TriggerPolicy:
        """From the ``feedback`` section of params.yaml."""
        return cls(min_outcomes=cfg.retrain_min_outcomes, decay_margin=cfg.retrain_decay_margin,
                   min_macro_f1=cfg.retrain_min_macro_f1, use_drift=cfg.retrain_drift,
                   min_hold_s=cfg.retrain_min_hold_s, min_new_rows=cfg.retrain_min_new_rows,
                   cooldown_s=cfg.retrain_cooldown_s)


@dataclass(frozen=True)
class Observation:
    """What the monitor sees at one moment."""

    time: float  # seconds (any clock, the same for every observation)
    rows_recorded: int  # live book updates recorded so far (monotonic)
    outcomes: int = 0  # outcomes in the quality window
    model_macro_f1: float = math.nan
    baseline_macro_f1: dict[str, float] = field(default_factory=dict)
    drift: bool | None = None  # None: no drift detector wired in
    drift_detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerState:
    reason_since: float | None = None  # when the current uninterrupted run of reasons began
    last_trigger: float | None = None
    rows_at_last_trigger: int = 0


@dataclass(frozen=True)
class Decision:
    trigger: bool
    reasons: tuple[str, ...]
    blocked_by: str | None  # why no trigger although... (None when triggering or when there is no reason)
    evidence: dict[str, Any]


def reasons_of(policy: TriggerPolicy, obs: Observation) -> list[str]:
    """The reasons to retrain that this observation shows (possibly none)."""
    reasons = []
    if policy.use_drift and obs.drift:
        reasons.append("drift")
    if obs.outcomes >= policy.min_outcomes and not math.isnan(obs.model_macro_f1):
        best = max(obs.baseline_macro_f1.values(), default=math.nan)
        if not math.isnan(best) and obs.model_macro_f1 < best - policy.decay_margin:
            reasons.append("below_baseline")
        if policy.min_macro_f1 is not None and obs.model_macro_f1 < policy.min_macro_f1:
            reasons.append("below_floor")
    return reasons


def decide(policy: TriggerPolicy, state: TriggerState, obs: Observation) -> tuple[Decision, TriggerState]:
    """One evaluation of the trigger; returns (decision, next state)."""
    reasons = reasons_of(policy, obs)
    since = (state.reason_since if state.reason_since is not None else obs.time) if reasons else None
    held = obs.time - since if since is not None else 0.0
    new_rows = obs.rows_recorded - state.rows_at_last_trigger
    cooling = state.last_trigger is not None and obs.time - state.last_trigger < policy.cooldown_s
    blocked = None
    if reasons:
        if held < policy.min_hold_s:
            blocked = f"held {held:.0f} s of {policy.min_hold_s:.0f} s"
        elif new_rows < policy.min_new_rows:
            blocked = f"{new_rows} new rows of {policy.min_new_rows}"
        elif cooling:
            blocked = (f"cooldown: last retrain {obs.time - state.last_trigger:.0f} s ago, "
                       f"{policy.cooldown_s:.0f} s required")
    trigger = bool(reasons) and blocked is None
    best_name, best = max(obs.baseline_macro_f1.items(), key=lambda kv: kv[1], default=(None, math.nan))
    evidence = {
        "time": obs.time, "reasons": reasons, "held_s": held, "new_rows": new_rows, "outcomes": obs.outcomes,
        "model_macro_f1": obs.model_macro_f1, "baseline_macro_f1": dict(obs.baseline_macro_f1),
        "best_baseline": best_name, "best_baseline_macro_f1": best, "drift": obs.drift,
        "drift_detail": dict(obs.drift_detail), "last_trigger": state.last_trigger,
        "policy": dataclasses.asdict(policy),
    }
    if trigger:
        next_state = TriggerState(reason_since=None, last_trigger=obs.time, rows_at_last_trigger=obs.rows_recorded)
    else:
        next_state = dataclasses.replace(state, reason_since=since)
    return Decision(trigger, tuple(reasons), blocked, evidence), next_state


def json_safe(value: Any) -> Any:
    """Evidence as plain JSON for the audit trail: NaN and infinities become None, tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
