"""The service's trigger wiring without a broker: a drift provider's flag fires the trigger once (cooldown),
the decision and its evidence land in the audit trail, and the retrain hook is called only when enabled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hftpipe import audit
from hftpipe.config import load_config
from hftpipe.monitoring.outcomes import LabelSpec
from hftpipe.monitoring.service import FeedbackService


def _service(tmp_path: Path, retrain: bool, calls: list, drifted: list[bool]) -> FeedbackService:
    cfg = load_config(None, [f"feedback.output={tmp_path / 'fb'}", f"feedback.retrain={str(retrain).lower()}",
                             "feedback.retrain_min_hold_s=10", "feedback.retrain_min_new_rows=0",
                             "feedback.retrain_cooldown_s=100"])
    flags = iter(drifted)
    return FeedbackService(cfg, client=None, spec=LabelSpec(horizon=10, alpha=1e-5), model=("hftpipe-lob", "7"),
                           drift=lambda: (next(flags), {"psi": {"spread_bps": 0.9}}),
                           on_trigger=lambda decision: calls.append(decision))


@pytest.mark.parametrize("retrain", [True, False])
def test_drift_fires_once_is_audited_and_retrains_only_when_enabled(tmp_path: Path, retrain: bool) -> None:
    calls: list = []
    # t:      0      5     10     20     50    120    130
    flags = [True, True, True, True, False, True, True]
    service = _service(tmp_path, retrain, calls, flags)

    async def run() -> list:
        return [(await service.check_trigger(t)).trigger for t in (0.0, 5.0, 10.0, 20.0, 50.0, 120.0, 130.0)]

    fired = asyncio.run(run())
    # held 10 s at t=10: fires; within the cooldown nothing; the reason breaks at 50 and holds again 120..130,
    # after the cooldown (10 + 100 = 110): fires again at 130.
    assert fired == [False, False, True, False, False, False, True]
    with audit.open_trail() as trail:
        records = [r for r in trail.records() if r.action == audit.RETRAIN_TRIGGER]
    assert [r.reason for r in records] == ["drift", "drift"]
    first = records[0].details
    assert first["evidence"]["drift_detail"] == {"psi": {"spread_bps": 0.9}}
    assert first["evidence"]["held_s"] == 10.0 and first["model_version"] == "7"
    assert first["evidence"]["model_macro_f1"] is None  # no outcome yet: NaN stored as null
    assert first["action"] == ("retrain" if retrain else "none (feedback.retrain off)")
    assert len(calls) == (2 if retrain else 0)
    assert service.metrics.retrain_triggers._value.get() == 2
    service.buffer.close()
