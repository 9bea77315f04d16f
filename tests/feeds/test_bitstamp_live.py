"""The live Bitstamp client against the local exchange-sim, with the connection dropped mid-stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from hftpipe.contracts import BookUpdate, Gap, decode, encode
from hftpipe.data.bitstamp import L3Book
from hftpipe.feeds.bitstamp import BitstampClient
from hftpipe.feeds.exchange_sim import ExchangeSim
from tests.conftest import RAW

CAPTURE = RAW / "bitstamp-btcusd-l3-2026-05-02"


def batch_books(sim: ExchangeSim) -> dict[tuple[int, int], np.ndarray]:
    """The batch builder's book after each event of the sim's stream, keyed by (microtimestamp, type)."""
    s = sim.stream
    rows = L3Book(10).apply(s.action, s.side, s.order_id, s.price, s.size, s.emit)
    return {(int(sim.micro[src]), int(t)): rows.book[r]
            for r, (src, t) in enumerate(zip(rows.source, rows.event_type))}


@pytest.mark.slow
def test_client_reconnects_emits_a_gap_and_matches_the_batch_book() -> None:
    async def scenario():
        sim = ExchangeSim(CAPTURE, speed=20.0, drop_after=1500)
        port = await sim.start()
        messages: list = []
        client: BitstampClient

        async def emit(message) -> None:
            messages.append(decode(encode(message)))  # what a bus consumer would get
            if sum(isinstance(m, BookUpdate) for m in messages) >= 1500:
                client.stop()

        client = BitstampClient(emit, url=f"ws://127.0.0.1:{port}", pair="btcusd", backoff_initial=0.2,
                                heartbeat_s=1.0, stale_s=30.0)  # generous: a loaded CI machine is slow
        try:
            await asyncio.wait_for(client.run(), timeout=90)
        finally:
            await sim.stop()
        return sim, client, messages

    sim, client, messages = asyncio.run(scenario())
    gaps = [i for i, m in enumerate(messages) if isinstance(m, Gap)]
    assert len(gaps) == 1 and client.stats.reconnects == 1 and client.stats.snapshots == 2
    assert client.stats.heartbeats > 0  # bts:heartbeat answered by the exchange
    updates = [m for m in messages if isinstance(m, BookUpdate)]
    before = [m for m in messages[: gaps[0]] if isinstance(m, BookUpdate)]
    after = [m for m in messages[gaps[0] + 1:] if isinstance(m, BookUpdate)]
    assert before and len(after) > 500
    assert messages[gaps[0]].next_seq == after[0].seq == before[-1].seq + 1
    assert [m.seq for m in updates] == list(range(1, len(updates) + 1))  # contiguous per symbol
    assert {(m.venue, m.symbol, m.levels) for m in updates} == {("bitstamp", "BTCUSD", 10)}
    # Events were lost while disconnected: the stream after the gap resumes later in the capture.
    assert after[0].event_time > before[-1].event_time
    books = batch_books(sim)
    compared = 0
    for m in after + before:
        micro = int(m.correlation_id.split(":")[0])
        expected = books[(micro, m.event_type)]
        np.testing.assert_array_equal(np.asarray(m.book), expected, err_msg=f"seq {m.seq}")
        compared += 1
    assert compared > 1000


def test_backoff_doubles_up_to_the_cap() -> None:
    async def noop(message) -> None:
        return None

    client = BitstampClient(noop, url="ws://127.0.0.1:9", backoff_initial=0.5, backoff_max=4.0)
    assert [client.backoff(k) for k in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert client.rest_url == "http://127.0.0.1:9/api/v2/order_book/btcusd/?group=2"


def test_unreachable_exchange_is_retried_with_back_off() -> None:
    async def scenario():
        async def noop(message) -> None:
            return None

        client = BitstampClient(noop, url="ws://127.0.0.1:9", backoff_initial=0.05, backoff_max=0.1)
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.5)
        client.stop()
        await asyncio.wait_for(task, 5)
        return client.stats

    stats = asyncio.run(scenario())
    assert stats.reconnects >= 3 and stats.connects == 0 and stats.gaps == 0


@pytest.mark.slow
def test_exchange_request_to_reconnect_is_obeyed_with_a_gap() -> None:
    async def scenario():
        sim = ExchangeSim(CAPTURE, speed=20.0)
        port = await sim.start()
        messages: list = []
        client = BitstampClient(lambda m: _append(messages, m), url=f"ws://127.0.0.1:{port}", backoff_initial=0.05)
        task = asyncio.create_task(client.run())
        try:
            while client.stats.updates < 200:
                await asyncio.sleep(0.02)
            assert await sim.request_reconnect() == 1
            while client.stats.snapshots < 2 or client.stats.updates < 400:
                await asyncio.sleep(0.02)
        finally:
            client.stop()
            await asyncio.wait_for(task, 10)
            await sim.stop()
        return client, messages

    client, messages = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert client.stats.reconnects == 1 and sum(isinstance(m, Gap) for m in messages) == 1


async def _append(messages: list, message) -> None:
    messages.append(message)


@pytest.mark.slow
def test_cli_commands_serve_and_follow_the_capture(tmp_path) -> None:
    sim = subprocess.Popen([sys.executable, "-m", "hftpipe.cli.feed_live", "exchange-sim", str(CAPTURE),
                            "--port", "0", "--speed", "20"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
    try:
        line = sim.stdout.readline()
        assert line.startswith("exchange-sim ws://127.0.0.1:"), line
        url = line.split()[1]
        snapshot_url = line.split()[3]
        book = json.loads(urllib.request.urlopen(snapshot_url, timeout=10).read())
        assert len(book["bids"]) > 1000 and float(book["bids"][0][0]) < float(book["asks"][0][0])
        out = tmp_path / "live.jsonl"
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "hftpipe.cli.feed_live", "bitstamp", "--url", url,
                               "--out", str(out), "--max-updates", "200"], check=False, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - start < 120
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(lines) == 200 and {x["type"] for x in lines} == {"book"}
        assert [x["seq"] for x in lines] == list(range(1, 201))
        assert "200 updates" in done.stderr
    finally:
        sim.terminate()
        sim.wait(timeout=10)


@pytest.mark.parametrize("speed,message", [("0", "must be > 0"), ("fast", "is not a number or 'max'")])
def test_exchange_sim_rejects_a_bad_speed(speed: str, message: str) -> None:
    from click.testing import CliRunner

    from hftpipe.cli.feed_live import exchange_sim_cmd

    result = CliRunner().invoke(exchange_sim_cmd, [str(CAPTURE), "--speed", speed])
    assert result.exit_code == 2 and message in result.output
