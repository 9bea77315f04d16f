"""Expectation suites stored as JSON in ``expectations/``, with templates expanded for the table at hand.

Column names depend on the data (``ask_price_{k}`` for k = 1..L, ``label_k{h}`` per horizon, one column
per feature), so a suite entry whose ``meta.hftpipe.for_each`` names a template is checked for every
value, with ``{placeholders}`` filled in its column names and row condition (the runner evaluates it
once on the per-value columns stacked together, see ``runner``):

- ``level``: ``{k}`` = 1..L
- ``adjacent_level``: ``{k}`` = 1..L-1 and ``{next}`` = k+1
- ``horizon``: ``{h}`` = each label horizon
- ``feature``: ``{feature}`` = each hand-made feature column

Values that differ per run but not per column (session bounds, the allowed event types, the expected
column list) are ordinary Great Expectations suite parameters (``{"$PARAMETER": "name"}``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hftpipe import paths
from hftpipe.errors import ConfigError

# Keyword arguments of an expectation that name columns (filled from templates, used to narrow frames).
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list",)
# Identifiers of a string row condition, template placeholders included (``ask_price_{k}.notnull()``).
_IDENT = re.compile(r"[A-Za-z_{][A-Za-z0-9_{}]*")


@dataclass(frozen=True)
class Templates:
    """The values templates expand over for one table."""

    levels: int = 0
    horizons: tuple[int | str, ...] = ()  # column keys: 10 (events) or '1s' (clock time)
    features: tuple[str, ...] = ()

    def values(self, kind: str) -> list[dict[str, str]]:
        """Placeholder substitutions for one ``for_each`` kind."""
        if kind == "level":
            return [{"k": str(k)} for k in range(1, self.levels + 1)]
        if kind == "adjacent_level":
            return [{"k": str(k), "next": str(k + 1)} for k in range(1, self.levels)]
        if kind == "horizon":
            return [{"h": str(h)} for h in self.horizons]
        if kind == "feature":
            return [{"feature": f} for f in self.features]
        raise ConfigError(f"unknown suite template for_each={kind!r}; "
                          "use level, adjacent_level, horizon or feature")


# Placeholder -> column-name token used when a template is evaluated once on stacked data (see runner).
PLACEHOLDER_TOKENS = {"k": "K", "next": "NEXT", "h": "H", "feature": "FEATURE"}


@dataclass(frozen=True)
class SuiteEntry:
    """One expectation of a stored suite and the substitutions it is evaluated for.

    A plain entry has ``kind`` None and one empty substitution; a template (``for_each``) has one
    substitution per level / horizon / feature and counts as that many checks.
    """

    suite: str
    config: dict[str, Any]  # GE expectation dict (type, kwargs, meta), placeholders unfilled
    kind: str | None  # the for_each template kind, None for a plain expectation
    subs: tuple[dict[str, str], ...] = ({},)

    @property
    def type(self) -> str:
        return str(self.config["type"])

    @property
    def kwargs(self) -> dict[str, Any]:
        return self.config.get("kwargs", {})

    @property
    def description(self) -> str:
        return str((self.config.get("meta") or {}).get("description", ""))

    def columns(self) -> tuple[str, ...]:
        """Columns the expectation reads (template names for a template), not counting its row condition."""
        cols = [self.kwargs[k] for k in COLUMN_KWARGS if isinstance(self.kwargs.get(k), str)]
        for key in COLUMN_LIST_KWARGS:
            if isinstance(self.kwargs.get(key), list):
                cols += self.kwargs[key]
        return tuple(cols)

    def condition_columns(self) -> tuple[str, ...]:
        """Columns the row condition reads (GE 1.x structured conditions: ``{"column": {"name": ...}}``).

        A legacy string condition (pandas query) contributes every identifier in it; callers keep
        the ones that are columns.
        """
        cond = self.kwargs.get("row_condition")
        if isinstance(cond, str):
            return tuple(_IDENT.findall(cond))
        names: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                col = node.get("column")
                if isinstance(col, dict) and isinstance(col.get("name"), str):
                    names.append(col["name"])
                if isinstance(node.get("pass_through_filter"), str):
                    names.extend(_IDENT.findall(node["pass_through_filter"]))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(cond)
        return tuple(dict.fromkeys(names))

    def is_table_level(self) -> bool:
        return not self.columns() and self.type.startswith("expect_table_")

    @property
    def checks(self) -> int:
        return len(self.subs)


def fill(value: Any, subs: dict[str, str]) -> Any:
    """Replace ``{placeholder}`` in every string of an expectation's kwargs."""
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("{" + key + "}", sub)
        return value
    if isinstance(value, dict):
        return {k: fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, subs) for v in value]
    return value


def suites_dir(configured: str | Path = "expectations") -> Path:
    """Resolve the suites folder: as given (absolute or from the working directory), else in the checkout."""
    path = Path(configured)
    if path.is_dir():
        return path
    fallback = paths.repo_root() / path
    if not path.is_absolute() and fallback.is_dir():
        return fallback
    raise ConfigError(f"expectation suites folder {configured} not found (validate.suites_dir)")


def load_suite_json(name_or_path: str | Path, directory: str | Path = "expectations") -> dict[str, Any]:
    """Read a stored suite (``messages``, ``book``, ``features`` or a path to a JSON file)."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = suites_dir(directory) / f"{name_or_path}.json"
    if not path.exists():
        raise ConfigError(f"expectation suite {path} does not exist")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("expectations"), list):
        raise ConfigError(f"expectation suite {path} must be a JSON object with an 'expectations' list")
    raw.setdefault("name", path.stem)
    return raw


def expand_suite(suite: dict[str, Any], templates: Templates) -> list[SuiteEntry]:
    """Entries of a stored suite for one table, each template with its substitutions (levels, ...)."""
    name = str(suite.get("name", "suite"))
    out: list[SuiteEntry] = []
    for entry in suite["expectations"]:
        if not isinstance(entry, dict) or "type" not in entry:
            raise ConfigError(f"suite {name}: an expectation has no 'type': {entry}")
        config = copy.deepcopy(entry)
        config.setdefault("kwargs", {})
        kind = ((config.get("meta") or {}).get("hftpipe") or {}).get("for_each")
        if kind is None:
            out.append(SuiteEntry(name, config, None))
            continue
        subs = tuple(templates.values(kind))
        if subs:  # e.g. no adjacent levels in a 1-level book: nothing to check
            out.append(SuiteEntry(name, config, kind, subs))
    return out
