"""``hftpipe risk``: the persisted kill switch, one audit record per change, the engine follows the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hftpipe import audit
from hftpipe.cli import main
from hftpipe.trading.risk import DenyReason, RiskEngine, RiskLimits, RiskState
from hftpipe.trading.state_store import RiskStateError, RiskStateStore


def test_halt_reduce_resume_status_and_one_audit_record_each(hftpipe_home: Path) -> None:
    run = CliRunner().invoke
    status = run(main, ["risk", "status", "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["state"] == "ACTIVE"
    out = run(main, ["risk", "halt", "--reason", "fat finger on desk 3", "--actor", "alice"])
    assert out.exit_code == 0 and "ACTIVE -> HALTED (by alice: fat finger on desk 3)" in out.output
    assert run(main, ["risk", "reduce", "--reason", "unwind", "--actor", "bob"]).exit_code == 0
    assert run(main, ["risk", "resume", "--reason", "all clear", "--actor", "bob"]).exit_code == 0
    status = json.loads(run(main, ["risk", "status", "--json"]).output)
    assert status["state"] == "ACTIVE" and status["version"] == 3 and status["actor"] == "bob"
    with audit.open_trail() as trail:
        recs = trail.records()
        assert trail.verify().ok
    assert [(r.action, r.actor, r.details["state"]) for r in recs] == [
        ("kill_switch", "alice", "HALTED"), ("risk_state", "bob", "REDUCING"), ("risk_state", "bob", "ACTIVE")]
    assert recs[0].reason == "fat finger on desk 3" and recs[0].details["previous"] == "ACTIVE"


def test_a_change_needs_a_reason() -> None:
    out = CliRunner().invoke(main, ["risk", "halt", "--reason", " "])
    assert out.exit_code == 2 and "needs --reason TEXT" in out.output
    out = CliRunner().invoke(main, ["risk", "halt"])
    assert out.exit_code == 2 and "--reason" in out.output


def test_failed_audit_write_rolls_the_change_back(tmp_path: Path) -> None:
    store = RiskStateStore(tmp_path / "risk.db")
    with pytest.raises(audit.AuditError):
        store.change(RiskState.HALTED, "x", "alice", audit_url="mysql://nowhere")
    assert store.current().state is RiskState.ACTIVE and store.current().version == 0
    with pytest.raises(RiskStateError):
        store.change(RiskState.HALTED, "", "alice")


def test_engine_follows_the_store_before_the_next_order(tmp_path: Path) -> None:
    store = RiskStateStore(tmp_path / "risk.db")
    eng = RiskEngine(RiskLimits(max_orders=0))
    eng.on_mark("GOOG", 100.0)
    assert not store.apply_to(eng) and eng.check("GOOG", 1, 1, None, now=0.0).allowed
    store.change(RiskState.HALTED, "kill", "alice", audit_url=f"sqlite:///{tmp_path / 'audit.db'}")
    assert store.apply_to(eng, now=1.0)  # what the trader does before each order
    assert eng.check("GOOG", 1, 1, None, now=1.0).reason is DenyReason.HALTED
    assert eng.drain_changes()[0].actor == "alice"
    assert not store.apply_to(eng)  # nothing new
