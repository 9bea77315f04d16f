"""A saved bundle reloads to the same predictions from RAW book windows, and refuses broken bundles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hftpipe.config import Config
from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import book_matrix
from hftpipe.errors import ModelError
from hftpipe.features.window import fit_window_stats, model_input, window_indices
from hftpipe.models import build_model, load_bundle, save_bundle
from tests.conftest import lobster_zip


@pytest.fixture(scope="module")
def goog5_book() -> np.ndarray:
    return book_matrix(load_lobster(lobster_zip("GOOG", 5)).frame)[:3000]


def _save(directory: Path, book: np.ndarray, name: str = "lstm", window: int = 20) -> tuple:
    torch.manual_seed(0)
    module = build_model(name, levels=5, window=window, hidden=8, dropout=0.1)
    stats = fit_window_stats(book, np.arange(window - 1, 2000), window)
    save_bundle(directory, module, config=Config().to_dict(), model_name=name, levels=5, window=window,
                horizon=10, alpha=1.5e-5, stats=stats, hidden=8, dropout=0.1,
                feature_meta={"symbol": "GOOG", "date": "2012-06-21", "source_sha256": "ab" * 32},
                metrics={"val_macro_f1": 0.41}, mlflow_run_id="run123")
    return module.eval(), stats


@pytest.mark.parametrize("name", ["deeplob", "lstm", "mlp", "logreg"])
def test_round_trip_predicts_the_same(tmp_path: Path, goog5_book: np.ndarray, name: str) -> None:
    module, stats = _save(tmp_path, goog5_book, name)
    raw = goog5_book[window_indices(np.arange(2500, 2540), 20)]
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(model_input(raw, stats))), dim=-1).numpy()
    bundle = load_bundle(tmp_path)
    proba = bundle.predict_proba(raw)
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(bundle.predict(raw), expected.argmax(axis=1))
    assert not bundle.module.training
    # One window without the batch axis is accepted too.
    np.testing.assert_allclose(bundle.predict_proba(raw[0]), proba[:1], rtol=1e-5)


def test_bundle_json_carries_everything_serving_needs(tmp_path: Path, goog5_book: np.ndarray) -> None:
    _, stats = _save(tmp_path, goog5_book)
    info = json.loads((tmp_path / "bundle.json").read_text())
    assert info["model"] == "lstm" and info["levels"] == 5 and info["window"] == 20 and info["horizon"] == 10
    assert info["class_names"] == ["down", "stationary", "up"]
    assert info["alpha"] == pytest.approx(1.5e-5)
    assert info["feature_meta"]["symbol"] == "GOOG"
    assert info["mlflow_run_id"] == "run123"
    assert info["config"]["train"]["model"] == Config().train.model  # the resolved config travels
    np.testing.assert_allclose(info["window_stats"]["mean"], stats.mean)
    bundle = load_bundle(tmp_path)
    assert bundle.config == Config()
    assert bundle.meta["metrics"] == {"val_macro_f1": pytest.approx(0.41)}
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_wrong_window_shape_is_refused_with_the_expected_shape(tmp_path: Path, goog5_book: np.ndarray) -> None:
    _save(tmp_path, goog5_book)
    bundle = load_bundle(tmp_path)
    with pytest.raises(ModelError, match=r"shape \(B, 20, 20\).*got \(2, 20, 40\)"):
        bundle.predict_proba(np.zeros((2, 20, 40)))


def test_mismatched_weights_are_detected(tmp_path: Path, goog5_book: np.ndarray) -> None:
    _save(tmp_path, goog5_book)
    other = tmp_path / "other"
    _save(other, goog5_book, name="mlp")
    (tmp_path / "model.pt").write_bytes((other / "model.pt").read_bytes())
    with pytest.raises(ModelError, match="does not match bundle.json"):
        load_bundle(tmp_path)


def test_missing_bundle_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="bundle.json is missing.*hftpipe train"):
        load_bundle(tmp_path)
