"""Validate canonical bar and tick tables with Great Expectations (``bars.json``, ``ticks.json``)."""

from __future__ import annotations

from typing import Any

from hftpipe.config import ValidateConfig
from hftpipe.data.bars import BAR_COLUMNS, BarTable
from hftpipe.data.ticks import TICK_COLUMNS, TickTable
from hftpipe.validation.result import ValidationResult
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
