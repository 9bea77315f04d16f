"""Clock-time horizons: labels by hand on made-up timestamps, their purge, their units in the metadata."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hftpipe.config import FeaturesConfig
from hftpipe.data import EventTable
from hftpipe.errors import ConfigError
from hftpipe.features import build_frame
from hftpipe.features.build import FeatureSet
from hftpipe.features.labels import clock_forward_return, clock_targets, horizon_return
from hftpipe.features.splits import clock_purge
from hftpipe.horizons import Horizon, horizon_key, parse_horizon

# Made-up times (seconds) with two events sharing t=2.0 and a gap of 3 s; mids per row.
TIME = np.array([0.0, 0.4, 1.0, 2.0, 2.0, 2.5, 5.5, 6.0])
MID = np.array([10.0, 10.1, 10.2, 10.2, 10.4, 10.3, 10.0, 10.5])


def test_horizon_parsing_keeps_units_apart() -> None:
    assert parse_horizon(10) == Horizon(events=10) and parse_horizon(10).key == "10"
    assert parse_horizon("1s") == Horizon(seconds=1.0) and parse_horizon("1s").value == "1s"
    assert parse_horizon("500ms").key == "0.5s" and parse_horizon("10s").describe() == "10 s"
    assert horizon_key(10) != horizon_key("10s")
    for bad in ("10", "1 min", "-1s", "0s", 0, True, 2.5):
        with pytest.raises(ConfigError, match="is not a horizon"):
            parse_horizon(bad)


def test_clock_targets_by_hand() -> None:
    # h = 1 s: row 0 (t=0) -> last row at or before 1.0 is row 2; row 1 (0.4 -> 1.4) -> row 2;
    # row 2 (1.0 -> 2.0) -> row 4 (BOTH rows at 2.0 are in: the book at 2.0 is the one after its last event);
    # rows 3, 4 (2.0 -> 3.0) -> row 5; row 5 (2.5 -> 3.5) -> row 5 (nothing happened: no move);
    # row 6 (5.5 -> 6.5) and row 7 (6.0 -> 7.0) run past the last time 6.0: unknown (-1).
    assert clock_targets(TIME, 1.0).tolist() == [2, 2, 4, 5, 5, 5, -1, -1]
    assert clock_targets(TIME, 0.5).tolist() == [1, 1, 2, 5, 5, 5, 7, -1]  # 2.0+0.5 = 2.5 exactly: row 5
    with pytest.raises(ValueError, match="non-decreasing"):
        clock_targets(TIME[::-1], 1.0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        clock_targets(TIME, 0.0)


def test_clock_forward_return_by_hand() -> None:
    r = clock_forward_return(MID, TIME, 1.0)
    expected = [(10.2 - 10.0) / 10.0, (10.2 - 10.1) / 10.1, (10.4 - 10.2) / 10.2, (10.3 - 10.2) / 10.2,
                (10.3 - 10.4) / 10.4, 0.0]
    np.testing.assert_allclose(r[:6], expected, rtol=1e-12)
    assert r[5] == 0.0 and np.isnan(r[6:]).all()
    # No look-ahead the other way: the label at t reads nothing before t but mid_t.
    earlier = MID.copy()
    earlier[:2] = 99.0
    np.testing.assert_array_equal(clock_forward_return(earlier, TIME, 1.0)[2:], r[2:])
    # And it reads nothing after t + h: rows past the target may change freely.
    later = MID.copy()
    later[6:] = 1.0
    np.testing.assert_array_equal(clock_forward_return(later, TIME, 1.0)[:5], r[:5])


def test_horizon_return_dispatches_on_the_unit() -> None:
    np.testing.assert_array_equal(horizon_return(MID, TIME, 2), horizon_return(MID, TIME, Horizon(events=2)))
    assert np.isnan(horizon_return(MID, TIME, 2)[-2:]).all()  # events: the last k rows
    np.testing.assert_array_equal(horizon_return(MID, TIME, "1s"), clock_forward_return(MID, TIME, 1.0))
    with pytest.raises(ValueError, match="events only"):
        horizon_return(MID, TIME, "1s", kind="deeplob")


def test_clock_purge_covers_every_label_that_crosses_a_boundary() -> None:
    targets = clock_targets(TIME, 1.0)  # [2, 2, 4, 5, 5, 5, -1, -1]
    # Boundary at row 4: rows 2 (-> 4) and 3 (-> 5) read it or later: purge 2. At row 6: rows 6, 7 are
    # beyond it; rows before 6 read at most row 5: purge 0.
    assert clock_purge(targets, (4,)) == 2
    assert clock_purge(targets, (6,)) == 0
    assert clock_purge(targets, (7,)) == 1  # row 6 has no known target: treated as crossing


def _toy_events(goog1_table: EventTable, rows: int = 20_000):
    return goog1_table.frame.iloc[:rows].reset_index(drop=True)


def test_feature_set_with_clock_horizons(goog1_table: EventTable) -> None:
    events = _toy_events(goog1_table)
    cfg = dataclasses.replace(FeaturesConfig(), horizons=(10, "1s", "60s"))
    frame, meta = build_frame(cfg, events, 1, goog1_table.meta.to_dict())
    fs = FeatureSet(frame=frame, meta=meta)
    assert meta["horizons"] == [10, "1s", "60s"]
    assert meta["horizon_units"] == {"10": "events", "1s": "seconds", "60s": "seconds"}
    assert {"label_k10", "label_k1s", "label_k60s", "ret_k1s"} <= set(frame.columns)
    assert set(meta["alpha"]) == {"10", "1s", "60s"}
    assert fs.horizons == [10, "1s", "60s"] and fs.horizon("1s").seconds == 1.0
    # The labels are the clock returns of the sampled stream, thresholded with the fitted alpha.
    np.testing.assert_array_equal(fs.returns("60s"), clock_forward_return(fs.mid, fs.time, 60.0))
    with pytest.raises(ConfigError, match="horizon 5s was not built"):
        fs.labels("5s")
    assert fs.labels(Horizon(seconds=60.0)).tolist() == fs.labels("60s").tolist()
    # No kept row's 60 s label reads a row of the next split.
    split, target = fs.split, clock_targets(fs.time, 60.0)
    for code, name in ((0, "train"), (1, "val")):
        rows = np.flatnonzero(split == code)
        assert (target[rows] >= 0).all() and (target[rows] < meta["splits"][name][1]).all()
    # Event horizons alone keep the plain event purge (identical to before).
    plain, plain_meta = build_frame(dataclasses.replace(cfg, horizons=(10,)), events, 1, goog1_table.meta.to_dict())
    assert plain_meta["splits"]["purge"] == 100 and meta["splits"]["purge"] > 100
    # The event label returns are the same; the classes may move a little: the longer purge changes the
    # training rows alpha is fitted on.
    np.testing.assert_array_equal(plain["ret_k10"], frame["ret_k10"])
    assert "h=1 s: alpha=" in fs.summary() and "k=10: alpha=" in fs.summary()


def test_clock_horizons_need_the_forward_label(goog1_table: EventTable) -> None:
    cfg = dataclasses.replace(FeaturesConfig(), horizons=(10, "1s"), label="deeplob")
    with pytest.raises(ConfigError, match="need features.label=forward"):
        build_frame(cfg, _toy_events(goog1_table, 3000), 1, goog1_table.meta.to_dict())
