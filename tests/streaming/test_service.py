"""The signal service end to end: real nats-server, `hftpipe feed replay` of a real file, `hftpipe signals`
as a subprocess, signals read back from the SIG stream and checked by sequence number."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hftpipe.contracts import BookUpdate, DeadLetter, Signal, encode
from hftpipe.streaming.checks import book_problem
from tests.conftest import lobster_zip
from tests.online_fixtures import Service, read_stream, stream_count
from tests.serving.conftest import WINDOW, make_bundle

pytestmark = pytest.mark.slow

FILE = lobster_zip("GOOG", 10)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hftpipe.data import book_matrix, load_lobster

    book = book_matrix(load_lobster(FILE).frame)[:2000]
    return make_bundle(tmp_path_factory.mktemp("signals") / "bundle", book)


def _feed(nats_server, home: Path, limit: int, speed: str = "max") -> Service:
    return Service([*nats_server.overrides(), "feed", "replay", str(FILE), "--speed", speed, "--limit", str(limit)],
                   home, ready=None, name="feed")


def _signals(nats_server, home: Path, bundle: Path, *sets: str) -> Service:
    extra = [a for s in ("signals.backlog=all", "signals.reload_interval_s=0", *sets) for a in ("-S", s)]
    return Service([*nats_server.overrides(), *extra, "signals", "--model", str(bundle)], home, ready="signals",
                   name="signals")


def _wait_for(predicate, timeout_s: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


def _expected_seqs(limit: int) -> list[int]:
    """Seqs that get a signal: every sane book from the T-th event on (the first T-1 fill the window)."""
    from hftpipe.data import book_matrix, load_lobster

    book = book_matrix(load_lobster(FILE).frame)[:limit]
    assert all(book_problem(r.tolist(), 10) is None for r in book)  # the shipped slice is clean
    return list(range(WINDOW, limit + 1))


def _signal_seqs(url: str) -> list[int]:
    return [m.seq for m in read_stream(url, "sig.>") if isinstance(m, Signal)]


def test_every_input_seq_yields_exactly_one_signal(nats_server, hftpipe_home: Path, bundle: Path) -> None:
    import requests

    from tests.online_fixtures import free_port

    limit = 400
    assert _feed(nats_server, hftpipe_home, limit).start().wait() == 0
    metrics_port = free_port()
    signals = _signals(nats_server, hftpipe_home, bundle, f"signals.metrics_port={metrics_port}").start()
    try:
        expected = _expected_seqs(limit)
        _wait_for(lambda: stream_count(nats_server.url, "SIG") >= len(expected), 60, "signals")
        time.sleep(0.5)
        messages = [m for m in read_stream(nats_server.url, "sig.>")]
        assert sorted(m.seq for m in messages) == expected
        first = messages[0]
        assert (first.symbol, first.venue, first.horizon) == ("GOOG", "NASDAQ", 10)
        assert first.model_version.startswith("local-") and sum(first.probabilities) == pytest.approx(1, abs=1e-5)
        assert first.predicted == int(np.argmax(first.probabilities))
        assert all(m.publish_time >= m.input_publish_time for m in messages)
        # One correlation id per event, from the feed's book update through to its signal.
        assert all(m.correlation_id == f"NASDAQ:GOOG:{m.seq}" for m in messages)
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert f"hftpipe_signals_events_in_total {float(limit)}" in metrics
        assert f"hftpipe_signals_events_out_total {float(len(expected))}" in metrics
        assert f'hftpipe_signals_skipped_total{{reason="warming"}} {float(WINDOW - 1)}' in metrics
        assert "hftpipe_signals_consumer_lag 0.0" in metrics
        assert f"hftpipe_signals_publish_latency_seconds_count {float(len(expected))}" in metrics
        assert signals.proc.poll() is None
        assert signals.stop() < 5.0  # SIGTERM: clean exit, ready and pid files gone
        assert signals.proc.returncode == 0
        assert not (hftpipe_home / "run" / "signals.ready").exists()
    finally:
        signals.stop()


def test_kill_9_mid_stream_then_restart_no_missing_no_duplicate(nats_server, hftpipe_home: Path,
                                                               bundle: Path) -> None:
    limit = 3000
    assert _feed(nats_server, hftpipe_home, limit).start().wait() == 0
    expected = _expected_seqs(limit)
    # Small batches, so the kill lands in the middle of the stream.
    signals = _signals(nats_server, hftpipe_home, bundle, "signals.batch_max=10").start()
    try:
        _wait_for(lambda: stream_count(nats_server.url, "SIG") >= 300, 60, "the first signals")
        signals.kill9()
        done_before = stream_count(nats_server.url, "SIG")
        assert done_before < len(expected), "the service finished before the kill: not a mid-stream test"
        signals = _signals(nats_server, hftpipe_home, bundle).start()
        _wait_for(lambda: stream_count(nats_server.url, "SIG") >= len(expected), 90, "all signals",
                  signals.log)
        time.sleep(1.0)  # anything extra (a duplicate) would arrive now
        seqs = _signal_seqs(nats_server.url)
        duplicates = [s for s, n in Counter(seqs).items() if n > 1]
        assert duplicates == []
        assert sorted(seqs) == expected
        assert "resumed GOOG after seq" in signals.log()
    finally:
        signals.stop()


def test_nats_restart_services_reconnect_by_themselves(nats_server, hftpipe_home: Path, bundle: Path) -> None:
    signals = _signals(nats_server, hftpipe_home, bundle).start()
    try:
        assert _feed(nats_server, hftpipe_home, 200).start().wait() == 0
        _wait_for(lambda: stream_count(nats_server.url, "SIG") >= 200 - WINDOW + 1, 60, "signals before the restart")
        # A paced feed (about 4 s of publishing) running across the broker restart.
        from hftpipe.feeds.replay import load_replay

        times = load_replay(FILE).event_time
        span = float(times[599] - times[200])  # the restarted feed publishes events 1..400 again, after a gap
        feed = Service([*nats_server.overrides(), "feed", "replay", str(FILE), "--speed", f"{span / 4.0:.6f}",
                        "--limit", "400"], hftpipe_home, ready=None, name="feed-paced").start()
        time.sleep(1.5)
        nats_server.restart(down_s=1.0)
        assert feed.wait(timeout_s=90) == 0, feed.log()
        md = [m for m in read_stream(nats_server.url, "md.>") if isinstance(m, BookUpdate)]
        assert [m.seq for m in md] == list(range(1, 601))  # nothing lost, nothing twice, across the restart
        # The signal service reconnected by itself and covered the new events (window refilled after the gap).
        _wait_for(lambda: _signal_seqs(nats_server.url)[-1:] == [600], 60, "signals after the restart")
        seqs = _signal_seqs(nats_server.url)
        assert sorted(seqs) == list(range(WINDOW, 201)) + list(range(200 + WINDOW, 601))
        assert signals.proc.poll() is None
        assert "reconnected" in signals.log()
    finally:
        signals.stop()


def test_bad_messages_go_to_the_dead_letter_subject_and_the_service_stays_up(nats_server, hftpipe_home: Path,
                                                                           bundle: Path) -> None:
    import nats

    from hftpipe.data import book_matrix, load_lobster

    rows = book_matrix(load_lobster(FILE).frame)[:WINDOW + 5]
    signals = _signals(nats_server, hftpipe_home, bundle).start()

    def update(seq: int, book: list[float], levels: int = 10) -> bytes:
        return encode(BookUpdate(venue="NASDAQ", symbol="GOOG", seq=seq, event_time=1.0, recv_time=1.0,
                                 publish_time=time.time(), levels=levels, book=book))

    crossed = rows[WINDOW].tolist()
    crossed[0] = crossed[2] - 0.01
    absurd = rows[WINDOW].tolist()
    absurd[2] = 1e308
    bad = [
        b"\x93not a contract",  # malformed
        update(WINDOW, crossed),  # crossed book
        update(WINDOW + 1, rows[WINDOW][:20].tolist(), levels=5),  # 5 levels, the model takes 10
        update(WINDOW + 2, absurd),  # a price of 1e308
        update(WINDOW + 9, rows[WINDOW + 3].tolist()),  # seq jumps from WINDOW+2 to WINDOW+9
    ]

    async def _publish() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        for seq in range(1, WINDOW):
            await js.publish("md.NASDAQ.GOOG", update(seq, rows[seq - 1].tolist()))
        for data in bad:
            await js.publish("md.NASDAQ.GOOG", data)
        for seq in range(WINDOW + 10, WINDOW + 10 + WINDOW):  # a fresh window after the gap
            await js.publish("md.NASDAQ.GOOG", update(seq, rows[(seq - WINDOW - 10) % len(rows)].tolist()))
        await nc.close()

    try:
        asyncio.run(_publish())
        _wait_for(lambda: stream_count(nats_server.url, "DLQ") >= 5 and stream_count(nats_server.url, "SIG") >= 1,
                  60, "dead letters and the signal after them")
        letters = read_stream(nats_server.url, "dlq.signals")
        assert all(isinstance(d, DeadLetter) and d.service == "signals" for d in letters)
        reasons = [d.reason for d in letters]
        assert len(reasons) == 5
        assert reasons[0].startswith("malformed message")
        assert "crossed book" in reasons[1]
        assert "wrong width: 5 levels, the model takes 10" in reasons[2]
        assert "bad price 1e+308" in reasons[3]
        assert f"seq gap on GOOG: expected {WINDOW + 3}, got {WINDOW + 9}" in reasons[4]
        assert letters[0].payload == b"\x93not a contract"
        assert signals.proc.poll() is None  # still up
        # The gap message itself starts the new window: full at seq WINDOW+9 + WINDOW-1.
        assert _signal_seqs(nats_server.url) == [2 * WINDOW + 8, 2 * WINDOW + 9]
    finally:
        signals.stop()


def test_two_replicas_share_the_symbols(nats_server, hftpipe_home: Path, bundle: Path) -> None:
    import sqlite3

    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    from hftpipe.bus.connection import connect, ensure_streams
    from hftpipe.config import BusConfig
    from hftpipe.feeds.replay import FeedPublisher, load_replay, replay

    data = load_replay(FILE)
    cfg = BusConfig(port=nats_server.port)

    async def _feeds() -> None:  # the same replay as `hftpipe feed replay --symbol S`, six symbols at once
        client = await connect(cfg, "test-feeds")
        await ensure_streams(client.js, cfg)
        await asyncio.gather(*(replay(data, FeedPublisher(client, data.venue, s), speed=0, limit=60)
                               for s in symbols))
        await client.close()

    asyncio.run(_feeds())
    replicas = [Service([*nats_server.overrides(), "-S", "signals.backlog=all", "-S", "signals.reload_interval_s=0",
                         "-S", "signals.replicas=2", "signals", "--model", str(bundle), "--replica", str(i)],
                        hftpipe_home, ready=f"signals-{i}", name=f"signals-{i}") for i in range(2)]
    try:
        for r in replicas:
            r.start()
        expected = len(symbols) * (60 - WINDOW + 1)
        _wait_for(lambda: stream_count(nats_server.url, "SIG") >= expected, 60, "signals of both replicas")
        time.sleep(0.5)
        signals = [m for m in read_stream(nats_server.url, "sig.>") if isinstance(m, Signal)]
        by_symbol: dict[str, list[int]] = {}
        for m in signals:
            by_symbol.setdefault(m.symbol, []).append(m.seq)
        assert by_symbol == {s: list(range(WINDOW, 61)) for s in symbols}  # each in order, once
        handled = []
        for i in range(2):
            db = sqlite3.connect(hftpipe_home / "signals" / f"signals-{i}-of-2.sqlite")
            handled.append({row[0] for row in db.execute("SELECT symbol FROM progress")})
            db.close()
        assert handled[0] and handled[1] and not handled[0] & handled[1]
        assert handled[0] | handled[1] == set(symbols)
    finally:
        for r in replicas:
            r.stop()


def test_backlog_latest_skips_to_each_symbols_newest_book(nats_server, hftpipe_home: Path, bundle: Path) -> None:
    assert _feed(nats_server, hftpipe_home, 400).start().wait() == 0
    signals = Service([*nats_server.overrides(), "-S", "signals.backlog=latest", "-S", "signals.reload_interval_s=0",
                       "signals", "--model", str(bundle)], hftpipe_home, ready="signals", name="signals").start()
    try:
        _wait_for(lambda: _signal_seqs(nats_server.url)[-1:] == [400], 60, "the newest book's signal", signals.log)
        seqs = _signal_seqs(nats_server.url)
        # The backlog arrives in a few batches: one signal per batch, for its newest book; never one twice.
        assert len(seqs) < (400 - WINDOW + 1) // 4
        assert seqs == sorted(set(seqs))
    finally:
        signals.stop()
