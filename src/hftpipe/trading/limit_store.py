"""Risk-limit overrides changed at run time (UI risk page, ``hftpipe risk limits --set``), persisted and audited.

The limits in ``params.yaml`` (section ``risk``) are the base; an override replaces one limit for one symbol
(or for every symbol without its own: symbol ``*``). Overrides live in the same SQLite file as the kill
switch (``risk.state_db``, default ``HFTPIPE_HOME/risk.db``), and each change writes one ``limit_change``
audit record in the same transaction: if the audit write fails, the change is rolled back. A trader reads
:meth:`LimitStore.engine_limits` to build or refresh its :class:`~hftpipe.trading.risk.RiskEngine`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from hftpipe.trading.risk import RiskLimits
from hftpipe.trading.state_store import AuditedSqliteStore, RiskStateError

DEFAULT_SYMBOL = "*"  # the override applies to every symbol without its own
CREATE = """CREATE TABLE IF NOT EXISTS risk_limits (
    symbol TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
    time TEXT NOT NULL, PRIMARY KEY (symbol, name))"""
LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(RiskLimits))
_INTEGER_LIMITS = {"max_orders"}


def parse_limit(name: str, value: Any) -> float | int:
    """Check a limit's name and value; ``inf`` switches a limit off (``max_orders``: 0 does).

    Raises:
        RiskStateError: unknown limit, not a number, negative or NaN.
    """
    if name not in LIMIT_NAMES:
        raise RiskStateError(f"unknown risk limit {name!r}; known: {', '.join(LIMIT_NAMES)}")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise RiskStateError(f"risk limit {name}: {value!r} is not a number") from exc
    if math.isnan(number) or number < 0:
        raise RiskStateError(f"risk limit {name}: {value!r} must be a number >= 0 (inf switches it off)")
    if name in _INTEGER_LIMITS:
        if not number.is_integer():
            raise RiskStateError(f"risk limit {name}: {value!r} must be a whole number (0 switches it off)")
        return int(number)
    return number


class LimitStore(AuditedSqliteStore):
    """Limit overrides in SQLite (the risk-state file), each change audited atomically."""

    create = CREATE
    what = "risk-limit"

    def overrides(self) -> dict[str, dict[str, float]]:
        """symbol (``*`` for the default) -> limit name -> value."""
        out: dict[str, dict[str, float]] = {}
        for symbol, name, value in self.conn.execute("SELECT symbol, name, value FROM risk_limits ORDER BY symbol, name"):
            out.setdefault(symbol, {})[name] = int(value) if name in _INTEGER_LIMITS else float(value)
        return out

    def engine_limits(self, base: RiskLimits) -> tuple[RiskLimits, dict[str, RiskLimits]]:
        """(default limits, per-symbol limits) for a :class:`RiskEngine`: ``base`` with the overrides applied."""
        overrides = self.overrides()
        default = dataclasses.replace(base, **overrides.get(DEFAULT_SYMBOL, {}))
        per_symbol = {s: dataclasses.replace(default, **o) for s, o in overrides.items() if s != DEFAULT_SYMBOL}
        return default, per_symbol

    def set(self, symbol: str | None, name: str, value: Any, reason: str, actor: str, base: RiskLimits,
            audit_url: str | None = None) -> dict[str, Any]:
        """Override one limit and write its ``limit_change`` audit record atomically; returns the change.

        Raises:
            RiskStateError: bad name, value, reason or actor. AuditError: the audit record could not be
                written (the change is rolled back).
        """
        from hftpipe import audit
        from hftpipe.audit.trail import utc_now

        symbol = (symbol or "").strip() or DEFAULT_SYMBOL
        number = parse_limit(name, value)
        with self.audited_change(reason, actor) as cur:
            default, per_symbol = self.engine_limits(base)
            before = getattr(per_symbol.get(symbol, default) if symbol != DEFAULT_SYMBOL else default, name)
            now = utc_now()
            cur.execute("INSERT INTO risk_limits (symbol, name, value, reason, actor, time) VALUES (?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (symbol, name) DO UPDATE SET value = excluded.value, reason = excluded.reason, "
                        "actor = excluded.actor, time = excluded.time", (symbol, name, float(number), reason, actor, now))
            change = {"symbol": symbol, "limit": name, "previous": _json_number(before), "value": _json_number(number),
                      "raised": _looser(name, before, number)}
            audit.record(audit.LIMIT_CHANGE, f"risk/{symbol}/{name}", reason=reason, actor=actor, url=audit_url,
                         details=change)
        return change


def _json_number(value: float) -> float | int | str:
    """JSON has no infinity: an off limit is written as the string ``inf``."""
    return "inf" if isinstance(value, float) and math.isinf(value) else value


def _looser(name: str, before: float, after: float) -> bool:
    """True when the new value allows more (a raise); for max_orders 0 means no limit at all."""
    if name in _INTEGER_LIMITS:
        before_eff = math.inf if before <= 0 else before
        after_eff = math.inf if after <= 0 else after
        return after_eff > before_eff
    return after > before
