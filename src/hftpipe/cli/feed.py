"""Feed commands: ``hftpipe feed replay`` (live exchange feeds register beside it)."""

from __future__ import annotations

import asyncio
import logging

import click

from hftpipe.errors import ConfigError

log = logging.getLogger(__name__)


def register(group: click.Group) -> None:
    from hftpipe.cli.feed_live import bitstamp_cmd, exchange_sim_cmd

    feed.add_command(bitstamp_cmd)
    feed.add_command(exchange_sim_cmd)
    group.add_command(feed)


@click.group()
def feed() -> None:
    """Publish market data to md.<venue>.<symbol> on the bus."""


def _speed(text: str | None, default: float) -> float:
    if text is None:
        return default
    if text.lower() in ("max", "inf"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--speed {text!r}: give a number (2 = twice real time) or 'max'") from None
    if value <= 0:
        raise ConfigError(f"--speed {text!r} must be positive (or 'max')")
    return value


@feed.command()
@click.argument("path")
@click.option("--speed", "speed_text", help="Recorded timing divided by X; 'max' = as fast as possible "
              "(default feed.speed).")
@click.option("--loop", is_flag=True, help="Start over at the end (a gap event marks each restart).")
@click.option("--limit", type=int, help="Publish at most N events in total.")
@click.option("--symbol", help="Publish under this symbol instead of the file's.")
@click.option("--venue", help="Venue token of the subject (default: feed.venue, else from the file).")
@click.option("--name", default=None, help="Service name for the pid/ready files (default feed-replay-<symbol>).")
@click.pass_obj
def replay(obj, path: str, speed_text: str | None, loop: bool, limit: int | None, symbol: str | None,
           venue: str | None, name: str | None) -> None:
    """Replay PATH (anything `hftpipe ingest` accepts, or its Parquet output) onto the bus."""
    from hftpipe.bus.connection import connect, ensure_streams
    from hftpipe.bus.lifecycle import ServiceRun, serve_metrics, stop_event
    from hftpipe.feeds.replay import FeedMetrics, FeedPublisher, load_replay
    from hftpipe.feeds.replay import replay as run_replay

    cfg = obj.config
    speed = _speed(speed_text, cfg.feed.speed)
    data = load_replay(path, venue=venue or cfg.feed.venue, symbol=symbol)
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be >= 1")

    async def _main() -> int:
        stop = stop_event()
        client = await connect(cfg.bus, f"hftpipe-feed-replay-{data.symbol}", max_pending=cfg.feed.max_pending)
        try:
            await ensure_streams(client.js, cfg.bus)
            metrics = FeedMetrics()
            publisher = FeedPublisher(client, data.venue, data.symbol, metrics, max_pending=cfg.feed.max_pending)
            first = await publisher.resume()
            port = serve_metrics(metrics.registry, cfg.feed.metrics_port)
            run.ready(f"subject={publisher.subject} first_seq={first} metrics_port={port}")
            published = await run_replay(data, publisher, speed=speed, loop=loop, limit=limit, stop=stop)
            return published
        finally:
            await client.close()

    with ServiceRun(name or f"feed-replay-{data.symbol}") as run:
        published = asyncio.run(_main())
    click.echo(f"published {published} book update(s) of {data.symbol} to md.{data.venue}.{data.symbol}")
