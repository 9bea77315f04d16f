"""``hftpipe train A B`` (one pooled model), ``evaluate --data A --data B`` (per instrument + pooled) and
``evaluate --leave-one-out`` on small real slices of GOOG and AAPL."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import FeaturesConfig
from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import EventTable, write_events
from hftpipe.evaluation.bootstrap import macro_f1_intervals, stratified_macro_f1_intervals
from hftpipe.features import build_features, load_feature_set
from hftpipe.models import read_bundle_json
from tests.conftest import lobster_zip

pytestmark = pytest.mark.slow  # builds two feature sets, trains three small models

FEATURES = FeaturesConfig(windows=(10,), horizons=(10,), purge=20)
SETTINGS = ["features.horizons=[10]", "features.windows=[10]", "features.purge=20", "train.horizon=10",
            "train.window=50", "train.hidden=8", "train.epochs=1", "train.batch_size=64",
            "train.max_train_samples=512", "train.device=cpu", "train.threads=1", "evaluate.bootstrap=50"]


def _args(*extra: str) -> list[str]:
    return [a for o in (*SETTINGS, *extra) for a in ("-S", o)]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pooled-eval")
    out = {}
    for symbol in ("GOOG", "AAPL"):
        table = load_lobster(lobster_zip(symbol, 1))
        frame = table.frame.iloc[:3000].reset_index(drop=True)
        events = write_events(EventTable(frame, dataclasses.replace(table.meta, rows=len(frame))),
                              root / f"{symbol}.parquet")
        build_features(FEATURES, events, root / symbol)
        out[symbol] = root / symbol
    return out


def test_multi_set_train_then_per_instrument_evaluate(sets: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    model = tmp_path / "model"
    result = runner.invoke(main, [*_args("train.model=lstm"), "train", str(sets["GOOG"]), str(sets["AAPL"]),
                                  "-o", str(model), "--no-tracking"])
    assert result.exit_code == 0, result.output
    info = read_bundle_json(model)
    assert [s["symbol"] for s in info["trained_on"]] == ["GOOG", "AAPL"]
    assert info["feature_meta"]["symbol"] == "GOOG+AAPL"

    out = tmp_path / "eval"
    result = runner.invoke(main, [*_args(), "evaluate", "--model", str(model), "--data", str(sets["GOOG"]),
                                  "--data", str(sets["AAPL"]), "-o", str(out), "--no-track"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "pooled.json").read_text())
    rows = summary["instruments"]
    assert [r["symbol"] for r in rows] == ["GOOG", "AAPL"]
    assert all(r["scope"] == "test" for r in rows)  # both files were trained on: test splits only
    for r, name in zip(rows, ("GOOG", "AAPL")):
        report = json.loads((out / f"{name}_2012-06-21" / "report.json").read_text())
        assert report["data"]["symbol"] == name and report["margin"]["point"] == r["margin"]["point"]
        assert r["margin"]["low"] <= r["margin"]["point"] <= r["margin"]["high"]
        split = load_feature_set(sets[name]).split
        assert report["data"]["scored_rows"] <= int((split == 2).sum())
    pooled = summary["pooled"]
    assert pooled["rows"] == sum(r["scored_rows"] for r in rows)
    assert pooled["margin"]["over"] == pooled["best_baseline"]
    assert "pooled" in result.output and "GOOG 2012-06-21" in result.output
    assert json.loads((out / "metrics.json").read_text())["GOOG_2012-06-21_macro_f1"] == rows[0]["model_macro_f1"]


def test_leave_one_out_trains_on_the_others_and_scores_the_held_out_day(sets: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "loo"
    result = CliRunner().invoke(main, [*_args("train.model=logreg_tab"), "evaluate", "--leave-one-out",
                                       "--data", str(sets["GOOG"]), "--data", str(sets["AAPL"]), "-o", str(out),
                                       "--no-track"])
    assert result.exit_code == 0, result.output
    table = json.loads((out / "leave_one_out.json").read_text())
    held = table["held_out"]
    assert [(r["symbol"], r["trained_on"], r["scope"]) for r in held] == [("GOOG", "AAPL", "all"),
                                                                           ("AAPL", "GOOG", "all")]
    for r, name, other in zip(held, ("GOOG", "AAPL"), ("AAPL", "GOOG")):
        info = read_bundle_json(out / f"without_{name}_2012-06-21" / "model")
        assert [s["symbol"] for s in info["trained_on"]] == [other]  # never the held-out instrument
    assert table["pooled"]["rows"] == sum(r["scored_rows"] for r in held)
    assert (out / "leave_one_out.md").read_text().count("| GOOG 2012-06-21 | AAPL |") == 1
    bad = CliRunner().invoke(main, ["evaluate", "--leave-one-out", "--model", "x", "--data", "a", "--data", "b"])
    assert bad.exit_code != 0 and "drop --model" in bad.output


def test_stratified_interval_of_one_part_is_the_plain_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    preds = {"model": np.where(rng.random(600) < 0.6, y, rng.integers(0, 3, 600)), "base": rng.integers(0, 3, 600)}
    plain = macro_f1_intervals(y, preds, reference="base", n_resamples=200, block=20, seed=4)
    strat = stratified_macro_f1_intervals([(y, preds)], reference="base", n_resamples=200, block=20, seed=4)
    assert plain[0]["model"] == strat[0]["model"] and plain[1]["model"] == strat[1]["model"]
    two = stratified_macro_f1_intervals([(y[:300], {k: v[:300] for k, v in preds.items()}),
                                         (y[300:], {k: v[300:] for k, v in preds.items()})],
                                        reference="base", n_resamples=200, block=20, seed=4)
    assert two[0]["model"].point == pytest.approx(plain[0]["model"].point)  # the point is the union's
    assert two[1]["model"].low < two[1]["model"].point < two[1]["model"].high
