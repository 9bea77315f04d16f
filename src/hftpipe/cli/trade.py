"""``hftpipe trade --paper``: the paper trader (md.> and sig.> in; orders, fills, positions out)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from hftpipe.trading.policies import POLICY_NAMES


def register(group: click.Group) -> None:
    group.add_command(trade)


@click.command()
@click.option("--paper", is_flag=True, help="Simulated fills against the live book (the only mode so far).")
@click.option("--policy", type=click.Choice(POLICY_NAMES), help="Trading policy (default: paper.policy, else "
              "trading.policy).")
@click.pass_obj
def trade(obj: Any, paper: bool, policy: str | None) -> None:
    """Trade signals from the bus under the risk engine; publish ord.*, fill.*, pos.*; stop with SIGTERM.

    Ready file: HFTPIPE_HOME/run/trader.ready. Kill switch: `hftpipe risk halt --reason TEXT`.
    """
    from hftpipe.errors import ConfigError

    if not paper:
        raise ConfigError("only paper trading exists: run `hftpipe trade --paper`")
    from hftpipe.bus.lifecycle import ServiceRun
    from hftpipe.trading.paper import READY_NAME, run_paper

    with ServiceRun(READY_NAME) as run:
        asyncio.run(run_paper(obj.config, policy=policy, on_ready=run.ready))
