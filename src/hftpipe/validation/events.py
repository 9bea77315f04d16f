"""Validate canonical event tables: the ``messages`` and ``book`` suites, plus the file's structure.

Frames in, results out: loading files is ``hftpipe.prepare``'s job (it calls ``validate_table``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hftpipe.config import ValidateConfig
from hftpipe.data.lobster import HALT_TYPE
from hftpipe.data.schema import EVENT_COLUMNS, EventTable, book_columns
from hftpipe.validation.result import STRUCTURE_SUITE, Failure, ValidationResult
from hftpipe.validation.runner import validate_frame
from hftpipe.validation.suites import Templates

log = logging.getLogger(__name__)

EVENT_SUITES = ("messages", "book")
ORDER_EVENT_TYPES = (1, 2, 3, 4, 5)  # submit, cancel (partial), delete, visible execution, hidden execution


def event_parameters(table: EventTable) -> dict[str, object]:
    """GE suite parameters for one event table (session, allowed event types, expected columns)."""
    meta = table.meta
    types = list(ORDER_EVENT_TYPES)
    # Halt rows are only legitimate when the loader kept them (halts="keep"); it records every halt in meta.
    if meta.halts:
        types.append(HALT_TYPE)
    columns = list(EVENT_COLUMNS) + book_columns(meta.levels)
    return {
        "rows": int(meta.rows),
        "session_start": float(meta.session_start),
        "session_end": float(meta.session_end),
        "event_types": types,
        "columns": columns,
        "column_count": len(columns),
    }


def validate_table(table: EventTable, cfg: ValidateConfig, source: str | None = None) -> ValidationResult:
    """Validate a canonical event table against ``messages.json`` and ``book.json``.

    Args:
        table: the loaded events and their metadata (levels and session bounds come from it).
        cfg: the ``validate`` section (suites folder, sample rows).
        source: label for reports (default: the table's source path).
    """
    meta = table.meta
    return validate_frame(
        table.frame,
        list(EVENT_SUITES),
        parameters=event_parameters(table),
        templates=Templates(levels=int(meta.levels)),
        suites_dir=cfg.suites_dir,
        sample_rows=cfg.sample_rows,
        source=source or meta.source,
        subject="events",
        meta={"symbol": meta.symbol, "date": meta.date, "levels": meta.levels, "rows": meta.rows,
              "session_start": meta.session_start, "session_end": meta.session_end,
              "halts": len(meta.halts), "source_sha256": meta.source_sha256},
    )


def structure_failure(path: str | Path, exc: Exception, seconds: float,
                      subject: str = "events") -> ValidationResult:
    """A file the loader cannot turn into a table: one failed structural check, not an exception."""
    if subject == "features":
        expectation = "expect_readable_feature_set"
        description = "features.parquet and features_meta.json written by one `hftpipe features` run"
    else:
        expectation = "expect_readable_lobster_file"
        description = ("a message/orderbook pair with 6 message columns, 4 book columns per level, "
                       "equal row counts and numbers only")
    failure = Failure(suite=STRUCTURE_SUITE, expectation=expectation, columns=(), description=description,
                      detail=str(exc))
    return ValidationResult(source=str(path), subject=subject, checks=1, failures=[failure], seconds=seconds)
