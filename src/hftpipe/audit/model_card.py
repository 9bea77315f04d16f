"""Model cards: what a registered version is, what it was trained and judged on, how it did, and its limits.

Pure functions over plain dicts (the bundle's ``bundle.json``, the evaluation ``report.json``, an optional
``hftpipe backtest --json`` report and the gate's verdict), so the card is testable without MLflow; the
registry stores it with the version (artifact + tags) at registration. Numbers are copied from the reports,
never recomputed; what is missing says so ("not run") instead of being left out.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hftpipe.features.labels import CLASS_NAMES
from hftpipe.horizons import horizon_value, parse_horizon

SCHEMA = "hftpipe.model_card/1"


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _pick(source: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: source[k] for k in keys if isinstance(source, dict) and source.get(k) is not None}


def _metrics(block: Any) -> dict[str, Any]:
    out = {k: _num(block.get(k)) for k in ("macro_f1", "accuracy", "mcc") if isinstance(block, dict)}
    interval = block.get("macro_f1_interval") if isinstance(block, dict) else None
    if isinstance(interval, dict):
        out["macro_f1_95"] = [_num(interval.get("low")), _num(interval.get("high"))]
    return out


def _trading_backtest(backtest: dict[str, Any] | None, bundle_info: dict[str, Any]) -> dict[str, Any]:
    """The policies' results from a ``hftpipe backtest --json`` report made for this model, else "not run"."""
    if not backtest:
        return {"status": "not run",
                "note": "the queue-aware backtest is too slow to run inside registration; run `hftpipe backtest "
                        "--model models:/NAME/VERSION --json F` and register with --backtest F"}
    model = backtest.get("model") or {}
    for key in ("horizon", "window"):
        # horizons compared with their units: 10 (events) is not '10s'
        same = (horizon_value(model[key]) == horizon_value(bundle_info[key]) if key == "horizon"
                else int(model[key]) == int(bundle_info[key])) if (
            model.get(key) is not None and bundle_info.get(key) is not None) else True
        if not same:
            return {"status": "not run",
                    "note": f"the backtest report given was made for a model with {key}={model[key]}, this one has "
                            f"{key}={bundle_info[key]}; it was ignored"}
    policies: dict[str, Any] = {}
    for policy, by_signal in (backtest.get("results") or {}).items():
        policies[policy] = {
            signal: {"net_pnl": _num(r.get("net_pnl")), "net_pnl_95": [_num((r.get("net_pnl_interval") or {}).get("low")),
                                                                     _num((r.get("net_pnl_interval") or {}).get("high"))],
                     "gross_pnl": _num(r.get("gross_pnl")), "fills": r.get("n_fills"),
                     "fill_ratio": _num(r.get("fill_ratio")), "sharpe": _num(r.get("sharpe")),
                     "max_drawdown": _num(r.get("max_drawdown"))}
            for signal, r in (by_signal or {}).items() if isinstance(r, dict)}
    data = backtest.get("data") or {}
    return {"status": "from report", "ref": model.get("ref"), "data": _pick(data, ("symbol", "date", "scope", "events")),
            "policies": policies}


def _limitations(card: dict[str, Any], report: dict[str, Any]) -> list[str]:
    out = []
    trained = card["data"]["trained_on"]
    evaluated = card["data"]["evaluated_on"]
    out.append(f"Trained on {trained.get('symbol', '?')} {trained.get('date', '?')} only "
               f"({trained.get('rows', '?')} rows, {trained.get('levels', '?')} book level(s)): behaviour on other "
               "symbols, days and market regimes is unknown.")
    if evaluated.get("symbol") and trained.get("symbol") and evaluated["symbol"] != trained["symbol"]:
        out.append(f"Evaluated on {evaluated['symbol']} {evaluated.get('date', '')}, not on the symbol it was trained on.")
    if evaluated.get("scope") == "test":
        out.append("Scored on the held-out test split of the same day (time-ordered, purged): one day is a small sample.")
    margin = _num((report.get("margin") or {}).get("point")) if isinstance(report.get("margin"), dict) else None
    best = report.get("best_baseline")
    if margin is not None and margin <= 0:
        out.append(f"Does not beat the best naive baseline ({best}) on macro-F1 (margin {margin:+.4f}).")
    per_class = (report.get("model") or {}).get("per_class") or {}
    for cls in CLASS_NAMES:
        recall = _num((per_class.get(cls) or {}).get("recall"))
        if recall is not None and recall < 0.1:
            out.append(f"Rarely predicts '{cls}' (recall {recall:.2f}).")
    model_bt = card["evaluation_backtest"].get("model") or {}
    if model_bt.get("net_pnl") is not None and model_bt["net_pnl"] < 0:
        out.append(f"Loses money after costs in the evaluation backtest (market orders crossing the spread): net "
                   f"{model_bt['net_pnl']:+.2f} $.")
    if card["trading_backtest"]["status"] != "from report":
        out.append("No queue-aware backtest under the trading policies is attached: passive-quoting results are unknown.")
    return out


def build_model_card(model_name: str, version: str, bundle_info: dict[str, Any], report: dict[str, Any],
                     gate: dict[str, Any], registered_by: str, registered_at: str, promoted_by: str | None,
                     run_id: str | None = None, lineage: dict[str, Any] | None = None,
                     backtest: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card as a JSON-ready dict.

    Args:
        bundle_info: the bundle's ``bundle.json``. report: the evaluation ``report.json`` the gate used.
        gate: ``{"decision": "pass"|"fail", "alias": ..., "reasons": [...]}``.
        promoted_by: who promoted it (None: not promoted at registration).
        lineage: e.g. git commit and dirty flag. backtest: a ``hftpipe backtest --json`` report, or None.
    """
    meta = bundle_info.get("feature_meta") or {}
    baselines = {name: _metrics(block) for name, block in (report.get("baselines") or {}).items()}
    eval_backtest = {name: _pick({k: _num(v) for k, v in r.items()} if isinstance(r, dict) else {},
                                 ("net_pnl", "gross_pnl", "n_trades", "sharpe", "hit_rate"))
                     for name, r in (report.get("backtest") or {}).items() if isinstance(r, dict)}
    horizon, window, levels = bundle_info.get("horizon"), bundle_info.get("window"), bundle_info.get("levels")
    parsed = parse_horizon(horizon) if horizon is not None else None
    ahead = parsed.describe() if parsed is not None else "n/a"
    card: dict[str, Any] = {
        "schema": SCHEMA,
        "model": {"name": model_name, "version": str(version), "architecture": bundle_info.get("model"),
                  "horizon_events": parsed.events if parsed is not None else None,
                  "horizon": ahead, "window": window, "levels": levels, "alpha": _num(bundle_info.get("alpha")),
                  "bundle_sha256": (report.get("model_info") or {}).get("bundle_sha256")},
        "data": {"trained_on": _pick(meta, ("symbol", "date", "source_sha256", "rows", "levels", "sampling", "label")),
                 "evaluated_on": _pick(report.get("data") or {}, ("symbol", "date", "source_sha256", "features_sha256",
                                                                  "scope", "scored_rows", "raw_source"))},
        "lineage": {"mlflow_run_id": run_id, **(lineage or {})},
        "metrics": {"model": _metrics(report.get("model") or {}), "baselines": baselines,
                    "best_baseline": report.get("best_baseline"),
                    "margin_over_best_baseline": _pick(report.get("margin") or {}, ("point", "low", "high"))},
        "evaluation_backtest": eval_backtest,
        "trading_backtest": _trading_backtest(backtest, bundle_info),
        "gate": {"decision": gate.get("decision"), "alias": gate.get("alias"), "reasons": list(gate.get("reasons") or [])},
        "promotion": {"registered_by": registered_by, "registered_at": registered_at,
                      "promoted": promoted_by is not None, "promoted_by": promoted_by},
        "intended_use": (f"Research and paper trading: the direction of the mid price {ahead} ahead (down / "
                         f"stationary / up) from the last {window} states of {levels} book level(s), as the signal of "
                         "hftpipe.trading's policies under the pre-trade risk engine. Not for live orders without a "
                         "queue-aware backtest under the chosen policy, the promotion gate and a recorded promotion."),
    }
    card["limitations"] = _limitations(card, report)
    return card


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "n/a" if value is None else (format(value, spec) if isinstance(value, (int, float)) else str(value))


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (what the UI and the MLflow artifact show)."""
    m, data, metrics, promo = card["model"], card["data"], card["metrics"], card["promotion"]
    lines = [f"# Model card: {m['name']} version {m['version']}", "",
             (f"{m.get('architecture')} · horizon {m.get('horizon') or str(m.get('horizon_events')) + ' events'} · window {m.get('window')} · "
              f"{m.get('levels')} level(s)"), "", "## Intended use", "", card["intended_use"], "",
             "## Data and lineage", ""]
    for label, block in (("Trained on", data["trained_on"]), ("Evaluated on", data["evaluated_on"]),
                         ("Lineage", card["lineage"])):
        lines.append(f"- **{label}**: " + (", ".join(f"{k} `{v}`" for k, v in block.items()) or "unknown"))
    lines += ["", "## Metrics against baselines", "", "| signal | macro-F1 | 95% interval | accuracy | MCC |",
              "|---|---:|---:|---:|---:|"]
    for name, row in [("model", metrics["model"]), *metrics["baselines"].items()]:
        ci = row.get("macro_f1_95") or [None, None]
        lines.append(f"| {name} | {_fmt(row.get('macro_f1'))} | {_fmt(ci[0])} to {_fmt(ci[1])} | "
                     f"{_fmt(row.get('accuracy'))} | {_fmt(row.get('mcc'))} |")
    margin = metrics["margin_over_best_baseline"]
    lines += ["", (f"Margin over the best baseline ({metrics.get('best_baseline')}): {_fmt(margin.get('point'), '+.4f')} "
                   f"(95% {_fmt(margin.get('low'), '+.4f')} to {_fmt(margin.get('high'), '+.4f')})."), "",
              "## Backtests", "", "Evaluation backtest (market orders crossing the spread):", "",
              "| signal | net $ | gross $ | trades | Sharpe |", "|---|---:|---:|---:|---:|"]
    for name, r in card["evaluation_backtest"].items():
        lines.append(f"| {name} | {_fmt(r.get('net_pnl'), '+.2f')} | {_fmt(r.get('gross_pnl'), '+.2f')} | "
                     f"{_fmt(r.get('n_trades'), '.0f')} | {_fmt(r.get('sharpe'), '+.3f')} |")
    tb = card["trading_backtest"]
    lines += ["", "Queue-aware backtest under each trading policy: "
              + ("from " + str(tb.get("ref")) if tb["status"] == "from report" else f"**not run** ({tb['note']})"), ""]
    if tb["status"] == "from report":
        lines += ["| policy | signal | net $ | 95% interval $ | fills | fill ratio | Sharpe | max DD $ |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for policy, by in tb["policies"].items():
            for name, r in by.items():
                ci = r.get("net_pnl_95") or [None, None]
                lines.append(f"| {policy} | {name} | {_fmt(r.get('net_pnl'), '+.2f')} | {_fmt(ci[0], '+.0f')} to "
                             f"{_fmt(ci[1], '+.0f')} | {_fmt(r.get('fills'), '.0f')} | {_fmt(r.get('fill_ratio'), '.3f')} | "
                             f"{_fmt(r.get('sharpe'), '+.3f')} | {_fmt(r.get('max_drawdown'), '.0f')} |")
    gate = card["gate"]
    lines += ["", "## Promotion", "", f"Gate: **{gate['decision']}** -> {gate['alias']}", ""]
    lines += [f"- {r}" for r in gate["reasons"]]
    lines += ["", f"Registered by {promo['registered_by']} at {promo['registered_at']}; "
                  + (f"promoted to champion by {promo['promoted_by']}." if promo["promoted"] else "not promoted."),
              "", "## Limitations", ""]
    lines += [f"- {text}" for text in card["limitations"]]
    return "\n".join(lines) + "\n"


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=2, sort_keys=False, allow_nan=False) + "\n"
