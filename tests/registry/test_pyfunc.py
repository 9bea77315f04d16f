"""The pyfunc wrapper on its own: save, load back, same probabilities as the bundle (any level count)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from hftpipe.config import Config
from hftpipe.features.window import WindowStats, relative_book
from hftpipe.models import build_model, load_bundle, save_bundle
from hftpipe.registry.pyfunc import BUNDLE_ARTIFACT, BundleModel, input_example, signature_for

pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")


@pytest.mark.parametrize("levels", [1, 5])
def test_saved_pyfunc_matches_bundle(tmp_path: Path, levels: int) -> None:
    window = 8
    example = input_example(None, window, levels)
    assert example.shape == (2, window, 4 * levels)
    rel = relative_book(example)
    assert np.all(np.isfinite(rel))
    # The synthetic ladder is a valid book: asks above bids, one cent apart per level.
    assert np.all(example[..., 0::4] > example[..., 2::4])
    torch.manual_seed(levels)
    bundle_dir = save_bundle(tmp_path / "bundle", build_model("lstm", levels, window, 8, 0.0),
                             config=Config().to_dict(), model_name="lstm", levels=levels, window=window,
                             horizon=10, alpha=1e-5,
                             stats=WindowStats(mean=rel.reshape(-1, 4 * levels).mean(0),
                                               std=rel.reshape(-1, 4 * levels).std(0) + 1.0),
                             hidden=8, dropout=0.0)
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=BundleModel(),
                             artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                             signature=signature_for(window, levels), input_example=example,
                             pip_requirements=["hftpipe"])
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    rng = np.random.default_rng(0)
    windows = example + rng.integers(-2, 3, size=example.shape) * np.tile([0.01, 10.0, 0.01, 10.0], levels)
    np.testing.assert_allclose(model.predict(windows), load_bundle(bundle_dir).predict_proba(windows), rtol=1e-6)
    with pytest.raises(mlflow.exceptions.MlflowException, match="Shape of input"):
        model.predict(windows[:, :-1])  # the signature rejects a window of the wrong length
