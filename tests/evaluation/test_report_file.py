"""EvaluationReport.load: the typed view of report.json that the pipeline, registry and CLI read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftpipe.errors import ReportError
from hftpipe.evaluation import REPORT_FILE, EvaluationReport, Margin

REPORT = {
    "model": {"macro_f1": 0.41, "accuracy": 0.5, "mcc": 0.1, "classes": ["down", "stationary", "up"],
              "macro_f1_interval": {"low": 0.39, "high": 0.43}},
    "baselines": {"persistence": {"macro_f1": 0.35, "accuracy": 0.4, "mcc": 0.0}},
    "best_baseline": "persistence",
    "margin": {"point": 0.06, "low": 0.04, "high": 0.08, "over": "persistence"},
    "backtest": {"model": {"net_pnl_bps": -3.5, "n_trades": 12}},
    "model_info": {"model": "lstm", "bundle_sha256": "ab" * 32},
    "data": {"features_sha256": "cd" * 32, "scope": "test"},
    "added_by_a_later_version": {"tabular": {"num_leaves": 31}},
}


def _write(folder: Path, content: object = REPORT) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_FILE).write_text(json.dumps(content))
    return folder


def test_load_from_folder_or_file_gives_typed_parts(tmp_path: Path) -> None:
    folder = _write(tmp_path / "eval")
    for where in (folder, folder / REPORT_FILE):
        report = EvaluationReport.load(where)
        assert report.output_dir == folder
        assert report.model_macro_f1 == pytest.approx(0.41)
        assert report.margin == Margin(0.06, 0.04, 0.08, "persistence")
        assert report.best_baseline == "persistence"
        assert report.bundle_sha256 == "ab" * 32 and report.features_sha256 == "cd" * 32
        assert report.model_numbers == {"macro_f1": 0.41, "accuracy": 0.5, "mcc": 0.1}
        assert report.baseline_numbers == {"persistence": {"macro_f1": 0.35, "accuracy": 0.4, "mcc": 0.0}}
        assert report.backtest["model"]["n_trades"] == 12


def test_unknown_keys_round_trip(tmp_path: Path) -> None:
    report = EvaluationReport.load(_write(tmp_path / "eval"))
    assert report.raw == REPORT  # nothing dropped: fields added by other code survive a load
    assert json.loads(json.dumps(report.raw))["added_by_a_later_version"] == {"tabular": {"num_leaves": 31}}


def test_missing_or_broken_reports_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="run `hftpipe evaluate` first"):
        EvaluationReport.load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / REPORT_FILE).write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        EvaluationReport.load(tmp_path / "bad")
    with pytest.raises(ReportError, match="not a JSON object"):
        EvaluationReport.load(_write(tmp_path / "list", [1, 2]))
    partial = EvaluationReport.load(_write(tmp_path / "partial", {"model": {"macro_f1": 0.4}}))
    assert partial.bundle_sha256 is None and partial.backtest == {}
    with pytest.raises(ReportError, match="no 'margin' section"):
        _ = partial.margin


def test_headline_is_one_flat_set_of_numbers(tmp_path: Path) -> None:
    """DVC's metrics.json and the KFP step's metrics come from this one function."""
    headline = EvaluationReport.load(_write(tmp_path / "eval")).headline()
    assert headline == {"macro_f1": 0.41, "accuracy": 0.5, "mcc": 0.1, "margin": 0.06, "margin_low": 0.04,
                        "margin_high": 0.08, "net_pnl_bps": -3.5, "baseline_persistence_macro_f1": 0.35}
