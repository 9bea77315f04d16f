"""`hftpipe pipeline run` end to end with kfp.local on a small slice of real GOOG data."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from tests.conftest import lobster_zip

pytestmark = pytest.mark.slow

# Small but real: enough events for train/val/test windows at k=10, fast enough for CI.
SLICE_ROWS = 12_000
FAST = ["-S", "train.epochs=1", "-S", "train.window=20", "-S", "train.hidden=16", "-S", "train.model=logreg",
        "-S", "train.max_train_samples=4000", "-S", "features.horizons=[10]", "-S", "train.horizon=10",
        "-S", "features.windows=[10, 50]", "-S", "evaluate.bootstrap=50"]


def write_slice(folder: Path, rows: int = SLICE_ROWS, corrupt: bool = False, symbol: str = "GOOG") -> Path:
    """Write the first ``rows`` events of the shipped 1-level file of ``symbol`` as a LOBSTER CSV pair."""
    archive = zipfile.ZipFile(lobster_zip(symbol, 1))
    names = archive.namelist()
    frames = {}
    for kind in ("message", "orderbook"):
        member = next(n for n in names if f"_{kind}_" in n)
        frames[kind] = pd.read_csv(io.BytesIO(archive.read(member)), header=None, nrows=rows)
    if corrupt:
        # A crossed book in the middle of the day: best ask below best bid.
        frames["orderbook"].iloc[rows // 2, 0] = frames["orderbook"].iloc[rows // 2, 2] - 100
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{symbol}_2012-06-21_34200000_57600000"
    for kind, frame in frames.items():
        frame.to_csv(folder / f"{stem}_{kind}_1.csv", header=False, index=False)
    return folder / f"{stem}_message_1.csv"


def _registered_versions(home: Path) -> list:
    from mlflow import MlflowClient

    db = home / "mlflow" / "mlflow.db"
    if not db.exists():
        return []
    return MlflowClient(tracking_uri=f"sqlite:///{db}").search_model_versions("name='hftpipe-lob'")


def test_pipeline_run_end_to_end(tmp_path: Path, hftpipe_home: Path) -> None:
    source = write_slice(tmp_path / "slice")
    summary_path = tmp_path / "summary.json"
    # A gate any first model passes, so this run also exercises the promoted branch (deploy).
    gate = ["-S", "register.min_margin=-1.0"]
    result = CliRunner().invoke(main, [*FAST, *gate, "pipeline", "run", "--data", str(source),
                                       "--summary-json", str(summary_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded"
    steps = [s["step"] for s in summary["steps"]]
    assert steps[:6] == ["validate", "ingest", "features", "train", "evaluate", "register"]
    assert all(s["seconds"] > 0 for s in summary["steps"])
    assert summary["decision"] == "champion"
    assert steps[-1] == "deploy"
    deployed = [json.loads(line) for line in (hftpipe_home / "deployments.jsonl").read_text().splitlines()]
    assert deployed[-1]["version"] == summary["version"] and deployed[-1]["status"] == "live-local"
    assert summary["decision"] in summary["aliases"]
    assert 0.0 <= summary["metrics"]["macro_f1"] <= 1.0
    assert {"majority", "persistence"} <= set(summary["baselines"])
    assert summary["backtest"]
    versions = _registered_versions(hftpipe_home)
    assert len(versions) == 1 and str(versions[0].version) == summary["version"]
    assert Path(summary["report"]).exists()
    # Every step's artifacts live under HFTPIPE_HOME.
    for key in ("events_path", "features_dir", "model_dir", "report_dir"):
        assert Path(summary["artifacts"][key]).exists()
        assert str(hftpipe_home) in summary["artifacts"][key]
    assert "macro-F1" in result.output and "baseline" in result.output


def test_corrupted_file_stops_at_validation_and_registers_nothing(tmp_path: Path, hftpipe_home: Path) -> None:
    source = write_slice(tmp_path / "bad", rows=3000, corrupt=True)
    summary_path = tmp_path / "summary.json"
    result = CliRunner().invoke(main, [*FAST, "pipeline", "run", "--data", str(source),
                                       "--summary-json", str(summary_path)])
    assert result.exit_code == 1, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "failed" and summary["failed_step"] == "validate"
    assert "failed at step 'validate'" in result.output
    assert [s["step"] for s in summary["steps"]] == ["validate"]
    assert _registered_versions(hftpipe_home) == []


def test_retrain_logs_a_successful_run(tmp_path: Path, hftpipe_home: Path) -> None:
    """Issue 10 finding 16: retrain.log stayed empty for a successful run (INFO fell below the root's WARNING)."""
    source = write_slice(tmp_path / "slice")
    result = CliRunner().invoke(main, [*FAST, "retrain", "--data", str(source)])
    assert result.exit_code == 0, result.output
    log = (hftpipe_home / "logs" / "retrain.log").read_text()
    for expected in ("INFO hftpipe.retrain: retrain started", "step validate started", "step train succeeded in",
                     "step register succeeded in", "pipeline succeeded in", "model macro-F1",
                     "retrain finished with exit 0"):
        assert expected in log, log
    assert json.loads((hftpipe_home / "logs" / "retrain-last.json").read_text())["status"] == "succeeded"


def test_pipeline_run_on_two_sources_trains_registers_and_deploys_one_pooled_model(tmp_path: Path,
                                                                                   hftpipe_home: Path) -> None:
    """Two real sources (GOOG and AAPL slices) in data.source: each is validated, ingested and featurised on its
    own, then one pooled model is trained, scored per instrument plus the pooled summary, and gated."""
    from mlflow import MlflowClient

    goog = write_slice(tmp_path / "goog", rows=8000)
    aapl = write_slice(tmp_path / "aapl", rows=8000, symbol="AAPL")
    summary_path = tmp_path / "summary.json"
    gate = ["-S", "register.min_margin=-1.0"]  # a rule any first model passes: the promoted branch runs too
    result = CliRunner().invoke(main, [*FAST, *gate, "-S", f"data.source=[{goog}, {aapl}]", "pipeline", "run",
                                       "--summary-json", str(summary_path)])
    assert result.exit_code == 0, result.output
    assert "running the pooled training pipeline locally (kfp.local) on 2 sources" in result.output
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "succeeded", summary.get("error")
    assert summary["sources"] == [str(goog.resolve()), str(aapl.resolve())]
    steps = [s["step"] for s in summary["steps"]]
    for step in ("validate", "ingest", "features"):
        assert steps.count(step) == 2, steps  # once per source
    assert steps[-5:] == ["pool", "train", "evaluate", "register", "deploy"]

    # one model, trained on both (its lineage lists each set)
    bundle = json.loads((Path(summary["artifacts"]["model_dir"]) / "bundle.json").read_text())
    assert [t["symbol"] for t in bundle["trained_on"]] == ["GOOG", "AAPL"]
    assert all(t["split_rows"]["test"] > 0 for t in bundle["trained_on"])
    # a report per instrument (its own test split, its own baselines) and the pooled summary
    report_dir = Path(summary["artifacts"]["report_dir"])
    pooled = json.loads((report_dir / "pooled.json").read_text())
    assert [(r["symbol"], r["scope"]) for r in pooled["instruments"]] == [("GOOG", "test"), ("AAPL", "test")]
    for folder in ("GOOG_2012-06-21", "AAPL_2012-06-21"):
        assert (report_dir / folder / "report.json").is_file()
    assert [(r["symbol"], r["scored_rows"]) for r in summary["instruments"]] == \
        [(r["symbol"], r["scored_rows"]) for r in pooled["instruments"]]
    assert summary["metrics"]["macro_f1"] == pytest.approx(pooled["instrument_mean"]["model_macro_f1"])
    assert "GOOG 2012-06-21" in result.output and "mean of instruments" in result.output

    # the registry decision, by the several-instrument rule
    assert summary["decision"] == "champion" and summary["version"]
    assert any("mean over 2 instruments of the margin" in r for r in summary["reasons"]), summary["reasons"]
    assert any("lowest point margin over its best baseline" in r for r in summary["reasons"]), summary["reasons"]
    versions = _registered_versions(hftpipe_home)
    assert [str(v.version) for v in versions] == [summary["version"]]
    tags = MlflowClient(tracking_uri=f"sqlite:///{hftpipe_home / 'mlflow' / 'mlflow.db'}").get_model_version(
        "hftpipe-lob", summary["version"]).tags
    assert tags["gate.check.every_instrument_margin"] == "pass" and tags["data.symbol"] == "GOOG+AAPL"
    deployed = [json.loads(line) for line in (hftpipe_home / "deployments.jsonl").read_text().splitlines()]
    assert deployed[-1]["version"] == summary["version"]
