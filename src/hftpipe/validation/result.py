"""What a validation run found: failed checks with sample rows, a readable summary, JSON/Markdown reports."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe import paths
from hftpipe.errors import ValidationFailed

STRUCTURE_SUITE = "structure"  # pseudo-suite of checks made before any expectation can run


@dataclass(frozen=True)
class Failure:
    """One failed check: a Great Expectations expectation, or a structural problem of the file."""

    suite: str  # messages / book / features / structure
    expectation: str  # GE expectation type, e.g. expect_column_values_to_be_increasing
    columns: tuple[str, ...]  # the column(s) it looked at (empty for table-level checks)
    description: str  # what should hold, in words
    unexpected_count: int | None = None  # rows breaking it (None for table-level checks)
    element_count: int | None = None  # rows it looked at
    observed: Any = None  # observed value of a table-level check (column count, column list, ...)
    detail: str = ""  # loader message or GE exception text
    sample: list[dict[str, Any]] = field(default_factory=list)  # a few offending rows: {"row": i, col: value}
    kwargs: dict[str, Any] = field(default_factory=dict)  # the expectation's arguments

    def headline(self) -> str:
        """One line: suite, expectation, columns, how many rows broke it, and what should hold."""
        cols = f" ({', '.join(self.columns)})" if self.columns else ""
        text = f"[{self.suite}] {self.expectation}{cols}"
        if self.unexpected_count is not None:
            total = self.element_count or 0
            pct = f" ({100.0 * self.unexpected_count / total:.4g}%)" if total else ""
            text += f": {self.unexpected_count} unexpected of {total} values{pct}"
        elif self.observed is not None:
            text += f": observed {_short(self.observed)}"
        if self.description:
            text += f" -- expected: {self.description}"
        if self.detail:
            text += f" -- {self.detail}"
        return text


@dataclass
class ValidationResult:
    """Outcome of validating one table (events or features) against its suites."""

    source: str  # what was validated (path or a label)
    subject: str  # "events" or "features"
    checks: int  # expectations evaluated, plus structural checks
    failures: list[Failure]
    meta: dict[str, Any] = field(default_factory=dict)  # symbol, date, levels, rows, ...
    seconds: float = 0.0
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def success(self) -> bool:
        return not self.failures

    def describe_subject(self) -> str:
        m = self.meta
        parts = [str(m[k]) for k in ("symbol", "date") if m.get(k)]
        if m.get("levels") is not None:
            parts.append(f"{m['levels']} level(s)")
        if m.get("rows") is not None:
            parts.append(f"{m['rows']} rows")
        what = f" ({', '.join(parts)})" if parts else ""
        return f"{self.subject} {self.source}{what}"

    def summary_lines(self) -> list[str]:
        """Human-readable lines: a verdict, then each failure with its sample rows."""
        if self.success:
            subject = self.describe_subject()
            return [f"PASSED: all {self.checks} checks hold on {subject} in {self.seconds:.2f} s"]
        lines = [f"FAILED: {len(self.failures)} of {self.checks} checks on {self.describe_subject()}"]
        for failure in self.failures:
            lines.append(f"  {failure.headline()}")
            for row in failure.sample:
                cells = ", ".join(f"{k}={_short(v)}" for k, v in row.items() if k != "row")
                lines.append(f"      row {row.get('row')}: {cells}")
        return lines

    def raise_if_failed(self) -> None:
        """Raise :class:`ValidationFailed` listing every failed check; do nothing when all hold."""
        if not self.success:
            raise ValidationFailed("\n".join(self.summary_lines()))

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "source": self.source,
                "subject": self.subject,
                "success": self.success,
                "checks": self.checks,
                "failed": len(self.failures),
                "seconds": round(self.seconds, 4),
                "created": self.created,
                "meta": self.meta,
                "failures": [asdict(f) for f in self.failures],
            }
        )

    def to_markdown(self) -> str:
        verdict = "PASSED" if self.success else "FAILED"
        out = [
            f"# Validation report: {verdict}",
            "",
            f"- subject: {self.describe_subject()}",
            f"- checks: {self.checks}, failed: {len(self.failures)}",
            f"- created: {self.created}, took {self.seconds:.2f} s",
            "",
        ]
        if self.success:
            out.append("Every expectation holds.")
        for failure in self.failures:
            cols = ", ".join(failure.columns) or "(table)"
            out += [f"## [{failure.suite}] {failure.expectation}", "", f"- columns: {cols}"]
            if failure.description:
                out.append(f"- expected: {failure.description}")
            if failure.unexpected_count is not None:
                out.append(f"- unexpected: {failure.unexpected_count} of {failure.element_count} values")
            if failure.observed is not None:
                out.append(f"- observed: {_short(failure.observed, 400)}")
            if failure.detail:
                out.append(f"- detail: {failure.detail}")
            keys = list(failure.sample[0]) if failure.sample else []
            if failure.sample and any(list(r) != keys for r in failure.sample):
                # Template failures name different columns per row (ask_price_3, ask_price_7): one line each.
                out.append("")
                out += ["- " + ", ".join(f"{k}={_short(v)}" for k, v in r.items()) for r in failure.sample]
            elif failure.sample:
                out += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                out += ["| " + " | ".join(_short(r.get(k)) for k in keys) + " |" for r in failure.sample]
            out.append("")
        return "\n".join(out) + "\n"

    def write_reports(self, directory: str | Path | None = None) -> tuple[Path, Path]:
        """Write ``<name>.json`` and ``<name>.md``; default folder: ``reports_dir()/validation``.

        Returns:
            (json_path, markdown_path)
        """
        folder = Path(directory) if directory is not None else paths.reports_dir() / "validation"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        label = "-".join(str(self.meta[k]) for k in ("symbol", "date") if self.meta.get(k))
        label = label or Path(self.source).stem
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.subject}-{label}-{stamp}")
        json_path = folder / f"{name}.json"
        md_path = folder / f"{name}.md"
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        md_path.write_text(self.to_markdown())
        return json_path, md_path


def _jsonable(value: Any) -> Any:
    """Plain JSON data: numpy scalars to Python, NaN/inf to strings (strict JSON has neither)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _short(value: Any, limit: int = 120) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        text = f"{value:.10g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
