"""The evaluate step: a model beside the naive baselines, with intervals and a cost-aware backtest.

Which rows are scored (``scope``):

- ``test``: the feature set's test split. Used automatically when the data is the model's own training
  file (same ``source_sha256``), because every other row was seen in training or model selection.
- ``all``: every row of the file. Used automatically for any other file (another ticker or day): the
  model saw none of it, and a whole day is the honest out-of-sample test.

Within the scope, a row is scored when the model has a full input window (t >= T-1), every baseline
has the past it needs (t >= k; at a clock-time horizon of h seconds, t - h at or after the first row)
and the label is defined. The model and all baselines are scored on
exactly those rows; the backtest runs every event from the first scored row to the end of the scope.
Labels are thresholded with the MODEL's alpha (the stationary band fitted when it was trained), so
the classes mean on new data what they meant in training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import DataFormatError, ModelError
from hftpipe.evaluation.backtest import BacktestResult, backtest
from hftpipe.evaluation.baselines import (
    BASELINE_NAMES,
    baseline_predictions,
    horizon_rows,
    min_history,
    threshold_returns,
)
from hftpipe.evaluation.bootstrap import macro_f1_intervals
from hftpipe.evaluation.metrics import CLASS_NAMES, classification_metrics
from hftpipe.evaluation.plots import plot_confusions, plot_pnl
from hftpipe.evaluation.report import REPORT_FILE, REPORT_MD, EvaluationReport
from hftpipe.horizons import parse_horizon
from hftpipe.tracking import Tracker

log = logging.getLogger(__name__)

REPORT_JSON = REPORT_FILE  # the older name, kept for importers
CONFUSION_PNG = "confusion.png"
PNL_PNG = "pnl.png"
PREDICT_BATCH = 2048  # windows per forward pass: (2048, T, 4L) float64 raw windows stay a few tens of MB
Scope = Literal["auto", "test", "all"]


def _same_data(feature_meta: dict[str, Any], trained_on: dict[str, Any] | list[dict[str, Any]]) -> bool:
    from hftpipe.models.bundle import training_sets

    shas = [s.get("source_sha256") for s in training_sets(trained_on)]
    # Unknown training data: assume it is the same file, so only the test split is scored.
    return not shas or None in shas or feature_meta.get("source_sha256") in shas


def resolve_scope(scope: Scope, feature_meta: dict[str, Any],
                  trained_on: dict[str, Any] | list[dict[str, Any]]) -> str:
    """``test`` for one of the model's training files (or unknown lineage), ``all`` for any other file.

    ``trained_on``: a bundle's ``feature_meta`` (one set, or a pooled model's with ``sets``) or the list of
    its training sets (bundle.json ``trained_on``).
    """
    if scope not in ("auto", "test", "all"):
        raise ValueError(f"scope must be auto, test or all; got {scope!r}")
    if scope != "auto":
        return scope
    return "test" if _same_data(feature_meta, trained_on) else "all"


def scored_rows(split: np.ndarray, labels: np.ndarray, scope: str, window: int, horizon: int | str,
                time: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows with a defined label to score, contiguous rows to backtest) for one scope.

    ``time`` (every row's event time) is needed for a clock-time horizon such as ``"1s"``.

    Raises:
        DataFormatError: nothing is left to score.
    """
    n = len(split)
    in_scope = split == 2 if scope == "test" else np.ones(n, dtype=bool)
    first_allowed = max(window - 1, min_history(horizon, time))
    in_scope[:first_allowed] = False
    candidates = np.flatnonzero(in_scope)
    score = candidates[labels[candidates] >= 0]
    if score.size == 0:
        raise DataFormatError(f"no row to score: scope {scope!r} holds {candidates.size} rows with a full "
                              f"{window}-event window, none with a defined label; use a longer file")
    span = np.arange(score[0], candidates[-1] + 1)
    if not in_scope[span].all():
        raise DataFormatError(f"the {scope!r} rows are not contiguous; the feature set's splits are inconsistent")
    return score, span


def predict_rows(bundle: Any, book: np.ndarray, rows: np.ndarray, batch: int = PREDICT_BATCH,
                 desc: str = "predict") -> np.ndarray:
    """Model classes for ``rows``, gathering each batch of raw windows from the book only when needed."""
    window = bundle.window
    offsets = np.arange(-window + 1, 1)
    out = np.empty(rows.size, dtype=np.int8)
    with tqdm(total=rows.size, desc=desc, unit="win", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, rows.size, batch):
            chunk = rows[start:start + batch]
            raw = book[chunk[:, None] + offsets[None, :]]  # (b, T, 4L): one batch, never all windows
            out[start:start + chunk.size] = bundle.predict(raw)
            bar.update(chunk.size)
    return out


def predict_logits_rows(bundle: Any, book: np.ndarray, rows: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
    """Uncalibrated model logits (len(rows), 3) for ``rows`` (as :func:`predict_rows`, batch by batch)."""
    offsets = np.arange(-bundle.window + 1, 1)
    out = np.empty((rows.size, len(bundle.class_names)), dtype=np.float64)
    with tqdm(total=rows.size, desc="predict", unit="win", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, rows.size, batch):
            chunk = rows[start:start + batch]
            out[start:start + chunk.size] = bundle.predict_logits(book[chunk[:, None] + offsets[None, :]])
            bar.update(chunk.size)
    return out


def _model_book(feature_set: Any, levels: int) -> np.ndarray:
    """The raw book with the model's level count (deeper data is cut to the top levels)."""
    if feature_set.levels < levels:
        raise ModelError(f"the model reads {levels} book level(s) but the data has {feature_set.levels}; "
                         f"evaluate it on a LOBSTER file with at least {levels} levels")
    return np.ascontiguousarray(feature_set.book()[:, : 4 * levels])


def _trained_feature_setting(feature_meta: dict[str, Any], config: dict[str, Any], key: str) -> Any:
    """How the training data was built: the training feature set's own metadata, else the saved config."""
    if feature_meta.get(key) is not None:
        return feature_meta[key]
    return (config.get("features") or {}).get(key)


def _check_compatible(bundle: Any, feature_set: Any) -> tuple[np.ndarray, str]:
    """Labels at the model's horizon under the model's alpha, and a note on where they came from."""
    k = bundle.horizon
    for key, have in (("label", feature_set.meta.get("label")), ("sampling", feature_set.meta.get("sampling"))):
        want = _trained_feature_setting(bundle.feature_meta, bundle.config_dict, key)
        if want is not None and have != want:
            raise ModelError(f"the model was trained with features.{key}={want!r} but the data has {have!r}; "
                             f"pass the raw LOBSTER file with --data so features are rebuilt with the model's "
                             f"settings")
    keys = {parse_horizon(h).key for h in feature_set.horizons}
    if parse_horizon(k).key not in keys:
        named = f"k={k}" if parse_horizon(k).events is not None else f"h={k} (clock time)"
        raise ModelError(f"the model predicts horizon {named} but the feature set only has "
                         f"{feature_set.horizons}; pass the raw LOBSTER file with --data so features are rebuilt "
                         f"for horizon {k}")
    if bundle.alpha is None:
        return feature_set.labels(k), f"alpha {feature_set.alpha(k):.4g} from the feature set (the model has none)"
    data_alpha = feature_set.alpha(k)
    if math.isclose(data_alpha, bundle.alpha, rel_tol=1e-9, abs_tol=0.0):
        return feature_set.labels(k), f"alpha {bundle.alpha:.4g} from training"
    # Same label returns, model's band: classes must mean what they meant when the model learned them.
    labels = threshold_returns(feature_set.returns(k), bundle.alpha)
    return labels, (f"alpha {bundle.alpha:.4g} from training (the feature set's own alpha {data_alpha:.4g} "
                    f"was replaced)")


# bundle.json keys that decide what the model predicts; run ids, metrics and lineage do not.
_PREDICTIVE_KEYS = ("format", "model", "levels", "window", "horizon", "alpha", "hidden", "dropout", "class_names",
                    "window_stats")


def bundle_sha256(bundle_dir: str | Path) -> str:
    """Fingerprint of what a bundle predicts: its weights' sha256 plus the bundle.json keys that shape predictions.

    A report carries it so the registry can refuse a report that scored another model. The training run id
    and metrics are left out: the same weights logged into another run are the same model.

    Raises:
        ModelError: the folder is not a complete bundle.
    """
    from hftpipe.models.bundle import MODEL_FILE, read_bundle_json

    info = read_bundle_json(bundle_dir)
    weights = Path(bundle_dir) / MODEL_FILE
    if not weights.is_file():
        raise ModelError(f"{bundle_dir}: {MODEL_FILE} is missing; the bundle is incomplete, train again")
    described = {key: info.get(key) for key in _PREDICTIVE_KEYS}
    if info.get("temperature") is not None:  # only when present: older bundles keep their fingerprint
        described["temperature"] = info["temperature"]
    described["weights_sha256"] = file_sha256(weights)  # the file itself, not what bundle.json claims
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _interval(iv: Any) -> dict[str, float]:
    return iv.to_dict()


def evaluate(cfg: Config, model_dir: str | Path, features_dir: str | Path, output_dir: str | Path,
             tracker: Tracker | None = None, *, scope: Scope = "auto", model_ref: str | None = None,
             provenance: dict[str, str] | None = None) -> EvaluationReport:
    """Score a model bundle and the naive baselines on a feature set; write and log the report.

    Args:
        cfg: resolved config (``evaluate`` section: fees, latency, bootstrap, buckets; ``train.seed``).
        model_dir: model bundle folder.
        features_dir: feature-set folder (``features.parquet`` + ``features_meta.json``).
        output_dir: where report.json, report.md, confusion.png and pnl.png go.
        tracker: optional experiment tracker (metrics, report dict and files are logged to it).
        scope: ``auto`` (see the module docstring), ``test`` or ``all``.
        model_ref: how the user named the model (registry URI), shown in the report.
        provenance: extra lines for the report's ``data`` section (e.g. the raw file features came from).
    Raises:
        ModelError: the model cannot read this data (levels, horizon, label kind, sampling).
        DataFormatError: missing files or nothing to score.
    """
    from hftpipe.features import load_feature_set
    from hftpipe.models.bundle import load_bundle

    ecfg = cfg.evaluate
    bundle = load_bundle(model_dir)
    fs = load_feature_set(features_dir)
    k, window = bundle.horizon, bundle.window
    labels, alpha_note = _check_compatible(bundle, fs)
    book = _model_book(fs, bundle.levels)
    chosen = resolve_scope(scope, fs.meta, bundle.feature_meta)  # a pooled model's feature_meta lists its sets
    horizon = parse_horizon(k)
    score, span = scored_rows(fs.split, labels, chosen, window, k, fs.time)
    log.info("evaluating %s (k=%s, T=%d) on %s %s, scope %s: %d scored rows, %d backtest events",
             bundle.model_name, k, window, fs.meta.get("symbol"), fs.meta.get("date"), chosen, score.size,
             span.size)

    # Predict over the backtest span (a superset of the scored rows); score on the labelled rows.
    logits_span = predict_logits_rows(bundle, book, span) if hasattr(bundle, "predict_logits") else None
    model_span = (predict_rows(bundle, book, span) if logits_span is None
                  else logits_span.argmax(axis=1).astype(np.int8))  # a temperature never moves the arg-max
    mid = fs.mid
    train_mask = fs.split == 0
    base_span = baseline_predictions(labels, mid, train_mask, span, k, bundle.alpha if bundle.alpha is not None
                                     else fs.alpha(k), fs.time)
    pos = score - span[0]
    y = labels[score].astype(np.int64)
    preds = {"model": model_span[pos], **{name: base_span[name][pos] for name in BASELINE_NAMES}}
    metrics = {name: classification_metrics(y, p) for name, p in preds.items()}
    best = max(BASELINE_NAMES, key=lambda name: metrics[name]["macro_f1"])
    # Rows one horizon spans (k, or the mean rows per h seconds on this file): bootstrap blocks and the
    # backtest's holding time are counted in rows.
    span_rows = horizon_rows(k, fs.time)
    block = ecfg.block or 10 * span_rows
    f1_iv, margin_iv = macro_f1_intervals(y, preds, reference=best, n_resamples=ecfg.bootstrap, block=block,
                                          seed=cfg.train.seed)

    bid = fs.frame["bid_price_1"].to_numpy(dtype=np.float64)[span]
    ask = fs.frame["ask_price_1"].to_numpy(dtype=np.float64)[span]
    times = fs.time[span]
    signals = {"model": model_span, **base_span}
    backtests: dict[str, BacktestResult] = {
        name: backtest(sig, bid, ask, horizon=span_rows, fees_bps=ecfg.fees_bps, latency=ecfg.latency_events,
                       sharpe_buckets=ecfg.sharpe_buckets, time=times)
        for name, sig in signals.items()
    }

    for name in preds:
        metrics[name]["classes"] = list(CLASS_NAMES)
        metrics[name]["macro_f1_interval"] = _interval(f1_iv[name])
    margin = {**_interval(margin_iv["model"]), "over": best}
    report = _build_report(cfg, bundle, fs, metrics, best, margin, margin_iv, backtests, chosen, score, span,
                           alpha_note, block, model_dir, features_dir, model_ref)
    report["data"].update(provenance or {})
    report["model_info"]["horizon_unit"] = horizon.unit  # 10 events and 10 s must never be mistaken
    report["backtest_settings"]["hold_events"] = span_rows
    if horizon.is_clock:
        report["backtest_settings"]["hold_note"] = (f"{horizon.describe()} held as {span_rows} events, the mean "
                                                    "number of events that many seconds span in this file")
    if logits_span is not None:
        from hftpipe.models.calibration import calibration_summary

        report["calibration"] = calibration_summary(logits_span[pos], y, float(getattr(bundle, "temperature", 1.0)))
        report["calibration"]["temperature_fitted_on"] = "validation split of the training data"
    if getattr(bundle, "importance", None):
        report["feature_importance"] = bundle.importance
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = _write_outputs(report, output_dir, metrics, best, backtests, times)
    result = EvaluationReport(report=report, output_dir=output_dir, files=files, predictions=preds["model"],
                              scored_labels=y, scored_predictions=preds)
    if tracker is not None:
        _log_to_tracker(tracker, report, files)
    log.info("model macro-F1 %.4f, best baseline %s %.4f, margin %+.4f [%+.4f, %+.4f]",
             metrics["model"]["macro_f1"], best, metrics[best]["macro_f1"], margin["point"], margin["low"],
             margin["high"])
    return result


def _build_report(cfg: Config, bundle: Any, fs: Any, metrics: dict[str, dict[str, Any]], best: str,
                  margin: dict[str, Any], margin_iv: dict[str, Any], backtests: dict[str, BacktestResult],
                  scope: str, score: np.ndarray, span: np.ndarray, alpha_note: str, block: int,
                  model_dir: str | Path, features_dir: str | Path, model_ref: str | None) -> dict[str, Any]:
    from hftpipe.models.bundle import training_sets

    meta = fs.meta
    times = fs.time
    ecfg = cfg.evaluate
    return {
        "model": metrics["model"],
        "baselines": {name: metrics[name] for name in BASELINE_NAMES},
        "best_baseline": best,
        "margin": margin,
        "margins": {name: iv.to_dict() for name, iv in margin_iv.items()},  # model and other baselines vs best
        "backtest": {name: bt.to_dict() for name, bt in backtests.items()},
        "backtest_settings": {"fees_bps": ecfg.fees_bps, "latency_events": ecfg.latency_events,
                              "hold_events": bundle.horizon, "sharpe_buckets": ecfg.sharpe_buckets,
                              "unit": "one share; PnL in dollars per share, bps of the entry mid"},
        "bootstrap": {"resamples": ecfg.bootstrap, "block": block, "level": 0.95, "seed": cfg.train.seed,
                      "margin_reference": best},
        "model_info": {
            "model": bundle.model_name, "ref": model_ref or str(model_dir), "horizon": bundle.horizon,
            "window": bundle.window, "levels": bundle.levels, "alpha": bundle.alpha, "alpha_note": alpha_note,
            "trained_on": dict(bundle.feature_meta), "mlflow_run_id": bundle.mlflow_run_id,
            "training_sets": training_sets(bundle.feature_meta),
            # Binds the report to the model it scored: `hftpipe register` refuses it for any other bundle.
            "bundle_sha256": bundle_sha256(model_dir),
        },
        "data": {
            "symbol": meta.get("symbol"), "date": meta.get("date"), "source_sha256": meta.get("source_sha256"),
            "levels": meta.get("levels"), "sampling": meta.get("sampling"), "label": meta.get("label"),
            "label_known_at_t": bool(meta.get("label_known_at_t", False)), "features_dir": str(features_dir),
            # Binds the report to the rows it scored: `hftpipe register --features` checks it.
            "features_sha256": file_sha256(Path(features_dir) / "features.parquet"),
            "rows": int(meta.get("rows", len(times))), "scope": scope, "scored_rows": int(score.size),
            "backtest_events": int(span.size), "first_row": int(score[0]), "last_row": int(span[-1]),
            "time_from": float(times[score[0]]), "time_to": float(times[span[-1]]),
        },
    }


def _write_outputs(report: dict[str, Any], output_dir: Path, metrics: dict[str, dict[str, Any]], best: str,
                   backtests: dict[str, BacktestResult], times: np.ndarray) -> dict[str, Path]:
    files = {
        REPORT_JSON: output_dir / REPORT_JSON,
        REPORT_MD: output_dir / REPORT_MD,
        CONFUSION_PNG: output_dir / CONFUSION_PNG,
        PNL_PNG: output_dir / PNL_PNG,
    }
    plot_confusions({"model": metrics["model"]["confusion"], f"best baseline ({best})": metrics[best]["confusion"]},
                    files[CONFUSION_PNG])
    plot_pnl({name: bt.equity_net for name, bt in backtests.items()}, times, files[PNL_PNG],
             gross=backtests["model"].equity_gross)
    files[REPORT_MD].write_text(render_markdown(report))
    tmp = files[REPORT_JSON].with_name(REPORT_JSON + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    tmp.replace(files[REPORT_JSON])  # report.json last and atomically: its presence means a complete report
    return files


def _log_to_tracker(tracker: Tracker, report: dict[str, Any], files: dict[str, Path]) -> None:
    m, mg, bt = report["model"], report["margin"], report["backtest"]["model"]
    values = {"test_macro_f1": m["macro_f1"], "test_accuracy": m["accuracy"], "test_mcc": m["mcc"],
              "test_macro_f1_low": m["macro_f1_interval"]["low"], "test_macro_f1_high": m["macro_f1_interval"]["high"],
              "margin_point": mg["point"], "margin_low": mg["low"], "margin_high": mg["high"],
              "backtest_net_pnl": bt["net_pnl"], "backtest_net_pnl_bps": bt["net_pnl_bps"],
              "backtest_gross_pnl_bps": bt["gross_pnl_bps"], "backtest_sharpe": bt["sharpe"],
              "backtest_trades": bt["n_trades"], "backtest_hit_rate": bt["hit_rate"]}
    for name, b in report["baselines"].items():
        values[f"baseline_{name}_macro_f1"] = b["macro_f1"]
        values[f"baseline_{name}_net_pnl_bps"] = report["backtest"][name]["net_pnl_bps"]
    tracker.log_metrics({key: float(v) for key, v in values.items()})
    data = report["data"]
    tracker.set_tags({"evaluation.symbol": str(data["symbol"]), "evaluation.date": str(data["date"]),
                      "evaluation.source_sha256": str(data["source_sha256"]), "evaluation.scope": data["scope"],
                      "evaluation.best_baseline": report["best_baseline"]})
    tracker.log_dict(report, f"evaluation/{REPORT_JSON}")
    for name, path in files.items():
        if name != REPORT_JSON:
            tracker.log_artifact(path, "evaluation")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    """The human report: the model on the same line as every baseline, intervals, backtest, caveats."""
    info, data = report["model_info"], report["data"]
    bs, boot = report["backtest_settings"], report["bootstrap"]
    mg, best = report["margin"], report["best_baseline"]
    lines = [
        f"# Evaluation: {info['model']} at {'h' if info.get('horizon_unit') == 'seconds' else 'k'}={info['horizon']} on {data['symbol']} {data['date']}",
        "",
        (f"- Model: `{info['ref']}` ({info['model']}, window T={info['window']}, {info['levels']} level(s)); "
        f"trained on {info['trained_on'].get('symbol')} {info['trained_on'].get('date')}."),
        (f"- Data: {data['symbol']} {data['date']}, sha256 `{str(data['source_sha256'])[:16]}...`, "
        f"{data['sampling']} sampling, {data['label']} label."),
        (f"- Scope: **{data['scope']}** ({'test split only: the model was trained on this file' if data['scope'] == 'test' else 'the whole file: the model never saw it'}); "
        f"{data['scored_rows']} scored rows, {data['backtest_events']} backtest events."),
        f"- Labels: {info['alpha_note']}.",
    ]
    if data.get("label_known_at_t"):
        lines.append("- **Warning:** the deeplob label is PARTLY KNOWN AT TIME t (the past k-mean is in it); "
                     "high scores on it are not predictive power.")
    if info.get("horizon_unit") == "seconds":
        h = info["horizon"]
        lines += [(f"- Horizon: **{h} of clock time** (label: the mid in force at time t + {h} against mid_t). "
                   "Baselines, on the same rows: **majority** = the most frequent class of this file's training "
                   f"split; **persistence** = the label of the latest row whose {h} ended strictly before t; "
                   f"**momentum** = the move of the last {h}, mid[t]/mid[row in force at t - {h}]-1, with the "
                   "same alpha band.")]
    else:
        lines += [("- Baselines, on the same rows: **majority** = the most frequent class of this file's training "
                  "split; **persistence** = the label of row t-k (its window has closed at t); **momentum** = the "
                  "past k-event mid move mid[t]/mid[t-k]-1 with the same alpha band.")]
    lines += ["", "## Classification (macro-F1 with its 95% block-bootstrap interval, in %)", "",
              "| | macro-F1 | 95% interval | accuracy | MCC | F1 down | F1 stationary | F1 up |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [("**model**", report["model"])] + [(f"{n}{' (best baseline)' if n == best else ''}", m)
                                               for n, m in report["baselines"].items()]
    for name, m in rows:
        iv = m["macro_f1_interval"]
        pc = m["per_class"]
        lines.append(f"| {name} | {_pct(m['macro_f1'])} | {_pct(iv['low'])} to {_pct(iv['high'])} | "
                     f"{_pct(m['accuracy'])} | {m['mcc']:+.3f} | {_pct(pc['down']['f1'])} | "
                     f"{_pct(pc['stationary']['f1'])} | {_pct(pc['up']['f1'])} |")
    verdict = ("the interval's lower bound is above zero" if mg["low"] > 0 else
               "the interval includes zero or lies below it: no demonstrated edge over the naive baseline")
    lines += ["", (f"**Margin over the best baseline ({best}):** {_pct(mg['point'])} points, 95% interval "
                  f"{_pct(mg['low'])} to {_pct(mg['high'])} ({verdict})."), "",
              (f"Intervals: moving-block bootstrap, {boot['resamples']} resamples, blocks of {boot['block']} rows, "
              "model and baselines scored on the same resampled rows (paired)."), "",
              "![confusion matrices](confusion.png)", "",
              (f"## Backtest (one share, crossing the spread, fees {bs['fees_bps']} bps per side, latency "
              f"{bs['latency_events']} event(s), held {bs['hold_events']} events or until the signal flips)"), "",
              ("| | net PnL $/share | net bps | gross bps | spread cost $ | fees $ | trades | net bps/trade | "
              "hit rate | turnover | Sharpe/bucket |"),
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, bt in report["backtest"].items():
        label = "**model**" if name == "model" else name
        lines.append(f"| {label} | {bt['net_pnl']:+.2f} | {bt['net_pnl_bps']:+.1f} | {bt['gross_pnl_bps']:+.1f} | "
                     f"{bt['spread_cost']:.2f} | {bt['fee_cost']:.2f} | {bt['n_trades']} | "
                     f"{bt['pnl_per_trade_bps']:+.2f} | {bt['hit_rate']:.3f} | {bt['turnover']:.4f} | "
                     f"{bt['sharpe']:+.3f} |")
    lines += ["", (f"Sharpe: mean over standard deviation of net PnL per time bucket ({bs['sharpe_buckets']} "
                  "buckets), not annualised."), "", "![PnL curves](pnl.png)", ""]
    lines += _calibration_markdown(report.get("calibration")) + _importance_markdown(report.get("feature_importance"))
    return "\n".join(lines)


def _calibration_markdown(cal: dict[str, Any] | None) -> list[str]:
    """Brier score, log loss and top-label reliability on the scored rows, before and after the temperature."""
    if not cal:
        return []
    before, after = cal["uncalibrated"], cal["calibrated"]
    lines = ["## Calibration (scored rows)", "",
             (f"Temperature {cal['temperature']:.3f}, fitted on the validation split of the training data and "
              "applied to served probabilities (it never changes the predicted class)."), "",
             "| | Brier | log loss | ECE (top label) |", "|---|---:|---:|---:|"]
    for name, part in (("uncalibrated (T=1)", before), ("calibrated", after)):
        lines.append(f"| {name} | {part['brier']:.4f} | {part['log_loss']:.4f} | {part['reliability']['ece']:.4f} |")
    lines += ["", "Reliability of the calibrated top-label probability:", "",
              "| confidence bin | mean confidence | accuracy | rows |", "|---|---:|---:|---:|"]
    for b in after["reliability"]["bins"]:
        lines.append(f"| {b['low']:.1f}-{b['high']:.1f} | {b['confidence']:.3f} | {b['accuracy']:.3f} | {b['count']} |")
    return lines + [""]


def _importance_markdown(imp: dict[str, Any] | None, top: int = 15) -> list[str]:
    """Permutation importance (macro-F1 drop on validation, all lags of a feature shuffled together) and gain."""
    if not imp:
        return []
    perm, gain = imp.get("permutation_macro_f1_drop", {}), imp.get("gain_share") or {}
    lines = ["## Feature importance (from training, validation split)", "",
             (f"Permutation: drop in validation macro-F1 (points) when a feature is shuffled across "
              f"{imp.get('permutation_rows')} validation rows, all its lags together"
              + ("; gain: share of LightGBM's total split gain." if gain else ".")), "",
             "| feature | permutation drop | gain share |", "|---|---:|---:|"]
    for name, drop in list(perm.items())[:top]:
        share = f"{100 * gain[name]:.1f}%" if name in gain else "-"
        lines.append(f"| {name} | {100 * drop:+.2f} | {share} |")
    return lines + [""]


def features_for_model(cfg: Config, bundle_dir: str | Path, source: str | Path, workdir: str | Path) -> Path:
    """Ingest a raw LOBSTER file (or a canonical Parquet table) and build features with the MODEL's settings.

    Horizon, label kind, sampling, split fractions and alpha come from the bundle (alpha as fitted in
    training), so the labels mean what they meant when the model learned them.

    Returns:
        The feature-set folder inside ``workdir``.
    Raises:
        DataFormatError / ValidationFailed: the file is not readable LOBSTER data or fails validation.
    """
    from hftpipe.config import config_from_dict
    from hftpipe.models.bundle import read_bundle_json
    from hftpipe.prepare import build_feature_set, ingest

    info = read_bundle_json(bundle_dir)
    trained = config_from_dict(info["config"]) if info.get("config") else cfg
    source = Path(source)
    workdir = Path(workdir)
    events = workdir / "events.parquet"
    if source.suffix == ".parquet":
        events = source
    else:
        data_cfg = dataclasses.replace(cfg.data, source=str(source), symbol=None, date=None, levels=None,
                                       output=str(events))
        table = ingest(data_cfg, source=str(source), output=str(events), validate_cfg=cfg.validate)
        if table.meta.levels < int(info["levels"]):
            raise ModelError(f"the model reads {info['levels']} book level(s) but {source} has "
                             f"{table.meta.levels}; evaluate it on a LOBSTER file with at least {info['levels']} levels")
    alpha = info.get("alpha")
    feature_meta = info.get("feature_meta") or {}
    fcfg = dataclasses.replace(
        trained.features, horizons=(parse_horizon(info["horizon"]).value,), alpha=None if alpha is None else float(alpha),
        label=_trained_feature_setting(feature_meta, info.get("config") or {}, "label") or trained.features.label,
        sampling=_trained_feature_setting(feature_meta, info.get("config") or {}, "sampling")
        or trained.features.sampling,
        output=str(workdir / "features"))
    build_feature_set(fcfg, events, workdir / "features", cfg.validate)
    return workdir / "features"


def is_feature_set(path: str | Path) -> bool:
    """True for a folder written by ``hftpipe features`` (as opposed to raw market data)."""
    return (Path(path) / "features_meta.json").is_file()


def evaluate_source(cfg: Config, model_dir: str | Path, data: str | Path, output_dir: str | Path,
                    tracker: Tracker | None = None, *, scope: Scope = "auto", model_ref: str | None = None
                    ) -> EvaluationReport:
    """:func:`evaluate` on a feature-set folder, or on raw data whose features are built for the model first.

    Raw data (a LOBSTER zip, CSV pair or canonical Parquet of any ticker and day) goes through ingest and
    validation into a temporary folder under ``HFTPIPE_HOME/tmp`` that is removed afterwards.
    """
    if is_feature_set(data):
        return evaluate(cfg, model_dir, data, output_dir, tracker, scope=scope, model_ref=model_ref)
    if not Path(data).exists():
        raise DataFormatError(f"{data} does not exist; pass a features folder, a LOBSTER zip or a message CSV")
    workdir = Path(tempfile.mkdtemp(prefix="evaluate-", dir=paths.sub("tmp")))
    try:
        features_dir = features_for_model(cfg, model_dir, data, workdir)
        provenance = {"raw_source": str(data),
                      "features_dir": "built for this evaluation with the model's feature settings (removed)"}
        return evaluate(cfg, model_dir, features_dir, output_dir, tracker, scope=scope, model_ref=model_ref,
                        provenance=provenance)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

