"""Validate canonical event tables: the ``messages`` and ``book`` suites, plus the file's structure."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hftpipe.config import DataConfig, ValidateConfig
from hftpipe.data.lobster import HALT_TYPE, discover, load_events, load_lobster
from hftpipe.data.schema import EVENT_COLUMNS, EventTable, book_columns, read_events
from hftpipe.errors import DataFormatError
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
              "halts": len(meta.halts), "source_sha256": meta.source_sha256,
              **({"source_report": meta.source_report} if meta.source_report else {})},
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


def validate_path(path: str | Path, cfg: ValidateConfig,
                  data_cfg: DataConfig | None = None) -> ValidationResult:
    """Validate a LOBSTER zip, CSV pair or folder, a canonical Parquet written by ``write_events``, or a
    feature-set folder (``features_meta.json`` inside) written by ``build_features``.

    Structural problems the loader reports (wrong column count, truncated pair, unparseable numbers,
    missing partner file) come back as a failed check in the result rather than as an exception.

    Args:
        path: the file to check.
        cfg: the ``validate`` section.
        data_cfg: the ``data`` section (symbol/date/levels overrides and the halt policy); default: defaults.
    """
    start = time.perf_counter()
    data_cfg = data_cfg or DataConfig()
    path = Path(path)
    if path.is_dir() and (path / "features_meta.json").exists():
        return _validate_feature_set(path, cfg, start)
    try:
        if path.suffix.lower() == ".parquet":
            table = read_events(path)
        elif _is_bitstamp_capture(path):
            table = load_events(path, data_cfg)
        else:
            named = discover(path)
            # The symbol only labels the report here; an unnamed pair is still worth validating.
            symbol = data_cfg.symbol or named.symbol or path.stem
            table = load_lobster(path, symbol=symbol, date=data_cfg.date, levels=data_cfg.levels,
                                 halts=data_cfg.halts, session=(cfg.session_start, cfg.session_end))
    except DataFormatError as exc:
        log.info("%s is not a readable event file: %s", path, exc)
        return structure_failure(path, exc, time.perf_counter() - start)
    result = validate_table(table, cfg, source=str(path))
    result.checks += 1  # the structural check passed
    result.seconds = time.perf_counter() - start
    return result


def _is_bitstamp_capture(path: Path) -> bool:
    from hftpipe.data.bitstamp import is_bitstamp_capture  # imported on use: it loads numba

    return is_bitstamp_capture(path)


def _validate_feature_set(path: Path, cfg: ValidateConfig, start: float) -> ValidationResult:
    from hftpipe.features.build import load_feature_set
    from hftpipe.validation.features import validate_features_frame

    try:
        features = load_feature_set(path)
    except DataFormatError as exc:
        return structure_failure(path, exc, time.perf_counter() - start, subject="features")
    result = validate_features_frame(features.frame, features.meta, cfg, source=str(path))
    result.checks += 1
    result.seconds = time.perf_counter() - start
    return result
