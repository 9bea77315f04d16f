"""Load, validate, write: the orchestration of the data steps (validate, ingest, features).

The layers below stay one-way: ``data/`` loads files into frames, ``validation/`` checks frames
(frames in, results out) and ``features/`` computes feature frames; none of them imports another's
orchestration. This module sits above all three, and everything that runs a data step calls it: the
pipeline's steps, the CLI commands (so the DVC stages), and ``evaluation`` when it scores a model
on another day's raw file. It lives outside ``pipeline/`` because ``pipeline/`` imports
``evaluation/``, which needs these functions too.

A source that passed validation with the same settings is not validated again: a successful check
leaves a stamp named by the source's SHA-256 and a fingerprint of the settings and suites, so the
pipeline's ``validate`` step followed by ``ingest`` pays for Great Expectations once.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import importlib.metadata
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from hftpipe import paths
from hftpipe.config import DataConfig, FeaturesConfig, ValidateConfig, single_source
from hftpipe.data import EventTable, discover, load_lobster, read_events, write_events
from hftpipe.data.bars import BarTable, write_bars
from hftpipe.data.market import is_tick_file, load_market
from hftpipe.data.ticks import TickTable, ticks_to_bars, write_ticks
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features import FeatureSet, build_features, load_feature_set
from hftpipe.validation import ValidationResult, validate_features_frame, validate_table
from hftpipe.validation.bars import validate_bars, validate_ticks
from hftpipe.validation.events import structure_failure
from hftpipe.validation.result import STRUCTURE_SUITE, Failure
from hftpipe.validation.suites import suites_dir

log = logging.getLogger(__name__)

STAMP_DIR = "validated"  # under HFTPIPE_HOME


def load_source(path: str | Path, data_cfg: DataConfig, session: tuple[float, float],
                require_symbol: bool = True) -> EventTable:
    """Load any market-data file the pipeline accepts into the canonical event table (the loader dispatch).

    Args:
        path: a canonical Parquet table, or a LOBSTER zip, CSV pair or folder.
        data_cfg: the ``data`` section (symbol/date/levels overrides, halt policy).
        session: session bounds used when the file name does not say them.
        require_symbol: False when the symbol only labels a report (falls back to the file name).

    Raises:
        DataFormatError: the file is not a readable event file.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return read_events(path)
    if _is_bitstamp_capture(path):
        return load_bitstamp(path, levels=data_cfg.levels, symbol=data_cfg.symbol, date=data_cfg.date)
    symbol = data_cfg.symbol
    if not require_symbol:
        symbol = symbol or discover(path).symbol or path.stem
    return load_lobster(path, symbol=symbol, date=data_cfg.date, levels=data_cfg.levels,
                        halts=data_cfg.halts, session=session)


def _is_bitstamp_capture(path: Path) -> bool:
    from hftpipe.data.bitstamp import is_bitstamp_capture  # imported on use: the builder loads numba

    return is_bitstamp_capture(path)


def load_bitstamp(path: Path, **options: object) -> EventTable:
    from hftpipe.data.bitstamp import load_bitstamp as _load

    return _load(path, **options)


_GLOB_CHARS = "*?["


def resolve_sources(data_cfg: DataConfig, sources: str | Sequence[str] | None = None) -> list[str]:
    """The files a pipeline run reads: ``sources`` (default ``data.source``) with globs expanded, in order.

    A string without glob characters is one source, passed on unchanged (what a single source always was);
    a glob expands to the files it matches, sorted. Several files must have one book depth (the LOBSTER
    file names say it) unless ``data.levels`` sets one for all.

    Raises:
        ConfigError: a glob matches nothing, a file is listed twice, the files have different depths, or
            ``data.symbol`` / ``data.date`` (which name one file) are set with several files.
    """
    raw = data_cfg.source if sources is None else sources
    entries = [raw] if isinstance(raw, (str, Path)) else list(raw)
    if not entries:
        raise ConfigError("data.source is an empty list; name at least one file")
    out: list[str] = []
    for entry in map(str, entries):
        if not any(ch in entry for ch in _GLOB_CHARS):
            out.append(entry)
            continue
        matched = sorted(glob.glob(entry, recursive=True))
        if not matched:
            raise ConfigError(f"data.source: {entry!r} matches no file; check the pattern (relative to {Path.cwd()})")
        out.extend(matched)
    resolved = [str(Path(p).resolve()) for p in out]
    repeated = sorted({p for p in out if resolved.count(str(Path(p).resolve())) > 1})
    if repeated:
        raise ConfigError(f"data.source lists {repeated[0]} more than once; name each file once")
    if len(out) > 1:
        if data_cfg.symbol is not None or data_cfg.date is not None:
            raise ConfigError("data.symbol / data.date name one file but data.source lists several; leave them null "
                              "(each file's name says its symbol and date)")
        if data_cfg.levels is None:
            depths = {}
            for p in out:
                try:
                    depths[p] = discover(p).levels
                except DataFormatError:
                    continue  # not a LOBSTER name (a capture, a Parquet table): its depth shows at ingest
            if len({d for d in depths.values() if d is not None}) > 1:
                listed = ", ".join(f"{Path(p).name}: {d}" for p, d in depths.items())
                raise ConfigError(f"data.source mixes book depths ({listed}); pool files with one depth, or set "
                                  "data.levels to read every file at that depth")
    return out


def _fingerprint(cfg: ValidateConfig, data_cfg: DataConfig) -> str:
    """Everything a validation result depends on besides the file: settings and the suites' text."""
    digest = hashlib.sha256(json.dumps([dataclasses.asdict(cfg), data_cfg.levels, data_cfg.halts, data_cfg.date,
                                        importlib.metadata.version("great_expectations")],
                                       sort_keys=True, default=str).encode())
    for suite in sorted(suites_dir(cfg.suites_dir).glob("*.json")):
        digest.update(suite.name.encode() + suite.read_bytes())
    return digest.hexdigest()[:16]


def _stamp(source_sha256: str, cfg: ValidateConfig, data_cfg: DataConfig) -> Path:
    return paths.sub(STAMP_DIR) / f"{source_sha256}-{_fingerprint(cfg, data_cfg)}.json"


def _source_sha256(path: Path) -> str | None:
    """SHA-256 of a raw LOBSTER source (None for anything the stamp does not cover)."""
    if path.suffix.lower() == ".parquet" or (path.is_dir() and (path / "features_meta.json").exists()):
        return None
    try:
        return discover(path).sha256()
    except DataFormatError:
        return None


def validate_path(path: str | Path, cfg: ValidateConfig, data_cfg: DataConfig | None = None) -> ValidationResult:
    """Validate a LOBSTER zip, CSV pair or folder, a canonical Parquet written by ``ingest``, or a
    feature-set folder (``features_meta.json`` inside) written by ``build_feature_set``.

    Structural problems the loader reports (wrong column count, truncated pair, unparseable numbers,
    missing partner file) come back as a failed check in the result rather than as an exception.
    """
    start = time.perf_counter()
    data_cfg = data_cfg or DataConfig()
    path = Path(path)
    if path.is_dir() and (path / "features_meta.json").exists():
        try:
            features = load_feature_set(path)
        except DataFormatError as exc:
            return structure_failure(path, exc, time.perf_counter() - start, subject="features")
        result = validate_features_frame(features.frame, features.meta, cfg, source=str(path))
    else:
        try:
            table = load_source(path, data_cfg, (cfg.session_start, cfg.session_end), require_symbol=False)
        except DataFormatError as exc:
            log.info("%s is not a readable event file: %s", path, exc)
            return structure_failure(path, exc, time.perf_counter() - start)
        result = validate_table(table, cfg, source=str(path))
        sha = _source_sha256(path)
        if result.success and sha:
            stamp = _stamp(sha, cfg, data_cfg)
            stamp.write_text(json.dumps({"source": str(path), "checks": result.checks + 1}))
    result.checks += 1  # the structural check passed
    result.seconds = time.perf_counter() - start
    return result


def ingest(cfg: DataConfig, source: str | Path | None = None, output: str | Path | None = None,
           validate_cfg: ValidateConfig | None = None) -> EventTable:
    """Load, validate and write the canonical table; on failed validation nothing is written.

    A source that ``validate_path`` already passed with the same settings is not validated again.

    Raises:
        DataFormatError: the file is not a readable event file.
        ValidationFailed: the data breaks an expectation (the report says which).
    """
    vcfg = validate_cfg or ValidateConfig()
    src = Path(source or single_source(cfg, "ingest"))
    table = load_source(src, cfg, (vcfg.session_start, vcfg.session_end))
    # Only a raw source has a stamp: a Parquet table may have been written by anything, so it is checked.
    raw = src.suffix.lower() != ".parquet" and table.meta.source_sha256
    stamp = _stamp(table.meta.source_sha256, vcfg, cfg) if raw else None
    if stamp is not None and stamp.exists():
        log.info("%s already passed validation with these settings; not validating it again", src)
    else:
        result = validate_table(table, vcfg)
        if not result.success:
            json_report, _ = result.write_reports()  # the user needs the details; the data is not written
            log.error("validation failed; report %s", json_report)
        result.raise_if_failed()
    out = Path(output or cfg.output)
    write_events(table, out)
    log.info("wrote %d events of %s %s (%d levels) to %s", table.meta.rows, table.meta.symbol,
             table.meta.date, table.meta.levels, out)
    return table


def build_feature_set(cfg: FeaturesConfig, events_path: str | Path, output_dir: str | Path,
                      validate_cfg: ValidateConfig | None = None) -> FeatureSet:
    """Build features (``features.build_features``) and refuse to write a set that fails the features suite.

    Args:
        validate_cfg: the ``validate`` section (suites folder, sample rows); default: defaults.

    Raises:
        DataFormatError / ConfigError: see ``build_features``.
        ValidationFailed: the features frame breaks the features expectation suite (nothing written).
    """
    vcfg = validate_cfg or ValidateConfig()

    def check(frame: pd.DataFrame, meta: dict) -> None:
        validate_features_frame(frame, meta, vcfg).raise_if_failed()

    return build_features(cfg, events_path, output_dir, check=check)


# Bars and trade ticks (hftpipe.data.bars / ticks): the same load, validate, write steps.

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


def ingest_market(path: str | Path, output: str | Path, validate_cfg: Any = None,
                  to_bars: str | None = None, **options: Any) -> BarTable | TickTable:
    """Load, validate (GE) and write the canonical table; on failed validation nothing is written.

    Args:
        to_bars: for a trade file, aggregate into time bars of this size ("1min") instead of ticks.
    Raises:
        DataFormatError: unreadable file or a structural problem (named row).
        ValidationFailed: the table breaks an expectation of ``bars.json`` / ``ticks.json``.
    """
    table = load_market(path, **options)
    if isinstance(table, TickTable) and to_bars:
        validate_ticks(table, validate_cfg).raise_if_failed()
        table = ticks_to_bars(table, to_bars)
    result = validate_bars(table, validate_cfg) if isinstance(table, BarTable) else validate_ticks(table, validate_cfg)
    if not result.success:
        json_report, _ = result.write_reports()
        log.error("validation failed; report %s", json_report)
    result.raise_if_failed()
    out = write_bars(table, output) if isinstance(table, BarTable) else write_ticks(table, output)
    log.info("wrote %d rows of %s to %s", table.meta.rows, table.meta.symbol, out)
    return table
