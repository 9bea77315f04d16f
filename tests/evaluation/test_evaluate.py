"""evaluate() end to end on a slice of the real GOOG file, with a real (untrained, seeded) model bundle."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import Config, FeaturesConfig
from hftpipe.data import EventTable, load_lobster, write_events
from hftpipe.errors import ModelError
from hftpipe.evaluation import backtest, classification_metrics, evaluate
from hftpipe.evaluation.baselines import baseline_predictions, threshold_returns
from hftpipe.evaluation.evaluate import predict_rows, scored_rows
from hftpipe.features import build_features, fit_window_stats, load_feature_set
from hftpipe.models import build_model, load_bundle, save_bundle
from hftpipe.tracking import NullTracker
from tests.conftest import lobster_zip

# Building the feature set (with its Great Expectations validation) dominates: about 10 s for the module.
pytestmark = pytest.mark.slow

ROWS = 12_000
WINDOW, K = 20, 10
CFG = Config().replace(
    features=FeaturesConfig(windows=(10, 20), horizons=(10, 20)),
    evaluate=dataclasses.replace(Config().evaluate, bootstrap=200, fees_bps=0.5, sharpe_buckets=10),
)


@pytest.fixture(scope="module")
def goog_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = load_lobster(lobster_zip("GOOG", 1))
    head = EventTable(frame=table.frame.iloc[:ROWS].reset_index(drop=True),
                      meta=dataclasses.replace(table.meta, rows=ROWS))
    root = tmp_path_factory.mktemp("goog")
    build_features(CFG.features, write_events(head, root / "events.parquet"), root / "features")
    return root / "features"


def make_bundle(directory: Path, features_dir: Path, *, levels: int = 1, horizon: int = K,
                alpha: float | None = None, trained_on: dict | None = None) -> Path:
    fs = load_feature_set(features_dir)
    torch.manual_seed(0)
    module = build_model("logreg", levels, WINDOW)
    ends = np.flatnonzero(fs.split == 0)
    stats = fit_window_stats(fs.book()[:, : 4 * levels], ends[ends >= WINDOW], WINDOW)
    return save_bundle(directory, module, config=CFG.to_dict(), model_name="logreg", levels=levels,
                       window=WINDOW, horizon=horizon, alpha=fs.alpha(K) if alpha is None else alpha, stats=stats,
                       hidden=64, dropout=0.0, feature_meta=trained_on if trained_on is not None else fs.meta)


def test_report_puts_the_model_beside_the_baselines_on_the_same_rows(tmp_path: Path, goog_features: Path) -> None:
    bundle_dir = make_bundle(tmp_path / "bundle", goog_features)
    tracker = NullTracker()
    result = evaluate(CFG, bundle_dir, goog_features, tmp_path / "out", tracker=tracker)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == result.report
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"report.json", "report.md", "confusion.png", "pnl.png"}

    # Recompute everything independently from the feature set and the bundle.
    fs = load_feature_set(goog_features)
    labels = fs.labels(K)
    score, span = scored_rows(fs.split, labels, "test", WINDOW, K)
    assert score.min() >= np.flatnonzero(fs.split == 2).min() and (fs.split[score] == 2).all()
    bundle = load_bundle(bundle_dir)
    model_span = predict_rows(bundle, fs.book(), span)
    pos = score - span[0]
    assert np.array_equal(result.predictions, model_span[pos])
    y = labels[score]
    assert report["model"]["macro_f1"] == pytest.approx(classification_metrics(y, model_span[pos])["macro_f1"])
    base = baseline_predictions(labels, fs.mid, fs.split == 0, span, K, fs.alpha(K))
    for name, pred in base.items():
        assert report["baselines"][name]["macro_f1"] == pytest.approx(classification_metrics(y, pred[pos])["macro_f1"])
        assert report["baselines"][name]["n"] == score.size == report["model"]["n"]
    best = max(report["baselines"], key=lambda n: report["baselines"][n]["macro_f1"])
    assert report["best_baseline"] == best
    margin = report["margin"]
    assert margin["point"] == pytest.approx(report["model"]["macro_f1"] - report["baselines"][best]["macro_f1"])
    assert margin["low"] <= margin["point"] <= margin["high"]
    bid, ask = fs.frame["bid_price_1"].to_numpy()[span], fs.frame["ask_price_1"].to_numpy()[span]
    direct = backtest(model_span, bid, ask, K, fees_bps=0.5, latency=1, sharpe_buckets=10, time=fs.time[span])
    assert report["backtest"]["model"] == pytest.approx(direct.to_dict())
    assert set(report["backtest"]) == {"model", "majority", "persistence", "momentum"}

    data = report["data"]
    assert (data["symbol"], data["date"], data["scope"]) == ("GOOG", "2012-06-21", "test")
    assert data["source_sha256"] == fs.meta["source_sha256"]
    assert report["model"]["classes"] == ["down", "stationary", "up"]
    md = (tmp_path / "out" / "report.md").read_text()
    for name in ("**model**", "majority", "persistence", "momentum", "Margin over the best baseline"):
        assert name in md
    logged = {k for metrics, _ in tracker.metrics for k in metrics}
    assert {"test_macro_f1", "margin_low", "baseline_persistence_macro_f1", "backtest_net_pnl_bps"} <= logged
    assert tracker.dicts["evaluation/report.json"] == report
    assert {Path(p).name for p, _ in tracker.artifacts} == {"report.md", "confusion.png", "pnl.png"}


def test_another_file_is_scored_whole_and_labels_use_the_models_alpha(tmp_path: Path, goog_features: Path) -> None:
    fs = load_feature_set(goog_features)
    alpha = 3 * fs.alpha(K)
    bundle_dir = make_bundle(tmp_path / "bundle", goog_features, alpha=alpha,
                             trained_on={"symbol": "AAPL", "date": "2012-06-21", "source_sha256": "0" * 64})
    report = evaluate(CFG, bundle_dir, goog_features, tmp_path / "out").report
    assert report["data"]["scope"] == "all"
    assert report["data"]["first_row"] == max(WINDOW - 1, K)
    assert report["data"]["last_row"] == ROWS - 1
    relabelled = threshold_returns(fs.returns(K), alpha)[report["data"]["first_row"]:]
    relabelled = relabelled[relabelled >= 0]
    assert report["model"]["n"] == relabelled.size
    support = [report["model"]["per_class"][c]["support"] for c in ("down", "stationary", "up")]
    assert support == np.bincount(relabelled, minlength=3).tolist()
    assert "replaced" in report["model_info"]["alpha_note"]
    forced = evaluate(CFG, bundle_dir, goog_features, tmp_path / "out2", scope="test").report
    assert forced["data"]["scope"] == "test" and forced["model"]["n"] < report["model"]["n"]


@pytest.mark.parametrize(("change", "message"), [
    ({"levels": 5}, "the model reads 5 book level"),
    ({"horizon": 7}, "horizon k=7 but the feature set only has"),
    ({"trained_label": "deeplob"}, "features.label='deeplob'"),
])
def test_a_model_that_cannot_read_the_data_is_refused(tmp_path: Path, goog_features: Path, change: dict,
                                                      message: str) -> None:
    if "levels" in change:  # a 5-level model needs 5-level statistics: fake the book width, not the data
        fs = load_feature_set(goog_features)
        torch.manual_seed(0)
        stats = fit_window_stats(np.tile(fs.book(), 5), np.array([WINDOW, WINDOW + 1]), WINDOW)
        bundle_dir = save_bundle(tmp_path / "b", build_model("logreg", 5, WINDOW), config=CFG.to_dict(),
                                 model_name="logreg", levels=5, window=WINDOW, horizon=K, alpha=fs.alpha(K),
                                 stats=stats, hidden=64, dropout=0.0, feature_meta=fs.meta)
    elif "trained_label" in change:  # trained on a feature set with another label kind
        trained_on = {**load_feature_set(goog_features).meta, "label": change["trained_label"]}
        bundle_dir = make_bundle(tmp_path / "b", goog_features, trained_on=trained_on)
    else:
        bundle_dir = make_bundle(tmp_path / "b", goog_features, **change)
    with pytest.raises(ModelError, match=message):
        evaluate(CFG, bundle_dir, goog_features, tmp_path / "out")


def test_cli_prints_the_model_beside_the_baselines(tmp_path: Path, goog_features: Path) -> None:
    bundle_dir = make_bundle(tmp_path / "bundle", goog_features)
    out = tmp_path / "out"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(CFG.to_dict()))
    result = CliRunner().invoke(main, ["--params", str(params), "-S", "evaluate.bootstrap=50",
                                       "evaluate", "--model", str(bundle_dir), "--data", str(goog_features),
                                       "-o", str(out), "--no-track", "--metrics", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    for name in ("model", "baseline majority", "baseline persistence", "baseline momentum", "margin over"):
        assert name in result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["macro_f1"] == json.loads((out / "report.json").read_text())["model"]["macro_f1"]
    # The pipeline's own model and data: the report goes to evaluate.output, the DVC metrics file beside it.
    pipeline = CliRunner().invoke(main, ["--params", str(params), "-S", f"train.output={bundle_dir}",
                                         "-S", f"features.output={goog_features}", "-S", "evaluate.bootstrap=50",
                                         "-S", f"evaluate.output={tmp_path / 'data' / 'evaluation'}",
                                         "evaluate", "--no-track"])
    assert pipeline.exit_code == 0, pipeline.output
    assert (tmp_path / "data" / "evaluation" / "report.json").exists()
    assert json.loads((tmp_path / "data" / "metrics.json").read_text())["macro_f1"] == metrics["macro_f1"]
    missing = CliRunner().invoke(main, ["--params", str(params), "evaluate", "--model", str(tmp_path / "nope"),
                                        "--no-track"])
    assert missing.exit_code == 2 and "is not a model bundle folder" in missing.output


def _lobster_pair_head(tmp_path: Path, symbol: str, rows: int) -> Path:
    """The first ``rows`` events of a shipped LOBSTER day as a CSV pair with LOBSTER's own file names."""
    with zipfile.ZipFile(lobster_zip(symbol, 1)) as zf:
        for name in zf.namelist():
            if name.endswith(".csv"):
                lines = zf.read(name).decode().splitlines()[:rows]
                (tmp_path / name).write_text("\n".join(lines) + "\n")
    return next(tmp_path.glob("*_message_1.csv"))


def test_cli_scores_a_raw_file_of_another_ticker_and_logs_to_mlflow(tmp_path: Path, goog_features: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    from hftpipe import paths

    bundle_dir = make_bundle(tmp_path / "bundle", goog_features)
    message_csv = _lobster_pair_head(tmp_path, "AAPL", 6000)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(CFG.to_dict()))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["--params", str(params), "evaluate", "--model", str(bundle_dir),
                                       "--data", str(message_csv)])
    assert result.exit_code == 0, result.output
    assert "on AAPL 2012-06-21, scope all" in result.output
    out_dir = next((paths.reports_dir() / "evaluate").iterdir())  # ad-hoc runs never overwrite evaluate.output
    report = json.loads((out_dir / "report.json").read_text())
    assert report["data"]["raw_source"] == str(message_csv)
    assert report["data"]["symbol"] == "AAPL" and report["data"]["last_row"] == 6000 - 1
    assert "from training" in report["model_info"]["alpha_note"]  # the model's alpha, not AAPL's own
    assert not list((paths.home() / "tmp").iterdir())  # the temporary feature set is gone
    client = MlflowClient(paths.mlflow_tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name(CFG.register.experiment).experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["test_macro_f1"] == pytest.approx(report["model"]["macro_f1"])
    assert run.data.metrics["margin_low"] == pytest.approx(report["margin"]["low"])
    assert run.data.tags["evaluation.symbol"] == "AAPL" and run.data.tags["step"] == "evaluate"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/report.md", "evaluation/pnl.png"} <= logged
