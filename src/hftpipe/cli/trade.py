"""``hftpipe trade --paper``: the paper trader (md.> and sig.> in; orders, fills, positions out)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable
from typing import Any

import click

from hftpipe.trading.policies import POLICY_NAMES

log = logging.getLogger(__name__)

TRADE_POLICIES = (*POLICY_NAMES, "rl")


def register(group: click.Group) -> None:
    group.add_command(trade)


def rl_policy_factory(cfg: Any, ref: str | None) -> tuple[Callable[[], Any], str]:
    """The learned policy's factory for the trader, and where it came from.

    ``ref``: a policy folder or ``models:/`` URI; None: the registered champion, else the newest version.
    The network is loaded once here; each symbol gets its own observation state.
    """
    from hftpipe.registry.rl import policy_folder, registered_policy_uri
    from hftpipe.rl.agent import load_policy
    from hftpipe.rl.live import LivePolicy

    uri = ref or registered_policy_uri(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_policy(policy_folder(uri, tmp))
    meta = loaded.meta
    if meta.get("with_probs"):
        log.warning("the rl policy reads classifier probabilities (trained with %s): run `hftpipe signals` with "
                    "that model, or it sees 1/3 each", meta.get("classifier"))

    def make() -> LivePolicy:
        return LivePolicy.from_loaded(loaded, uri)

    make()  # fail now on an incompatible policy, not at the first book
    return make, uri


@click.command()
@click.option("--paper", is_flag=True, help="Simulated fills against the live book (the only mode so far).")
@click.option("--policy", type=click.Choice(TRADE_POLICIES), help="Trading policy (default: paper.policy, else "
              "trading.policy); rl: the learned policy (`hftpipe rl train`).")
@click.option("--rl-policy", "rl_ref", metavar="DIR_OR_URI", help="For --policy rl: policy folder or models:/NAME@alias "
              "(default: paper.rl_policy, else the registered champion, else the newest registered version).")
@click.pass_obj
def trade(obj: Any, paper: bool, policy: str | None, rl_ref: str | None) -> None:
    """Trade signals from the bus under the risk engine; publish ord.*, fill.*, pos.*; stop with SIGTERM.

    Ready file: HFTPIPE_HOME/run/trader.ready. Kill switch: `hftpipe risk halt --reason TEXT`.
    """
    from hftpipe.errors import ConfigError

    if not paper:
        raise ConfigError("only paper trading exists: run `hftpipe trade --paper`")
    cfg = obj.config
    factory = None
    if (policy or cfg.paper.policy or cfg.trading.policy) == "rl":
        factory, uri = rl_policy_factory(cfg, rl_ref or cfg.paper.rl_policy)
        click.echo(f"rl policy: {uri}")
    elif rl_ref:
        raise ConfigError("--rl-policy needs --policy rl (or paper.policy=rl)")
    else:
        from hftpipe.trading.policies import make_policy

        # Refuse settings the policy cannot run with (e.g. a clock-time paper.horizon with no
        # trading.hold_events) before connecting to anything.
        make_policy(policy or cfg.paper.policy or cfg.trading.policy, cfg.trading, cfg.paper.horizon)
    from hftpipe.bus.lifecycle import ServiceRun
    from hftpipe.trading.paper import READY_NAME, run_paper

    with ServiceRun(READY_NAME) as run:
        asyncio.run(run_paper(cfg, policy=policy, on_ready=run.ready, policy_factory=factory))
