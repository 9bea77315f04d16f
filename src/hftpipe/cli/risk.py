"""``hftpipe risk halt | reduce | resume | status``: the kill switch over the persisted trading state.

Each change writes the state store (risk.state_db, default HFTPIPE_HOME/risk.db) and one audit record;
the paper trader reads the store before each order.
"""

from __future__ import annotations

import json
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(risk_group)


@click.group("risk")
def risk_group() -> None:
    """Trading state: HALTED (kill switch), REDUCING (only position-reducing orders), ACTIVE."""


def _store(obj: Any) -> Any:
    from hftpipe.trading.state_store import RiskStateStore

    return RiskStateStore(obj.config.risk.state_db)


def _change(obj: Any, state_name: str, reason: str, actor: str | None) -> None:
    from hftpipe.audit.trail import default_actor
    from hftpipe.trading.risk import RiskState

    store = _store(obj)
    try:
        before = store.current()
        new = store.change(RiskState(state_name), reason, actor or default_actor(), obj.config.audit.url)
    finally:
        store.close()
    click.echo(f"trading {before.state.value} -> {new.state.value} (by {new.actor}: {new.reason}); "
               f"audit record written")


_reason = click.option("--reason", required=True, help="Why (kept in the audit trail).")
_actor = click.option("--actor", help="Who (default: HFTPIPE_ACTOR or the OS user).")


@risk_group.command()
@_reason
@_actor
@click.pass_obj
def halt(obj: Any, reason: str, actor: str | None) -> None:
    """Kill switch: no orders from the next event on; resting orders are cancelled."""
    _change(obj, "HALTED", reason, actor)


@risk_group.command()
@_reason
@_actor
@click.pass_obj
def reduce(obj: Any, reason: str, actor: str | None) -> None:
    """Only orders that reduce the position."""
    _change(obj, "REDUCING", reason, actor)


@risk_group.command()
@_reason
@_actor
@click.pass_obj
def resume(obj: Any, reason: str, actor: str | None) -> None:
    """Back to ACTIVE."""
    _change(obj, "ACTIVE", reason, actor)


@risk_group.command()
@click.option("--json", "as_json", is_flag=True, help="Print the state as JSON.")
@click.pass_obj
def status(obj: Any, as_json: bool) -> None:
    """The current trading state, who set it and why."""
    store = _store(obj)
    try:
        cur = store.current()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(cur.to_dict()))
    else:
        since = f" since {cur.time}" if cur.time else ""
        click.echo(f"trading {cur.state.value}{since} (by {cur.actor}: {cur.reason}; change #{cur.version})")


@risk_group.command("limits")
@click.option("--symbol", help="Symbol of the override (default: every symbol without its own).")
@click.option("--set", "assignments", multiple=True, metavar="NAME=VALUE",
              help="Override a limit (repeatable), e.g. --set max_position=200; inf switches it off.")
@_actor
@click.option("--reason", help="Why (required with --set; kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print the effective limits as JSON.")
@click.pass_obj
def limits(obj: Any, symbol: str | None, assignments: tuple[str, ...], actor: str | None, reason: str | None,
           as_json: bool) -> None:
    """Show the effective risk limits (params.yaml plus run-time overrides), or change one with --set."""
    import dataclasses

    from hftpipe.audit.trail import default_actor
    from hftpipe.trading.limit_store import LimitStore
    from hftpipe.trading.risk import limits_from_config
    from hftpipe.trading.state_store import RiskStateError

    base = limits_from_config(obj.config.risk)
    store = LimitStore(obj.config.risk.state_db)
    try:
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep:
                raise RiskStateError(f"--set {item!r} must look like NAME=VALUE, e.g. max_position=200")
            change = store.set(symbol, name.strip(), value.strip(), reason or "", actor or default_actor(), base,
                               obj.config.audit.url)
            click.echo(f"{change['limit']} for {change['symbol']}: {change['previous']} -> {change['value']}; "
                       "audit record written")
        default, per_symbol = store.engine_limits(base)
    finally:
        store.close()
    table = {"*": dataclasses.asdict(default), **{s: dataclasses.asdict(v) for s, v in sorted(per_symbol.items())}}
    if as_json:
        click.echo(json.dumps({s: {k: ("inf" if v == float("inf") else v) for k, v in lim.items()}
                               for s, lim in table.items()}))
    elif not assignments:
        for sym, lim in table.items():
            click.echo(f"{'default' if sym == '*' else sym}: " + ", ".join(f"{k}={v:g}" for k, v in lim.items()))
