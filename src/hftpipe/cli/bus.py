"""Broker commands: ``hftpipe bus up | down | status | tail``."""

from __future__ import annotations

import asyncio
import os

import click


def register(group: click.Group) -> None:
    group.add_command(bus)


@click.group()
def bus() -> None:
    """The local NATS JetStream broker (127.0.0.1, store under HFTPIPE_HOME)."""


@bus.command()
@click.option("--foreground", is_flag=True, help="Run nats-server in this process (for supervisors).")
@click.pass_obj
def up(obj, foreground: bool) -> None:
    """Start nats-server with JetStream and create the streams; returns once it accepts connections."""
    from hftpipe.bus.connection import connect, ensure_streams
    from hftpipe.bus.server import server_command, start_server

    cfg = obj.config.bus
    if foreground:
        cmd = server_command(cfg)
        os.execv(cmd[0], cmd)
    status = start_server(cfg)

    async def _streams() -> list[str]:
        client = await connect(cfg, "hftpipe-bus-up")
        try:
            return await ensure_streams(client.js, cfg)
        finally:
            await client.close()

    created = asyncio.run(_streams())
    click.echo(f"nats-server running: {status.url} pid {status.pid} store {status.store_dir}"
               + (f" (created streams {', '.join(created)})" if created else ""))


@bus.command()
@click.pass_obj
def down(obj) -> None:
    """Stop the nats-server started by `hftpipe bus up`."""
    from hftpipe.bus.server import stop_server

    click.echo("nats-server stopped" if stop_server(obj.config.bus) else "nats-server was not running")


@bus.command()
@click.pass_obj
def status(obj) -> None:
    """Say whether the broker runs, and what each stream holds; exit 1 when it is down."""
    from hftpipe.bus.connection import STREAMS, connect
    from hftpipe.bus.server import server_status

    cfg = obj.config.bus
    st = server_status(cfg)
    if not st.running:
        click.echo(f"nats-server not running at {st.url} (start it with `hftpipe bus up`)")
        raise SystemExit(1)
    click.echo(f"nats-server running: {st.url} pid {st.pid} store {st.store_dir}")

    async def _streams() -> list[str]:
        client = await connect(cfg, "hftpipe-bus-status")
        lines = []
        try:
            for name in STREAMS:
                try:
                    info = await client.js.stream_info(name)
                    lines.append(f"  stream {name}: {info.state.messages} message(s), {info.state.bytes} bytes, "
                                 f"{info.state.consumer_count} consumer(s)")
                except Exception as exc:  # noqa: BLE001 - a missing stream is reported, not fatal
                    lines.append(f"  stream {name}: {type(exc).__name__}")
        finally:
            await client.close()
        return lines

    for line in asyncio.run(_streams()):
        click.echo(line)


@bus.command()
@click.argument("subject")
@click.option("--count", type=int, help="Stop after this many messages.")
@click.option("--timeout", "timeout_s", type=float, help="Stop after this many seconds without a message.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--history", is_flag=True, help="Start with what the stream holds for SUBJECT.")
@click.pass_obj
def tail(obj, subject: str, count: int | None, timeout_s: float | None, as_json: bool, history: bool) -> None:
    """Print messages on SUBJECT (wildcards allowed: sig.>, md.*.GOOG)."""
    from hftpipe.bus.tail import tail as run_tail

    asyncio.run(run_tail(obj.config.bus, subject, count, timeout_s, as_json, history,
                         lambda line: click.echo(line)))
