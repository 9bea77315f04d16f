"""The ``hftpipe`` command line: each command is one call into a core function.

Commands live in sibling modules (``data``, ``train``, ``evaluate``, ``registry``, ``serve``, ``ui``, ``pipeline``);
each module exposes ``register(group)``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from hftpipe.config import Config, load_config
from hftpipe.errors import HftpipeError

COMMAND_MODULES = ("data", "train", "evaluate", "registry", "serve", "ui", "pipeline", "run", "bars",
                   "backtest", "risk", "audit", "bus", "feed", "signals", "lake", "monitor", "trade", "rl")


class Context:
    """What every command gets: the resolved config."""

    def __init__(self, params: str, overrides: tuple[str, ...]) -> None:
        self.params = params
        self.overrides = overrides
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.params, list(self.overrides))
        return self._config


class FriendlyGroup(click.Group):
    """Turns our own exceptions into one clear line and their exit status (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HftpipeError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=FriendlyGroup)
@click.option("--params", default="params.yaml", show_default=True, help="Config file (params.yaml).")
@click.option("-S", "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config value, e.g. -S train.model=deeplob (repeatable).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.option("--log-json", is_flag=True, help="Log JSON lines with ECS field names (or HFTPIPE_LOG_FORMAT=json).")
@click.pass_context
def main(ctx: click.Context, params: str, overrides: tuple[str, ...], verbose: int, log_json: bool = False) -> None:
    """hftpipe: limit-order-book data to a served, honestly evaluated trading signal."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    from hftpipe.monitoring.logs import use_json_logs, wants_json

    if wants_json(log_json):
        use_json_logs(level, ctx.invoked_subcommand and f"hftpipe-{ctx.invoked_subcommand}")
    ctx.obj = Context(params, overrides)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"hftpipe.cli.{name}")
        except ModuleNotFoundError as exc:
            # Only a missing command module is skipped; a broken import inside one is a real error.
            if exc.name != f"hftpipe.cli.{name}":
                raise
            continue
        module.register(main)


_register_all()
