"""A model bundle as an MLflow pyfunc model: ``mlflow.pyfunc.load_model`` and ``mlflow models serve``.

The MLflow model carries the bundle folder as an artifact (weights, window statistics, resolved config),
so it can be served with nothing but an installed ``hftpipe``:
``mlflow models serve -m models:/NAME@champion --env-manager local``.

Input: float64 tensor (B, T, 4L) of RAW book windows (LOBSTER column order, prices in dollars, sizes in
shares, empty levels NaN price / 0 size). Output: float64 (B, 3) class probabilities [down, stationary, up].
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import Schema, TensorSpec

log = logging.getLogger(__name__)

BUNDLE_ARTIFACT = "bundle"  # key of the bundle folder in the pyfunc model's artifacts
MODEL_ARTIFACT_PATH = "model"  # name of the logged model inside its run
_EXAMPLE_ROWS = 2


class BundleModel(PythonModel):
    """pyfunc wrapper: raw book windows in, class probabilities out, via ``ModelBundle.predict_proba``."""

    def load_context(self, context: PythonModelContext) -> None:
        from hftpipe.models.bundle import load_bundle

        self.bundle = load_bundle(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context: PythonModelContext, model_input: np.ndarray, params: dict[str, Any] | None = None):
        """Probabilities (B, 3) [down, stationary, up] for raw book windows (B, T, 4L)."""
        return self.bundle.predict_proba(np.asarray(model_input, dtype=np.float64))


def signature_for(window: int, levels: int) -> ModelSignature:
    """Tensor signature: (-1, T, 4L) float64 raw windows in, (-1, 3) float64 probabilities out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float64), (-1, window, 4 * levels))]),
        outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, 3))]),
    )


def input_example(bundle_dir: str | Path, window: int, levels: int,
                  features_dir: str | Path | None = None) -> np.ndarray:
    """A small realistic input: real windows from the feature set when given, else a synthetic book.

    The synthetic book is a $100 ladder with one-cent ticks and 100-share levels: valid input for any
    level count, so the example always runs through the model.
    """
    if features_dir is not None and (Path(features_dir) / "features_meta.json").exists():
        from hftpipe.features import load_feature_set

        book = load_feature_set(features_dir).book()[:, : 4 * levels]  # deeper data: the model's top levels
        if book.shape[1] == 4 * levels and len(book) >= window + _EXAMPLE_ROWS:
            ends = np.arange(len(book) - _EXAMPLE_ROWS, len(book))
            return np.stack([book[e - window + 1:e + 1] for e in ends]).astype(np.float64)
    ticks = np.arange(1, levels + 1) * 0.01
    state = np.empty(4 * levels)
    state[0::4] = 100.0 + ticks - 0.005  # ask prices
    state[1::4] = 100.0  # ask sizes
    state[2::4] = 100.0 - ticks + 0.005  # bid prices
    state[3::4] = 100.0  # bid sizes
    return np.broadcast_to(state, (_EXAMPLE_ROWS, window, 4 * levels)).copy()


def pip_requirements() -> list[str]:
    """What the served model needs: hftpipe itself (it loads the bundle) and the versions it ran with."""
    pins = []
    for package in ("mlflow", "torch", "numpy", "pandas", "lightgbm"):  # lightgbm: the lgbm family
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return ["hftpipe", *pins]


def log_bundle_model(bundle_dir: str | Path, run_id: str, features_dir: str | Path | None = None,
                     name: str = MODEL_ARTIFACT_PATH) -> mlflow.models.model.ModelInfo:
    """Log the bundle folder as a pyfunc model in run ``run_id`` (fluent store must point at our store).

    Returns:
        The ModelInfo; ``model_uri`` is what :func:`mlflow.register_model` takes.
    """
    from hftpipe.models.bundle import read_bundle_json

    info = read_bundle_json(bundle_dir)
    window, levels = int(info["window"]), int(info["levels"])
    example = input_example(bundle_dir, window, levels, features_dir)
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=BundleModel(),
            artifacts={BUNDLE_ARTIFACT: str(Path(bundle_dir).resolve())},
            signature=signature_for(window, levels),
            input_example=example,
            pip_requirements=pip_requirements(),  # explicit: inferring them imports the model in a subprocess
            tags={"hftpipe.model": str(info["model"]), "hftpipe.horizon": str(info["horizon"])},
        )
