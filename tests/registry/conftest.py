"""A small real feature set (GOOG 1 level) and model bundles built on it, for the registry tests."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hftpipe.config import Config, load_config
from hftpipe.data import EventTable, load_lobster
from hftpipe.data.schema import write_events
from hftpipe.features import build_features, fit_window_stats, load_feature_set
from hftpipe.models import build_model, save_bundle
from hftpipe.training.data import TRAIN, sample_ends
from tests.conftest import lobster_zip

EVENTS = 6000  # the opening of the day: enough for 900 test rows at k=10
WINDOW = 10
HORIZON = 10


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Features, labels (k=10) and splits of the first 6000 GOOG events, built by hftpipe.features."""
    table = load_lobster(lobster_zip("GOOG", 1))
    head = EventTable(table.frame.iloc[:EVENTS].reset_index(drop=True), dataclasses.replace(table.meta, rows=EVENTS))
    root = tmp_path_factory.mktemp("registry_data")
    write_events(head, root / "events.parquet")
    cfg = registry_config().features
    build_features(cfg, root / "events.parquet", root / "features")
    return root / "features"


def registry_config(*overrides: str) -> Config:
    """Config of the registry tests: one horizon, a short window, a quick bootstrap."""
    return load_config(None, ["features.horizons=[10]", "features.windows=[10]", f"train.window={WINDOW}",
                              f"train.horizon={HORIZON}", "train.model=mlp", "train.hidden=8",
                              "evaluate.bootstrap=50", *overrides])


def make_bundle(directory: Path, features_dir: Path, seed: int, cfg: Config | None = None,
                mlflow_run_id: str | None = None) -> Path:
    """An (untrained, seeded) MLP bundle on the feature set's real window statistics."""
    cfg = cfg or registry_config()
    fs = load_feature_set(features_dir)
    book = fs.book()
    train_ends = sample_ends(fs.labels(HORIZON), fs.split, TRAIN, WINDOW)
    stats = fit_window_stats(book, train_ends, WINDOW)
    torch.manual_seed(seed)
    module = build_model("mlp", fs.levels, WINDOW, cfg.train.hidden, 0.0)
    return save_bundle(directory, module, config=cfg.to_dict(), model_name="mlp", levels=fs.levels,
                       window=WINDOW, horizon=HORIZON, alpha=fs.alpha(HORIZON), stats=stats,
                       hidden=cfg.train.hidden, dropout=0.0, feature_meta=fs.meta,
                       metrics={"best_val_macro_f1": 0.0}, mlflow_run_id=mlflow_run_id)


def raw_windows(features_dir: Path, count: int = 64) -> np.ndarray:
    """Real raw windows (count, T, 4L) from the end of the feature set."""
    book = load_feature_set(features_dir).book()
    ends = np.arange(len(book) - count, len(book))
    return np.stack([book[e - WINDOW + 1:e + 1] for e in ends])


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema created once (the migrations take seconds per store)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def _fresh_mlflow_store(hftpipe_home: Path, _empty_mlflow_db: Path) -> Path:
    """Each MLflow test still gets its own real, empty store under its HFTPIPE_HOME: a copy of the template.

    MLflow test modules use it with ``pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")``.
    """
    target = hftpipe_home / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_empty_mlflow_db, target)
    return target
