"""Run-time limit changes: persisted, applied over params.yaml, one audit record each, or not made at all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from hftpipe import audit
from hftpipe.cli import main
from hftpipe.trading.limit_store import LimitStore
from hftpipe.trading.risk import RiskLimits
from hftpipe.trading.state_store import RiskStateError

BASE = RiskLimits(max_position=500.0, max_orders=50)


def _records() -> list[audit.AuditRecord]:
    with audit.open_trail() as trail:
        return trail.records()


def test_overrides_apply_default_then_symbol_and_each_leaves_one_record(tmp_path: Path) -> None:
    store = LimitStore(tmp_path / "risk.db")
    try:
        lowered = store.set(None, "max_position", "300", "tighter everywhere", "rita", BASE)
        assert lowered == {"symbol": "*", "limit": "max_position", "previous": 500.0, "value": 300.0, "raised": False}
        raised = store.set("GOOG", "max_position", 800, "more room for GOOG", "rita", BASE)
        assert raised["previous"] == 300.0 and raised["raised"] is True  # GOOG inherited the new default
        off = store.set("GOOG", "max_orders", "0", "no rate limit on GOOG", "adam", BASE)
        assert off["raised"] is True and off["value"] == 0
        store.set(None, "max_daily_loss", "inf", "switch off", "adam", BASE)
        default, per_symbol = store.engine_limits(BASE)
    finally:
        store.close()
    assert (default.max_position, math.isinf(default.max_daily_loss)) == (300.0, True)
    assert (per_symbol["GOOG"].max_position, per_symbol["GOOG"].max_orders) == (800.0, 0)
    assert math.isinf(per_symbol["GOOG"].max_daily_loss)  # a symbol override inherits the default's overrides
    records = _records()
    assert [(r.action, r.subject, r.actor) for r in records] == [
        ("limit_change", "risk/*/max_position", "rita"), ("limit_change", "risk/GOOG/max_position", "rita"),
        ("limit_change", "risk/GOOG/max_orders", "adam"), ("limit_change", "risk/*/max_daily_loss", "adam")]
    assert records[3].details["value"] == "inf"  # JSON has no infinity


@pytest.mark.parametrize(("name", "value", "message"), [
    ("max_positions", "1", "unknown risk limit 'max_positions'"),
    ("max_position", "lots", "'lots' is not a number"),
    ("max_position", "-5", "must be a number >= 0"),
    ("max_position", "nan", "must be a number >= 0"),
    ("max_orders", "2.5", "must be a whole number"),
])
def test_bad_limits_are_refused_by_name(tmp_path: Path, name: str, value: str, message: str) -> None:
    store = LimitStore(tmp_path / "risk.db")
    try:
        with pytest.raises(RiskStateError, match=message):
            store.set(None, name, value, "why", "rita", BASE)
        assert store.overrides() == {}
    finally:
        store.close()
    assert _records() == []


def test_no_limit_change_without_its_audit_record(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = LimitStore(tmp_path / "risk.db")
    try:
        with pytest.raises(OSError):
            store.set(None, "max_position", "900", "why", "rita", BASE, audit_url=f"sqlite:///{tmp_path}/file/a.db")
        assert store.overrides() == {}  # rolled back
    finally:
        store.close()


def test_cli_sets_and_shows_limits(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["risk", "limits", "--symbol", "GOOG", "--set", "max_position=200",
                                "--reason", "earnings", "--actor", "rita"])
    assert done.exit_code == 0, done.output
    assert "max_position for GOOG: 500.0 -> 200.0; audit record written" in done.output
    shown = runner.invoke(main, ["risk", "limits", "--json"])
    table = json.loads(shown.output)
    assert table["GOOG"]["max_position"] == 200.0 and table["*"]["max_position"] == 500.0
    refused = runner.invoke(main, ["risk", "limits", "--set", "max_position=1"])
    assert refused.exit_code == 2 and "a risk-limit change needs a reason" in refused.output
    assert [r.actor for r in _records()] == ["rita"]
