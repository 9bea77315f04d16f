"""``hftpipe bus tail``: print messages of a subject, as text or one JSON object per line."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable

import orjson

from hftpipe.bus.connection import connect
from hftpipe.config import BusConfig
from hftpipe.contracts import BookUpdate, ContractError, DeadLetter, Gap, Signal, decode, to_builtins


def describe(subject: str, data: bytes, as_json: bool) -> str:
    """One line for one message: its contract as JSON, or a short human summary."""
    try:
        message = decode(data)
    except ContractError as exc:
        if as_json:
            return orjson.dumps({"type": "undecodable", "subject": subject, "error": str(exc),
                                 "data": base64.b64encode(data).decode()}).decode()
        return f"{subject} undecodable ({exc}): {data[:80]!r}"
    if as_json:
        body = to_builtins(message)
        body["subject"] = subject
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if isinstance(message, BookUpdate):
        return (f"{subject} seq {message.seq} ask {message.book[0]} x {message.book[1]} "
                f"bid {message.book[2]} x {message.book[3]}")
    if isinstance(message, Signal):
        probs = " ".join(f"{p:.3f}" for p in message.probabilities)
        return f"{subject} seq {message.seq} class {message.predicted} [{probs}] {message.model_name} v{message.model_version}"
    if isinstance(message, Gap):
        return f"{subject} GAP next seq {message.next_seq}: {message.reason}"
    if isinstance(message, DeadLetter):
        return f"{subject} DEAD LETTER from {message.service} ({message.subject}): {message.reason}"
    return f"{subject} {message!r}"


async def tail(cfg: BusConfig, subject: str, count: int | None, timeout_s: float | None, as_json: bool,
               history: bool, emit: Callable[[str], None], url: str | None = None) -> int:
    """Print messages until ``count`` were seen or ``timeout_s`` passed without one; returns how many.

    ``history`` replays what the stream holds for the subject first (an ordered JetStream consumer); without
    it only new messages are shown (a core subscription).
    """
    client = await connect(cfg, "hftpipe-bus-tail", url=url)
    queue: asyncio.Queue = asyncio.Queue()

    async def _cb(msg) -> None:
        await queue.put(msg)

    try:
        if history:
            sub = await client.js.subscribe(subject, cb=_cb, ordered_consumer=True)
        else:
            sub = await client.nc.subscribe(subject, cb=_cb)
        seen = 0
        while count is None or seen < count:
            try:
                msg = await asyncio.wait_for(queue.get(), timeout=timeout_s)
            except TimeoutError:
                break
            emit(describe(msg.subject, msg.data, as_json))
            seen += 1
        await sub.unsubscribe()
        return seen
    finally:
        await client.close()
