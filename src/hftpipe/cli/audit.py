"""``hftpipe audit verify | export``: check the hash chain, export records for compliance."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(audit_group)


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail (audit.url in params.yaml, HFTPIPE_AUDIT_URL, or HFTPIPE_HOME/audit.db)."""


def _trail(obj: Any) -> Any:
    from hftpipe.audit import open_trail

    return open_trail(obj.config.audit.url)


@audit_group.command()
@click.pass_obj
def verify(obj: Any) -> None:
    """Walk the hash chain; exit 1 naming the first edited, deleted or reordered record."""
    from hftpipe.audit import AuditTampered

    with _trail(obj) as trail:
        result = trail.verify()
    if not result.ok:
        raise AuditTampered(result.message())
    click.echo(result.message())


@audit_group.command()
@click.option("--since", help="ISO date or time (UTC unless it says otherwise), inclusive.")
@click.option("--until", help="ISO date or time, exclusive.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="json", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of standard output.")
@click.pass_obj
def export(obj: Any, since: str | None, until: str | None, fmt: str, output: str | None) -> None:
    """Export records with since <= time < until as CSV or JSON."""
    from hftpipe.audit.trail import normalise_time

    lo = normalise_time(since) if since else None
    hi = normalise_time(until) if until else None
    with _trail(obj) as trail:
        text = trail.export(lo, hi, fmt)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
