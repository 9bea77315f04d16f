"""``hftpipe backtest`` end to end on a slice of the real GOOG file with a real (untrained, seeded) bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import Config, FeaturesConfig
from hftpipe.data import EventTable, load_lobster, write_events
from hftpipe.features import build_features, fit_window_stats, load_feature_set
from hftpipe.models import build_model, save_bundle
from tests.conftest import lobster_zip

pytestmark = pytest.mark.slow  # features + validation + eight replays: about 15 s

ROWS, WINDOW, K = 12_000, 20, 10
CFG = Config().replace(features=FeaturesConfig(windows=(10, 20), horizons=(10, 20)))


@pytest.fixture(scope="module")
def goog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    table = load_lobster(lobster_zip("GOOG", 1))
    head = EventTable(frame=table.frame.iloc[:ROWS].reset_index(drop=True), meta=dataclasses.replace(table.meta, rows=ROWS))
    root = tmp_path_factory.mktemp("goog")
    events = write_events(head, root / "events.parquet")
    build_features(CFG.features, events, root / "features")
    fs = load_feature_set(root / "features")
    torch.manual_seed(0)
    ends = np.flatnonzero(fs.split == 0)
    stats = fit_window_stats(fs.book(), ends[ends >= WINDOW], WINDOW)
    bundle = save_bundle(root / "bundle", build_model("logreg", 1, WINDOW), config=CFG.to_dict(), model_name="logreg",
                         levels=1, window=WINDOW, horizon=K, alpha=fs.alpha(K), stats=stats, hidden=64, dropout=0.0,
                         feature_meta=fs.meta)
    return events, bundle


def test_backtest_reports_model_and_baselines_under_each_policy(goog: tuple[Path, Path], tmp_path: Path) -> None:
    events, bundle = goog
    out = tmp_path / "bt.json"
    result = CliRunner().invoke(main, ["-S", "trading.bootstrap=100", "backtest", "--model", str(bundle), "--data",
                                       str(events), "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["data"]["scope"] == "test" and report["model"]["horizon"] == K
    assert list(report["results"]) == ["threshold", "passive"]
    for by in report["results"].values():
        assert list(by) == ["model", "majority", "persistence", "momentum"]
        for r in by.values():
            iv = r["net_pnl_interval"]
            assert iv["low"] <= iv["high"] and r["n_events"] == report["data"]["events"]
            if r["final_inventory"] == 0:
                assert r["net_pnl"] == pytest.approx(r["gross_pnl"] - r["fees"] + r["rebates"], abs=1e-6)
            else:  # the close found too little depth: the rest is marked at bid/ask, not the mid
                assert r["net_pnl"] < r["gross_pnl"] - r["fees"] + r["rebates"]
    assert sum(r["maker_fills"] for r in report["results"]["passive"].values()) > 0
    assert all(r["maker_fills"] == 0 for r in report["results"]["threshold"].values())
    table = [line for line in result.output.splitlines() if line.startswith(("| threshold", "| passive"))]
    assert len(table) == 8


def test_backtest_refuses_a_feature_folder(goog: tuple[Path, Path]) -> None:
    events, bundle = goog
    result = CliRunner().invoke(main, ["backtest", "--model", str(bundle), "--data", str(events.parent / "features"),
                                       "--policy", "passive"])
    assert result.exit_code == 2 and "needs the order-by-order events" in result.output
