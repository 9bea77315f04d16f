"""Validate canonical bar and tick tables with Great Expectations (``bars.json``, ``ticks.json``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hftpipe.config import ValidateConfig
from hftpipe.data.bars import BAR_COLUMNS, BarTable
from hftpipe.data.market import is_tick_file, load_market
from hftpipe.data.ticks import TICK_COLUMNS, TickTable
from hftpipe.errors import DataFormatError
from hftpipe.validation.result import STRUCTURE_SUITE, Failure, ValidationResult
from hftpipe.validation.runner import validate_frame

BAR_SUITE = "bars"
TICK_SUITE = "ticks"


def _meta(meta: Any) -> dict[str, Any]:
    keys = ("symbol", "venue", "rows", "start", "end", "bar_size", "source_tz", "exchange_tz",
            "source_stamp", "source_format", "source_sha256")
    return {k: getattr(meta, k) for k in keys if hasattr(meta, k)}


def validate_bars(table: BarTable, cfg: ValidateConfig | None = None,
                  source: str | None = None) -> ValidationResult:
    """Validate a canonical bar table against ``bars.json``; returns the runner's :class:`ValidationResult`."""
    cfg = cfg or ValidateConfig()
    return validate_frame(
        table.frame,
        BAR_SUITE,
        parameters={"rows": int(table.meta.rows), "columns": list(BAR_COLUMNS), "symbols": [table.meta.symbol]},
        suites_dir=cfg.suites_dir,
        sample_rows=cfg.sample_rows,
        source=source or table.meta.source,
        subject="bars",
        meta=_meta(table.meta),
    )


def validate_ticks(table: TickTable, cfg: ValidateConfig | None = None,
                   source: str | None = None) -> ValidationResult:
    """Validate a canonical tick table against ``ticks.json``."""
    cfg = cfg or ValidateConfig()
    return validate_frame(
        table.frame,
        TICK_SUITE,
        parameters={"rows": int(table.meta.rows), "columns": list(TICK_COLUMNS), "symbols": [table.meta.symbol],
                    "sides": ["ask", "bid", "buy", "sell"]},
        suites_dir=cfg.suites_dir,
        sample_rows=cfg.sample_rows,
        source=source or table.meta.source,
        subject="ticks",
        meta=_meta(table.meta),
    )


def validate_market_path(path: str | Path, cfg: ValidateConfig | None = None,
                         **load_kwargs: Any) -> ValidationResult:
    """Load a bar or tick file without the loader's own checks and validate it with GE.

    A file the loader cannot read at all (missing columns, unreadable times, a nonexistent local
    time) is one failed structural check, not an exception, so a report is always written.
    """
    start = time.perf_counter()
    ticks = is_tick_file(path)
    subject = "ticks" if ticks else "bars"
    try:
        table = load_market(path, check=False, **load_kwargs)
        if isinstance(table, TickTable):
            return validate_ticks(table, cfg, source=str(path))
        return validate_bars(table, cfg, source=str(path))
    except DataFormatError as exc:
        failure = Failure(suite=STRUCTURE_SUITE, expectation=f"expect_readable_{subject}_file", columns=(),
                          description=f"a {subject} file in a format hftpipe reads, with readable times",
                          detail=str(exc))
        return ValidationResult(source=str(path), subject=subject, checks=1, failures=[failure],
                                seconds=time.perf_counter() - start)
