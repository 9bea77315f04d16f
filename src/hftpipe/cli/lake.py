"""Partitioned dataset commands: ``hftpipe lake ingest | validate | features | ls``."""

from __future__ import annotations

from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(lake)


def _run_options(func: Any) -> Any:
    """Where the dataset is and how its partitions run (defaults from the ``lake`` section)."""
    options = [
        click.option("--root", type=click.Path(file_okay=False), help="Dataset folder (default: lake.root or "
                     "HFTPIPE_HOME/lake)."),
        click.option("--workers", type=click.IntRange(min=0), help="Local Dask worker processes (default: one "
                     "per core; 0: in this process)."),
        click.option("--scheduler", metavar="ADDRESS", help="Use a running Dask scheduler, e.g. tcp://host:8786."),
        click.option("--keep-going/--no-keep-going", default=None,
                     help="Exit 0 even when some partitions failed (they are still listed)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(obj: Any, root: str | None, workers: int | None, scheduler: str | None,
              keep_going: bool | None) -> dict[str, Any]:
    from hftpipe.errors import ConfigError

    cfg = obj.config.lake
    if workers is not None and scheduler:
        raise ConfigError("pass --workers or --scheduler, not both")
    return {
        "root": root or cfg.root,
        "workers": workers if workers is not None or scheduler else cfg.workers,
        "scheduler": scheduler or (None if workers is not None else cfg.scheduler),
        "memory_limit": cfg.memory_limit,
        "keep_going": cfg.keep_going if keep_going is None else keep_going,
    }


def _finish(report: Any, keep_going: bool) -> None:
    for line in report.summary_lines():
        click.echo(line)
    if report.failed and not keep_going:
        raise SystemExit(1)


@click.group()
def lake() -> None:
    """The partitioned dataset (source=/symbol=/date=): ingest, validate, features, ls."""


@lake.command()
@click.argument("paths", nargs=-1, required=True)
@_run_options
@click.pass_obj
def ingest(obj: Any, paths: tuple[str, ...], **kwargs: Any) -> None:
    """Ingest files, folders or globs, one partition per file; unchanged files are skipped (sha256)."""
    from hftpipe.lake import ingest_dataset

    s = _settings(obj, **kwargs)
    report = ingest_dataset(list(paths), s["root"], validate_cfg=obj.config.validate, data_cfg=obj.config.data,
                            workers=s["workers"], scheduler=s["scheduler"], memory_limit=s["memory_limit"],
                            keep_going=True)
    _finish(report, s["keep_going"])


@lake.command()
@_run_options
@click.pass_obj
def validate(obj: Any, **kwargs: Any) -> None:
    """Re-validate every partition with its Great Expectations suite; results go into the manifest."""
    from hftpipe.lake import validate_dataset

    s = _settings(obj, **kwargs)
    report = validate_dataset(s["root"], validate_cfg=obj.config.validate, workers=s["workers"],
                              scheduler=s["scheduler"], memory_limit=s["memory_limit"], keep_going=True)
    _finish(report, s["keep_going"])


@lake.command()
@click.option("--force", is_flag=True, help="Rebuild partitions whose features are up to date too.")
@_run_options
@click.pass_obj
def features(obj: Any, force: bool, **kwargs: Any) -> None:
    """Features, labels and splits per partition (no window crosses a symbol-day), in parallel."""
    from hftpipe.lake import features_dataset

    s = _settings(obj, **kwargs)
    cfg = obj.config
    report = features_dataset(s["root"], cfg.features, workers=s["workers"], scheduler=s["scheduler"],
                              memory_limit=s["memory_limit"], keep_going=True, split=cfg.lake.split,
                              tick_bars=cfg.lake.tick_bars, force=force)
    _finish(report, s["keep_going"])


@lake.command("ls")
@click.option("--root", type=click.Path(file_okay=False), help="Dataset folder.")
@click.pass_obj
def ls(obj: Any, root: str | None) -> None:
    """The manifest as a table: one row per partition."""
    from hftpipe.lake import manifest_table, read_manifest
    from hftpipe.lake.dataset import resolve_root

    path = resolve_root(root or obj.config.lake.root)
    table = manifest_table(path)
    if table.empty:
        click.echo(f"no partitions in {path}; run `hftpipe lake ingest PATHS...`")
    else:
        click.echo(table.to_string(index=False))
    for source, failure in sorted(read_manifest(path)["failures"].items()):
        click.echo(f"last ingest FAILED {source}: {failure['reason']}")
