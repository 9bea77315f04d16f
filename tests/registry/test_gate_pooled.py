"""The promotion gate for a model evaluated on several instruments: per-instrument margins and their mean,
never macro-F1 over the union of instruments."""

from __future__ import annotations

import pytest

from hftpipe.config import RegisterConfig
from hftpipe.registry.gate import CandidateScore, ChampionScore, decide_pooled


def _score(f1: float, point: float, low: float, net: float = 1.0) -> CandidateScore:
    return CandidateScore(macro_f1=f1, margin_point=point, margin_low=low, margin_high=point + 0.02,
                          best_baseline="persistence", best_baseline_macro_f1=f1 - point, net_pnl=net, horizon=10)


RULES = RegisterConfig(min_margin=0.0, use_interval=True)


def _checks(decision) -> dict[str, bool]:
    return {c.name: c.passed for c in decision.checks}


def test_mean_of_lower_bounds_and_every_point_margin_must_pass() -> None:
    good = [("GOOG 2012-06-21", _score(0.48, 0.06, 0.03)), ("AAPL 2012-06-21", _score(0.45, 0.02, 0.001))]
    assert decide_pooled(good, None, RULES).passed
    # one instrument loses to its baseline (point margin below zero) however good the mean is
    one_loses = [("GOOG 2012-06-21", _score(0.60, 0.30, 0.25)), ("AAPL 2012-06-21", _score(0.40, -0.005, -0.03))]
    d = decide_pooled(one_loses, None, RULES)
    assert _checks(d) == {"mean_baseline_margin": True, "every_instrument_margin": False, "champion_macro_f1": True}
    assert "AAPL 2012-06-21 -0.0050 < required +0.0000" in d.reasons[1]
    # every point margin positive, but the mean of the 95% lower bounds is not above the required margin
    shaky = [("GOOG", _score(0.48, 0.01, -0.02)), ("AAPL", _score(0.45, 0.01, 0.01))]
    assert _checks(decide_pooled(shaky, None, RULES))["mean_baseline_margin"] is False
    # with use_interval false the mean of the point margins is used
    assert decide_pooled(shaky, None, RegisterConfig(min_margin=0.0, use_interval=False)).passed


def test_champion_is_compared_on_the_mean_over_instruments() -> None:
    cands = [("GOOG", _score(0.50, 0.05, 0.02)), ("AAPL", _score(0.40, 0.03, 0.01))]
    beaten = [ChampionScore("3", 10, 0.52), ChampionScore("3", 10, 0.37)]  # mean 0.445 <= 0.45
    d = decide_pooled(cands, beaten, RULES)
    assert d.passed and "mean macro-F1 over 2 instruments 0.4500 >= champion v3 0.4450" in d.reasons[2]
    better = [ChampionScore("3", 10, 0.52), ChampionScore("3", 10, 0.40)]
    assert _checks(decide_pooled(cands, better, RULES))["champion_macro_f1"] is False
    unscored = [ChampionScore("3", 10, 0.52), ChampionScore("3", 10, None, note="another level count")]
    d = decide_pooled(cands, unscored, RULES)
    assert not d.passed and "could not be scored on AAPL: another level count" in d.reasons[2]
    other_k = [ChampionScore("3", 50, 0.1), ChampionScore("3", 50, 0.1)]
    assert "not comparable" in decide_pooled(cands, other_k, RULES).reasons[2]


def test_net_pnl_is_required_per_instrument_when_configured() -> None:
    rules = RegisterConfig(min_margin=0.0, require_net_pnl=True)
    cands = [("GOOG", _score(0.5, 0.05, 0.02, net=3.0)), ("AAPL", _score(0.4, 0.03, 0.01, net=-0.5))]
    d = decide_pooled(cands, None, rules)
    assert _checks(d)["net_pnl"] is False and d.reasons[-1].startswith("fail: AAPL: net PnL -0.5000 < 0")
    champs = [ChampionScore("1", 10, 0.3, net_pnl=2.0), ChampionScore("1", 10, 0.3, net_pnl=-1.0)]
    assert _checks(decide_pooled(cands, champs, rules))["net_pnl"] is True


def test_champions_must_match_the_instruments() -> None:
    from hftpipe.errors import RegistryError

    with pytest.raises(RegistryError, match="1 champion scores for 2 instruments"):
        decide_pooled([("A", _score(0.5, 0.1, 0.1)), ("B", _score(0.5, 0.1, 0.1))], [ChampionScore("1", 10, 0.3)], RULES)
