"""The promotion gate's pure rules (no MLflow)."""

from __future__ import annotations

import math

import pytest

from hftpipe.config import RegisterConfig
from hftpipe.errors import RegistryError
from hftpipe.registry.gate import CandidateScore, ChampionScore, candidate_from_report, decide


def candidate(macro_f1: float = 0.55, point: float = 0.04, low: float | None = 0.01,
              net_pnl: float | None = 1.5, horizon: int = 10) -> CandidateScore:
    return CandidateScore(macro_f1=macro_f1, margin_point=point, margin_low=low, margin_high=point + 0.03,
                          best_baseline="persistence", best_baseline_macro_f1=macro_f1 - point,
                          net_pnl=net_pnl, horizon=horizon)


def test_first_model_with_positive_interval_passes() -> None:
    decision = decide(candidate(), None, RegisterConfig())
    assert decision.passed and decision.decision == "pass"
    assert decision.reasons[0].startswith("pass: macro-F1 margin over best baseline 'persistence' "
                                          "(95% lower bound) +0.0100 > required +0.0000")
    assert decision.reasons[1] == "pass: no current champion: nothing to beat"


@pytest.mark.parametrize("low, use_interval, min_margin, passed", [
    (-0.01, True, 0.0, False),  # point margin positive but the interval straddles zero
    (-0.01, False, 0.0, True),  # gating on the point margin instead
    (0.01, True, 0.02, False),  # a stricter required margin
    (0.0, True, 0.0, False),  # the bound must be strictly above the required margin
    (None, True, 0.0, False),  # no interval in the report
    (math.nan, True, 0.0, False),
])
def test_margin_rule(low: float | None, use_interval: bool, min_margin: float, passed: bool) -> None:
    rules = RegisterConfig(use_interval=use_interval, min_margin=min_margin)
    decision = decide(candidate(low=low), None, rules)
    assert decision.passed is passed
    assert decision.checks[0].name == "baseline_margin" and decision.checks[0].passed is passed


def test_worse_than_champion_fails_even_with_a_good_margin() -> None:
    champion = ChampionScore(version="3", horizon=10, macro_f1=0.60, net_pnl=2.0)
    decision = decide(candidate(macro_f1=0.55), champion, RegisterConfig())
    assert not decision.passed
    assert decision.reasons[1] == "fail: macro-F1 0.5500 < champion v3 0.6000 on the same test data"


def test_equal_to_champion_passes() -> None:
    champion = ChampionScore(version="1", horizon=10, macro_f1=0.55)
    assert decide(candidate(macro_f1=0.55), champion, RegisterConfig()).passed


def test_champion_at_another_horizon_or_unscored_blocks_promotion() -> None:
    other_k = ChampionScore(version="2", horizon=50, macro_f1=0.1)
    decision = decide(candidate(), other_k, RegisterConfig())
    assert not decision.passed and "horizon k=50" in decision.reasons[1]
    unscored = ChampionScore(version="2", horizon=10, macro_f1=None, note="pass --features")
    decision = decide(candidate(), unscored, RegisterConfig())
    assert not decision.passed and decision.reasons[1].endswith("test data: pass --features")


def test_net_pnl_rule_only_when_configured() -> None:
    champion = ChampionScore(version="1", horizon=10, macro_f1=0.5, net_pnl=3.0)
    assert decide(candidate(net_pnl=1.0), champion, RegisterConfig()).passed
    strict = RegisterConfig(require_net_pnl=True)
    decision = decide(candidate(net_pnl=1.0), champion, strict)
    assert not decision.passed and decision.reasons[2] == "fail: net PnL +1.0000 < champion v1 +3.0000"
    assert not decide(candidate(net_pnl=-0.5), None, strict).passed
    assert decide(candidate(net_pnl=0.5), None, strict).passed
    assert not decide(candidate(net_pnl=None), None, strict).passed


def test_candidate_from_report_reads_names_and_numbers() -> None:
    report = {
        "model": {"macro_f1": 0.52, "accuracy": 0.6},
        "baselines": {"majority": {"macro_f1": 0.2}, "persistence": {"macro_f1": 0.48}},
        "best_baseline": "persistence",
        "margin": {"point": 0.04, "low": 0.01, "high": 0.07},
        "backtest": {"model": {"net_pnl": -1.25}},
    }
    score = candidate_from_report(report, horizon=10, data_id="abc")
    assert score == CandidateScore(0.52, 0.04, 0.01, 0.07, "persistence", 0.48, -1.25, 10, "abc")
    report["best_baseline"] = {"name": "sign", "macro_f1": 0.3}
    assert candidate_from_report(report, horizon=10).best_baseline_macro_f1 == 0.3


@pytest.mark.parametrize("report, message", [
    ({}, "'model' metrics are missing"),
    ({"model": {}}, "model.macro_f1 is missing"),
    ({"model": {"macro_f1": 0.5}}, "margin.point is missing"),
    ({"model": {"macro_f1": "high"}, "margin": {"point": 0.1}}, "model.macro_f1 is 'high', not a number"),
])
def test_incomplete_report_names_the_key(report: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        candidate_from_report(report, horizon=10)
