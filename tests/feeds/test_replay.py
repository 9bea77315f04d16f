"""`hftpipe feed replay` of a real LOBSTER file onto a real JetStream server."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from hftpipe.config import BusConfig
from hftpipe.contracts import BookUpdate, Gap
from hftpipe.feeds.replay import FeedPublisher, load_replay, replay
from tests.conftest import lobster_zip
from tests.online_fixtures import Service, read_stream

pytestmark = pytest.mark.slow


def test_replay_publishes_the_file_with_contiguous_seqs_and_resumes(nats_server, hftpipe_home: Path) -> None:
    path = lobster_zip("GOOG", 5)
    feed = Service([*nats_server.overrides(), "feed", "replay", str(path), "--speed", "max", "--limit", "120"],
                   hftpipe_home, ready=None, name="feed")
    assert feed.start().wait() == 0, feed.log()
    messages = read_stream(nats_server.url, "md.>")
    assert [m.seq for m in messages] == list(range(1, 121))
    data = load_replay(path)
    first = messages[0]
    assert (first.venue, first.symbol, first.levels) == ("NASDAQ", "GOOG", 5)
    np.testing.assert_array_equal(np.array([m.book for m in messages]), data.book[:120])
    assert first.event_time == pytest.approx(1340236800.0 + 34200.0, abs=60)  # 2012-06-21 09:30 (as UTC)
    assert all(m.publish_time >= m.recv_time for m in messages)

    # A restarted feed continues the seq after a gap (a consumer must not see seq 1 again as a replay).
    again = Service([*nats_server.overrides(), "feed", "replay", str(path), "--speed", "max", "--limit", "10"],
                    hftpipe_home, ready=None, name="feed2")
    assert again.start().wait() == 0, again.log()
    tail = read_stream(nats_server.url, "md.>")[120:]
    assert isinstance(tail[0], Gap) and tail[0].next_seq == 121
    assert [m.seq for m in tail[1:]] == list(range(121, 131))
    np.testing.assert_array_equal(np.array([m.book for m in tail[1:]]), data.book[:10])


def test_recorded_timing_is_scaled_by_speed(nats_server) -> None:
    from hftpipe.bus.connection import connect, ensure_streams

    data = load_replay(lobster_zip("GOOG", 1))
    # The first n events spanning about 2 recorded seconds, replayed at speed 4: about half a second.
    n = int(np.searchsorted(data.event_time, data.event_time[0] + 2.0))
    span = float(data.event_time[n - 1] - data.event_time[0])
    cfg = BusConfig(port=nats_server.port)

    async def _run() -> float:
        client = await connect(cfg, "test-feed")
        await ensure_streams(client.js, cfg)
        publisher = FeedPublisher(client, data.venue, data.symbol)
        t0 = time.monotonic()
        assert await replay(data, publisher, speed=4.0, limit=n) == n
        elapsed = time.monotonic() - t0
        await client.close()
        return elapsed

    elapsed = asyncio.run(_run())
    assert span / 4.0 - 0.01 <= elapsed <= span / 4.0 + 0.5
    messages = read_stream(nats_server.url, "md.>")
    assert len(messages) == n and all(isinstance(m, BookUpdate) for m in messages)
    gaps = np.diff([m.publish_time for m in messages])
    recorded = np.diff(data.event_time[:n]) / 4.0
    assert abs(float(np.sum(gaps)) - float(np.sum(recorded))) < 0.5


def test_loop_marks_each_restart_with_a_gap(nats_server, hftpipe_home: Path) -> None:
    from hftpipe.bus.connection import connect, ensure_streams

    data = load_replay(lobster_zip("GOOG", 1))
    short = data.__class__(**{**data.__dict__, **{k: getattr(data, k)[:5] for k in (
        "event_time", "event_type", "price", "size", "direction", "book")}})
    cfg = BusConfig(port=nats_server.port)

    async def _run() -> None:
        client = await connect(cfg, "test-feed")
        await ensure_streams(client.js, cfg)
        await replay(short, FeedPublisher(client, data.venue, data.symbol), speed=0, loop=True, limit=12)
        await client.close()

    asyncio.run(_run())
    kinds = ["gap" if isinstance(m, Gap) else m.seq for m in read_stream(nats_server.url, "md.>")]
    assert kinds == [1, 2, 3, 4, 5, "gap", 6, 7, 8, 9, 10, "gap", 11, 12]
    times = [m.event_time for m in read_stream(nats_server.url, "md.>") if isinstance(m, BookUpdate)]
    assert all(b >= a for a, b in itertools.pairwise(times))  # event time keeps increasing across loops


def test_a_looping_real_time_feed_is_ready_and_stops_on_sigterm(nats_server, hftpipe_home: Path) -> None:
    feed = Service([*nats_server.overrides(), "feed", "replay", str(lobster_zip("GOOG", 1)), "--speed", "1",
                    "--loop"], hftpipe_home, ready="feed-replay-GOOG", name="feed-loop").start()
    ready = (hftpipe_home / "run" / "feed-replay-GOOG.ready").read_text()
    assert "subject=md.NASDAQ.GOOG first_seq=1" in ready
    assert (hftpipe_home / "run" / "feed-replay-GOOG.pid").read_text().strip() == str(feed.proc.pid)
    time.sleep(1.0)
    assert feed.stop() < 3.0
    assert feed.proc.returncode == 0, feed.log()
    assert not (hftpipe_home / "run" / "feed-replay-GOOG.ready").exists()
    assert len(read_stream(nats_server.url, "md.>")) >= 1


def test_replay_loads_a_pipeline_artifact_without_suffix_and_an_l3_capture(tmp_path: Path) -> None:
    """`hftpipe run` replays the pipeline's ingest artifact, a Parquet file named `events` (no suffix)."""
    import shutil

    from hftpipe.data import load_lobster, write_events
    from hftpipe.feeds.replay import load_replay
    from tests.conftest import lobster_zip

    write_events(load_lobster(lobster_zip("GOOG", 1)), tmp_path / "events.parquet")
    shutil.copyfile(tmp_path / "events.parquet", tmp_path / "events")
    data = load_replay(tmp_path / "events")
    assert (data.symbol, data.venue, data.levels) == ("GOOG", "NASDAQ", 1) and len(data.book) > 1000
    capture = Path(__file__).resolve().parents[2] / "data" / "raw" / "bitstamp-btcusd-l3-2026-05-02"
    l3 = load_replay(capture)
    assert (l3.symbol, l3.venue, l3.levels) == ("BTCUSD", "bitstamp", 10)
