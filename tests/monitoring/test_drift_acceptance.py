"""Acceptance on a real day: a model trained on GOOG 2012-06-21 carries its drift reference; a copy of
the day with every spread doubled is flagged; the model's own test split is not (false-alarm check)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hftpipe.data import read_events, write_events
from hftpipe.errors import MonitoringError
from hftpipe.models.bundle import load_bundle
from tests.conftest import lobster_zip

pytestmark = pytest.mark.slow


def hftpipe(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HFTPIPE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "hftpipe.cli", *args], check=False, capture_output=True, text=True, env=env,
                          timeout=600, cwd=home)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ingest, featurise and train (1 epoch, small LSTM) on the shipped 10-level GOOG day."""
    root = tmp_path_factory.mktemp("drift_day")
    events, features, model = root / "events.parquet", root / "features", root / "model"
    hftpipe("ingest", str(lobster_zip("GOOG", 10)), "-o", str(events), home=root)
    hftpipe("features", str(events), "-o", str(features), home=root)
    hftpipe("-S", "train.model=lstm", "-S", "train.epochs=1", "-S", "train.hidden=8", "-S", "train.window=20", "train",
            str(features), "-o", str(model), home=root)
    return {"root": root, "events": events, "features": features, "model": model}


def widened_copy(events: Path, out: Path) -> Path:
    """The same day with every spread doubled: asks up and bids down by half the spread, all levels."""
    table = read_events(events)
    frame = table.frame.copy()
    half = (frame["ask_price_1"] - frame["bid_price_1"]) / 2
    for col in frame.columns:
        if col.startswith("ask_price_"):
            frame[col] = frame[col] + half
        elif col.startswith("bid_price_"):
            frame[col] = frame[col] - half
    return write_events(dataclasses.replace(table, frame=frame), out)


def test_training_saves_the_reference(trained: dict[str, Path]) -> None:
    bundle = load_bundle(trained["model"])
    ref = bundle.drift_reference
    assert ref is not None and ref["rows"] > 50_000
    assert {"spread_bps", "imbalance_1", "log_ask_depth"} <= set(ref["features"])
    assert len(ref["prediction_shares"]) == 3 and abs(sum(ref["prediction_shares"]) - 1) < 1e-9
    assert ref["features"]["spread_bps"]["natural_ks"] > 0


def test_widened_spreads_are_flagged(trained: dict[str, Path], tmp_path: Path) -> None:
    wide = widened_copy(trained["events"], tmp_path / "wide.parquet")
    report = tmp_path / "wide.json"
    done = hftpipe("monitor", "drift", "--model", str(trained["model"]), "--data", str(wide), "--json", str(report),
                   home=trained["root"])
    doc = json.loads(report.read_text())
    assert doc["drift"] is True and "spread_bps" in doc["drifted_features"], doc
    assert doc["features"]["spread_bps"]["psi"] > 1.0 and doc["features"]["spread_bps"]["ks"] > 0.45
    assert doc["rows"] > 100_000 and done.stdout.startswith("drift: YES")


def test_the_models_own_test_split_is_not_flagged(trained: dict[str, Path], tmp_path: Path) -> None:
    report = tmp_path / "test.json"
    hftpipe("monitor", "drift", "--model", str(trained["model"]), "--data", str(trained["features"]),
            "--split", "test", "--json", str(report), home=trained["root"])
    doc = json.loads(report.read_text())
    assert doc["drift"] is False and doc["drifted_features"] == [], doc
    assert doc["prediction"]["available"] and doc["prediction"]["drift"] is False
    # and the raw file of the same day as a whole is not drift either
    raw = tmp_path / "raw.json"
    hftpipe("monitor", "drift", "--model", str(trained["model"]), "--data", str(lobster_zip("GOOG", 10)),
            "--json", str(raw), home=trained["root"])
    assert json.loads(raw.read_text())["drift"] is False


def test_an_old_bundle_without_a_reference_says_so(trained: dict[str, Path], tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(trained["model"], old)
    info = json.loads((old / "bundle.json").read_text())
    del info["drift_reference"]
    (old / "bundle.json").write_text(json.dumps(info))
    assert load_bundle(old).drift_reference is None  # still loads and serves
    done = hftpipe("monitor", "drift", "--model", str(old), "--data", str(trained["features"]), home=trained["root"],
                   check=False)
    assert done.returncode == MonitoringError.exit_code
    assert "has no drift reference (trained before hftpipe saved one); retrain it" in done.stderr
    assert "Traceback" not in done.stderr
    done = hftpipe("monitor", "drift", "--model", str(trained["model"]), "--data", str(trained["events"]),
                   "--split", "test", home=trained["root"], check=False)
    assert done.returncode == MonitoringError.exit_code and "--split test needs a feature-set folder" in done.stderr
