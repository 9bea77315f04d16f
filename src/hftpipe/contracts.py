"""Typed, versioned message contracts for the online half: one module, one struct per message type.

Every message on the bus is one of these structs, encoded with msgspec (msgpack on the wire). A consumer
decodes with :func:`decode`, which raises :class:`ContractError` (never anything else) on a malformed or
unknown message, so the service can send it to ``dlq.<service>`` with the reason and keep running.

Subjects (see ``shared/ONLINE.md``):

- ``md.<venue>.<symbol>``: :class:`BookUpdate`, the canonical L2 book after each event, plus the event;
- ``sig.<symbol>``: :class:`Signal`, the model's class probabilities for one input sequence;
- ``md.<venue>.<symbol>`` also carries :class:`Gap` when a feed lost events (reconnect, dropped packets);
- ``dlq.<service>``: :class:`DeadLetter`, a rejected message with the reason.

Times: ``event_time`` is the exchange's time of the event (seconds since the Unix epoch, float; for LOBSTER
replays the session date plus seconds after midnight), ``recv_time`` when the feed received it and
``publish_time`` when the producer published it (both ``time.time()``). ``seq`` is a per-symbol sequence
number assigned by the producer, starting at 1 and contiguous: a consumer that sees ``seq`` jump knows
events were lost, and one that sees an old ``seq`` knows it is a replay and ignores it (idempotence).

Book layout: ``book`` holds 4L floats in LOBSTER's interleaved order (ask_price_k, ask_size_k, bid_price_k,
bid_size_k for k = 1..L), prices in the instrument's quote currency, sizes in units; an empty level has
price NaN and size 0, exactly like the canonical event table (``hftpipe.data.schema``).

Codec: measured with ``python -m hftpipe.contracts`` (see :func:`_bench`) on this 2-core machine, L=10:
the numbers are recorded in ``CODEC_BENCHMARK`` below.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import msgspec

from hftpipe.errors import HftpipeError
from hftpipe.horizons import Horizon, parse_horizon

SCHEMA_VERSION = 1

# Filled in from `python -m hftpipe.contracts` (see _bench); kept here so a reader sees why msgpack was chosen.
CODEC_BENCHMARK = """\
book update  msgspec msgpack           530 B  encode    742 ns  decode   1030 ns  (typed, validated)
book update  msgspec json              375 B  encode   2526 ns  decode   1084 ns
book update  orjson (dict, untyped)    375 B  encode   1138 ns  decode   1180 ns  (no validation)
signal       msgspec msgpack           214 B  encode    208 ns  decode    322 ns
signal       msgspec json              223 B  encode    531 ns  decode    411 ns
signal       orjson (dict, untyped)    223 B  encode    312 ns  decode    648 ns
"""  # msgpack is fastest both ways and its decoder validates types; JSON stays for `bus tail --json`.


class ContractError(HftpipeError):
    """A message that does not match its contract (malformed bytes, wrong type, bad field)."""


class BookUpdate(msgspec.Struct, tag="book", frozen=True, array_like=False, omit_defaults=True):
    """The canonical book of one symbol right after one market event."""

    venue: str
    symbol: str
    seq: int  # per-symbol, 1, 2, 3, ... contiguous
    event_time: float  # exchange time, seconds since the Unix epoch
    recv_time: float  # when the feed received the event
    publish_time: float  # when the feed published this message
    levels: int
    book: list[float]  # 4 * levels values, LOBSTER order; NaN price / 0 size for an empty level
    event_type: int = 0  # LOBSTER codes: 1 new limit, 2 partial cancel, 3 delete, 4 visible exec, 5 hidden exec
    price: float = 0.0  # the event's price (0 when none)
    size: float = 0.0  # the event's size (0 when none)
    direction: int = 0  # +1 buy side, -1 sell side, 0 unknown
    correlation_id: str = ""  # carried from feed to outcome for tracing
    version: int = SCHEMA_VERSION


class Gap(msgspec.Struct, tag="gap", frozen=True, omit_defaults=True):
    """A feed lost events for a symbol: consumers reset their state for it; ``next_seq`` follows."""

    venue: str
    symbol: str
    next_seq: int  # the seq of the first update after the gap
    reason: str
    publish_time: float
    version: int = SCHEMA_VERSION


class Signal(msgspec.Struct, tag="signal", frozen=True, omit_defaults=True):
    """The model's prediction for one input book update."""

    symbol: str
    venue: str
    seq: int  # the input BookUpdate's seq (one signal per input seq at most)
    event_time: float  # the input's event time
    input_publish_time: float  # when the feed published the input
    publish_time: float  # when this signal was published
    probabilities: list[float]  # class order: CLASS_NAMES (down, stationary, up)
    predicted: int  # argmax class index
    model_name: str
    model_version: str
    horizon: int  # the label horizon k in events; 0 for a clock-time model (then horizon_s holds it)
    correlation_id: str = ""
    horizon_s: float | None = None  # a clock-time model's horizon h in seconds (absent: k events, older signals)
    version: int = SCHEMA_VERSION

    @property
    def label_horizon(self) -> Horizon:
        """The model's horizon with its unit (10 events, or 1 s)."""
        return message_horizon(self.horizon, self.horizon_s)


class DeadLetter(msgspec.Struct, tag="dead_letter", frozen=True, omit_defaults=True):
    """A message a service rejected, with the reason; the original bytes are kept for replay."""

    service: str
    subject: str
    reason: str
    payload: bytes
    publish_time: float
    version: int = SCHEMA_VERSION


Message = BookUpdate | Gap | Signal | DeadLetter
MessageKind = Literal["book", "gap", "signal", "dead_letter"]

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Message)
_JSON_ENCODER = msgspec.json.Encoder()


def encode(message: Message) -> bytes:
    """Encode a message for the wire (msgpack)."""
    return _ENCODER.encode(message)


def decode(data: bytes) -> Message:
    """Decode wire bytes into a typed message; :class:`ContractError` on anything malformed."""
    try:
        message = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"malformed message: {exc}") from None
    if message.version != SCHEMA_VERSION:
        raise ContractError(f"unsupported schema version {message.version} (this build reads {SCHEMA_VERSION})")
    if isinstance(message, BookUpdate):
        check_book_update(message)
    elif isinstance(message, (Signal, Outcome)):
        message_horizon(message.horizon, message.horizon_s, message.symbol)
    return message


def check_book_update(update: BookUpdate) -> None:
    """Structural checks on a book update (width, sequence); book sanity lives in the consumer."""
    if update.levels < 1:
        raise ContractError(f"{update.symbol}: levels must be >= 1, got {update.levels}")
    if len(update.book) != 4 * update.levels:
        raise ContractError(
            f"{update.symbol}: book has {len(update.book)} values, expected 4 x {update.levels} levels")
    if update.seq < 1:
        raise ContractError(f"{update.symbol}: seq must be >= 1, got {update.seq}")
    if not math.isfinite(update.event_time):
        raise ContractError(f"{update.symbol}: event_time is not finite")


def horizon_fields(horizon: object) -> dict[str, int | float | None]:
    """The ``horizon`` / ``horizon_s`` fields of a Signal or Outcome for a model horizon (10, '1s' or a Horizon).

    Events keep the form every older consumer reads (``horizon=k``, no ``horizon_s``); clock time is
    ``horizon=0, horizon_s=h``, so a consumer built before clock-time horizons never mistakes h seconds for
    h events (it sees k=0 and rejects or drops the message).
    """
    h = parse_horizon(horizon)
    if h.events is not None:
        return {"horizon": h.events, "horizon_s": None}
    return {"horizon": 0, "horizon_s": float(h.seconds)}  # type: ignore[arg-type]


def message_horizon(horizon: int, horizon_s: float | None, symbol: str = "") -> Horizon:
    """The :class:`~hftpipe.horizons.Horizon` a message's ``horizon`` / ``horizon_s`` fields name.

    Raises:
        ContractError: neither or both are set, or the value is not a horizon.
    """
    where = f"{symbol}: " if symbol else ""
    if horizon_s is None:
        if horizon < 1:
            raise ContractError(f"{where}horizon must be >= 1 event, or 0 with horizon_s set; got {horizon}")
        return Horizon(events=horizon)
    if horizon != 0 or not (math.isfinite(horizon_s) and horizon_s > 0):
        raise ContractError(f"{where}a clock-time horizon is horizon=0 with horizon_s > 0 seconds; "
                            f"got horizon={horizon}, horizon_s={horizon_s}")
    return Horizon(seconds=float(horizon_s))


def to_json(message: Message) -> bytes:
    """JSON form of a message (``hftpipe bus tail --json``); bytes fields become base64."""
    return _JSON_ENCODER.encode(message)


def to_builtins(message: Message) -> dict:
    """A plain dict with the struct's tag under ``type`` (for SSE, logs and JSON lines)."""
    return msgspec.to_builtins(message)


def now() -> float:
    """Wall-clock time as used in the ``*_time`` fields."""
    return time.time()


def _bench(n: int = 200_000) -> str:  # pragma: no cover - run by hand, numbers recorded above
    import orjson

    book = [float(i) for i in range(40)]
    update = BookUpdate(venue="NASDAQ", symbol="GOOG", seq=1, event_time=1.0, recv_time=1.0, publish_time=1.0,
                        levels=10, book=book, event_type=1, price=580.0, size=100.0, direction=1)
    signal = Signal(symbol="GOOG", venue="NASDAQ", seq=1, event_time=1.0, input_publish_time=1.0,
                    publish_time=1.0, probabilities=[0.2, 0.5, 0.3], predicted=1, model_name="hftpipe-lob",
                    model_version="3", horizon=10)
    lines = []
    for name, msg in (("book update", update), ("signal", signal)):
        as_dict = msgspec.to_builtins(msg)
        codecs = {
            "msgspec msgpack": (msgspec.msgpack.Encoder().encode,
                                msgspec.msgpack.Decoder(type(msg)).decode),
            "msgspec json": (msgspec.json.Encoder().encode, msgspec.json.Decoder(type(msg)).decode),
            "orjson (dict, untyped)": (orjson.dumps, orjson.loads),
        }
        for codec, (enc, dec) in codecs.items():
            obj = as_dict if codec.startswith("orjson") else msg
            data = enc(obj)
            t0 = time.perf_counter()
            for _ in range(n):
                enc(obj)
            t1 = time.perf_counter()
            for _ in range(n):
                dec(data)
            t2 = time.perf_counter()
            lines.append(f"{name:12s} {codec:24s} {len(data):4d} B  encode {1e9 * (t1 - t0) / n:6.0f} ns"
                         f"  decode {1e9 * (t2 - t1) / n:6.0f} ns")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(_bench())


# ---- the paper trader's output (``ord.<symbol>``, ``fill.<symbol>``, ``pos.<symbol>``) ------------------------

class Order(msgspec.Struct, tag="order", frozen=True, omit_defaults=True):
    """One order decision of the paper trader: sent (passed the risk check), denied, or a cancel request."""

    symbol: str
    venue: str
    status: str  # "accepted" (passed the pre-trade check), "denied" (reason set), "cancel" (of order_id)
    order_id: int  # the execution model's id (per symbol); 0 for a denied order
    side: int  # +1 buy, -1 sell
    qty: float
    price: float | None  # limit price; None: market order
    seq: int  # the book update's seq the decision was made on
    event_time: float  # that update's exchange time
    publish_time: float
    policy: str = ""
    signal_seq: int = 0  # seq of the signal the decision used (0: none)
    reason: str = ""  # denial reason (hftpipe.trading.risk.DenyReason value) or why a cancel was sent
    text: str = ""  # the risk engine's explanation
    version: int = SCHEMA_VERSION


class Fill(msgspec.Struct, tag="fill", frozen=True, omit_defaults=True):
    """A simulated (partial) execution of one of the paper trader's orders."""

    symbol: str
    venue: str
    fill_id: int  # per symbol, 1, 2, 3, ... contiguous
    order_id: int
    side: int
    qty: float
    price: float
    fee: float  # dollars paid (negative: rebate)
    maker: bool
    seq: int  # the book update whose event caused the fill
    event_time: float  # exchange time of the fill
    publish_time: float
    version: int = SCHEMA_VERSION


class PositionUpdate(msgspec.Struct, tag="position", frozen=True, omit_defaults=True):
    """Position, cash and PnL of one symbol after a book update (mark to the mid), with the risk state."""

    symbol: str
    venue: str
    seq: int  # the last book update applied
    event_time: float
    position: float  # shares
    cash: float  # signed cash from fills, fees included
    mid: float  # NaN when unknown
    pnl: float  # cash + position x mid (fees included)
    day_pnl: float
    fees: float  # fees paid minus rebates, since start
    open_orders: int
    fills: int  # fills since start
    risk_state: str  # ACTIVE, REDUCING, HALTED
    publish_time: float
    version: int = SCHEMA_VERSION


class Outcome(msgspec.Struct, tag="outcome", frozen=True, omit_defaults=True):
    """A signal's realised outcome, published on ``out.<symbol>`` once its horizon has passed.

    The horizon is k events (``horizon``) or, for a clock-time model, h seconds (``horizon=0``,
    ``horizon_s=h``): see :func:`horizon_fields`.

    ``realised`` is the label of the signal's event under the model's own definition (horizon, label kind,
    sampling, stationary band alpha from the bundle): 0 down, 1 stationary, 2 up, -1 undefined (a missing
    mid in the window). ``persistence`` and ``momentum`` are what the naive baselines predicted for the same
    event, from information available at its time.
    """

    symbol: str
    venue: str
    seq: int  # the signal's (input book update's) seq
    event_time: float  # the signal's event time
    outcome_time: float  # event time of the k-th event after it (clock time: the first event after t + h):
    # the outcome is known from then on
    publish_time: float  # when this outcome was published
    horizon: int  # k, in events of the sampled stream; 0 for a clock-time model (then horizon_s holds it)
    alpha: float  # the stationary band used
    label_return: float  # the smoothed move the label thresholds (NaN when undefined)
    realised: int  # 0 down, 1 stationary, 2 up, -1 undefined
    predicted: int  # the model's class
    probabilities: list[float]  # the model's class probabilities (down, stationary, up)
    persistence: int  # the persistence baseline's class for this event
    momentum: int  # the momentum baseline's class for this event
    model_name: str
    model_version: str
    signal_publish_time: float = 0.0
    correlation_id: str = ""
    # The trades the signal caused (orders with ``Order.signal_seq`` == seq, their fills), as the monitor had
    # applied them when the outcome was published; optional, so an outcome of an older monitor still decodes.
    # The feedback data set's ``orders``/``fills`` tables complete them (``feedback_store.read_outcomes``).
    outcome_mid: float = 0.0  # mid of the k-th event after the signal, or in force at t + h (0: unknown); the mark
    orders: int = 0  # accepted orders placed on this signal
    fills: int = 0  # their (partial) fills
    filled_qty: float = 0.0  # shares filled, both sides
    net_qty: float = 0.0  # signed shares filled (+ bought)
    avg_price: float = 0.0  # quantity-weighted fill price (0: no fill)
    fees: float = 0.0  # dollars paid (negative: rebate)
    markout_pnl: float = 0.0  # sum of side x qty x (outcome_mid - price) - fees over the fills
    horizon_s: float | None = None  # a clock-time model's horizon h in seconds (absent: k events, older outcomes)
    version: int = SCHEMA_VERSION

    @property
    def label_horizon(self) -> Horizon:
        """The model's horizon with its unit (10 events, or 1 s)."""
        return message_horizon(self.horizon, self.horizon_s)


# Every message on the wire. The trading and outcome structs come after the first four; the unions and the
# decoder are rebuilt here so decode() (which reads the module-level _DECODER at call time) knows every tag.
TradingMessage = Order | Fill | PositionUpdate
Message = BookUpdate | Gap | Signal | DeadLetter | Outcome  # type: ignore[misc]
AnyMessage = Message | TradingMessage
_DECODER = msgspec.msgpack.Decoder(AnyMessage)
