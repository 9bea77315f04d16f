"""One model scored on several data files: a report per instrument (file) plus a pooled summary.

Each file goes through :func:`hftpipe.evaluation.evaluate_source` on its own (its own scope: the test split
of a file the model trained on, the whole day of any other; its own baselines, fitted on its own training
split), so every per-instrument report is exactly what ``hftpipe evaluate --data FILE`` writes. The pooled
summary scores the model and each baseline over the union of those scored rows: macro-F1 with a
stratified block-bootstrap interval (each file resampled on its own, :func:`stratified_macro_f1_intervals`)
and the model's margin over the best baseline of the union.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.config import Config
from hftpipe.errors import ConfigError
from hftpipe.evaluation.baselines import BASELINE_NAMES
from hftpipe.evaluation.bootstrap import stratified_macro_f1_intervals
from hftpipe.evaluation.metrics import classification_metrics
from hftpipe.evaluation.report import EvaluationReport
from hftpipe.tracking import Tracker

log = logging.getLogger(__name__)

POOLED_JSON = "pooled.json"
POOLED_MD = "pooled.md"


def slug(*parts: Any) -> str:
    """A folder name from a few parts (symbol, date, ...)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(str(p) for p in parts if p is not None)).strip("_")


def instrument_row(report: EvaluationReport) -> dict[str, Any]:
    """One line of a per-instrument table: the model beside its best baseline, with intervals."""
    r = report.report
    data, best = r["data"], r["best_baseline"]
    return {
        "symbol": data.get("symbol"), "date": data.get("date"), "source_sha256": data.get("source_sha256"),
        "scope": data.get("scope"), "scored_rows": int(data.get("scored_rows", 0)),
        "model_macro_f1": r["model"]["macro_f1"], "model_macro_f1_interval": r["model"]["macro_f1_interval"],
        "best_baseline": best, "best_baseline_macro_f1": r["baselines"][best]["macro_f1"],
        "margin": {k: r["margin"][k] for k in ("point", "low", "high")},
        "report": str(report.output_dir),
    }


def instrument_mean(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Unweighted means over instruments of the model's macro-F1 and of its margin over each one's best baseline.

    Read it beside the pooled line: macro-F1 over the union of instruments whose class mixes differ is not
    an average of theirs and can even flip the sign of every instrument's margin (measured: see README).
    """
    return {"model_macro_f1": float(np.mean([r["model_macro_f1"] for r in rows])),
            "best_baseline_macro_f1": float(np.mean([r["best_baseline_macro_f1"] for r in rows])),
            "margin": float(np.mean([r["margin"]["point"] for r in rows]))}


def pooled_block(cfg: Config, reports: Sequence[EvaluationReport], horizon: int) -> dict[str, Any]:
    """The model and every baseline over the union of the reports' scored rows, with intervals.

    Raises:
        ValueError: a report carries no scored rows (loaded from disk instead of computed).
    """
    parts = []
    for rep in reports:
        if rep.scored_labels is None or rep.scored_predictions is None:
            raise ValueError(f"{rep.output_dir}: the report holds no scored rows; compute it with evaluate()")
        parts.append((rep.scored_labels, rep.scored_predictions))
    y = np.concatenate([p[0] for p in parts])
    names = list(parts[0][1])
    metrics = {name: classification_metrics(y, np.concatenate([p[1][name] for p in parts])) for name in names}
    baselines = [n for n in names if n in BASELINE_NAMES]
    best = max(baselines, key=lambda n: metrics[n]["macro_f1"])
    ecfg = cfg.evaluate
    block = ecfg.block or 10 * horizon
    f1_iv, margin_iv = stratified_macro_f1_intervals(parts, reference=best, n_resamples=ecfg.bootstrap,
                                                     block=block, seed=cfg.train.seed)
    return {
        "rows": int(y.size),
        "model": {"macro_f1": metrics["model"]["macro_f1"], "accuracy": metrics["model"]["accuracy"],
                  "mcc": metrics["model"]["mcc"], "macro_f1_interval": f1_iv["model"].to_dict()},
        "baselines": {n: {"macro_f1": metrics[n]["macro_f1"], "accuracy": metrics[n]["accuracy"],
                          "macro_f1_interval": f1_iv[n].to_dict()} for n in baselines},
        "best_baseline": best,
        "margin": {**margin_iv["model"].to_dict(), "over": best},
        "note": "macro-F1 over the union of rows; with different class mixes per instrument it is not an "
                "average of the instruments' (see instrument_mean)",
        "bootstrap": {"resamples": ecfg.bootstrap, "block": block, "level": 0.95, "seed": cfg.train.seed,
                      "kind": "moving blocks within each instrument, confusions summed (stratified)"},
    }


@dataclass
class PooledEvaluation:
    """Per-instrument reports and the pooled summary (written to ``pooled.json`` / ``pooled.md``)."""

    reports: list[EvaluationReport]
    summary: dict[str, Any]
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def headline(self) -> dict[str, float]:
        """Flat numbers for a metrics file: pooled, then each instrument's (prefixed by its folder)."""
        p = self.summary["pooled"]
        out = {"macro_f1": p["model"]["macro_f1"], "margin": p["margin"]["point"],
               "margin_low": p["margin"]["low"], "margin_high": p["margin"]["high"],
               "best_baseline_macro_f1": p["baselines"][p["best_baseline"]]["macro_f1"]}
        for row in self.summary["instruments"]:
            key = slug(row["symbol"], row["date"])
            out[f"{key}_macro_f1"] = row["model_macro_f1"]
            out[f"{key}_margin"] = row["margin"]["point"]
        return {k: float(v) for k, v in out.items()}

    def summary_lines(self) -> list[str]:
        return table_lines(self.summary["instruments"], self.summary["pooled"], "pooled") + \
            [f"reports: {self.output_dir} ({POOLED_MD})"]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _cells(scope: str, rows: int, f1: float, iv: dict[str, float], best: str, best_f1: float,
           mg: dict[str, float]) -> str:
    model = f"{_pct(f1)} [{_pct(iv['low'])}, {_pct(iv['high'])}]"
    margin = f"{_pct(mg['point'])} [{_pct(mg['low'])}, {_pct(mg['high'])}]"
    return f"{scope:<6}{rows:>8}  {model:<26}{best + ' ' + _pct(best_f1):<24}{margin:<24}"


def table_lines(rows: Sequence[dict[str, Any]], pooled: dict[str, Any] | None, pooled_name: str,
                trained_on: bool = False) -> list[str]:
    """A plain-text table: one line per instrument, then the pooled line (macro-F1 in %)."""
    head = f"{'instrument':<22}" + (f"{'trained on':<22}" if trained_on else "")
    lines = [head + f"{'scope':<6}{'rows':>8}  {'model macro-F1 [95%]':<26}{'best baseline':<24}{'margin [95%]':<24}"]
    for r in rows:
        cell = f"{str(r['symbol']) + ' ' + str(r['date']):<22}" + (f"{r.get('trained_on', ''):<22}" if trained_on else "")
        lines.append(cell + _cells(r["scope"], r["scored_rows"], r["model_macro_f1"], r["model_macro_f1_interval"],
                                   r["best_baseline"], r["best_baseline_macro_f1"], r["margin"]))
    if pooled is not None:
        best = pooled["best_baseline"]
        cell = f"{pooled_name:<22}" + (f"{'':<22}" if trained_on else "")
        lines.append(cell + _cells("", pooled["rows"], pooled["model"]["macro_f1"],
                                   pooled["model"]["macro_f1_interval"], best,
                                   pooled["baselines"][best]["macro_f1"], pooled["margin"]))
    if rows:
        mean = instrument_mean(rows)
        lines.append(f"{'mean of instruments':<22}" + (f"{'':<22}" if trained_on else "") + f"{'':<16}"
                     f"{_pct(mean['model_macro_f1']):<26}{_pct(mean['best_baseline_macro_f1']):<24}"
                     f"{_pct(mean['margin'])}")
    return [line.rstrip() for line in lines]


def markdown_table(rows: Sequence[dict[str, Any]], pooled: dict[str, Any] | None, pooled_name: str,
                   trained_on: bool = False) -> list[str]:
    """The same table in Markdown."""
    extra = "trained on | " if trained_on else ""
    lines = [(f"| instrument | {extra}scope | rows | model macro-F1 (95% interval) | best baseline | "
              "margin (95% interval) |"),
             "|---|" + ("---|" if trained_on else "") + "---|---:|---:|---|---:|"]
    for r in rows:
        iv, mg = r["model_macro_f1_interval"], r["margin"]
        lines.append(f"| {r['symbol']} {r['date']} | " + (f"{r.get('trained_on', '')} | " if trained_on else "")
                     + f"{r['scope']} | {r['scored_rows']} | {_pct(r['model_macro_f1'])} ({_pct(iv['low'])} to "
                     f"{_pct(iv['high'])}) | {r['best_baseline']} {_pct(r['best_baseline_macro_f1'])} | "
                     f"{_pct(mg['point'])} ({_pct(mg['low'])} to {_pct(mg['high'])}) |")
    if pooled is not None:
        m, mg, best = pooled["model"], pooled["margin"], pooled["best_baseline"]
        iv = m["macro_f1_interval"]
        lines.append(f"| **{pooled_name}** | " + ("| " if trained_on else "") + f"| {pooled['rows']} | "
                     f"{_pct(m['macro_f1'])} ({_pct(iv['low'])} to {_pct(iv['high'])}) | "
                     f"{best} {_pct(pooled['baselines'][best]['macro_f1'])} | "
                     f"{_pct(mg['point'])} ({_pct(mg['low'])} to {_pct(mg['high'])}) |")
    if rows:
        mean = instrument_mean(rows)
        lines.append("| mean of instruments | " + ("| " if trained_on else "") + f"| | {_pct(mean['model_macro_f1'])} | "
                     f"{_pct(mean['best_baseline_macro_f1'])} | {_pct(mean['margin'])} |")
    return lines


def _write(output_dir: Path, summary: dict[str, Any], md: list[str]) -> dict[str, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {POOLED_MD: output_dir / POOLED_MD, POOLED_JSON: output_dir / POOLED_JSON}
    files[POOLED_MD].write_text("\n".join(md) + "\n")
    tmp = files[POOLED_JSON].with_name(POOLED_JSON + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    tmp.replace(files[POOLED_JSON])
    return files


def data_name(path: str | Path) -> str:
    """A folder name for one data file: SYMBOL_DATE of a feature set, else the file's stem."""
    meta = Path(path) / "features_meta.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        return slug(info.get("symbol"), info.get("date"))
    return slug(Path(path).stem)


def unique_folders(names: Sequence[str]) -> list[str]:
    """The names, with ``_2``, ``_3`` ... appended to repeats (two files of one symbol-day)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def evaluate_many(cfg: Config, model_dir: str | Path, data: Sequence[str | Path], output_dir: str | Path,
                  tracker: Tracker | None = None, *, scope: str = "auto", model_ref: str | None = None
                  ) -> PooledEvaluation:
    """Score one model on several files: a report per file under ``output_dir`` and a pooled summary.

    Args:
        data: feature-set folders or raw files (LOBSTER zips, canonical Parquet), one per instrument/day.
        tracker: receives the pooled and per-instrument headline numbers and the summary.
    Raises:
        ConfigError: fewer than two files.
        ModelError / DataFormatError: as :func:`hftpipe.evaluation.evaluate_source`, for any file.
    """
    from hftpipe.evaluation.evaluate import evaluate_source
    from hftpipe.models.bundle import read_bundle_json

    if len(data) < 2:
        raise ConfigError("evaluate several files: pass --data at least twice (one file: the usual report)")
    output_dir = Path(output_dir)
    info = read_bundle_json(model_dir)
    reports: list[EvaluationReport] = []
    stems = unique_folders([data_name(d) for d in data])
    for source, folder in zip(data, stems):
        rep = evaluate_source(cfg, model_dir, source, output_dir / folder, None, scope=scope,  # type: ignore[arg-type]
                              model_ref=model_ref)
        reports.append(rep)
    rows = [instrument_row(r) for r in reports]
    pooled = pooled_block(cfg, reports, int(info["horizon"]))
    summary = {"model": {"model": info.get("model"), "ref": model_ref or str(model_dir),
                         "horizon": info.get("horizon"), "window": info.get("window"),
                         "trained_on": info.get("trained_on") or [info.get("feature_meta")]},
               "instruments": rows, "pooled": pooled, "instrument_mean": instrument_mean(rows)}
    md = [f"# Evaluation of {info.get('model')} (k={info.get('horizon')}) on {len(rows)} files", "",
          ("Each file is scored on its own (test split of a file the model trained on, the whole day of any "
           "other) beside its own naive baselines; the pooled line scores the union of those rows. "
           "Macro-F1 in %, intervals from a moving-block bootstrap (per file; stratified for the pooled line)."),
          "", *markdown_table(rows, pooled, "pooled"), ""]
    files = _write(output_dir, summary, md)
    result = PooledEvaluation(reports=reports, summary=summary, output_dir=output_dir, files=files)
    if tracker is not None:
        tracker.log_metrics(result.headline())
        tracker.log_dict(summary, f"evaluation/{POOLED_JSON}")
        tracker.log_artifact(files[POOLED_MD], "evaluation")
    log.info("pooled over %d files: model macro-F1 %.4f, best baseline %s, margin %+.4f [%+.4f, %+.4f]",
             len(rows), pooled["model"]["macro_f1"], pooled["best_baseline"], pooled["margin"]["point"],
             pooled["margin"]["low"], pooled["margin"]["high"])
    return result
