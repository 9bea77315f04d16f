"""Model cards from the bundle, the evaluation report, an optional trading backtest and the gate (pure)."""

from __future__ import annotations

import json

from hftpipe.audit.model_card import build_model_card, card_json, render_markdown

BUNDLE = {"model": "lstm", "horizon": 10, "window": 50, "levels": 5, "alpha": 1e-6,
          "feature_meta": {"symbol": "GOOG", "date": "2012-06-21", "source_sha256": "ab" * 32, "rows": 147916,
                           "levels": 5, "sampling": "all", "label": "forward", "ignored": "x"}}


def _report(margin: float = 0.02, stationary_recall: float = 0.03, net: float = -120.5) -> dict:
    return {
        "model": {"macro_f1": 0.41, "accuracy": 0.55, "mcc": 0.15,
                  "macro_f1_interval": {"point": 0.41, "low": 0.40, "high": 0.42},
                  "per_class": {"down": {"recall": 0.5}, "stationary": {"recall": stationary_recall},
                                "up": {"recall": 0.66}}},
        "baselines": {"majority": {"macro_f1": 0.22, "accuracy": 0.49, "mcc": 0.0},
                      "persistence": {"macro_f1": 0.39, "accuracy": 0.5, "mcc": 0.1,
                                      "macro_f1_interval": {"low": 0.38, "high": 0.40}}},
        "best_baseline": "persistence",
        "margin": {"point": margin, "low": margin - 0.01, "high": margin + 0.01},
        "backtest": {"model": {"net_pnl": net, "gross_pnl": 50.5, "n_trades": 3000, "sharpe": -1.2},
                     "majority": {"net_pnl": 0.0, "gross_pnl": 0.0, "n_trades": 0, "sharpe": None}},
        "model_info": {"bundle_sha256": "cd" * 32},
        "data": {"symbol": "GOOG", "date": "2012-06-21", "scope": "test", "features_sha256": "ef" * 32,
                 "scored_rows": 20000},
    }


GATE = {"decision": "pass", "alias": "champion", "reasons": ["pass: margin ok", "pass: beats champion"]}


def test_card_without_a_trading_backtest_says_not_run_and_lists_its_limits() -> None:
    card = build_model_card("hftpipe-lob", "3", BUNDLE, _report(), GATE, registered_by="carol",
                            registered_at="2026-12-01T10:00:00Z", promoted_by="carol", run_id="r1",
                            lineage={"git.commit": "f" * 40})
    assert card["model"] == {"name": "hftpipe-lob", "version": "3", "architecture": "lstm", "horizon_events": 10,
                             "horizon": "10 events",
                             "window": 50, "levels": 5, "alpha": 1e-6, "bundle_sha256": "cd" * 32}
    assert "ignored" not in card["data"]["trained_on"] and card["data"]["evaluated_on"]["scope"] == "test"
    assert card["metrics"]["baselines"]["persistence"] == {"macro_f1": 0.39, "accuracy": 0.5, "mcc": 0.1,
                                                           "macro_f1_95": [0.38, 0.40]}
    assert card["trading_backtest"]["status"] == "not run"
    assert card["promotion"] == {"registered_by": "carol", "registered_at": "2026-12-01T10:00:00Z",
                                 "promoted": True, "promoted_by": "carol"}
    limits = "\n".join(card["limitations"])
    assert "Trained on GOOG 2012-06-21 only (147916 rows, 5 book level(s))" in limits
    assert "Rarely predicts 'stationary' (recall 0.03)." in limits
    assert "Loses money after costs in the evaluation backtest (market orders crossing the spread): net -120.50 $." in limits
    assert "No queue-aware backtest under the trading policies is attached" in limits
    assert "Does not beat" not in limits
    md = render_markdown(card)
    assert md.startswith("# Model card: hftpipe-lob version 3\n")
    assert "| model | 0.4100 | 0.4000 to 0.4200 | 0.5500 | 0.1500 |" in md
    assert "| majority | 0.2200 | n/a to n/a | 0.4900 | 0.0000 |" in md
    assert "Queue-aware backtest under each trading policy: **not run**" in md
    assert "promoted to champion by carol." in md
    assert json.loads(card_json(card)) == card  # plain JSON, no NaN


def test_card_with_a_trading_backtest_of_this_model() -> None:
    backtest = {"model": {"ref": "models:/hftpipe-lob/3", "name": "lstm", "horizon": 10, "window": 50},
                "data": {"symbol": "GOOG", "date": "2012-06-21", "scope": "test", "events": 100},
                "results": {"passive": {"model": {"net_pnl": 12.5, "net_pnl_interval": {"low": -3.0, "high": 30.0},
                                                  "gross_pnl": 20.0, "n_fills": 40, "fill_ratio": 0.2,
                                                  "sharpe": 0.3, "max_drawdown": 15.0}}}}
    card = build_model_card("hftpipe-lob", "3", BUNDLE, _report(margin=-0.01), {**GATE, "decision": "fail",
                                                                              "alias": "challenger"},
                            registered_by="dave", registered_at="t", promoted_by=None, backtest=backtest)
    assert card["trading_backtest"]["status"] == "from report"
    assert card["trading_backtest"]["policies"]["passive"]["model"]["net_pnl_95"] == [-3.0, 30.0]
    assert "Does not beat the best naive baseline (persistence) on macro-F1 (margin -0.0100)." in card["limitations"]
    md = render_markdown(card)
    assert "| passive | model | +12.50 | -3 to +30 | 40 | 0.200 | +0.300 | 15 |" in md
    assert "not promoted." in md

    other = {**backtest, "model": {**backtest["model"], "horizon": 50}}
    ignored = build_model_card("hftpipe-lob", "3", BUNDLE, _report(), GATE, registered_by="d", registered_at="t",
                               promoted_by=None, backtest=other)
    assert ignored["trading_backtest"] == {
        "status": "not run", "note": "the backtest report given was made for a model with horizon=50, this one has "
                                     "horizon=10; it was ignored"}


def test_a_clock_time_model_card_says_seconds_not_events() -> None:
    card = build_model_card("hftpipe-lob", "4", {**BUNDLE, "horizon": "1s", "horizon_unit": "seconds"}, _report(),
                            GATE, registered_by="carol", registered_at="2026-12-01T10:00:00Z", promoted_by=None,
                            run_id="r2", lineage={})
    assert card["model"]["horizon"] == "1 s" and card["model"]["horizon_events"] is None
    assert "1 s ahead" in card["intended_use"]
    assert "horizon 1 s" in render_markdown(card)
