"""Run expectation suites with Great Expectations 1.x in an ephemeral context (no project, no cloud).

Speed: GE's pandas engine copies the whole batch for every row condition and every pair check with
``ignore_row_if``, and costs about 10 ms of Python per expectation whatever the data size. So plain
expectations run on a frame narrowed to the columns they read, and each template (``ask_price_{k}``
for k = 1..L) runs ONCE on the per-level slices stacked into one column: the cost grows with the data,
not with the level count. Sample rows are mapped back to the original row and level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hftpipe.validation.result import Failure, ValidationResult
from hftpipe.validation.suites import (
    PLACEHOLDER_TOKENS,
    SuiteEntry,
    Templates,
    expand_suite,
    fill,
    load_suite_json,
)

log = logging.getLogger(__name__)

_KIND_WORDS = {"level": "levels", "adjacent_level": "adjacent-level pairs", "horizon": "horizons",
               "feature": "features"}
_TAG = "hftpipe_position"  # meta key matching GE results back to the expectations we passed
_CONTEXT: Any = None
_BATCH_DEFINITION: Any = None


def _gx() -> Any:
    """Import Great Expectations on first use (about 3 s), with its INFO chatter silenced."""
    # GE logs hundreds of INFO lines on import and per expectation; our CLI logs at INFO.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    # This one sets its own level (INFO) at import; it announces a temporary docs folder per context.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


def _batch_definition() -> Any:
    """One ephemeral GE context and pandas batch definition, made on first use."""
    global _CONTEXT, _BATCH_DEFINITION
    if _BATCH_DEFINITION is None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        asset = context.data_sources.add_pandas("hftpipe").add_dataframe_asset("frame")
        _BATCH_DEFINITION = asset.add_batch_definition_whole_dataframe("whole")
        _CONTEXT = context
    return _BATCH_DEFINITION


def _referenced(entry: SuiteEntry, available: set[str]) -> list[str]:
    """Column names (template form for a template) an entry reads, its row condition included."""
    idents = [i for i in entry.condition_columns() if "{" in i or i in available]
    return list(dict.fromkeys([*entry.columns(), *idents]))


def _evaluate(frame: pd.DataFrame, configs: list[dict[str, Any]], parameters: dict[str, Any] | None,
              sample_rows: int) -> list[Any]:
    """Run GE expectation dicts on one frame; return GE's results in the same order as ``configs``."""
    gx = _gx()

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    params = parameters or {}
    # GE neither keeps suite order in its results nor keeps ids on dict configs: tag each one.
    tagged = [{**c, "meta": {**(c.get("meta") or {}), _TAG: i}} for i, c in enumerate(configs)]

    def run(indices: list[int], result_format: dict[str, Any]) -> dict[int, Any]:
        suite = gx.ExpectationSuite(name="hftpipe", expectations=[tagged[i] for i in indices])
        outcome = batch.validate(suite, result_format=result_format, expectation_parameters=params)
        by_tag = {int(res.expectation_config.meta[_TAG]): res for res in outcome.results}
        if sorted(by_tag) != sorted(indices):
            raise RuntimeError("Great Expectations returned results that do not match the suite")
        return by_tag

    # Pass/fail only first (about half the work of SUMMARY); details only for what failed.
    results = run(list(range(len(configs))), {"result_format": "BOOLEAN_ONLY"})
    failed = [i for i, res in results.items() if not res.success]
    if failed:
        summary = {"result_format": "SUMMARY", "partial_unexpected_count": max(sample_rows, 1)}
        results.update(run(failed, summary))
    return [results[i] for i in range(len(configs))]


def _failure(entry: SuiteEntry, result: Any, rows: list[dict[str, Any]], detail: str = "") -> Failure:
    """Turn a failed GE ExpectationValidationResult into a :class:`Failure`."""
    info = result.result or {}
    exc = result.exception_info or {}
    if exc.get("raised_exception"):
        detail = f"could not evaluate: {exc.get('exception_message')}"
    return Failure(
        suite=entry.suite,
        expectation=entry.type,
        columns=entry.columns(),
        description=entry.description,
        unexpected_count=info.get("unexpected_count"),
        element_count=info.get("element_count"),
        observed=info.get("observed_value"),
        detail=detail,
        sample=rows,
        kwargs={k: v for k, v in entry.kwargs.items() if k != "batch_id"},
    )


def _indices(result: Any) -> list[int]:
    index = (result.result or {}).get("partial_unexpected_index_list") or []
    # Some GE versions report index entries as dicts; keep the plain row label.
    return [int(i.get("index", -1)) if isinstance(i, dict) else int(i) for i in index]


def _row(frame: pd.DataFrame, row: int, columns: list[str],
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One offending row of the original table: its number, time and the columns the check read."""
    record: dict[str, Any] = {"row": row, **(extra or {})}
    for col in dict.fromkeys(["time", *columns]):
        if col in frame.columns:
            record[col] = frame[col].iat[row]
    return record


def _run_plain(frame: pd.DataFrame, entries: list[SuiteEntry], parameters: dict[str, Any] | None,
               sample_rows: int, table_level: bool) -> list[Failure]:
    available = set(frame.columns)
    cols = [c for e in entries for c in _referenced(e, available) if c in frame.columns]
    sub = frame if table_level else frame[list(dict.fromkeys(cols))]
    failures = []
    for entry, res in zip(entries, _evaluate(sub, [e.config for e in entries], parameters, sample_rows)):
        if not res.success:
            used = [c for c in _referenced(entry, available) if c in frame.columns]
            rows = [_row(frame, i, used) for i in _indices(res)[:sample_rows] if 0 <= i < len(frame)]
            failures.append(_failure(entry, res, rows))
    return failures


def _run_template(frame: pd.DataFrame, kind: str, entries: list[SuiteEntry],
                  parameters: dict[str, Any] | None, sample_rows: int) -> list[Failure]:
    """Evaluate every entry of one template kind once, on the per-value slices stacked under token names.

    With 10 levels, ``ask_price_{k}`` becomes one column ``ask_price_K`` of 10 x n rows: GE's fixed cost
    per expectation is paid once instead of once per level, for any level count.
    """
    n = len(frame)
    available = set(frame.columns)
    subs = list(entries[0].subs)
    templates = list(dict.fromkeys(c for e in entries for c in _referenced(e, available)))
    tokens = {p: PLACEHOLDER_TOKENS[p] for p in subs[0]}
    failures: list[Failure] = []
    present = [s for s in subs if all(fill(t, s) in frame.columns for t in templates)]
    for entry in entries:
        absent = [fill(c, s) for s in subs if s not in present for c in _referenced(entry, available)
                  if fill(c, s) not in frame.columns]
        if absent:
            # The table lacks columns its metadata implies (wrong level count, missing feature).
            failures.append(Failure(suite=entry.suite, expectation=entry.type, columns=entry.columns(),
                                    description=entry.description,
                                    detail=f"missing column(s): {', '.join(dict.fromkeys(absent))}",
                                    kwargs=dict(entry.kwargs)))
    if not present:
        return failures
    stacked = pd.DataFrame({
        fill(t, tokens): np.concatenate([frame[fill(t, s)].to_numpy() for s in present]) for t in templates
    })
    configs = [{**e.config, "kwargs": fill(e.kwargs, tokens)} for e in entries]
    for entry, res in zip(entries, _evaluate(stacked, configs, parameters, sample_rows)):
        if not res.success:
            rows = []
            for i in _indices(res)[:sample_rows]:
                s = present[i // n]
                rows.append(_row(frame, i % n, [fill(c, s) for c in _referenced(entry, available)], dict(s)))
            detail = f"checked at each of {len(present)} {_KIND_WORDS[kind]}"
            failures.append(_failure(entry, res, rows, detail=detail))
    return failures


def run_expectations(
    frame: pd.DataFrame,
    entries: Sequence[SuiteEntry],
    parameters: dict[str, Any] | None = None,
    sample_rows: int = 5,
) -> list[Failure]:
    """Evaluate suite entries on ``frame`` (RangeIndex); return the failures (empty list: all hold)."""
    available = set(frame.columns)
    failures: list[Failure] = []
    table: list[SuiteEntry] = []
    plain: list[SuiteEntry] = []
    kinds: dict[str, list[SuiteEntry]] = {}
    for entry in entries:
        if entry.kind is not None:
            kinds.setdefault(entry.kind, []).append(entry)
        elif entry.is_table_level():
            table.append(entry)
        elif missing := [c for c in entry.columns() if c not in available]:
            failures.append(Failure(suite=entry.suite, expectation=entry.type, columns=entry.columns(),
                                    description=entry.description,
                                    detail=f"missing column(s): {', '.join(missing)}",
                                    kwargs=dict(entry.kwargs)))
        else:
            plain.append(entry)
    if table:
        failures += _run_plain(frame, table, parameters, sample_rows, table_level=True)
    if plain:
        failures += _run_plain(frame, plain, parameters, sample_rows, table_level=False)
    for kind, members in kinds.items():
        failures += _run_template(frame, kind, members, parameters, sample_rows)
    return failures


def validate_frame(
    frame: pd.DataFrame,
    suite: str | dict[str, Any] | Sequence[str | dict[str, Any]],
    *,
    parameters: dict[str, Any] | None = None,
    templates: Templates | None = None,
    suites_dir: str = "expectations",
    sample_rows: int = 5,
    source: str = "frame",
    subject: str = "table",
    meta: dict[str, Any] | None = None,
) -> ValidationResult:
    """Validate a DataFrame against stored suites (names, JSON paths or suite dicts) with Great Expectations.

    Args:
        frame: the table; its index labels are what sample rows report.
        suite: one suite or a list of suites: ``"book"``, a path to a JSON suite, or a suite dict.
        parameters: GE suite parameters (``{"$PARAMETER": name}`` values in the suites).
        templates: values the ``for_each`` templates expand over (levels, horizons, features).
        suites_dir: where named suites live (``validate.suites_dir``).
        sample_rows: offending rows kept per failed expectation.
    """
    start = time.perf_counter()
    specs = [suite] if isinstance(suite, (str, dict)) else list(suite)
    expanded: list[SuiteEntry] = []
    for spec in specs:
        raw = spec if isinstance(spec, dict) else load_suite_json(spec, suites_dir)
        expanded += expand_suite(raw, templates or Templates())
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=True)
    failures = run_expectations(frame, expanded, parameters, sample_rows)
    seconds = time.perf_counter() - start
    checks = sum(e.checks for e in expanded)
    log.info("validated %s: %d checks, %d failed, %.2f s", source, checks, len(failures), seconds)
    return ValidationResult(source=source, subject=subject, checks=checks, failures=failures,
                            meta=dict(meta or {}), seconds=seconds)
