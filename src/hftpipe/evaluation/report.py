"""The evaluation report (``report.json``) as a typed object: one place that knows its file name and layout.

``report.json`` is what ``hftpipe evaluate`` writes and what the pipeline summary, the KFP metrics, the
registry's gate and model card, and DVC's metrics read. :class:`EvaluationReport` keeps the whole parsed
JSON in ``raw`` (so fields added later round-trip untouched) and gives typed access to the parts code
reads: the model's and baselines' metrics, the margin over the best baseline with its interval, the
backtest, and the two fingerprints that bind a report to a bundle and to the rows it scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.errors import ReportError

REPORT_FILE = "report.json"
REPORT_MD = "report.md"

__all__ = ["REPORT_FILE", "EvaluationReport", "Margin", "ReportError"]


@dataclass(frozen=True)
class Margin:
    """Macro-F1 of the model minus that of the best baseline, with its bootstrap interval."""

    point: float
    low: float
    high: float
    over: str | None = None  # the baseline it is measured against

    def to_dict(self) -> dict[str, Any]:
        return {"point": self.point, "low": self.low, "high": self.high, "over": self.over}


def _numbers(block: Any) -> dict[str, float]:
    """The numeric entries of a metrics block (classes, confusion and intervals left out)."""
    if not isinstance(block, dict):
        return {}
    return {k: float(v) for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class EvaluationReport:
    """What :func:`hftpipe.evaluation.evaluate` measured, and where it wrote it (or where it was loaded from)."""

    report: dict[str, Any]  # the content of report.json, every key (also ones this class does not type)
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)  # report.json, report.md, confusion.png, pnl.png
    predictions: np.ndarray | None = field(default=None, repr=False)  # model classes on the scored rows
    # The scored rows' labels and every predictor's classes (model and baselines), for pooled summaries.
    scored_labels: np.ndarray | None = field(default=None, repr=False)
    scored_predictions: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> EvaluationReport:
        """Read ``report.json`` from a report folder, or the file itself.

        Raises:
            ReportError: missing, not valid JSON, or not a JSON object.
        """
        path = Path(path)
        file = path / REPORT_FILE if path.is_dir() else path
        if not file.is_file():
            raise ReportError(f"evaluation report {file} does not exist; run `hftpipe evaluate` first")
        try:
            data = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ReportError(f"evaluation report {file} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ReportError(f"evaluation report {file} is not a JSON object")
        return cls(report=data, output_dir=file.parent, files={REPORT_FILE: file})

    @property
    def raw(self) -> dict[str, Any]:
        """The parsed JSON as written (alias of ``report``)."""
        return self.report

    def _block(self, key: str) -> dict[str, Any]:
        block = self.report.get(key)
        if not isinstance(block, dict):
            raise ReportError(f"evaluation report in {self.output_dir} has no {key!r} section; "
                              "re-run `hftpipe evaluate`")
        return block

    @property
    def model(self) -> dict[str, Any]:
        """The model's metrics (macro_f1, accuracy, mcc, per_class, confusion, classes, interval)."""
        return self._block("model")

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        return self._block("baselines")

    @property
    def best_baseline(self) -> str | None:
        return self.report.get("best_baseline")

    @property
    def model_macro_f1(self) -> float:
        return float(self.model["macro_f1"])

    @property
    def margin(self) -> Margin:
        mg = self._block("margin")
        return Margin(float(mg["point"]), float(mg["low"]), float(mg["high"]), mg.get("over"))

    @property
    def backtest(self) -> dict[str, dict[str, Any]]:
        """Backtest results by signal name (``model`` and each baseline); empty when none was run."""
        bt = self.report.get("backtest")
        return bt if isinstance(bt, dict) else {}

    @property
    def model_info(self) -> dict[str, Any]:
        info = self.report.get("model_info")
        return info if isinstance(info, dict) else {}

    @property
    def data(self) -> dict[str, Any]:
        data = self.report.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def bundle_sha256(self) -> str | None:
        """Fingerprint of the bundle that was scored (``model_info.bundle_sha256``)."""
        return self.model_info.get("bundle_sha256") or None

    @property
    def features_sha256(self) -> str | None:
        """Fingerprint of the feature table that was scored (``data.features_sha256``)."""
        return self.data.get("features_sha256") or None

    @property
    def model_numbers(self) -> dict[str, float]:
        """The model's scalar metrics."""
        return _numbers(self.model)

    @property
    def baseline_numbers(self) -> dict[str, dict[str, float]]:
        """Each baseline's scalar metrics."""
        return {name: _numbers(m) for name, m in self.baselines.items()}

    def headline(self) -> dict[str, float]:
        """The numbers a reader compares first, flat (DVC's metrics.json, the KFP step's metrics): the
        model, every baseline, the margin over the best one and its interval, the model's net PnL."""
        m, mg = self.model, self.margin
        out = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "mcc": m["mcc"], "margin": mg.point,
               "margin_low": mg.low, "margin_high": mg.high}
        if "model" in self.backtest:
            out["net_pnl_bps"] = self.backtest["model"]["net_pnl_bps"]
        for name, b in self.baselines.items():
            out[f"baseline_{name}_macro_f1"] = b["macro_f1"]
        return {k: float(v) for k, v in out.items()}

    def summary_lines(self) -> list[str]:
        """The model's macro-F1 beside every baseline, the margin and the backtest, one line each."""
        r = self.report
        data = r["data"]
        lines = [(f"{r['model_info']['model']} (k={r['model_info']['horizon']}) on {data['symbol']} {data['date']}, "
                 f"scope {data['scope']}: {data['scored_rows']} rows")]
        rows = [("model", r["model"])] + [(f"baseline {n}", m) for n, m in r["baselines"].items()]
        for name, m in rows:
            iv = m["macro_f1_interval"]
            lines.append(f"  {name:<22} macro-F1 {m['macro_f1']:.4f} [{iv['low']:.4f}, {iv['high']:.4f}]  "
                         f"accuracy {m['accuracy']:.4f}  MCC {m['mcc']:+.4f}")
        mg = r["margin"]
        lines.append(f"  margin over {r['best_baseline']}: {mg['point']:+.4f} (95% interval "
                     f"{mg['low']:+.4f} to {mg['high']:+.4f})")
        for name, bt in r["backtest"].items():
            lines.append(f"  backtest {name:<13} net {bt['net_pnl_bps']:+9.1f} bps in {bt['n_trades']} trades, "
                         f"gross {bt['gross_pnl_bps']:+9.1f} bps, hit rate {bt['hit_rate']:.3f}")
        lines.append(f"report: {self.files.get(REPORT_MD, self.output_dir / REPORT_MD)}")
        return lines
