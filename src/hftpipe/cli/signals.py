"""``hftpipe signals``: the streaming signal service."""

from __future__ import annotations

import asyncio

import click


def register(group: click.Group) -> None:
    group.add_command(signals)


@click.command()
@click.option("--model", "model_uri", help="Model URI or bundle folder (default: signals.model_uri, else "
              "serve.model_uri).")
@click.option("--replica", type=int, default=0, show_default=True,
              help="Which of signals.replicas processes this is (symbols are partitioned by crc32).")
@click.pass_obj
def signals(obj, model_uri: str | None, replica: int) -> None:
    """Consume md.> (durable JetStream consumer), publish model signals to sig.<symbol>; stop with SIGTERM."""
    from hftpipe.bus.lifecycle import ServiceRun
    from hftpipe.streaming.service import run_signals

    name = "signals" if obj.config.signals.replicas == 1 else f"signals-{replica}"
    with ServiceRun(name) as run:
        asyncio.run(run_signals(obj.config, model_uri=model_uri, replica=replica, on_ready=run.ready))
