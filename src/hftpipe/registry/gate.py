"""The promotion gate: pure rules deciding whether a registered model may replace the champion.

No MLflow here: the registry adapter gathers the numbers (the candidate's evaluation report, the
champion's score on the same test data) and stores what :func:`decide` returns as version tags.

A candidate passes only if every check passes:

1. its macro-F1 beats the best naive baseline by more than ``min_margin`` (the 95% block-bootstrap
   interval's lower bound when ``use_interval``, else the point margin);
2. it is not worse than the current champion on macro-F1 on the same test data (and at the same label
   horizon: macro-F1 at k=10 and k=50 are different questions);
3. optionally (``require_net_pnl``) its net PnL after costs is at least the champion's (at least zero
   when there is no champion).

A model evaluated on several instruments (a pooled pipeline run) is gated per instrument, never on macro-F1
over the union of their rows (with different class mixes that is no average and can flip the sign of every
instrument's margin). :func:`decide_pooled` passes it only if:

1. the unweighted mean over instruments of the margin over each one's best baseline beats ``min_margin``
   (the mean of the 95% lower bounds when ``use_interval``, else of the point margins);
2. on every instrument the point margin is at least ``min_margin`` (no instrument may lose to its naive
   baseline, however well the others do);
3. the mean over instruments of its macro-F1 is at least the champion's mean on the same rows;
4. optionally (``require_net_pnl``) on every instrument its net PnL is at least the champion's there (at
   least zero without a champion): dollars per share of different instruments are not added up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hftpipe.config import RegisterConfig
from hftpipe.errors import RegistryError
from hftpipe.horizons import horizon_value

PASS = "pass"
FAIL = "fail"


@dataclass(frozen=True)
class CandidateScore:
    """What the candidate's evaluation report says about it (test split of its features)."""

    macro_f1: float
    margin_point: float  # macro-F1 minus the best baseline's
    margin_low: float | None  # 95% interval of the margin
    margin_high: float | None
    best_baseline: str
    best_baseline_macro_f1: float | None
    net_pnl: float | None  # backtest net PnL after costs
    horizon: int | str  # k events, or clock time such as '1s' (hftpipe.horizons)
    data_id: str | None = None  # identity of the test data (sha256 of the feature table), when known


@dataclass(frozen=True)
class ChampionScore:
    """The current champion scored on the candidate's test data (``macro_f1`` None: could not be)."""

    version: str
    horizon: int | str | None
    macro_f1: float | None
    net_pnl: float | None = None
    note: str = ""  # why macro_f1 is missing, or how it was obtained


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    reason: str

    def line(self) -> str:
        return f"{PASS if self.passed else FAIL}: {self.reason}"


@dataclass(frozen=True)
class GateDecision:
    """All checks and the verdict; ``reasons`` are what gets stored on the model version."""

    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def decision(self) -> str:
        return PASS if self.passed else FAIL

    @property
    def reasons(self) -> list[str]:
        return [c.line() for c in self.checks]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def margin_check(candidate: CandidateScore, rules: RegisterConfig) -> Check:
    """Check 1: the macro-F1 margin over the best baseline (interval lower bound or point)."""
    which = "95% lower bound" if rules.use_interval else "point estimate"
    value = candidate.margin_low if rules.use_interval else candidate.margin_point
    baseline = candidate.best_baseline
    if not _finite(value):
        return Check("baseline_margin", False,
                     f"the report has no finite macro-F1 margin {which} over baseline {baseline!r}; "
                     "re-run `hftpipe evaluate`")
    passed = value > rules.min_margin
    relation = ">" if passed else "<="
    return Check("baseline_margin", passed,
                 f"macro-F1 margin over best baseline {baseline!r} ({which}) {value:+.4f} {relation} "
                 f"required {rules.min_margin:+.4f} (point {candidate.margin_point:+.4f})")


def champion_check(candidate: CandidateScore, champion: ChampionScore | None) -> Check:
    """Check 2: not worse than the current champion on macro-F1, same test data, same horizon."""
    if champion is None:
        return Check("champion_macro_f1", True, "no current champion: nothing to beat")
    if champion.horizon is not None and champion.horizon != candidate.horizon:
        return Check("champion_macro_f1", False,
                     f"champion v{champion.version} predicts horizon k={champion.horizon}, the candidate "
                     f"k={candidate.horizon}: macro-F1 is not comparable; promote by hand if intended")
    if not _finite(champion.macro_f1):
        return Check("champion_macro_f1", False,
                     f"champion v{champion.version} could not be scored on the candidate's test data"
                     + (f": {champion.note}" if champion.note else ""))
    passed = candidate.macro_f1 >= champion.macro_f1  # type: ignore[operator]
    relation = ">=" if passed else "<"
    how = f" ({champion.note})" if champion.note else ""
    return Check("champion_macro_f1", passed,
                 f"macro-F1 {candidate.macro_f1:.4f} {relation} champion v{champion.version} "
                 f"{champion.macro_f1:.4f} on the same test data{how}")


def net_pnl_check(candidate: CandidateScore, champion: ChampionScore | None) -> Check:
    """Check 3 (optional): net PnL after costs at least the champion's, or at least zero without one."""
    if not _finite(candidate.net_pnl):
        return Check("net_pnl", False, "the report has no backtest net PnL for the model")
    if champion is None:
        passed = candidate.net_pnl >= 0.0  # type: ignore[operator]
        return Check("net_pnl", passed, f"net PnL {candidate.net_pnl:+.4f} {'>=' if passed else '<'} 0 "
                                        "(no champion to compare with)")
    if not _finite(champion.net_pnl):
        return Check("net_pnl", False, f"champion v{champion.version} has no net PnL on the same test data")
    passed = candidate.net_pnl >= champion.net_pnl  # type: ignore[operator]
    return Check("net_pnl", passed, f"net PnL {candidate.net_pnl:+.4f} {'>=' if passed else '<'} champion "
                                    f"v{champion.version} {champion.net_pnl:+.4f}")


def decide(candidate: CandidateScore, champion: ChampionScore | None, rules: RegisterConfig) -> GateDecision:
    """Apply every configured check; the candidate passes only if all of them pass."""
    checks = [margin_check(candidate, rules), champion_check(candidate, champion)]
    if rules.require_net_pnl:
        checks.append(net_pnl_check(candidate, champion))
    return GateDecision(tuple(checks))


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def pooled_margin_checks(candidates: Sequence[tuple[str, CandidateScore]], rules: RegisterConfig) -> list[Check]:
    """Pooled checks 1 and 2: the mean margin over instruments, and every instrument's point margin."""
    which = "95% lower bounds" if rules.use_interval else "point margins"
    values = [(name, c.margin_low if rules.use_interval else c.margin_point) for name, c in candidates]
    missing = [name for name, v in values if not _finite(v)]
    if missing:
        mean_check = Check("mean_baseline_margin", False,
                           f"no finite margin ({which}) for {', '.join(missing)}; re-run `hftpipe evaluate`")
    else:
        mean = _mean([v for _, v in values])  # type: ignore[misc]
        passed = mean > rules.min_margin
        mean_check = Check("mean_baseline_margin", passed,
                           f"mean over {len(values)} instruments of the margin over each one's best baseline "
                           f"({which}) {mean:+.4f} {'>' if passed else '<='} required {rules.min_margin:+.4f}")
    worst_name, worst = min(((name, c.margin_point) for name, c in candidates), key=lambda x: x[1])
    passed = worst >= rules.min_margin
    each = Check("every_instrument_margin", passed,
                 f"lowest point margin over its best baseline: {worst_name} {worst:+.4f} "
                 f"{'>=' if passed else '<'} required {rules.min_margin:+.4f}")
    return [mean_check, each]


def pooled_champion_check(candidates: Sequence[tuple[str, CandidateScore]],
                          champions: Sequence[ChampionScore] | None) -> Check:
    """Pooled check 3: mean macro-F1 over instruments at least the champion's, each measured on the same rows."""
    if champions is None:
        return Check("champion_macro_f1", True, "no current champion: nothing to beat")
    horizon = candidates[0][1].horizon
    for (name, _), champ in zip(candidates, champions):
        if champ.horizon is not None and champ.horizon != horizon:
            return Check("champion_macro_f1", False,
                         f"champion v{champ.version} predicts horizon k={champ.horizon}, the candidate k={horizon}: "
                         "macro-F1 is not comparable; promote by hand if intended")
        if not _finite(champ.macro_f1):
            return Check("champion_macro_f1", False, f"champion v{champ.version} could not be scored on {name}"
                         + (f": {champ.note}" if champ.note else ""))
    ours = _mean([c.macro_f1 for _, c in candidates])
    theirs = _mean([c.macro_f1 for c in champions])  # type: ignore[misc]
    passed = ours >= theirs
    return Check("champion_macro_f1", passed,
                 f"mean macro-F1 over {len(candidates)} instruments {ours:.4f} {'>=' if passed else '<'} champion "
                 f"v{champions[0].version} {theirs:.4f} on the same rows of each")


def pooled_net_pnl_check(candidates: Sequence[tuple[str, CandidateScore]],
                         champions: Sequence[ChampionScore] | None) -> Check:
    """Pooled check 4 (optional): net PnL at least the champion's (or zero) on every instrument."""
    for i, (name, cand) in enumerate(candidates):
        check = net_pnl_check(cand, champions[i] if champions is not None else None)
        if not check.passed:
            return Check("net_pnl", False, f"{name}: {check.reason}")
    return Check("net_pnl", True, f"net PnL at least {'the champion' if champions else 'zero'} on every one of "
                                  f"{len(candidates)} instruments")


def decide_pooled(candidates: Sequence[tuple[str, CandidateScore]], champions: Sequence[ChampionScore] | None,
                  rules: RegisterConfig) -> GateDecision:
    """The gate for a model evaluated on several instruments (see the module docstring).

    Args:
        candidates: (instrument name, its score) per instrument, in report order.
        champions: the champion scored on each instrument's rows (same order), or None without a champion.
    Raises:
        RegistryError: no candidate, or the champions do not match the candidates one to one.
    """
    if not candidates:
        raise RegistryError("the pooled gate needs at least one instrument's report")
    if champions is not None and len(champions) != len(candidates):
        raise RegistryError(f"{len(champions)} champion scores for {len(candidates)} instruments")
    checks = [*pooled_margin_checks(candidates, rules), pooled_champion_check(candidates, champions)]
    if rules.require_net_pnl:
        checks.append(pooled_net_pnl_check(candidates, champions))
    return GateDecision(tuple(checks))


def _number(value: Any, key: str, required: bool = True) -> float | None:
    if value is None:
        if required:
            raise RegistryError(f"evaluation report: {key} is missing; re-run `hftpipe evaluate`")
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"evaluation report: {key} is {value!r}, not a number") from exc


def candidate_from_report(report: dict[str, Any], horizon: int | str, data_id: str | None = None) -> CandidateScore:
    """Read the gate's inputs from an evaluation ``report.json`` (see ``hftpipe.evaluation``).

    Raises:
        RegistryError: a required number is missing, naming its key.
    """
    model = report.get("model")
    if not isinstance(model, dict):
        raise RegistryError("evaluation report: 'model' metrics are missing; re-run `hftpipe evaluate`")
    margin = report.get("margin") or {}
    best = report.get("best_baseline")
    baselines = report.get("baselines") or {}
    if isinstance(best, dict):
        best_name = str(best.get("name", "best"))
        best_f1 = _number(best.get("macro_f1"), "best_baseline.macro_f1", required=False)
    else:
        best_name = str(best) if best is not None else "unknown"
        entry = baselines.get(best_name) if isinstance(baselines, dict) else None
        best_f1 = _number(entry.get("macro_f1"), f"baselines.{best_name}.macro_f1", required=False) \
            if isinstance(entry, dict) else None
    backtest = report.get("backtest") or {}
    model_bt = backtest.get("model") if isinstance(backtest, dict) else None
    net_pnl = _number(model_bt.get("net_pnl"), "backtest.model.net_pnl", required=False) \
        if isinstance(model_bt, dict) else None
    return CandidateScore(
        macro_f1=_number(model.get("macro_f1"), "model.macro_f1"),  # type: ignore[arg-type]
        margin_point=_number(margin.get("point"), "margin.point"),  # type: ignore[arg-type]
        margin_low=_number(margin.get("low"), "margin.low", required=False),
        margin_high=_number(margin.get("high"), "margin.high", required=False),
        best_baseline=best_name,
        best_baseline_macro_f1=best_f1,
        net_pnl=net_pnl,
        horizon=horizon_value(horizon) if horizon else 0,  # rescore passes 0: no horizon to compare
        data_id=data_id,
    )
