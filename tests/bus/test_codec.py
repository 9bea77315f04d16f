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


def _signal_fields(**kw) -> dict:
    base = {"symbol": "GOOG", "venue": "NASDAQ", "seq": 7, "event_time": 1.0, "input_publish_time": 2.0,
            "publish_time": 3.0, "probabilities": [0.2, 0.5, 0.3], "predicted": 1, "model_name": "m",
            "model_version": "3"}
    return {**base, **kw}


def test_a_signal_written_before_clock_horizons_still_decodes_as_k_events() -> None:
    import msgspec

    from hftpipe.horizons import Horizon

    old = msgspec.msgpack.encode({"type": "signal", **_signal_fields(horizon=10), "version": 1})  # no horizon_s
    signal = decode(old)
    assert isinstance(signal, Signal) and signal.horizon == 10 and signal.horizon_s is None
    assert signal.label_horizon == Horizon(events=10) and signal.label_horizon.describe() == "10 events"
    assert b"horizon_s" not in encode(signal)  # an event-horizon signal is byte-for-byte what it was


def test_a_clock_time_signal_and_outcome_round_trip_with_their_unit() -> None:
    import msgspec

    from hftpipe.contracts import Outcome, horizon_fields
    from hftpipe.horizons import Horizon

    signal = Signal(**_signal_fields(**horizon_fields("1s")))
    back = decode(encode(signal))
    assert back == signal and back.horizon == 0 and back.horizon_s == 1.0
    assert back.label_horizon == Horizon(seconds=1.0) and back.label_horizon.describe() == "1 s"
    outcome = Outcome(symbol="GOOG", venue="NASDAQ", seq=7, event_time=1.0, outcome_time=2.5, publish_time=3.0,
                      alpha=1e-5, label_return=0.0, realised=1, predicted=1, probabilities=[0.2, 0.5, 0.3],
                      persistence=1, momentum=1, model_name="m", model_version="3", **horizon_fields("500ms"))
    assert decode(encode(outcome)).label_horizon == Horizon(seconds=0.5)

    class SignalBeforeClockHorizons(msgspec.Struct, tag="signal"):  # what an older consumer decodes into
        symbol: str
        seq: int
        horizon: int

    older = msgspec.msgpack.decode(encode(signal), type=SignalBeforeClockHorizons)
    assert older.horizon == 0  # never read as 1 event: an older monitor drops it as a horizon mismatch


@pytest.mark.parametrize(("fields", "message"), [
    ({"horizon": 0}, "horizon must be >= 1 event, or 0 with horizon_s set"),
    ({"horizon": 10, "horizon_s": 1.0}, "a clock-time horizon is horizon=0 with horizon_s > 0"),
    ({"horizon": 0, "horizon_s": -1.0}, "a clock-time horizon is horizon=0 with horizon_s > 0"),
])
def test_a_signal_with_a_bad_horizon_is_rejected_with_the_reason(fields: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        decode(encode(Signal(**_signal_fields(**fields))))
