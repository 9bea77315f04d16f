"""Data commands: ingest, validate, features."""

from __future__ import annotations

from pathlib import Path

import click


def register(group: click.Group) -> None:
    group.add_command(ingest)
    group.add_command(validate)
    group.add_command(features)


@click.command()
@click.argument("sources", nargs=-1)
@click.option("-o", "--output", help="Canonical Parquet path (default: data.output); one source only.")
@click.option("--workers", type=int, default=None, help="Several sources: local Dask workers (default lake.workers).")
@click.option("--scheduler", default=None, help="Several sources: a running Dask scheduler's address.")
@click.option("--keep-going", is_flag=True, default=None, help="Several sources: exit 0 past failed files.")
@click.pass_obj
def ingest(obj, sources: tuple[str, ...], output: str | None, workers: int | None, scheduler: str | None,
           keep_going: bool | None) -> None:
    """Load, validate and write one file (LOBSTER zip or CSV pair, Bitstamp L3 capture) as the canonical
    event table; several files, a glob or a folder of them go into the partitioned dataset
    (``hftpipe lake ingest``: one partition per file, unchanged files skipped)."""
    from hftpipe.prepare import ingest as run_ingest

    cfg = obj.config
    if len(sources) > 1 or any(ch in "".join(sources) for ch in "*?["):
        from hftpipe.cli.lake import _finish, _settings
        from hftpipe.errors import ConfigError
        from hftpipe.lake import ingest_dataset

        if output:
            raise ConfigError("-o/--output names one table; several sources go to the dataset (lake.root)")
        s = _settings(obj, None, workers, scheduler, keep_going)
        report = ingest_dataset(list(sources), s["root"], validate_cfg=cfg.validate, data_cfg=cfg.data,
                                workers=s["workers"], scheduler=s["scheduler"], memory_limit=s["memory_limit"],
                                keep_going=True)
        _finish(report, s["keep_going"])
        return
    source = sources[0] if sources else None
    table = run_ingest(cfg.data, source=source, output=output, validate_cfg=cfg.validate)
    click.echo(f"ingested {table.meta.rows} events: {table.meta.symbol} {table.meta.date} "
               f"{table.meta.levels} level(s) -> {output or cfg.data.output}")
    if table.meta.source_report:  # L3 captures: what the book builder ignored and repaired
        click.echo("loader report: " + ", ".join(f"{k}={v}" for k, v in table.meta.source_report.items()))


@click.command()
@click.argument("path", required=False)
@click.option("--report-dir", type=click.Path(), help="Where the JSON and Markdown reports go.")
@click.pass_obj
def validate(obj, path: str | None, report_dir: str | None) -> None:
    """Validate a LOBSTER zip, CSV pair, canonical Parquet or feature-set folder; exit 1 if any check fails."""
    from hftpipe.config import single_source
    from hftpipe.prepare import validate_path

    cfg = obj.config
    result = validate_path(path or single_source(cfg.data, "hftpipe validate"), cfg.validate, data_cfg=cfg.data)
    paths = result.write_reports(Path(report_dir) if report_dir else None)
    for line in result.summary_lines():
        click.echo(line)
    click.echo(f"report: {paths[0]}")
    raise SystemExit(0 if result.success else 1)


@click.command()
@click.argument("events", required=False)
@click.option("-o", "--output", help="Output folder (default: features.output).")
@click.pass_obj
def features(obj, events: str | None, output: str | None) -> None:
    """Compute features, labels and time splits from a canonical event table."""
    from hftpipe.prepare import build_feature_set

    cfg = obj.config
    result = build_feature_set(cfg.features, events or cfg.data.output, output or cfg.features.output, cfg.validate)
    click.echo(result.summary())
