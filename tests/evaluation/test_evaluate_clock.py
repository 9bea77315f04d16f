"""A clock-time horizon end to end: train, bundle and evaluate carry the unit; baselines use clock time."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hftpipe.config import Config, FeaturesConfig
from hftpipe.data import EventTable, load_lobster, write_events
from hftpipe.errors import ConfigError, ModelError
from hftpipe.evaluation import classification_metrics, evaluate
from hftpipe.evaluation.baselines import baseline_predictions, horizon_rows
from hftpipe.evaluation.evaluate import scored_rows
from hftpipe.features import build_features, load_feature_set
from hftpipe.models import load_bundle
from hftpipe.training import train
from tests.conftest import lobster_zip

pytestmark = pytest.mark.slow

ROWS = 12_000
CFG = Config().replace(
    features=FeaturesConfig(windows=(10, 20), horizons=(10, "2s")),
    evaluate=dataclasses.replace(Config().evaluate, bootstrap=100, sharpe_buckets=10),
)


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    table = load_lobster(lobster_zip("GOOG", 1))
    head = EventTable(frame=table.frame.iloc[:ROWS].reset_index(drop=True),
                      meta=dataclasses.replace(table.meta, rows=ROWS))
    root = tmp_path_factory.mktemp("goog-clock")
    build_features(CFG.features, write_events(head, root / "events.parquet"), root / "features")
    return root / "features"


def test_train_and_evaluate_at_two_seconds(tmp_path: Path, features: Path) -> None:
    tcfg = dataclasses.replace(CFG.train, model="logreg", horizon="2s", window=20, epochs=1, max_train_samples=2000,
                               device="cpu", calibrate=False)
    cfg = CFG.replace(train=tcfg)
    trained = train(cfg, features, tmp_path / "bundle", checkpoint_dir=tmp_path / "ckpt", progress=False)
    info = json.loads((trained.bundle_dir / "bundle.json").read_text())
    assert (info["horizon"], info["horizon_unit"]) == ("2s", "seconds")
    bundle = load_bundle(trained.bundle_dir)
    fs = load_feature_set(features)
    assert bundle.horizon == "2s" and bundle.alpha == fs.alpha("2s") != fs.alpha(10)

    result = evaluate(cfg, trained.bundle_dir, features, tmp_path / "out")
    report = result.report
    assert report["model_info"]["horizon"] == "2s" and report["model_info"]["horizon_unit"] == "seconds"
    # The baselines are the clock-time ones, on the same rows as the model.
    labels = fs.labels("2s")
    score, span = scored_rows(fs.split, labels, "test", 20, "2s", fs.time)
    base = baseline_predictions(labels, fs.mid, fs.split == 0, span, "2s", fs.alpha("2s"), fs.time)
    y = labels[score]
    for name, pred in base.items():
        assert report["baselines"][name]["macro_f1"] == pytest.approx(
            classification_metrics(y, pred[score - span[0]])["macro_f1"])
    assert report["backtest_settings"]["hold_events"] == horizon_rows("2s", fs.time) > 1
    md = (tmp_path / "out" / "report.md").read_text()
    assert "at h=2s" in md and "2s of clock time" in md

    # train.horizon=2 means 2 EVENTS: not built, refused instead of silently read as 2 s.
    with pytest.raises(ConfigError, match="train.horizon=2 is not among"):
        train(cfg.replace(train=dataclasses.replace(tcfg, horizon=2)), features, tmp_path / "b2", progress=False)
    events_bundle = train(cfg.replace(train=dataclasses.replace(tcfg, horizon=10)), features, tmp_path / "b10",
                          checkpoint_dir=tmp_path / "ckpt10", progress=False).bundle_dir
    assert json.loads((events_bundle / "bundle.json").read_text())["horizon_unit"] == "events"
    assert load_bundle(events_bundle).horizon == 10
    clock_only = tmp_path / "clock-only"
    build_features(dataclasses.replace(CFG.features, horizons=("10s",)), features.parent / "events.parquet", clock_only)
    with pytest.raises(ModelError, match="horizon k=10 but the feature set only has"):
        evaluate(cfg, events_bundle, clock_only, tmp_path / "out10")
    assert np.isfinite(report["margin"]["point"])
