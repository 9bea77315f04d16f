"""Training the tabular families: fit, bundle save/load, calibration, and train == serve features."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import Config, TrainConfig
from hftpipe.errors import ConfigError, ModelError
from hftpipe.features import load_feature_set
from hftpipe.features.window import window_indices
from hftpipe.models import load_bundle
from hftpipe.models.calibration import softmax
from hftpipe.models.tabular import TabularBundle, book_feature_matrix
from hftpipe.tracking import NullTracker
from hftpipe.training import train
from hftpipe.training.data import TEST, VAL, sample_ends
from hftpipe.training.tabular import fit_tabular, save_tabular_bundle
from tests.training.conftest import Slice, make_slice
from tests.training.test_train_cli import FEATURES, small_features  # noqa: F401 - the module fixture

WINDOW = 20
TCFG = TrainConfig(model="lgbm", window=WINDOW, tabular_levels=3, tabular_windows=(3, 8), tabular_lags=(0, 1, 4),
                   lgbm_rounds=60, lgbm_early_stopping=10, lgbm_learning_rate=0.1, lgbm_num_leaves=15,
                   max_train_samples=3000, threads=1)


@pytest.fixture(scope="module")
def sl() -> Slice:
    return make_slice(rows=6000, levels=5)


@pytest.mark.parametrize("model", ["lgbm", "logreg_tab", "mlp_tab"])
def test_fit_save_load_and_predict_on_raw_windows(sl: Slice, model: str, tmp_path: Path) -> None:
    tcfg = dataclasses.replace(TCFG, model=model, epochs=2)
    fit = fit_tabular(sl.book, sl.labels, sl.split, tcfg)
    assert fit.metrics["best_val_macro_f1"] > 0.34  # above a constant guess (at most 1/3 on balanced classes)
    assert fit.metrics["n_features"] == len(fit.model.spec.names()) == 3 * (2 + 3 + 2 + 8)
    out = save_tabular_bundle(tmp_path / "bundle", fit.model, config=Config(train=tcfg).to_dict(), window=WINDOW,
                              horizon=10, alpha=1e-5, metrics=fit.metrics, importance=fit.importance,
                              calibration=fit.calibration)
    bundle = load_bundle(out)
    assert isinstance(bundle, TabularBundle)
    assert (bundle.model_name, bundle.levels, bundle.window, bundle.horizon) == (model, 3, WINDOW, 10)
    assert bundle.temperature == pytest.approx(fit.model.temperature)
    # The served path (raw windows, the model's top 3 levels) equals the training path (whole-book matrix).
    ends = sample_ends(sl.labels, sl.split, TEST, WINDOW)
    book3 = np.ascontiguousarray(sl.book[:, :12])
    raw = book3[window_indices(ends, WINDOW)]
    matrix = book_feature_matrix(sl.book, ends, fit.model.spec)
    np.testing.assert_array_equal(bundle.features(raw), matrix)  # bit for bit
    served, trained = bundle.predict_proba(raw), fit.model.proba_from_features(matrix)
    # BLAS may round a matrix product differently for another batch size (logreg/mlp): ulps, never a class.
    np.testing.assert_allclose(served, trained, rtol=1e-12, atol=1e-15)
    assert (served.argmax(1) == trained.argmax(1)).all()
    assert np.allclose(served.sum(axis=1), 1.0)
    with pytest.raises(ModelError, match=r"raw book windows of shape \(B, 20, 12\)"):
        bundle.predict_proba(sl.book[window_indices(ends[:2], WINDOW)])  # 5 levels: not what it reads


def test_lgbm_importance_names_every_feature(sl: Slice) -> None:
    fit = fit_tabular(sl.book, sl.labels, sl.split, TCFG)
    groups = set(fit.model.spec.base_names())
    assert set(fit.importance["permutation_macro_f1_drop"]) == groups
    assert set(fit.importance["gain_share"]) == groups
    assert sum(fit.importance["gain_share"].values()) == pytest.approx(1.0)


def test_calibration_improves_brier_on_validation(sl: Slice) -> None:
    """An over-fitted booster (no early stopping, big steps) is over-confident; the temperature fixes it."""
    tcfg = dataclasses.replace(TCFG, lgbm_rounds=150, lgbm_early_stopping=0, lgbm_learning_rate=0.5,
                               lgbm_num_leaves=63)
    fit = fit_tabular(sl.book, sl.labels, sl.split, tcfg)
    cal = fit.calibration
    assert fit.model.temperature > 1.2
    assert cal["calibrated"]["brier"] < cal["uncalibrated"]["brier"] - 0.005
    assert cal["calibrated"]["log_loss"] < cal["uncalibrated"]["log_loss"]
    # The served probabilities are the calibrated ones, and the predicted class is unchanged.
    ends = sample_ends(sl.labels, sl.split, VAL, WINDOW)
    x = book_feature_matrix(sl.book, ends, fit.model.spec)
    logits = fit.model.logits_from_features(x)
    np.testing.assert_allclose(fit.model.proba_from_features(x), softmax(logits / fit.model.temperature))
    assert (fit.model.proba_from_features(x).argmax(1) == logits.argmax(1)).all()
    off = fit_tabular(sl.book, sl.labels, sl.split, dataclasses.replace(tcfg, calibrate=False))
    assert off.model.temperature == 1.0


def test_window_shorter_than_the_features_is_refused(sl: Slice) -> None:
    with pytest.raises(ConfigError, match=r"train.window=10 is shorter than the 13 book states"):
        fit_tabular(sl.book, sl.labels, sl.split, dataclasses.replace(TCFG, window=10))


@pytest.mark.slow
def test_train_and_cli_on_a_feature_set(small_features: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = Config(features=FEATURES, train=dataclasses.replace(TCFG, horizon=10))
    tracker = NullTracker()
    result = train(cfg, small_features, tmp_path / "model", tracker=tracker)
    bundle = load_bundle(result.bundle_dir)
    fs = load_feature_set(small_features)
    assert bundle.model_name == "lgbm" and bundle.alpha == pytest.approx(fs.alpha(10))
    assert bundle.feature_meta["source_sha256"] == fs.meta["source_sha256"]
    info = json.loads((result.bundle_dir / "bundle.json").read_text())
    assert info["tabular"]["features"] == bundle.model.spec.names() and info["importance"]["gain_share"]
    assert "bundle" in {a for _, a in tracker.artifacts}
    out = tmp_path / "cli-model"
    args = ["-S", "train.model=lgbm", "-S", "train.window=20", "-S", "train.tabular_windows=[3, 8]",
            "-S", "train.tabular_lags=[0, 1, 4]", "-S", "train.lgbm_rounds=20", "-S", "train.max_train_samples=2000"]
    run = CliRunner().invoke(main, [*args, "train", str(small_features), "-o", str(out), "--no-tracking"])
    assert run.exit_code == 0, run.output
    assert "lgbm: best val macro-F1" in run.output and load_bundle(out).levels == 1


@pytest.mark.slow
def test_torch_family_is_calibrated_too(small_features: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = Config(features=FEATURES, train=TrainConfig(model="logreg", window=10, epochs=1, batch_size=64,
                                                      max_train_samples=1024, device="cpu", threads=1))
    result = train(cfg, small_features, tmp_path / "model")
    bundle = load_bundle(result.bundle_dir)
    assert bundle.temperature == result.metrics["temperature"] and bundle.temperature != 1.0
    assert bundle.calibration["calibrated"]["log_loss"] <= bundle.calibration["uncalibrated"]["log_loss"]
    fs = load_feature_set(small_features)
    raw = fs.book()[window_indices(sample_ends(fs.labels(10), fs.split, TEST, 10)[:50], 10)]
    np.testing.assert_allclose(bundle.predict_proba(raw), softmax(bundle.predict_logits(raw) / bundle.temperature))


@pytest.mark.slow
def test_registry_gate_rescores_a_one_level_model_on_deeper_data(small_features: Path, tmp_path: Path) -> None:  # noqa: F811
    """The champion re-score cuts deeper test data to the model's levels, as evaluate does (it refused
    a 1-level bundle on 5-level features before)."""
    from hftpipe.evaluation.metrics import classification_metrics
    from hftpipe.registry.rescore import score_on_test_split

    cfg = Config(features=FEATURES, train=dataclasses.replace(TCFG, tabular_levels=1, horizon=10))
    bundle_dir = train(cfg, small_features, tmp_path / "model").bundle_dir
    fs = load_feature_set(small_features)
    assert fs.levels == 5 and load_bundle(bundle_dir).levels == 1
    ends = sample_ends(fs.labels(10), fs.split, TEST, WINDOW)
    expected = classification_metrics(fs.labels(10)[ends].astype(np.int64),
                                      load_bundle(bundle_dir).predict(fs.book()[:, :4][window_indices(ends, WINDOW)]))
    cfg = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, bootstrap=20))
    macro_f1, _, how = score_on_test_split(cfg, bundle_dir, small_features, "champion")
    assert macro_f1 == pytest.approx(expected["macro_f1"]) and "hftpipe evaluate" in how
