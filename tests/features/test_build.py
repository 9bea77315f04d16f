"""build_features / load_feature_set on the real files: round trip, level counts, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import FeaturesConfig
from hftpipe.data import EventTable, book_columns, load_lobster, write_events
from hftpipe.errors import ConfigError, DataFormatError, ValidationFailed
from hftpipe.features import build_features, build_frame, feature_names, load_feature_set
from hftpipe.features.build import FEATURES_FILE, META_FILE
from hftpipe.prepare import build_feature_set
from tests.conftest import lobster_zip

SMALL = FeaturesConfig(windows=(10, 50), horizons=(10, 50))


@pytest.fixture
def goog1_events(tmp_path: Path, goog1_table: EventTable) -> Path:
    return write_events(goog1_table, tmp_path / "events.parquet")


@pytest.mark.slow  # Great Expectations validation of the whole day: ~6 s alone, more on a busy machine
def test_round_trip_goog_1_level(tmp_path: Path, goog1_events: Path, goog1_table: EventTable) -> None:
    out = tmp_path / "features"
    built = build_features(FeaturesConfig(), goog1_events, out)
    assert sorted(p.name for p in out.iterdir()) == [FEATURES_FILE, META_FILE]  # no temporary folder left
    loaded = load_feature_set(out)
    pd.testing.assert_frame_equal(loaded.frame, built.frame)
    assert loaded.meta == json.loads((out / META_FILE).read_text()) == built.meta
    meta = loaded.meta
    assert (meta["symbol"], meta["date"], meta["levels"]) == ("GOOG", "2012-06-21", 1)
    assert meta["source_sha256"] == goog1_table.meta.source_sha256
    assert meta["rows"] == len(loaded.frame) == goog1_table.meta.rows  # sampling "all"
    assert meta["horizons"] == [10, 50, 100] and set(meta["alpha"]) == {"10", "50", "100"}
    assert loaded.levels == 1
    np.testing.assert_array_equal(loaded.book(), goog1_table.book())
    assert loaded.book().shape == (meta["rows"], 4)
    assert loaded.labels(10).dtype == np.int8 and set(np.unique(loaded.labels(10))) == {-1, 0, 1, 2}
    assert loaded.split.dtype == np.int8 and set(np.unique(loaded.split)) == {-1, 0, 1, 2}
    expected = ["time", *book_columns(1), "mid", *feature_names(1, (10, 50, 100))]
    for k in (10, 50, 100):
        expected += [f"ret_k{k}", f"label_k{k}"]
    assert list(loaded.frame.columns) == expected + ["split"]
    assert set(meta["feature_stats"]) == set(meta["feature_names"])
    text = loaded.summary()
    assert "GOOG 2012-06-21: 1 level(s), sampling=all" in text and "k=100: alpha=" in text
    with pytest.raises(ConfigError, match="horizon 7 was not built"):
        loaded.labels(7)


@pytest.mark.parametrize("levels", [1, 5, 10])
def test_works_for_1_5_and_10_levels(levels: int) -> None:
    table = load_lobster(lobster_zip("GOOG", levels))
    events = table.frame.iloc[:6000].reset_index(drop=True)
    for sampling in ("all", "top_of_book"):
        frame, meta = build_frame(FeaturesConfig(windows=(10, 50), horizons=(10, 50), sampling=sampling),
                                  events, levels, table.meta.to_dict())
        assert meta["levels"] == levels
        assert len(meta["feature_names"]) == 2 + 2 * levels + 5 * 2
        kept = frame["split"].to_numpy() >= 0
        assert np.isfinite(frame.loc[kept, meta["feature_names"]].to_numpy()).all()
        assert frame[book_columns(levels)].shape[1] == 4 * levels
        if sampling == "top_of_book":
            top = frame[book_columns(1)].to_numpy()
            assert (np.diff(top, axis=0) != 0).any(axis=1).all()  # every sampled row changes the top


def test_top_of_book_sampling_counts_horizons_in_sampled_events(goog10_slice) -> None:
    frame, meta = build_frame(FeaturesConfig(windows=(10,), horizons=(10,), sampling="top_of_book"),
                              goog10_slice, 10, {})
    assert meta["event_rows"] == len(goog10_slice) > meta["rows"] == len(frame)
    mid = frame["mid"].to_numpy()
    t = 500
    assert frame["ret_k10"][t] == pytest.approx((mid[t + 1 : t + 11].mean() - mid[t]) / mid[t])


def _previous_outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_failed_write_keeps_the_previous_outputs(tmp_path, goog1_events, monkeypatch) -> None:
    out = tmp_path / "features"
    build_features(SMALL, goog1_events, out)
    before = _previous_outputs(out)
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def half_write(table, where, **kw):  # the disk fills up halfway through the Parquet file
        real_write(table.slice(0, 10), where, **kw)
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", half_write)
    with pytest.raises(OSError, match="No space"):
        build_features(FeaturesConfig(), goog1_events, out)
    assert _previous_outputs(out) == before
    assert load_feature_set(out).meta["horizons"] == [10, 50]


def test_failed_validation_writes_nothing(tmp_path, goog1_table: EventTable) -> None:
    """An empty best bid (here: written without ingest's validation) gives NaN features: refused."""
    frame = goog1_table.frame.iloc[:5000].copy()
    frame.loc[3000:3004, "bid_price_1"] = np.nan
    frame.loc[3000:3004, "bid_size_1"] = 0.0
    events = write_events(EventTable(frame=frame, meta=goog1_table.meta), tmp_path / "bad.parquet")
    out = tmp_path / "features"
    with pytest.raises(ValidationFailed):
        build_feature_set(SMALL, events, out)
    assert not out.exists() or not any(out.iterdir())


def test_load_refuses_a_mismatched_pair(tmp_path, goog1_events) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    build_features(SMALL, goog1_events, a)
    build_features(SMALL, goog1_events, b)
    (a / META_FILE).write_bytes((b / META_FILE).read_bytes())
    with pytest.raises(DataFormatError, match="different builds"):
        load_feature_set(a)
    with pytest.raises(DataFormatError, match="run `hftpipe features` first"):
        load_feature_set(tmp_path / "missing")


def test_missing_events_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(DataFormatError, match="run `hftpipe ingest` first"):
        build_features(SMALL, tmp_path / "nope.parquet", tmp_path / "out")


def test_top_of_book_streams_of_the_1_5_and_10_level_files_are_the_same(goog1_table, goog10_table) -> None:
    """The raw event streams differ per level count (49,482 / 112,673 / 147,916 events that day);
    the top-of-book stream, and so what k means, does not."""
    from hftpipe.features import sample_indices

    streams = []
    for table in (goog1_table, load_lobster(lobster_zip("GOOG", 5)), goog10_table):
        book = table.book()
        idx = sample_indices(book, "top_of_book")
        streams.append((table.frame["time"].to_numpy()[idx], book[idx, :4]))
    assert len({len(t) for t, _ in streams}) == 1 and len(streams[0][0]) < goog1_table.meta.rows
    for times, top in streams[1:]:
        np.testing.assert_array_equal(times, streams[0][0])
        np.testing.assert_array_equal(top, streams[0][1])
