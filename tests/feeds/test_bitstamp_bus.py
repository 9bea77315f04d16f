"""`hftpipe feed bitstamp` publishing to a real nats-server, fed by the local exchange-sim."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hftpipe.contracts import BookUpdate, Gap
from tests.online_fixtures import NatsServer, Service, read_stream

CAPTURE = Path(__file__).resolve().parents[2] / "data" / "raw" / "bitstamp-btcusd-l3-2026-05-02"


@pytest.mark.slow
def test_live_feed_publishes_contiguous_seqs_and_resumes_after_a_restart(nats_server: NatsServer,
                                                                          tmp_path: Path) -> None:
    sim = subprocess.Popen([sys.executable, "-m", "hftpipe.cli.feed_live", "exchange-sim", str(CAPTURE),
                            "--port", "0", "--speed", "20"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        url = sim.stdout.readline().split()[1]
        for _ in range(2):  # the second run is a restarted feed: it must continue the seq, after a gap
            feed = Service([*nats_server.overrides(), "feed", "bitstamp", "--url", url, "--max-updates", "150"],
                           tmp_path, ready=None, name="feed-bitstamp")
            feed.start()
            assert feed.wait(timeout_s=180) == 0, feed.log()
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    messages = read_stream(nats_server.url, "md.bitstamp.BTCUSD")
    updates = [m for m in messages if isinstance(m, BookUpdate)]
    gaps = [m for m in messages if isinstance(m, Gap)]
    assert [u.seq for u in updates] == list(range(1, 301))
    assert {u.symbol for u in updates} == {"BTCUSD"} and all(u.levels == 10 for u in updates)
    # The restart is announced: a gap whose next_seq is the first update of the second run.
    assert any(g.next_seq == 151 for g in gaps)
    best_bid, best_ask = updates[-1].book[2], updates[-1].book[0]
    assert 0 < best_bid < best_ask
