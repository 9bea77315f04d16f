"""``train()`` on a real FeatureSet folder and ``hftpipe train`` (MLflow run, torchrun launch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import Config, FeaturesConfig, TrainConfig
from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import EventTable, write_events
from hftpipe.errors import ConfigError
from hftpipe.features import build_features, load_feature_set
from hftpipe.features.window import window_indices
from hftpipe.models import load_bundle
from hftpipe.tracking import NullTracker
from hftpipe.training import train
from hftpipe.training.data import sample_ends
from tests.conftest import lobster_zip

FEATURES = FeaturesConfig(windows=(10,), horizons=(10,), purge=20)
pytestmark = pytest.mark.slow  # builds a real feature set (GE validation) and trains; ~1 min in all

TRAIN_OVERRIDES = ["train.model=lstm", "train.window=10", "train.hidden=8", "train.epochs=2",
                   "train.batch_size=64", "train.max_train_samples=1024", "train.device=cpu", "train.threads=1"]


@pytest.fixture(scope="module")
def small_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Features of the first 5000 GOOG 5-level events (a real slice, built by the real feature step)."""
    root = tmp_path_factory.mktemp("features")
    table = load_lobster(lobster_zip("GOOG", 5))
    frame = table.frame.iloc[:5000].reset_index(drop=True)
    events = write_events(EventTable(frame, dataclasses.replace(table.meta, rows=len(frame))), root / "ev.parquet")
    build_features(FEATURES, events, root / "features")
    return root / "features"


def _config(**train: object) -> Config:
    base = TrainConfig(model="lstm", window=10, hidden=8, epochs=2, batch_size=64, max_train_samples=1024,
                       device="cpu", threads=1)
    return Config(features=FEATURES, train=dataclasses.replace(base, **train))


def test_train_writes_a_bundle_that_scores_the_test_split(small_features: Path, tmp_path: Path) -> None:
    tracker = NullTracker()
    result = train(_config(), small_features, tmp_path / "model", tracker=tracker)
    assert result.bundle_dir == tmp_path / "model" and result.world_size == 1
    bundle = load_bundle(result.bundle_dir)
    fs = load_feature_set(small_features)
    assert bundle.levels == 5 and bundle.horizon == 10 and bundle.alpha == pytest.approx(fs.alpha(10))
    assert bundle.feature_meta["source_sha256"] == fs.meta["source_sha256"]
    assert bundle.metrics["best_val_macro_f1"] == result.metrics["best_val_macro_f1"]
    ends = sample_ends(fs.labels(10), fs.split, 2, 10)
    proba = bundle.predict_proba(fs.book()[window_indices(ends, 10)])
    assert proba.shape == (len(ends), 3) and np.allclose(proba.sum(axis=1), 1)
    assert [step for _, step in tracker.metrics][:2] == [1, 2]
    assert "bundle" in {a for _, a in tracker.artifacts}


def test_unknown_horizon_is_refused(small_features: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.horizon=50 is not among .*\[10\]"):
        train(_config(horizon=50), small_features, tmp_path / "model")


def test_cli_logs_an_mlflow_run_and_resume_continues_it(small_features: Path, tmp_path: Path) -> None:
    import mlflow

    from hftpipe import paths

    out = tmp_path / "model"
    args = [a for o in TRAIN_OVERRIDES for a in ("-S", o)]
    runner = CliRunner()
    result = runner.invoke(main, [*args, "train", str(small_features), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "best val macro-F1" in result.output
    info = json.loads((out / "bundle.json").read_text())
    client = mlflow.MlflowClient(paths.mlflow_tracking_uri())
    run = client.get_run(info["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")] == [1, 2]
    # --resume of a finished run trains nothing more and keeps logging to the same MLflow run.
    result = runner.invoke(main, [*args, "train", str(small_features), "-o", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "bundle.json").read_text())["mlflow_run_id"] == run.info.run_id
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")] == [1, 2]


def test_cli_nproc_2_runs_under_torchrun(small_features: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = [a for o in TRAIN_OVERRIDES for a in ("-S", o)]
    result = CliRunner().invoke(main, [*args, "train", str(small_features), "-o", str(out), "--nproc", "2",
                                       "--no-tracking"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    assert bundle.model_name == "lstm"
    assert torch.isfinite(next(bundle.module.parameters())).all()
