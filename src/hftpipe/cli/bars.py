"""Bar and trade-tick commands: ``hftpipe bars validate | ingest | features``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(bars)


def _load_options(func: Any) -> Any:
    """Options that say what a file does not (symbol, zones, stamp convention); defaults for shipped files."""
    options = [
        click.option("--symbol", help="Symbol (default: known for the shipped files)."),
        click.option("--tz", "source_tz", help="Time zone of the file's stamps, e.g. America/New_York or UTC."),
        click.option("--exchange-tz", help="Exchange time zone (default: known, else --tz)."),
        click.option("--stamp", type=click.Choice(["open", "end"]), help="The file stamps bars at their open or end."),
        click.option("--bar-size", help="Bar size, e.g. 1min or 1h (default: most common gap)."),
        click.option("--ambiguous", type=click.Choice(["infer", "earliest", "latest", "raise"]), default="infer",
                     show_default=True, help="Reading of fall-back local times that occur twice."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("symbol", "source_tz", "exchange_tz", "stamp", "bar_size", "ambiguous")
    return {k: kwargs.get(k) for k in keys if kwargs.get(k) is not None}


@click.group()
def bars() -> None:
    """Minute/hour OHLCV bars and trade ticks: validate, ingest, features."""


@bars.command()
@click.argument("path")
@click.option("--report-dir", type=click.Path(), help="Where the JSON and Markdown reports go.")
@_load_options
@click.pass_obj
def validate(obj: Any, path: str, report_dir: str | None, **kwargs: Any) -> None:
    """Validate a bar or trade file (or its canonical Parquet) with GE; exit 1 if any check fails."""
    from hftpipe.prepare import validate_market_path

    result = validate_market_path(path, obj.config.validate, **_options(kwargs))
    paths = result.write_reports(Path(report_dir) if report_dir else None)
    for line in result.summary_lines():
        click.echo(line)
    click.echo(f"report: {paths[0]}")
    raise SystemExit(0 if result.success else 1)


@bars.command()
@click.argument("path")
@click.option("-o", "--output", required=True, help="Canonical Parquet file to write.")
@click.option("--to-bars", help="For a trade file: write time bars of this size (e.g. 1min) instead of ticks.")
@_load_options
@click.pass_obj
def ingest(obj: Any, path: str, output: str, to_bars: str | None, **kwargs: Any) -> None:
    """Load a bar or trade file, validate it and write the canonical table (nothing written on failure)."""
    from hftpipe.data.bars import BarTable
    from hftpipe.prepare import ingest_market

    table = ingest_market(path, output, obj.config.validate, to_bars=to_bars, **_options(kwargs))
    m = table.meta
    what = f"{m.bar_size} bars" if isinstance(table, BarTable) else "trades"
    click.echo(f"ingested {m.rows} {what}: {m.symbol} {m.start} to {m.end} (UTC) -> {output}")


@bars.command()
@click.argument("path")
@click.option("-o", "--output", help="Write features, labels and split as Parquet here.")
@click.option("--horizons", default="1,5,15", show_default=True, help="Label horizons in bars.")
@click.option("--alpha", type=float, help="Stationary band on the log return (default: balanced on train).")
@click.option("--group", type=click.Choice(["symbol", "day"]), default="symbol", show_default=True,
              help="Windows and labels restart per symbol, or per symbol and exchange day.")
@click.option("--to-bars", default="1min", show_default=True, help="For a trade file: bar size to aggregate to.")
@_load_options
@click.pass_obj
def features(obj: Any, path: str, output: str | None, horizons: str, alpha: float | None, group: str,
             to_bars: str, **kwargs: Any) -> None:
    """Bar features and labels at horizons in bars, with a time split; prints a summary."""
    from hftpipe.data.market import load_market
    from hftpipe.data.ticks import TickTable, ticks_to_bars
    from hftpipe.errors import ConfigError
    from hftpipe.features.bars import bar_feature_set, write_bar_feature_set
    from hftpipe.features.splits import SPLIT_NAMES

    try:
        steps = tuple(int(h) for h in horizons.split(",") if h.strip())
    except ValueError as exc:
        raise ConfigError(f"--horizons must be comma-separated whole numbers of bars; got {horizons!r}") from exc
    if not steps or min(steps) < 1:
        raise ConfigError(f"--horizons must be positive whole numbers of bars; got {horizons!r}")
    table = load_market(path, **_options(kwargs))
    if isinstance(table, TickTable):
        table = ticks_to_bars(table, to_bars)
    frame, alphas = bar_feature_set(table, horizons=steps, alpha=alpha, group=group)
    split = frame["split"].to_numpy()
    click.echo(f"{len(frame)} {table.meta.bar_size} bars of {table.meta.symbol}: "
               + ", ".join(f"{name} {int((split == code).sum())}" for code, name in enumerate(SPLIT_NAMES))
               + f", purged or warm-up {int((split < 0).sum())}")
    for h in steps:
        labels = frame[f"label_k{h}"]
        defined = labels[(labels >= 0) & (frame["split"] >= 0)]
        shares = (defined.value_counts(normalize=True).reindex([0, 1, 2], fill_value=0.0) * 100).round(1)
        click.echo(f"h={h} bars: alpha={alphas[h]:.3g}; down/stationary/up % = "
                   f"{shares[0]}/{shares[1]}/{shares[2]}")
    if output:
        click.echo(f"wrote {write_bar_feature_set(frame, alphas, table, output)}")
