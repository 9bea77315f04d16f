"""Live feed commands: ``feed bitstamp`` (the live L3 client) and ``feed exchange-sim`` (a local exchange).

The commands are plain click commands; the ``feed`` group adds them (``group.add_command(bitstamp_cmd)``,
``group.add_command(exchange_sim_cmd)``). Run alone: ``python -m hftpipe.cli.feed_live bitstamp ...``.

Where the messages go is decided by :func:`make_emitter`: today a JSON-lines file (``--out``) or stdout;
the bus adapter (``md.<venue>.<symbol>`` on NATS) plugs in there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import IO

import click

from hftpipe.contracts import Message, to_json

log = logging.getLogger(__name__)

Emitter = Callable[[Message], Awaitable[None]]


def make_emitter(out: IO[bytes] | None, *, limit: int | None = None,
                 on_limit: Callable[[], None] | None = None) -> Emitter:
    """The client's ``emit``: one JSON object per message and line to ``out`` (the bus publisher goes here).

    Args:
        out: a binary stream (file or stdout); every message is flushed as it comes.
        limit: after this many book updates call ``on_limit`` (tests and bounded runs).
    """
    count = 0

    async def emit(message: Message) -> None:
        nonlocal count
        if out is not None:
            out.write(to_json(message) + b"\n")
            out.flush()
        if message.__class__.__name__ == "BookUpdate":
            count += 1
            if limit is not None and count >= limit and on_limit is not None:
                on_limit()

    return emit


def _stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGINT and SIGTERM call ``stop`` in the running loop (not available on every platform: then skipped)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop)


def _run_until_signalled(main: Awaitable[None], stop: Callable[[], None]) -> None:
    async def runner() -> None:
        _stop_on_signals(stop)
        await main

    asyncio.run(runner())


@click.command("bitstamp")
@click.option("--url", default="wss://ws.bitstamp.net", show_default=True,
              help="WebSocket feed (a local `feed exchange-sim` prints its own).")
@click.option("--rest-url", default=None, help="Order book snapshot URL (default: derived from --url).")
@click.option("--pair", default="btcusd", show_default=True, help="Bitstamp pair; the symbol is its upper case.")
@click.option("--levels", default=10, show_default=True, type=click.IntRange(1, 100), help="Book levels per update.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write JSON lines (one BookUpdate or Gap per line; '-' is stdout) instead of publishing to "
                   "the bus (md.bitstamp.<PAIR>).")
@click.option("--max-updates", type=click.IntRange(1), default=None, help="Stop after this many book updates.")
@click.option("--heartbeat", "heartbeat_s", default=10.0, show_default=True, help="Heartbeat interval, seconds.")
@click.option("--backoff-max", default=30.0, show_default=True, help="Longest wait between reconnects, seconds.")
@click.pass_context
def bitstamp_cmd(ctx: click.Context, url: str, rest_url: str | None, pair: str, levels: int, out_path: str | None,
                 max_updates: int | None, heartbeat_s: float, backoff_max: float) -> None:
    """Follow Bitstamp's live order-by-order feed and publish the canonical book after each event."""
    from hftpipe.feeds.bitstamp import BitstampClient

    config = getattr(ctx.obj, "config", None)
    if out_path is None and config is None:
        out_path = "-"  # run outside `hftpipe feed` (python -m hftpipe.cli.feed_live): no bus settings
    if out_path is None:
        _bitstamp_to_bus(config, url=url, rest_url=rest_url, pair=pair, levels=levels, max_updates=max_updates,
                         heartbeat_s=heartbeat_s, backoff_max=backoff_max)
        return

    out = sys.stdout.buffer if out_path == "-" else open(out_path, "ab")  # noqa: SIM115 - closed below
    try:
        holder: dict[str, BitstampClient] = {}
        emit = make_emitter(out, limit=max_updates, on_limit=lambda: holder["client"].stop())
        client = BitstampClient(emit, url=url, rest_url=rest_url, pair=pair, levels=levels, heartbeat_s=heartbeat_s,
                                backoff_max=backoff_max)
        holder["client"] = client
        _run_until_signalled(client.run(), client.stop)
        s = client.stats
        click.echo(f"bitstamp {pair}: {s.updates} updates, {s.gaps} gaps, {s.reconnects} reconnects, "
                   f"{s.snapshots} snapshots", err=True)
    finally:
        if out is not sys.stdout.buffer:
            out.close()


def _bitstamp_to_bus(cfg, *, url: str, rest_url: str | None, pair: str, levels: int, max_updates: int | None,
                     heartbeat_s: float, backoff_max: float) -> None:
    """The live client publishing through the bus's feed publisher (contiguous seqs resumed from the stream,
    dedup ids, acknowledged delivery), so a restarted feed never reuses a seq."""
    from hftpipe.bus.connection import connect, ensure_streams
    from hftpipe.bus.lifecycle import ServiceRun, serve_metrics
    from hftpipe.contracts import BookUpdate, Gap
    from hftpipe.feeds.bitstamp import VENUE, BitstampClient
    from hftpipe.feeds.replay import FeedMetrics, FeedPublisher

    symbol = pair.upper()
    holder: dict[str, BitstampClient] = {}

    async def main(run: ServiceRun) -> BitstampClient:
        bus = await connect(cfg.bus, f"hftpipe-feed-bitstamp-{symbol}", max_pending=cfg.feed.max_pending)
        try:
            await ensure_streams(bus.js, cfg.bus)
            metrics = FeedMetrics()
            publisher = FeedPublisher(bus, VENUE, symbol, metrics, max_pending=cfg.feed.max_pending)
            await publisher.resume()
            count = 0

            async def emit(message: Message) -> None:
                nonlocal count
                if isinstance(message, Gap):
                    await publisher.gap(message.reason)
                elif isinstance(message, BookUpdate):
                    await publisher.publish(message.event_time, list(message.book), message.levels,
                                            message.event_type, message.price, message.size, message.direction,
                                            recv_time=message.recv_time, correlation_id=message.correlation_id)
                    count += 1
                    if max_updates is not None and count >= max_updates:
                        holder["client"].stop()

            client = BitstampClient(emit, url=url, rest_url=rest_url, pair=pair, levels=levels,
                                    heartbeat_s=heartbeat_s, backoff_max=backoff_max)
            holder["client"] = client
            port = serve_metrics(metrics.registry, cfg.feed.metrics_port)
            run.ready(f"subject={publisher.subject} metrics_port={port}")
            _stop_on_signals(client.stop)
            await client.run()
            await publisher.settle()
            return client
        finally:
            await bus.close()

    with ServiceRun(f"feed-bitstamp-{symbol}") as run:
        client = asyncio.run(main(run))
    s = client.stats
    click.echo(f"bitstamp {pair}: {s.updates} updates, {s.gaps} gaps, {s.reconnects} reconnects, "
               f"{s.snapshots} snapshots published to md.{VENUE}.{symbol}", err=True)


@click.command("exchange-sim")
@click.argument("capture", type=click.Path(exists=True))
@click.option("--port", default=0, show_default=True, help="Port on 127.0.0.1 (0: a free one, printed).")
@click.option("--speed", default="1", show_default=True, help="Replay speed (x real time) or 'max'.")
@click.option("--drop-after", type=click.IntRange(1), default=None,
              help="Drop the first connection after this many events (to exercise reconnects).")
def exchange_sim_cmd(capture: str, port: int, speed: str, drop_after: int | None) -> None:
    """Serve a recorded Bitstamp capture over a local WebSocket in Bitstamp's wire format."""
    from hftpipe.feeds.exchange_sim import ExchangeSim, run_sim

    if speed == "max":
        rate: float | None = None
    else:
        try:
            rate = float(speed)
        except ValueError:
            raise click.BadParameter(f"{speed!r} is not a number or 'max'", param_hint="--speed") from None
        if rate <= 0:
            raise click.BadParameter("must be > 0 (or 'max')", param_hint="--speed")

    def ready(sim: ExchangeSim) -> None:
        click.echo(f"exchange-sim ws://{sim.host}:{sim.port}  snapshot "
                   f"http://{sim.host}:{sim.port}/api/v2/order_book/{sim.pair}/", err=False)
        sys.stdout.flush()

    task: dict[str, asyncio.Task] = {}

    async def main() -> None:
        task["t"] = asyncio.current_task()  # type: ignore[assignment]
        with contextlib.suppress(asyncio.CancelledError):
            await run_sim(capture, port=port, speed=rate, drop_after=drop_after, on_ready=ready)

    _run_until_signalled(main(), lambda: task["t"].cancel() if "t" in task else None)


@click.group()
def _standalone() -> None:
    """Live feed commands (the `hftpipe feed` group adds them)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


_standalone.add_command(bitstamp_cmd)
_standalone.add_command(exchange_sim_cmd)

if __name__ == "__main__":  # pragma: no cover - python -m hftpipe.cli.feed_live ...
    _standalone()
