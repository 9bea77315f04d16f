"""Register a bundle as a new model version and apply the promotion gate (champion or challenger), audited."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe.config import Config
from hftpipe.registry.cards import _store_model_card
from hftpipe.registry.common import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    _alias_version,
    _audit,
    _open_audit,
    _tag,
)
from hftpipe.registry.gate import (
    ChampionScore,
    Check,
    GateDecision,
    candidate_from_report,
    decide,
    decide_pooled,
)
from hftpipe.registry.pyfunc import log_bundle_model
from hftpipe.registry.report_checks import (
    _check_report_data,
    _check_report_matches,
    _report_features_dir,
    eval_data_id,
    read_report,
)
from hftpipe.registry.rescore import champion_score
from hftpipe.registry.tracker import client, fluent_store, git_commit, lineage_tags, step_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationResult:
    """What ``register`` did: the new version, the gate's verdict and where the aliases point now."""

    model_name: str
    version: str
    passed: bool
    reasons: list[str]
    alias: str  # "champion" or "challenger"
    previous_champion: str | None  # the champion before this registration
    run_id: str
    model_uri: str  # models:/NAME/VERSION
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def gate(self) -> str:
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``decision`` is the alias the version got (``champion`` or ``challenger``)."""
        out = asdict(self)
        out["decision"] = self.alias
        out["gate"] = self.gate
        return out



def _target_run(mc: MlflowClient, run_id: str | None) -> str | None:
    """``run_id`` if it exists in this store (a bundle trained against another store does not)."""
    if not run_id:
        return None
    try:
        mc.get_run(run_id)
    except MlflowException:
        log.warning("MLflow run %s (from the bundle) is not in %s; logging to a new run", run_id,
                    mc.tracking_uri)
        return None
    return run_id


def _ensure_registered_model(mc: MlflowClient, name: str) -> None:
    try:
        mc.get_registered_model(name)
    except MlflowException:
        try:
            mc.create_registered_model(name, description="hftpipe LOB mid-price direction classifier; "
                                                         "aliases champion / previous / challenger")
        except MlflowException:
            mc.get_registered_model(name)  # created concurrently: fine; anything else re-raises here


def _version_tags(bundle_info: dict[str, Any], report: dict[str, Any], decision: GateDecision,
                  champion: ChampionScore | None, data_id: str | None, features_dir: str | Path | None,
                  cfg: Config) -> dict[str, Any]:
    candidate = candidate_from_report(report, horizon=bundle_info["horizon"])
    model_metrics = report.get("model") or {}
    backtest = (report.get("backtest") or {}).get("model") or {}
    feature_meta = bundle_info.get("feature_meta") or {}
    tags: dict[str, Any] = {
        "gate.decision": decision.decision,
        "gate.reasons": "\n".join(decision.reasons),
        "gate.rules": asdict(cfg.register),
        "gate.champion_version": champion.version if champion else None,
        "gate.champion_macro_f1": (f"{champion.macro_f1:.6f}"
                                   if champion and champion.macro_f1 is not None else None),
        "model.name": bundle_info.get("model"),
        "model.horizon": str(bundle_info.get("horizon")),
        "model.window": str(bundle_info.get("window")),
        "model.levels": str(bundle_info.get("levels")),
        "metrics.macro_f1": f"{candidate.macro_f1:.6f}",
        "metrics.accuracy": (f"{float(model_metrics['accuracy']):.6f}"
                             if model_metrics.get("accuracy") is not None else None),
        "metrics.mcc": f"{float(model_metrics['mcc']):.6f}" if model_metrics.get("mcc") is not None else None,
        "metrics.best_baseline": candidate.best_baseline,
        "metrics.best_baseline_macro_f1": (f"{candidate.best_baseline_macro_f1:.6f}"
                                           if candidate.best_baseline_macro_f1 is not None else None),
        "metrics.margin_point": f"{candidate.margin_point:+.6f}",
        "metrics.margin_low": f"{candidate.margin_low:+.6f}" if candidate.margin_low is not None else None,
        "metrics.margin_high": f"{candidate.margin_high:+.6f}" if candidate.margin_high is not None else None,
        "metrics.net_pnl": f"{candidate.net_pnl:.6f}" if candidate.net_pnl is not None else None,
        "metrics.net_pnl_bps": (f"{float(backtest['net_pnl_bps']):.6f}"
                                if backtest.get("net_pnl_bps") is not None else None),
        "data.source_sha256": feature_meta.get("source_sha256"),
        "data.symbol": feature_meta.get("symbol"),
        "data.date": feature_meta.get("date"),
        "data.test_id": data_id,
        "registered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for check in decision.checks:
        tags[f"gate.check.{check.name}"] = "pass" if check.passed else "fail"
    if features_dir is not None:
        for key, value in lineage_tags(features_dir).items():
            if key.startswith("data."):
                tags[f"test_{key}"] = value
    commit = git_commit()
    if commit is not None:
        tags["git.commit"] = commit[0]
        tags["git.dirty"] = str(commit[1]).lower()
    return tags


def register(cfg: Config, model_dir: str | Path, report_path: str | Path, features_dir: str | Path | None = None,
             run_id: str | None = None, actor: str | None = None) -> RegistrationResult:
    """Register a model bundle as a new version of ``cfg.register.model_name`` and apply the gate.

    The bundle is logged as a pyfunc model in its training run (``bundle.json``'s ``mlflow_run_id``),
    ``run_id``, or a new run. The version becomes ``champion`` if it passes every gate check (the old
    champion gets ``previous``), else ``challenger``. The decision and its reasons become version tags.

    Args:
        model_dir: the bundle folder written by ``hftpipe train``.
        report_path: the candidate's ``report.json`` from ``hftpipe evaluate``.
        features_dir: the feature set the report was computed on; the champion is re-scored on its test
            split. Without it, the champion's recorded score counts only if it came from the same data.
        run_id: log into this MLflow run instead of the bundle's own.
        actor: who registers (audit trail; default HFTPIPE_ACTOR or the OS user).

    Audit: one ``register`` record per new version and, when it becomes champion, one ``promote`` record
    written BEFORE the alias moves (no promotion without its record). If the ``register`` record cannot
    be written the new version is deleted again; if the ``promote`` record cannot be written the version
    stays registered as ``challenger`` (tag ``promotion.blocked``) and :class:`AuditError` is raised.

    Raises:
        ModelError: ``model_dir`` is not a bundle. RegistryError: the report is missing or incomplete, scored
            another bundle (``model_info.bundle_sha256``) or other data than ``features_dir``
            (``data.features_sha256``); nothing is registered then.
    """
    from hftpipe.models.bundle import read_bundle_json

    model_dir = Path(model_dir)
    bundle_info = read_bundle_json(model_dir)
    report = read_report(report_path)
    # Every check runs before anything is written: a refused report registers nothing.
    _check_report_matches(report, bundle_info, report_path, model_dir)
    if features_dir is None:
        features_dir = _report_features_dir(report)
    else:
        eval_data_id(features_dir, report)  # a folder that is no feature set: its own clear error first
    if features_dir is not None:
        _check_report_data(report, Path(features_dir), report_path)
    data_id = eval_data_id(features_dir, report)
    candidate = candidate_from_report(report, horizon=bundle_info["horizon"], data_id=data_id)
    name = cfg.register.model_name
    mc = client()
    trail = _open_audit(cfg.audit.url)
    try:
        return _register_audited(cfg, mc, trail, name, model_dir, report, bundle_info, features_dir, data_id,
                                 candidate, run_id, actor)
    finally:
        trail.close()


Gate = Callable[[Any], tuple[ChampionScore | None, GateDecision]]  # champion version (or None) -> verdict


def _register_audited(cfg: Config, mc: MlflowClient, trail: Any, name: str, model_dir: Path, report: dict[str, Any],
                      bundle_info: dict[str, Any], features_dir: str | Path | None, data_id: str | None,
                      candidate: Any, run_id: str | None, actor: str | None, gate: Gate | None = None
                      ) -> RegistrationResult:
    from hftpipe import audit
    from hftpipe.audit.trail import default_actor

    champion_version = _alias_version(mc, name, CHAMPION)
    if gate is not None:  # several instruments: the pooled rule scores the champion on each
        champion, decision = gate(champion_version)
    else:
        scope = (report.get("data") or {}).get("scope") if isinstance(report.get("data"), dict) else None
        champion = (champion_score(cfg, mc, champion_version, features_dir, data_id, scope)
                    if champion_version is not None else None)
        decision = decide(candidate, champion, cfg.register)

    target = _target_run(mc, run_id or bundle_info.get("mlflow_run_id"))
    if target is None:
        with step_run(cfg, "register", str(bundle_info.get("model", "model")), features_dir=features_dir) as tracker:
            target = tracker.run_id
    run_tracker_metrics = {"test_macro_f1": candidate.macro_f1, "test_margin_point": candidate.margin_point}
    if candidate.margin_low is not None:
        run_tracker_metrics["test_margin_low"] = candidate.margin_low
    mc.log_dict(target, report, "evaluation/report.json")
    for key, value in run_tracker_metrics.items():
        mc.log_metric(target, key, value)

    previous = str(champion_version.version) if champion_version is not None else None
    tags = _version_tags(bundle_info, report, decision, champion, data_id, features_dir, cfg)
    if decision.passed and previous is not None:
        tags["promotion.replaced"] = previous  # what a later rollback of this version restores
    with fluent_store():
        info = log_bundle_model(model_dir, target, features_dir)
        _ensure_registered_model(mc, name)
        # Tags go in with the version (one transaction), so no reader ever sees a version without its verdict.
        version = str(mlflow.register_model(info.model_uri, name, tags={k: _tag(v) for k, v in tags.items()
                                                                        if v is not None}).version)

    now = _alias_version(mc, name, CHAMPION)
    if decision.passed and (str(now.version) if now is not None else None) != previous:
        # Another registration promoted a model while this one was being scored: the comparison is stale.
        stale = Check("champion_unchanged", False,
                      f"the champion changed to v{now.version if now else '-'} while this version was compared "
                      f"with v{previous or '-'}; register again to compare with the new champion")
        decision = GateDecision((*decision.checks, stale))
        mc.set_model_version_tag(name, version, "gate.decision", decision.decision)
        mc.set_model_version_tag(name, version, "gate.reasons", _tag("\n".join(decision.reasons)))
    alias = CHAMPION if decision.passed else CHALLENGER
    try:
        _audit(trail, audit.REGISTER, f"{name}/{version}", f"gate {decision.decision} -> {alias}",
               {"model_name": name, "version": version, "gate": decision.decision, "alias": alias,
                "reasons": decision.reasons, "run_id": target, "model": bundle_info.get("model"),
                "data_test_id": data_id}, actor, f"version {version} was deleted again, nothing registered")
    except Exception:
        mc.delete_model_version(name, version)
        raise
    if decision.passed:
        try:
            _audit(trail, audit.PROMOTE, f"{name}/{version}", "passed the promotion gate: " + "; ".join(decision.reasons),
                   {"model_name": name, "champion": version, "replaced": previous, "previous": previous},
                   actor, f"version {version} stays registered as challenger but was NOT promoted (champion unchanged)")
        except Exception as exc:
            mc.set_model_version_tag(name, version, "promotion.blocked", _tag(f"no audit record: {exc}"))
            mc.set_registered_model_alias(name, CHALLENGER, version)
            raise
        if previous is not None:
            mc.set_registered_model_alias(name, PREVIOUS, previous)
        mc.set_registered_model_alias(name, CHAMPION, version)
        mc.set_model_version_tag(name, version, "promotion.by", actor or default_actor())
    else:
        mc.set_registered_model_alias(name, CHALLENGER, version)
    _store_model_card(cfg, mc, name, version, target, bundle_info, report, decision, alias,
                      actor or default_actor(), tags)
    mc.set_tag(target, "registry.version", f"{name}/{version}")
    mc.set_tag(target, "gate.decision", decision.decision)
    log.info("%s version %s: gate %s -> %s", name, version, decision.decision, alias)
    for reason in decision.reasons:
        log.debug("  %s", reason)  # the CLI prints them; pipelines read them from the result
    metrics = {"macro_f1": candidate.macro_f1, "margin_point": candidate.margin_point}
    if candidate.margin_low is not None:
        metrics["margin_low"] = candidate.margin_low
    if candidate.net_pnl is not None:
        metrics["net_pnl"] = candidate.net_pnl
    return RegistrationResult(model_name=name, version=version, passed=decision.passed, reasons=decision.reasons,
                              alias=alias, previous_champion=previous, run_id=target,
                              model_uri=f"models:/{name}/{version}", metrics=metrics)


def _instrument_name(report: dict[str, Any]) -> str:
    data = report.get("data") or {}
    return f"{data.get('symbol')} {data.get('date')}"


def _combined_report(parts: Sequence[tuple[str, dict[str, Any]]], pooled: dict[str, Any] | None) -> dict[str, Any]:
    """One report.json-shaped record of several instruments' reports, for version tags, MLflow and the card.

    Its headline numbers are unweighted means over instruments (what the pooled gate reads); the union's
    numbers travel beside them under ``pooled``, labelled as such.
    """
    reports = [r for _, r in parts]

    def mean(get: Callable[[dict[str, Any]], Any]) -> float | None:
        values = [get(r) for r in reports]
        return None if any(v is None for v in values) else float(sum(values) / len(values))

    data = [r.get("data") or {} for r in reports]
    return {
        "model": {key: mean(lambda r, key=key: (r.get("model") or {}).get(key)) for key in ("macro_f1", "accuracy", "mcc")},
        "margin": {"point": mean(lambda r: r["margin"]["point"]), "low": mean(lambda r: r["margin"].get("low")),
                   "high": mean(lambda r: r["margin"].get("high")), "over": "each instrument's best baseline"},
        "best_baseline": "per instrument",
        "baselines": {},
        "model_info": reports[0].get("model_info"),
        "data": {"symbol": "+".join(dict.fromkeys(str(d.get("symbol")) for d in data)),
                 "date": "+".join(dict.fromkeys(str(d.get("date")) for d in data)),
                 "scope": "+".join(dict.fromkeys(str(d.get("scope")) for d in data)),
                 "scored_rows": int(sum(int(d.get("scored_rows", 0)) for d in data)), "instruments": len(reports)},
        "instruments": [{"instrument": name, "best_baseline": r.get("best_baseline"),
                         "macro_f1": (r.get("model") or {}).get("macro_f1"), "margin": r.get("margin"),
                         "net_pnl": ((r.get("backtest") or {}).get("model") or {}).get("net_pnl"),
                         "features_sha256": (r.get("data") or {}).get("features_sha256")} for name, r in parts],
        "pooled": pooled,
        "gate_rule": "pooled: mean margin over instruments, every instrument's point margin, mean macro-F1 vs the "
                     "champion (hftpipe.registry.gate.decide_pooled)",
    }


def register_pooled(cfg: Config, model_dir: str | Path, report_dir: str | Path, features_dirs: Sequence[str | Path],
                    run_id: str | None = None, actor: str | None = None) -> RegistrationResult:
    """Register a model evaluated on several instruments (``evaluate_many``) through the pooled gate.

    Each instrument's report (``report_dir/<SYMBOL_DATE>/report.json``, in the order of ``features_dirs``) is
    checked like :func:`register` checks one: it scored this bundle, on that feature set's rows. The champion
    is re-scored on each instrument's rows; :func:`hftpipe.registry.gate.decide_pooled` decides.

    Raises:
        RegistryError: a report is missing, scored another bundle or other data; nothing is registered then.
    """
    from hftpipe.evaluation.pooled import POOLED_JSON, data_name, unique_folders
    from hftpipe.evaluation.report import REPORT_FILE
    from hftpipe.models.bundle import read_bundle_json

    model_dir, report_dir = Path(model_dir), Path(report_dir)
    bundle_info = read_bundle_json(model_dir)
    horizon = int(bundle_info["horizon"])
    folders = unique_folders([data_name(d) for d in features_dirs])
    parts = []
    for features_dir, folder in zip(features_dirs, folders):
        path = report_dir / folder / REPORT_FILE
        report = read_report(path)
        _check_report_matches(report, bundle_info, path, model_dir)
        _check_report_data(report, Path(features_dir), path)
        data_id = eval_data_id(features_dir, report)
        parts.append((_instrument_name(report), report, Path(features_dir), data_id,
                      candidate_from_report(report, horizon=horizon, data_id=data_id)))
    pooled_path = report_dir / POOLED_JSON
    pooled = json.loads(pooled_path.read_text()).get("pooled") if pooled_path.is_file() else None
    combined = _combined_report([(p[0], p[1]) for p in parts], pooled)
    data_id = hashlib.sha256("|".join(str(p[3]) for p in parts).encode()).hexdigest()
    candidates = [(p[0], p[4]) for p in parts]

    def gate(champion_version: Any) -> tuple[ChampionScore | None, GateDecision]:
        if champion_version is None:
            return None, decide_pooled(candidates, None, cfg.register)
        champions = [champion_score(cfg, mc, champion_version, p[2], p[3], (p[1].get("data") or {}).get("scope"))
                     for p in parts]
        decision = decide_pooled(candidates, champions, cfg.register)
        scored = [c.macro_f1 for c in champions]
        mean = None if any(v is None for v in scored) else float(sum(scored) / len(scored))  # type: ignore[arg-type]
        return ChampionScore(str(champion_version.version), champions[0].horizon, mean, None,
                             f"mean over {len(champions)} instruments, each re-scored"), decision

    candidate = candidate_from_report(combined, horizon=horizon, data_id=data_id)
    mc = client()
    trail = _open_audit(cfg.audit.url)
    try:
        return _register_audited(cfg, mc, trail, cfg.register.model_name, model_dir, combined, bundle_info,
                                 parts[0][2], data_id, candidate, run_id, actor, gate=gate)
    finally:
        trail.close()
