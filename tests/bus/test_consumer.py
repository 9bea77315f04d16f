"""The durable pull-consumer plumbing the bus services share: resume after the ack floor against a real
nats-server, one awaited ack per stream, decode-or-dead-letter, and the sqlite commit helper."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from hftpipe.bus.connection import connect, ensure_stream, ensure_streams
from hftpipe.bus.consumer import (
    Durable,
    PullConsumer,
    dead_letter,
    decode_as,
    publish_acked,
    reply_sequence,
    report_lag,
    resume_consumer,
)
from hftpipe.config import load_config
from hftpipe.contracts import BookUpdate, DeadLetter, Gap, Signal, decode, encode
from hftpipe.sqlite_wal import open_wal, transaction


def _book(seq: int) -> BookUpdate:
    return BookUpdate(venue="NASDAQ", symbol="GOOG", seq=seq, event_time=1.0 + seq, recv_time=0.0, publish_time=0.0,
                      levels=1, book=[100.01, 10.0, 99.99, 10.0])


@pytest.mark.slow
def test_a_resumed_consumer_redelivers_what_a_dead_one_held_in_stream_order(nats_server, hftpipe_home: Path) -> None:
    """Delivered-but-unacknowledged messages come back first and in order, not after ack_wait behind newer ones."""
    config = load_config(None, [f"bus.port={nats_server.port}"])
    durable = Durable("MD", "t-md", "md.>", max_ack_pending=100, ack_wait_s=60.0, max_waiting=64)

    async def scenario() -> tuple[list[int], list[int], int, list[int]]:
        client = await connect(config.bus, "test-consumer")
        try:
            await ensure_streams(client.js, config.bus)
            for seq in range(1, 11):
                await client.js.publish("md.NASDAQ.GOOG", encode(_book(seq)))
            assert await resume_consumer(client.js, durable) == 0  # new: from the start
            first = PullConsumer(durable)
            await first.bind(client.js)
            batch = await first.fetch(4, timeout_s=2.0, retry_s=0.1)
            await batch[-1].ack()  # AckAll: 1..4 done
            held = await first.fetch(3, timeout_s=2.0, retry_s=0.1)  # 5..7 delivered, never acknowledged
            await first.close()
            floor = await resume_consumer(client.js, durable)  # the restart of a process that died holding 5..7
            second = PullConsumer(durable)
            await second.bind(client.js)
            again: list = []
            while len(again) < 6:
                got = await second.fetch(10, timeout_s=2.0, retry_s=0.1)
                assert got, "nothing redelivered"
                again += got
            info = await client.js.consumer_info("MD", "t-md")
            await second.close()
            return ([decode(m.data).seq for m in held], [decode(m.data).seq for m in again], floor,
                    [info.config.max_waiting, info.config.max_ack_pending])
        finally:
            await client.close()

    held, again, floor, limits = asyncio.run(scenario())
    assert held == [5, 6, 7]
    assert floor == 4
    assert again == [5, 6, 7, 8, 9, 10]
    assert limits == [64, 100]


@pytest.mark.slow
def test_fetch_returns_nothing_on_a_timeout_and_lag_counts_what_is_left(nats_server, hftpipe_home: Path) -> None:
    config = load_config(None, [f"bus.port={nats_server.port}"])
    durable = Durable("SIG", "t-sig", "sig.>")

    async def scenario() -> tuple[list, list[tuple[str, int, int]]]:
        client = await connect(config.bus, "test-consumer")
        try:
            await ensure_streams(client.js, config.bus)
            assert not await ensure_stream(client.js, "SIG", "sig.>", config.bus)  # exists: not created again
            await resume_consumer(client.js, durable)
            pull = PullConsumer(durable)
            await pull.bind(client.js)
            empty = await pull.fetch(5, timeout_s=0.2, retry_s=0.1)
            await asyncio.sleep(0.5)  # the expired pull request is gone at the server too: nothing is delivered
            for seq in range(3):
                await client.js.publish("sig.GOOG", encode(_book(seq + 1)))
            seen: list[tuple[str, int, int]] = []
            stop = asyncio.Event()

            def on_lag(d: Durable, pending: int, ack_pending: int) -> None:
                seen.append((d.name, pending, ack_pending))
                stop.set()

            await asyncio.wait_for(report_lag(client, [durable], 0.05, stop, on_lag), timeout=10)
            await pull.close()
            return empty, seen
        finally:
            await client.close()

    empty, seen = asyncio.run(scenario())
    assert empty == []
    assert seen == [("t-sig", 3, 0)]


class _Client:
    """Records which publishes ask for a JetStream ack; every ack comes at once."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        client = self

        class Js:
            async def publish_async(self, subject, data, headers=None):
                client.log.append(("acked", subject))
                future = asyncio.get_running_loop().create_future()
                future.set_result(None)
                return future

        class Nc:
            async def publish(self, subject, data, headers=None):
                client.log.append(("plain", subject))

        self.js, self.nc = Js(), Nc()


def test_publish_acked_awaits_one_ack_per_stream_the_last_message_of_each() -> None:
    client = _Client()
    items = [("ord.A", b"1", {"Nats-Msg-Id": "1"}), ("fill.A", b"2", {"Nats-Msg-Id": "2"}),
             ("ord.B", b"3", {"Nats-Msg-Id": "3"}), ("pos.A", b"4", {}), ("fill.B", b"5", None)]
    asyncio.run(publish_acked(client, items))
    assert client.log == [("plain", "ord.A"), ("plain", "fill.A"), ("acked", "ord.B"), ("acked", "pos.A"),
                          ("acked", "fill.B")]


def test_publish_acked_with_nothing_publishes_nothing() -> None:
    client = _Client()
    asyncio.run(publish_acked(client, []))
    assert client.log == []


@pytest.mark.parametrize("data, kinds, kind, reason", [
    (b"\x93not a contract", (BookUpdate,), "malformed", "malformed message"),
    (encode(_book(1)), (Signal, Gap), "unexpected", "BookUpdate on sig.GOOG"),
])
def test_decode_as_names_the_reason(data: bytes, kinds: tuple, kind: str, reason: str) -> None:
    message, rejected = decode_as(data, kinds, "sig.GOOG")
    assert message is None
    assert rejected is not None and rejected[0] == kind and rejected[1].startswith(reason)


def test_decode_as_passes_the_expected_kinds() -> None:
    message, rejected = decode_as(encode(_book(3)), (Gap, BookUpdate), "a market-data subject")
    assert rejected is None and message == _book(3)


def test_a_dead_letter_carries_the_payload_and_the_reason() -> None:
    subject, data = dead_letter("paper", "md.NASDAQ.GOOG", b"\x00\xff", "malformed message: x")
    letter = decode(data)
    assert subject == "dlq.paper"
    assert isinstance(letter, DeadLetter)
    assert (letter.service, letter.subject, letter.payload, letter.reason) == ("paper", "md.NASDAQ.GOOG", b"\x00\xff",
                                                                               "malformed message: x")


@pytest.mark.parametrize("reply, expected", [
    ("$JS.ACK.MD.sig-1.1.42.7.1700000000000000000.3", (42, 3)),  # v1: 9 tokens
    ("$JS.ACK.domain.hash.MD.sig-1.1.42.7.1700000000000000000.3.token", (42, 3)),  # v2: 12 tokens
    ("", (0, 0)),
])
def test_reply_sequence_reads_both_ack_subject_layouts(reply: str, expected: tuple[int, int]) -> None:
    assert reply_sequence(reply) == expected


def test_a_failed_transaction_leaves_nothing_and_the_next_one_commits(tmp_path: Path) -> None:
    db = open_wal(tmp_path / "deep" / "s.sqlite", ["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)"])
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.IntegrityError), transaction(db):
        db.execute("INSERT INTO t VALUES ('a')")
        db.execute("INSERT INTO t VALUES ('a')")  # fails: the first insert is rolled back with it
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0
    with transaction(db):  # no transaction left open by the failure
        db.execute("INSERT INTO t VALUES ('b')")
    assert [r[0] for r in db.execute("SELECT k FROM t")] == ["b"]
    db.close()
