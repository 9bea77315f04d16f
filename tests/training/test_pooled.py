"""Pooled training across feature sets: window ends never cross a set, lineage lists every set, depths must match."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hftpipe.config import Config, FeaturesConfig, TrainConfig
from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import EventTable, write_events
from hftpipe.errors import DataFormatError
from hftpipe.evaluation.evaluate import resolve_scope
from hftpipe.features import build_features, load_feature_set
from hftpipe.models import load_bundle, read_bundle_json
from hftpipe.models.bundle import training_sets
from hftpipe.models.tabular import TabularSpec, base_features, book_feature_matrix
from hftpipe.training import fit, train
from hftpipe.training.data import TEST, TRAIN, VAL, sample_ends
from hftpipe.training.distributed import setup_distributed
from hftpipe.training.pooled import lake_day_split, load_training_data
from tests.conftest import lobster_zip
from tests.training.conftest import make_slice

FEATURES = FeaturesConfig(windows=(10,), horizons=(10,), purge=20)
WINDOW = 20


def _stack(*slices):
    starts = np.cumsum([0] + [len(s.book) for s in slices[:-1]])
    return (np.concatenate([s.book for s in slices]), np.concatenate([s.labels for s in slices]),
            np.concatenate([s.split for s in slices]), starts)


@pytest.mark.parametrize("which", [TRAIN, VAL, TEST])
def test_pooled_window_ends_are_each_sets_own_ends_and_never_cross(which: int) -> None:
    a, b = make_slice("GOOG", 1, rows=1500), make_slice("AAPL", 1, rows=1200)
    book, labels, split, starts = _stack(a, b)
    # Make the second set's first rows look usable: only `starts` can keep windows from crossing into set a.
    split[starts[1]: starts[1] + WINDOW] = which
    labels[starts[1]: starts[1] + WINDOW] = 1
    b_split, b_labels = split[starts[1]:], labels[starts[1]:]
    pooled = sample_ends(labels, split, which, WINDOW, starts)
    own = np.concatenate([sample_ends(a.labels, a.split, which, WINDOW),
                          sample_ends(b_labels, b_split, which, WINDOW) + starts[1]])
    np.testing.assert_array_equal(pooled, own)
    set_of_row = np.searchsorted(starts, np.arange(len(book)), side="right") - 1
    first_row = pooled - WINDOW + 1
    assert (set_of_row[first_row] == set_of_row[pooled]).all()
    # without starts the stacked arrays would cross: the check above can fail
    crossing = sample_ends(labels, split, which, WINDOW)
    assert (set_of_row[np.maximum(crossing - WINDOW + 1, 0)] != set_of_row[crossing]).any()


def test_single_set_ends_are_unchanged_by_the_starts_argument() -> None:
    s = make_slice("GOOG", 1, rows=1000)
    for which in (TRAIN, VAL, TEST):
        np.testing.assert_array_equal(sample_ends(s.labels, s.split, which, WINDOW),
                                      sample_ends(s.labels, s.split, which, WINDOW, np.array([0])))


def test_tabular_features_of_a_pooled_book_equal_each_sets_own() -> None:
    """Lagged engineered features at pooled window ends read only their own set's rows."""
    spec = TabularSpec(levels=1, windows=(5, 10), lags=(0, 2, 5))
    window = spec.required_rows
    a, b = make_slice("GOOG", 1, rows=800), make_slice("AAPL", 1, rows=700)
    book, labels, split, starts = _stack(a, b)
    pooled_ends = sample_ends(labels, split, TRAIN, window, starts)
    pooled = book_feature_matrix(book, pooled_ends, spec, base_features(book, spec))
    own = np.concatenate([
        book_feature_matrix(s.book, e, spec, base_features(s.book, spec))
        for s, e in ((a, sample_ends(a.labels, a.split, TRAIN, window)),
                     (b, sample_ends(b.labels, b.split, TRAIN, window)))])
    np.testing.assert_array_equal(pooled, own)


def test_fit_on_stacked_sets_counts_only_windows_inside_a_set() -> None:
    a, b = make_slice("GOOG", 1, rows=1500), make_slice("AAPL", 1, rows=1500)
    book, labels, split, starts = _stack(a, b)
    tcfg = TrainConfig(model="logreg", window=WINDOW, epochs=1, batch_size=128, device="cpu", threads=1)
    result = fit(book, labels, split, tcfg, starts=starts, progress=False)
    expected = (len(sample_ends(a.labels, a.split, TRAIN, WINDOW))
                + len(sample_ends(b.labels, b.split, TRAIN, WINDOW)))
    assert result.train_samples == expected


# ------------------------------------------------------------------------------------ feature-set folders

def _features(root: Path, symbol: str, levels: int, rows: int = 3000) -> Path:
    table = load_lobster(lobster_zip(symbol, levels))
    frame = table.frame.iloc[:rows].reset_index(drop=True)
    events = write_events(EventTable(frame, dataclasses.replace(table.meta, rows=len(frame))),
                          root / f"{symbol}{levels}.parquet")
    build_features(FEATURES, events, root / f"{symbol}{levels}")
    return root / f"{symbol}{levels}"


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real feature sets: GOOG and AAPL at 1 level, GOOG at 5 levels (first 3000 events each)."""
    root = tmp_path_factory.mktemp("pooled-sets")
    return {"GOOG1": _features(root, "GOOG", 1), "AAPL1": _features(root, "AAPL", 1),
            "GOOG5": _features(root, "GOOG", 5)}


def test_load_training_data_lists_every_set(sets: dict[str, Path]) -> None:
    data = load_training_data([sets["GOOG1"], sets["AAPL1"]], 10)
    goog, aapl = load_feature_set(sets["GOOG1"]), load_feature_set(sets["AAPL1"])
    assert data.pooled and list(data.starts) == [0, goog.meta["rows"]]
    assert data.book.shape == (goog.meta["rows"] + aapl.meta["rows"], 4)
    np.testing.assert_array_equal(data.labels[data.starts[1]:], aapl.labels(10))
    assert [(s["symbol"], s["source_sha256"], s["rows"]) for s in data.trained_on] == [
        ("GOOG", goog.meta["source_sha256"], goog.meta["rows"]), ("AAPL", aapl.meta["source_sha256"], aapl.meta["rows"])]
    assert data.alpha is None  # each set keeps the band balanced on its own training rows
    assert data.feature_meta["symbol"] == "GOOG+AAPL" and data.feature_meta["source_sha256"] is None
    single = load_training_data(sets["GOOG1"], 10)
    assert single.starts is None and single.alpha == pytest.approx(goog.alpha(10))


def test_sets_of_different_depths_are_refused_with_a_hint(sets: dict[str, Path]) -> None:
    with pytest.raises(DataFormatError, match=r"one book depth .*GOOG 2012-06-21 1, GOOG 2012-06-21 5 level.*data\.levels"):
        load_training_data([sets["GOOG1"], sets["GOOG5"]], 10)
    with pytest.raises(DataFormatError, match="listed twice"):
        load_training_data([sets["GOOG1"], sets["GOOG1"]], 10)


def test_a_lake_partition_takes_the_manifests_whole_day_split(sets: dict[str, Path], tmp_path: Path) -> None:
    key = "source=lobster_l1/symbol=AAPL/date=2012-06-21"
    part = tmp_path / "lake" / "features" / key
    shutil.copytree(sets["AAPL1"], part)
    manifest = {"format_version": 1, "partitions": {}, "failures": {}, "features": {key: {"split": "val"}}}
    (tmp_path / "lake" / "_manifest.json").write_text(json.dumps(manifest))
    assert lake_day_split(part) == "val" and lake_day_split(sets["AAPL1"]) is None
    data = load_training_data([sets["GOOG1"], part], 10)
    own = load_feature_set(part).split
    lake_rows = data.split[data.starts[1]:]
    assert set(np.unique(lake_rows[own >= 0])) == {1} and (lake_rows[own < 0] == -1).all()
    assert data.trained_on[1]["lake_split"] == "val"
    manifest["features"][key]["split"] = "within"
    (tmp_path / "lake" / "_manifest.json").write_text(json.dumps(manifest))
    assert lake_day_split(part) is None


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "logreg_tab"])
def test_a_pooled_bundle_records_every_set_and_scores_each_on_its_test_split(sets: dict[str, Path], tmp_path: Path,
                                                                           model: str) -> None:
    tcfg = TrainConfig(model=model, window=50, hidden=8, epochs=1, batch_size=64, max_train_samples=512,
                       device="cpu", threads=1)
    cfg = Config(features=FEATURES, train=tcfg)
    result = train(cfg, [sets["GOOG1"], sets["AAPL1"]], tmp_path / "model")
    info = read_bundle_json(result.bundle_dir)
    assert [s["symbol"] for s in info["trained_on"]] == ["GOOG", "AAPL"]
    bundle = load_bundle(result.bundle_dir)
    assert bundle.alpha is None and [s["symbol"] for s in training_sets(bundle.feature_meta)] == ["GOOG", "AAPL"]
    for name in ("GOOG1", "AAPL1"):
        assert resolve_scope("auto", load_feature_set(sets[name]).meta, bundle.feature_meta) == "test"
    assert resolve_scope("auto", {"source_sha256": "other"}, bundle.feature_meta) == "all"
    assert resolve_scope("auto", {"source_sha256": "other"}, info["trained_on"]) == "all"


def test_bundles_without_a_trained_on_list_still_resolve() -> None:
    old = {"symbol": "GOOG", "date": "2012-06-21", "source_sha256": "abc", "levels": 10}
    assert training_sets(old) == [{"symbol": "GOOG", "date": "2012-06-21", "source_sha256": "abc", "rows": None}]
    assert resolve_scope("auto", {"source_sha256": "abc"}, old) == "test"
    assert resolve_scope("auto", {"source_sha256": "xyz"}, old) == "all"
    assert resolve_scope("auto", {"source_sha256": "xyz"}, {"symbol": "GOOG"}) == "test"  # unknown lineage


# ------------------------------------------------------------------------------------------------- DDP

def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        book, labels, split, starts = _stack(make_slice("GOOG", 1, rows=1500), make_slice("AAPL", 1, rows=1500))
        tcfg = TrainConfig(model="lstm", window=WINDOW, hidden=8, batch_size=32, epochs=2, device="cpu",
                           max_train_samples=640, seed=3)
        result = fit(book, labels, split, tcfg, info=setup_distributed("cpu"), starts=starts, progress=False)
        torch.save({"state": result.module.state_dict(), "train": result.train_samples},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_pooled_fit_under_two_ddp_ranks_ends_with_identical_weights(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name, value in r0["state"].items():
        torch.testing.assert_close(value, r1["state"][name], rtol=0, atol=0, msg=name)
    a, b = make_slice("GOOG", 1, rows=1500), make_slice("AAPL", 1, rows=1500)
    assert r0["train"] == len(sample_ends(a.labels, a.split, TRAIN, WINDOW)) + len(
        sample_ends(b.labels, b.split, TRAIN, WINDOW))
