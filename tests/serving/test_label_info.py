"""The model server says what its classes mean: horizon with its unit (k events or clock time), alpha."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hftpipe.models.bundle import load_bundle
from hftpipe.serving.runtime import ServedModel
from tests.serving.conftest import make_bundle


@pytest.mark.parametrize(("horizon", "unit", "text"), [(10, "events", "10 events"), ("500ms", "seconds", "0.5 s")])
def test_served_model_carries_its_horizon_with_the_unit(tmp_path: Path, goog_book: np.ndarray, horizon: object,
                                                        unit: str, text: str) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "b", goog_book[:400], horizon=horizon))
    served = ServedModel(bundle=bundle, name="hftpipe-lob", version="7", source=str(tmp_path))
    info = served.label_info
    assert info["horizon_unit"] == unit and info["horizon"] == (10 if unit == "events" else "0.5s")
    assert info["alpha"] == 1e-5 and info["label"] == "forward" and info["sampling"] == "all"
    assert f"horizon {text})" in served.describe()
