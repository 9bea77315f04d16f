"""Wire contracts as the bus uses them: round trips, rejections with reasons, tail's lines, subjects."""

from __future__ import annotations

import json
import math

import pytest

from hftpipe.bus.connection import md_subject, msg_id, sig_subject, subject_token
from hftpipe.bus.tail import describe
from hftpipe.contracts import BookUpdate, ContractError, DeadLetter, Gap, Signal, decode, encode
from hftpipe.errors import BusError

BOOK = [580.5, 100.0, 580.0, 200.0] + [581.0, 10.0, 579.0, 20.0]


def _update(**kw) -> BookUpdate:
    base = {"venue": "NASDAQ", "symbol": "GOOG", "seq": 7, "event_time": 1340280000.5, "recv_time": 1.0,
            "publish_time": 2.0, "levels": 2, "book": BOOK}
    return BookUpdate(**{**base, **kw})


def test_round_trips() -> None:
    for message in (_update(), Gap(venue="NASDAQ", symbol="GOOG", next_seq=8, reason="loop", publish_time=1.0),
                    Signal(symbol="GOOG", venue="NASDAQ", seq=7, event_time=1.0, input_publish_time=2.0,
                           publish_time=3.0, probabilities=[0.2, 0.5, 0.3], predicted=1, model_name="m",
                           model_version="3", horizon=10),
                    DeadLetter(service="signals", subject="md.X.Y", reason="r", payload=b"\x00\xff",
                               publish_time=1.0)):
        assert decode(encode(message)) == message


def test_nan_levels_survive() -> None:
    book = BOOK[:4] + [math.nan, 0.0, math.nan, 0.0]
    back = decode(encode(_update(book=book)))
    assert math.isnan(back.book[4]) and back.book[5] == 0.0


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00garbage", "malformed message"),
    (encode(_update(book=BOOK[:6])), "book has 6 values, expected 4 x 2 levels"),
    (encode(_update(seq=0)), "seq must be >= 1"),
    (encode(_update(version=99)), "unsupported schema version 99"),
])
def test_rejections_say_why(data: bytes, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode(data)


def test_tail_json_line_is_the_contract() -> None:
    line = json.loads(describe("md.NASDAQ.GOOG", encode(_update()), as_json=True))
    assert line["type"] == "book" and line["seq"] == 7 and line["subject"] == "md.NASDAQ.GOOG"
    assert line["book"][:2] == [580.5, 100.0]
    bad = json.loads(describe("md.NASDAQ.GOOG", b"nope", as_json=True))
    assert bad["type"] == "undecodable" and "malformed" in bad["error"]
    assert describe("sig.GOOG", encode(_update()), as_json=False).startswith("sig.GOOG seq 7 ask 580.5")


def test_subjects() -> None:
    assert md_subject("NASDAQ", "BRK.B") == "md.NASDAQ.BRK_B"
    assert sig_subject("BTC/USD") == "sig.BTC_USD"
    assert msg_id("GOOG", 12) == {"Nats-Msg-Id": "GOOG:12"}
    with pytest.raises(BusError, match="cannot be used in a subject"):
        subject_token("")
