"""The feedback data set: atomic partitioned Parquet from the sqlite buffer, and the LOBSTER export a retrain
trains on (it must give back exactly the events that were replayed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hftpipe.contracts import BookUpdate
from hftpipe.data import load_lobster
from hftpipe.data.schema import book_columns
from hftpipe.errors import DataFormatError
from hftpipe.feeds.replay import load_replay
from hftpipe.monitoring import feedback_store as fs
from tests.monitoring.test_quality import outcome
from tests.pipeline.test_pipeline_e2e import write_slice


def _updates(source: Path) -> list[BookUpdate]:
    data = load_replay(source)
    return [BookUpdate(venue=data.venue, symbol=data.symbol, seq=i + 1, event_time=float(data.event_time[i]),
                       recv_time=0.0, publish_time=0.0, levels=data.levels, book=data.book[i].tolist(),
                       event_type=int(data.event_type[i]), price=float(data.price[i]), size=float(data.size[i]),
                       direction=int(data.direction[i])) for i in range(len(data))]


def test_flush_writes_full_row_groups_then_the_tail_and_replays_never_double(tmp_path: Path) -> None:
    buffer = fs.RowBuffer(tmp_path / "buf.sqlite")
    root = tmp_path / "feedback"
    rows = [("outcomes", "GOOG", "2012-06-21", s, fs.outcome_row(outcome(1, 1, seq=s))) for s in range(1, 251)]
    buffer.commit(rows[:150], {"k": 1})
    assert [p.name for p in fs.flush(buffer, root, 100, partial=False)] == ["part-000000000001-000000000100.parquet"]
    buffer.commit(rows[150:], {"k": 2})
    written = fs.flush(buffer, root, 100, partial=True)
    assert [p.name for p in written] == ["part-000000000101-000000000200.parquet",
                                         "part-000000000201-000000000250.parquet"]
    frame = fs.read_table(root, "outcomes")
    assert frame["seq"].tolist() == list(range(1, 251))
    assert buffer.state() == {"k": 2} and buffer.counts() == {}
    # A crash after a file was written but before its rows were cleared: the same start seq supersedes it.
    buffer.commit(rows[200:], {})
    fs.flush(buffer, root, 100, partial=True)
    names = sorted(p.name for p in (root / "outcomes" / "symbol=GOOG" / "date=2012-06-21").glob("*.parquet"))
    assert names == ["part-000000000001-000000000100.parquet", "part-000000000101-000000000200.parquet",
                     "part-000000000201-000000000250.parquet"]
    buffer.close()


def test_export_gives_back_the_replayed_lobster_events(tmp_path: Path) -> None:
    source = write_slice(tmp_path / "slice", rows=1500)
    buffer = fs.RowBuffer(tmp_path / "buf.sqlite")
    root = tmp_path / "feedback"
    buffer.commit([("books", u.symbol, fs.utc_date(u.event_time), u.seq, fs.book_row(u)) for u in _updates(source)],
                  {})
    fs.flush(buffer, root, 1000, partial=True)
    message = fs.export_lobster(root, "GOOG", "2012-06-21", tmp_path / "export")
    original = load_lobster(source).frame
    exported = load_lobster(message).frame
    assert len(exported) == len(original) == 1500
    cols = book_columns(1)
    np.testing.assert_array_equal(exported[cols].to_numpy(), original[cols].to_numpy())
    for col in ("type", "size", "price", "direction"):
        np.testing.assert_array_equal(exported[col].to_numpy(), original[col].to_numpy())
    np.testing.assert_allclose(exported["time"].to_numpy(), original["time"].to_numpy(), atol=1e-6)
    with pytest.raises(DataFormatError, match="no recorded book updates for AAPL"):
        fs.export_lobster(root, "AAPL", "2012-06-21", tmp_path / "none")
    buffer.close()


def test_retrain_check_command_judges_the_recorded_outcomes(tmp_path: Path) -> None:
    import json

    from hftpipe.cli.monitor_live import _standalone

    root = tmp_path / "feedback"
    buffer = fs.RowBuffer(tmp_path / "buf.sqlite")
    rng = np.random.default_rng(0)
    rows = []
    for s in range(1, 801):  # the model is always "stationary"; momentum is right 70 % of the time
        y = int(rng.integers(0, 3))
        mom = y if rng.random() < 0.7 else int(rng.integers(0, 3))
        rows.append(("outcomes", "GOOG", "2012-06-21", s, fs.outcome_row(outcome(y, 1, 1, mom, seq=s))))
    buffer.commit(rows, {})
    fs.flush(buffer, root, 1000, partial=True)
    out = tmp_path / "decision.json"
    sets = ["-S", f"feedback.output={root}", "-S", "feedback.retrain_min_outcomes=500", "-S",
            "feedback.retrain_min_new_rows=0"]
    result = CliRunner().invoke(_standalone, [*sets, "retrain-check", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "800 outcomes: model macro-F1" in result.output and "trigger: FIRES (below_baseline)" in result.output
    decision = json.loads(out.read_text())
    assert decision["trigger"] and decision["evidence"]["best_baseline"] == "momentum"


def test_clock_time_outcomes_keep_their_unit_in_the_data_set_and_old_files_read_as_events(tmp_path: Path) -> None:
    import msgspec

    from hftpipe.contracts import horizon_fields
    from hftpipe.horizons import Horizon

    buffer = fs.RowBuffer(tmp_path / "buf.sqlite")
    root = tmp_path / "feedback"
    clock = msgspec.structs.replace(outcome(2, 2, seq=1), **horizon_fields("1s"))
    events = outcome(1, 1, seq=2)
    old = fs.outcome_row(outcome(0, 0, seq=3))
    del old["horizon_s"]  # a row written before clock-time horizons
    buffer.commit([("outcomes", "GOOG", "2012-06-21", 1, fs.outcome_row(clock)),
                   ("outcomes", "GOOG", "2012-06-21", 2, fs.outcome_row(events))], {})
    fs.flush(buffer, root, 100, partial=True)
    buffer.commit([("outcomes", "GOOG", "2012-06-21", 3, old)], {})
    fs.flush(buffer, root, 100, partial=True)
    back = [fs.outcome_from_row(r) for r in fs.read_table(root, "outcomes").itertuples(index=False)]
    assert [o.label_horizon for o in back] == [Horizon(seconds=1.0), Horizon(events=10), Horizon(events=10)]
    assert back[0] == msgspec.structs.replace(clock, publish_time=back[0].publish_time)
    buffer.close()
