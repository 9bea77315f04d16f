"""``hftpipe backtest`` core: the model and the naive baselines under each policy, on one day's event stream.

Rows are chosen exactly as in ``hftpipe evaluate`` (``hftpipe.evaluation.evaluate``): the test split
when the file is the model's own training day, the whole file otherwise; the replay covers every event
from the first scored row to the end of that scope. The model's class probabilities and the baselines'
classes (as one-hot probabilities) are the signals; each (signal, policy) pair runs through a fresh
risk engine built from the ``risk`` section and the execution model built from the ``trading`` section.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.data.schema import read_events
from hftpipe.errors import DataFormatError
from hftpipe.evaluation.baselines import BASELINE_NAMES, baseline_predictions, horizon_rows
from hftpipe.evaluation.evaluate import (
    PREDICT_BATCH,
    _check_compatible,
    _model_book,
    features_for_model,
    is_feature_set,
    resolve_scope,
    scored_rows,
)
from hftpipe.features.sampling import sample_indices
from hftpipe.horizons import parse_horizon
from hftpipe.trading.backtest import BacktestResult, run_backtest
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.policies import POLICY_NAMES, make_policy
from hftpipe.trading.risk import RiskEngine, limits_from_config

log = logging.getLogger(__name__)


def predict_proba_rows(bundle: Any, book: np.ndarray, rows: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
    """Class probabilities (len(rows), 3) for ``rows``, one batch of raw windows at a time."""
    offsets = np.arange(-bundle.window + 1, 1)
    out = np.empty((rows.size, 3), dtype=np.float64)
    with tqdm(total=rows.size, desc="predict", unit="win", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, rows.size, batch):
            chunk = rows[start:start + batch]
            out[start:start + chunk.size] = bundle.predict_proba(book[chunk[:, None] + offsets[None, :]])
            bar.update(chunk.size)
    return out


def one_hot(classes: np.ndarray) -> np.ndarray:
    return np.eye(3, dtype=np.float64)[np.asarray(classes, dtype=np.int64)]


def backtest_sources(cfg: Config, bundle_dir: str | Path, data: str | Path, policies: tuple[str, ...] = POLICY_NAMES,
                     model_ref: str | None = None) -> dict[str, Any]:
    """Backtest the model and every baseline under each policy on a raw LOBSTER file or canonical Parquet.

    Returns:
        The report: ``results[policy][signal]`` -> :meth:`BacktestResult.to_dict`, plus settings and data.
    Raises:
        DataFormatError: ``data`` is a feature folder (the fill model needs the order-by-order events).
        ModelError: the model cannot read this data.
    """
    if is_feature_set(data):
        raise DataFormatError(f"{data} is a feature folder; the fill model needs the order-by-order events: "
                              "pass the raw LOBSTER zip / message CSV or the canonical events Parquet")
    if not Path(data).exists():
        raise DataFormatError(f"{data} does not exist; pass a LOBSTER zip, message CSV or canonical Parquet")
    for name in policies:
        if name not in POLICY_NAMES:
            raise DataFormatError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    workdir = Path(tempfile.mkdtemp(prefix="backtest-", dir=paths.sub("tmp")))
    try:
        features_dir = features_for_model(cfg, bundle_dir, data, workdir)
        events_path = Path(data) if Path(data).suffix == ".parquet" else workdir / "events.parquet"
        return _backtest(cfg, bundle_dir, features_dir, events_path, policies, model_ref or str(bundle_dir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _backtest(cfg: Config, bundle_dir: str | Path, features_dir: Path, events_path: Path,
              policies: tuple[str, ...], model_ref: str) -> dict[str, Any]:
    from hftpipe.features import load_feature_set
    from hftpipe.models.bundle import load_bundle

    tcfg = cfg.trading
    bundle = load_bundle(bundle_dir)
    fs = load_feature_set(features_dir)
    table = read_events(events_path)
    k = bundle.horizon  # k events, or a clock-time horizon such as '1s' (then every rule below needs fs.time)
    horizon = parse_horizon(k)
    for policy_name in policies:  # refuse a policy these settings cannot run (a clock-time hold) before any work
        make_policy(policy_name, tcfg, k)
    labels, _ = _check_compatible(bundle, fs)
    scope = resolve_scope("auto", fs.meta, bundle.feature_meta)
    _, span = scored_rows(fs.split, labels, scope, bundle.window, k, fs.time)
    book = _model_book(fs, bundle.levels)

    # Feature rows -> event rows (identical for sampling "all"; the sampled events otherwise).
    event_of_row = sample_indices(table.book(), fs.meta.get("sampling", "all"))
    if event_of_row.size != len(fs.frame):
        raise DataFormatError(f"{events_path} holds {event_of_row.size} sampled events but the features "
                              f"{len(fs.frame)} rows; they do not come from the same data")
    first, last = int(event_of_row[span[0]]), int(event_of_row[span[-1]])
    events = table.frame.iloc[first:last + 1].reset_index(drop=True)
    local = event_of_row[span] - first  # event index (in the slice) of each span row

    alpha = bundle.alpha if bundle.alpha is not None else fs.alpha(k)
    sources = {"model": predict_proba_rows(bundle, book, span)}
    base = baseline_predictions(labels, fs.mid, fs.split == 0, span, k, alpha, fs.time)
    for name in BASELINE_NAMES:
        sources[name] = one_hot(base[name])

    fees = Fees(tcfg.maker_fee_per_share, tcfg.taker_fee_per_share, tcfg.fee_bps)
    latency = Latency(tcfg.feed_latency_s, tcfg.order_latency_s)
    limits = limits_from_config(cfg.risk)
    symbol = str(table.meta.symbol)
    results: dict[str, dict[str, BacktestResult]] = {}
    for policy_name in policies:
        results[policy_name] = {}
        for name, probs in sources.items():
            signals = np.full((len(events), 3), np.nan)
            signals[local] = probs  # a sampled stream holds its signal until the next sampled event
            if fs.meta.get("sampling", "all") != "all":
                signals = _hold_forward(signals)
            policy = make_policy(policy_name, tcfg, k)
            res = run_backtest(events, signals, policy, RiskEngine(limits), latency, fees, symbol=symbol,
                               markout_events=tcfg.markout_events or horizon_rows(k, fs.time), sharpe_buckets=tcfg.sharpe_buckets,
                               bootstrap=tcfg.bootstrap, block_events=tcfg.block_events, seed=cfg.train.seed,
                               flatten_at_end=tcfg.flatten_at_end)
            log.info("%s / %s: net %.2f $ in %d fills (%.1f s)", policy_name, name, res.net_pnl, res.n_fills,
                     res.elapsed_s)
            results[policy_name][name] = res
    meta = table.meta
    return {
        "model": {"ref": model_ref, "name": bundle.model_name, "horizon": k, "horizon_unit": horizon.unit,
                  "window": bundle.window},
        "data": {"symbol": meta.symbol, "date": meta.date, "source_sha256": meta.source_sha256, "scope": scope,
                 "events": len(events), "time_from": float(events["time"].iloc[0]),
                 "time_to": float(events["time"].iloc[-1])},
        "settings": {"trading": dataclasses.asdict(tcfg), "risk": dataclasses.asdict(cfg.risk)},
        "results": {p: {name: r.to_dict() for name, r in by.items()} for p, by in results.items()},
    }


def _hold_forward(signals: np.ndarray) -> np.ndarray:
    ok = np.isfinite(signals).all(axis=1)
    idx = np.maximum.accumulate(np.where(ok, np.arange(len(signals)), 0))
    out = signals[idx]
    out[: int(np.argmax(ok))] = np.nan
    return out


def render_table(report: dict[str, Any]) -> list[str]:
    """The report as a Markdown table, one row per (policy, signal)."""
    m, d = report["model"], report["data"]
    lines = [(f"Backtest: {m['name']} (horizon {parse_horizon(m['horizon']).describe()}) `{m['ref']}` on {d['symbol']} {d['date']}, scope {d['scope']}, "
             f"{d['events']} events"),
             "",
             ("| policy | signal | net $ | 95% interval $ | gross $ | fees $ | rebates $ | fills | fill ratio | "
             "adverse sel. bps | markout bps | mean abs inv | Sharpe/bucket | max DD $ | risk |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    def bps(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.2f}"

    for policy, by in report["results"].items():
        for name, r in by.items():
            iv = r["net_pnl_interval"]
            denied = sum(r["risk_denials"].values())
            lines.append(
                f"| {policy} | {name} | {r['net_pnl']:+.2f} | {iv['low']:+.0f} to {iv['high']:+.0f} | "
                f"{r['gross_pnl']:+.2f} | {r['fees']:.2f} | {r['rebates']:.2f} | {r['n_fills']} | "
                f"{r['fill_ratio']:.3f} | {bps(r['adverse_selection_bps'])} | {bps(r['markout_bps'])} | "
                f"{r['mean_abs_inventory']:.1f} | {r['sharpe']:+.3f} | {r['max_drawdown']:.0f} | "
                f"{r['risk_state']}{f', {denied} denied' if denied else ''} |")
    return lines
