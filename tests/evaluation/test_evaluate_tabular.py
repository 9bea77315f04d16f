"""evaluate() on a trained LightGBM bundle: same rows as every family, plus calibration and importance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hftpipe.config import TrainConfig
from hftpipe.evaluation import evaluate
from hftpipe.evaluation.evaluate import predict_rows
from hftpipe.features import load_feature_set
from hftpipe.models import load_bundle
from hftpipe.models.calibration import calibration_summary
from hftpipe.training import train
from tests.evaluation.test_evaluate import CFG, K, goog_features  # noqa: F401 - the module fixture

pytestmark = pytest.mark.slow


def test_lgbm_report_has_calibration_and_importance(tmp_path: Path, goog_features: Path) -> None:  # noqa: F811
    tcfg = TrainConfig(model="lgbm", horizon=K, window=20, tabular_windows=(3, 8), tabular_lags=(0, 1, 4),
                       lgbm_rounds=40, max_train_samples=4000, threads=1)
    cfg = CFG.replace(train=tcfg)
    bundle_dir = train(cfg, goog_features, tmp_path / "bundle").bundle_dir
    result = evaluate(cfg, bundle_dir, goog_features, tmp_path / "out")
    report = result.report
    bundle = load_bundle(bundle_dir)
    fs = load_feature_set(goog_features)
    rows = np.arange(report["data"]["first_row"], report["data"]["last_row"] + 1)
    # The classes scored are the bundle's own predictions on raw windows (the serving path).
    predicted = predict_rows(bundle, fs.book()[:, :4], rows)
    assert np.array_equal(result.predictions, predicted[fs.labels(K)[rows] >= 0])
    cal = report["calibration"]
    assert cal["temperature"] == pytest.approx(bundle.temperature)
    y = fs.labels(K)[rows][fs.labels(K)[rows] >= 0].astype(np.int64)
    offsets = np.arange(-19, 1)
    scored = rows[fs.labels(K)[rows] >= 0]
    logits = bundle.predict_logits(fs.book()[:, :4][scored[:, None] + offsets])
    expected = calibration_summary(logits, y, bundle.temperature)
    assert cal["calibrated"]["brier"] == pytest.approx(expected["calibrated"]["brier"])
    assert cal["uncalibrated"]["brier"] == pytest.approx(expected["uncalibrated"]["brier"])
    assert set(report["feature_importance"]["gain_share"]) == set(bundle.model.spec.base_names())
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Calibration (scored rows)" in md and "## Feature importance" in md and "| ofi_w3 |" in md


def test_torch_bundle_report_has_calibration_only(tmp_path: Path, goog_features: Path) -> None:  # noqa: F811
    tcfg = TrainConfig(model="logreg", horizon=K, window=20, epochs=1, max_train_samples=2000, device="cpu",
                       threads=1)
    cfg = CFG.replace(train=tcfg)
    bundle_dir = train(cfg, goog_features, tmp_path / "bundle").bundle_dir
    report = evaluate(cfg, bundle_dir, goog_features, tmp_path / "out").report
    assert report["calibration"]["temperature"] == pytest.approx(load_bundle(bundle_dir).temperature)
    assert "feature_importance" not in report
