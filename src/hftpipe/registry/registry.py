"""The MLflow model registry: register a bundle, gate its promotion, list, roll back, resolve.

Aliases (never the deprecated stages) carry the state:

- ``champion``: the version that serves. Only a version that passes the gate
  (:mod:`hftpipe.registry.gate`) gets it;
- ``previous``: the champion it replaced (what ``rollback`` restores);
- ``challenger``: the latest version that failed the gate.

Every version carries tags: ``gate.decision`` (pass / fail), ``gate.reasons`` (one line per check),
key test metrics, the data's sha256 and the git commit, so ``hftpipe registry list`` and the MLflow UI
say why a version is or is not serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import DataFormatError, ModelError, RegistryError, ReportError
from hftpipe.registry.gate import ChampionScore, Check, GateDecision, candidate_from_report, decide
from hftpipe.registry.pyfunc import BUNDLE_ARTIFACT, log_bundle_model
from hftpipe.registry.tracker import (
    client,
    file_sha256,
    fluent_store,
    git_commit,
    lineage_tags,
    step_run,
)

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"
_TAG_MAX = 5000  # MLflow's limit on a model-version tag value
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


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


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as ``hftpipe registry list`` shows it."""

    version: str
    aliases: list[str]
    decision: str | None  # gate.decision tag
    reasons: list[str]
    metrics: dict[str, str]  # metrics.* tags (as stored)
    created: str  # UTC time
    run_id: str | None
    tags: dict[str, str]


@dataclass(frozen=True)
class RollbackResult:
    model_name: str
    demoted: str  # the champion before the rollback
    restored: str  # the champion now
    previous: str | None  # where the previous alias points now (None: removed)


@dataclass(frozen=True)
class PromotionResult:
    model_name: str
    champion: str  # the champion now
    replaced: str | None  # the champion before (now ``previous``)
    forced: bool  # promoted although its gate decision was not pass


# ---------------------------------------------------------------------------------------------- helpers

def _alias_version(mc: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or None when the model or the alias does not exist."""
    try:
        return mc.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _require_model(mc: MlflowClient, name: str) -> None:
    try:
        mc.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"no registered model named {name!r} in {mc.tracking_uri}; run `hftpipe "
                                "register` first (or set MLFLOW_TRACKING_URI / HFTPIPE_HOME)") from exc
        raise


def _tag(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _TAG_MAX else text[: _TAG_MAX - 3] + "..."


def _set_version_tags(mc: MlflowClient, name: str, version: str, tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        if value is not None:
            mc.set_model_version_tag(name, version, key, _tag(value))


def _utc(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((ms or 0) / 1000))


def _audit(trail: Any, action: str, subject: str, reason: str, details: dict[str, Any], actor: str | None,
           undone: str) -> None:
    """Append one audit record; any failure becomes an :class:`AuditError` saying what was (not) done."""
    from hftpipe.audit import AuditError

    try:
        trail.record(action, subject, reason=reason, details=details, actor=actor)
    except Exception as exc:  # sqlite3 / psycopg / OS errors alike: the change must not go unrecorded
        raise AuditError(f"audit record '{action}' for {subject} could not be written ({exc}); {undone}. "
                         "Fix the audit store (audit.url / HFTPIPE_AUDIT_URL) and try again") from exc


def _open_audit(url: str | None) -> Any:
    """The audit trail, opened before anything changes so an unreachable store refuses the whole operation."""
    from hftpipe import audit
    from hftpipe.audit import AuditError

    try:
        return audit.open_trail(url)
    except AuditError:
        raise
    except Exception as exc:
        raise AuditError(f"cannot open the audit trail ({exc}); nothing was changed. Fix audit.url / "
                         "HFTPIPE_AUDIT_URL (or HFTPIPE_HOME/audit.db) and try again") from exc


def read_report(report_path: str | Path) -> dict[str, Any]:
    """The evaluation ``report.json``.

    Raises:
        RegistryError: missing or not JSON.
    """
    from hftpipe.evaluation.report import EvaluationReport

    path = Path(report_path)
    if not path.is_file():  # a folder is not a report here: --report names the file
        raise RegistryError(f"evaluation report {path} does not exist; run `hftpipe evaluate` first")
    try:
        return EvaluationReport.load(path).raw
    except ReportError as exc:
        raise RegistryError(str(exc)) from exc


def eval_data_id(features_dir: str | Path | None, report: dict[str, Any]) -> str | None:
    """Identity of the test data: the feature table's sha256 (from the folder, else from the report)."""
    if features_dir is not None:
        parquet = Path(features_dir) / "features.parquet"
        if not parquet.is_file():
            raise RegistryError(f"{features_dir} is not a feature set (features.parquet is missing); "
                                "pass the folder written by `hftpipe features`")
        return file_sha256(parquet)
    data = report.get("data")
    if isinstance(data, dict):
        for key in ("features_sha256", "data_id"):
            if data.get(key):
                return str(data[key])
    return None


def _check_report_matches(report: dict[str, Any], bundle_info: dict[str, Any], report_path: str | Path,
                          model_dir: str | Path | None = None) -> None:
    """Refuse a report written for another model: a wrong --report would gate the wrong numbers.

    The report must name the bundle it scored (``model_info.bundle_sha256``, written by ``hftpipe evaluate``)
    and that fingerprint must be this bundle's; a report without one is refused too, or stripping the hash
    would bypass the check. The lineage the report recorded must be this bundle's training data.
    """
    from hftpipe.evaluation.evaluate import bundle_sha256

    info = report.get("model_info")
    if not isinstance(info, dict):
        raise RegistryError(f"{report_path} does not say which model it scored (no model_info); evaluate this "
                            "model with `hftpipe evaluate` and register it with that report")
    for key in ("horizon", "window", "levels"):
        if info.get(key) is not None and int(info[key]) != int(bundle_info[key]):
            raise RegistryError(f"{report_path} was computed for a model with {key}={info[key]}, but this bundle has "
                                f"{key}={bundle_info[key]}; evaluate this model first (`hftpipe evaluate`)")
    if info.get("model") is not None and info["model"] != bundle_info.get("model"):
        raise RegistryError(f"{report_path} was computed for a {info['model']!r} model, but this bundle is "
                            f"{bundle_info.get('model')!r}; evaluate this model first (`hftpipe evaluate`)")
    reported = info.get("bundle_sha256")
    if not isinstance(reported, str) or not reported:
        raise RegistryError(f"{report_path} does not name the bundle it scored (no model_info.bundle_sha256); "
                            "evaluate this model with `hftpipe evaluate` and register it with that report")
    if model_dir is not None:
        actual = bundle_sha256(model_dir)
        if reported != actual:
            raise RegistryError(f"{report_path} scored another model (bundle sha256 {reported[:12]}..., this bundle "
                                f"is {actual[:12]}...); evaluate this model first (`hftpipe evaluate`)")
    trained_on = info.get("trained_on")
    lineage = bundle_info.get("feature_meta") or {}
    if isinstance(trained_on, dict) and trained_on.get("source_sha256") and lineage.get("source_sha256") \
            and trained_on["source_sha256"] != lineage["source_sha256"]:
        raise RegistryError(f"{report_path} scored a model trained on other data (source sha256 "
                            f"{str(trained_on['source_sha256'])[:12]}..., this bundle's is "
                            f"{str(lineage['source_sha256'])[:12]}...); evaluate this model first")


def _check_report_data(report: dict[str, Any], features_dir: Path, report_path: str | Path) -> None:
    """Refuse a report computed on other rows than ``features_dir`` holds (the champion is re-scored there)."""
    data = report.get("data") if isinstance(report.get("data"), dict) else {}
    reported = data.get("features_sha256")
    actual = file_sha256(features_dir / "features.parquet")
    if not reported:
        raise RegistryError(f"{report_path} does not record the data it scored (no data.features_sha256); "
                            f"evaluate the model on {features_dir} with `hftpipe evaluate` first")
    if reported != actual:
        raise RegistryError(f"{report_path} was computed on other data than {features_dir} (features sha256 "
                            f"{str(reported)[:12]}..., the folder holds {actual[:12]}...); evaluate the model on "
                            "this feature set, or pass the one the report used")


def _report_features_dir(report: dict[str, Any]) -> Path | None:
    """The feature folder the report was computed on, if the report names one that still exists."""
    named = (report.get("data") or {}).get("features_dir") if isinstance(report.get("data"), dict) else None
    if named and (Path(named) / "features.parquet").is_file():
        log.info("re-scoring the champion on the report's feature set %s", named)
        return Path(named)
    return None


# ---------------------------------------------------------------------------------------- champion score

def score_on_test_split(cfg: Config, bundle_dir: str | Path, features_dir: str | Path, label: str,
                        scope: str | None = None) -> tuple[float, float | None, str]:
    """(macro-F1, net PnL or None, how) of a bundle on the same rows of ``features_dir`` as the candidate.

    Uses ``hftpipe.evaluation.evaluate`` (the same code that wrote the candidate's report, with the
    candidate's scope: its test split, or the whole file when it never trained on it) when it is
    available; otherwise scores macro-F1 directly on the test windows (no backtest: net PnL is None).
    """
    try:
        from hftpipe.evaluation import REPORT_FILE, evaluate
    except ImportError:
        evaluate = None
    if evaluate is not None:
        output = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=paths.reports_dir()))
        if scope is not None:
            evaluate(cfg, bundle_dir, features_dir, output, scope=scope, model_ref=label)
        else:
            evaluate(cfg, bundle_dir, features_dir, output)
        report = read_report(output / REPORT_FILE)
        score = candidate_from_report(report, horizon=0)
        return score.macro_f1, score.net_pnl, f"re-scored by hftpipe evaluate, report {output}"
    return _macro_f1_on_test(bundle_dir, features_dir), None, "re-scored on the test windows"


def _macro_f1_on_test(bundle_dir: str | Path, features_dir: str | Path, chunk: int = 4096) -> float:
    """Macro-F1 of the bundle's predictions at every labelled test-window end of the feature set."""
    from hftpipe.evaluation.metrics import classification_metrics
    from hftpipe.features import load_feature_set
    from hftpipe.features.window import window_indices
    from hftpipe.models.bundle import load_bundle
    from hftpipe.training.data import TEST, sample_ends

    bundle = load_bundle(bundle_dir)
    features = load_feature_set(features_dir)
    if features.levels != bundle.levels:
        raise ModelError(f"the model takes {bundle.levels} book level(s), the test data has {features.levels}")
    labels = features.labels(bundle.horizon)
    ends = sample_ends(labels, features.split, TEST, bundle.window)
    if len(ends) == 0:
        raise ModelError(f"{features_dir} has no labelled test windows of length {bundle.window}")
    book = features.book()
    predicted = np.concatenate([bundle.predict(book[window_indices(ends[i:i + chunk], bundle.window)])
                                for i in range(0, len(ends), chunk)])
    return float(classification_metrics(labels[ends].astype(np.int64), predicted)["macro_f1"])


def champion_score(cfg: Config, mc: MlflowClient, champion: ModelVersion, features_dir: str | Path | None,
                   data_id: str | None, scope: str | None = None) -> ChampionScore:
    """Score the current champion on the candidate's test data.

    With ``features_dir`` the champion's bundle is scored afresh. Without it, the champion's own tagged
    macro-F1 is used only when it was measured on the same feature table (same sha256).
    """
    tags = champion.tags or {}
    horizon = int(tags["model.horizon"]) if tags.get("model.horizon", "").isdigit() else None
    version = str(champion.version)
    if features_dir is None:
        if data_id and tags.get("data.test_id") == data_id and tags.get("metrics.macro_f1"):
            net = tags.get("metrics.net_pnl")
            return ChampionScore(version, horizon, float(tags["metrics.macro_f1"]),
                                 float(net) if net else None, "its recorded score on the same feature table")
        return ChampionScore(version, horizon, None, None,
                             "it was evaluated on other (or unknown) data; pass the feature set (--features DIR) "
                             "so it can be re-scored")
    try:
        champion_dir, _, _ = resolve_model(f"models:/{champion.name}/{version}")
    except (ModelError, MlflowException, OSError) as exc:
        # A champion whose files are gone cannot be compared; the gate fails and says so.
        return ChampionScore(version, horizon, None, None, f"its model could not be downloaded: {exc}")
    try:
        macro_f1, net_pnl, how = score_on_test_split(cfg, champion_dir, features_dir,
                                                     f"champion-v{version}", scope)
    except (ModelError, DataFormatError) as exc:  # e.g. another level count: not comparable, not a crash
        return ChampionScore(version, horizon, None, None, str(exc))
    return ChampionScore(version, horizon, macro_f1, net_pnl, how)


# --------------------------------------------------------------------------------------------- register

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
    candidate = candidate_from_report(report, horizon=int(bundle_info["horizon"]))
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
    candidate = candidate_from_report(report, horizon=int(bundle_info["horizon"]), data_id=data_id)
    name = cfg.register.model_name
    mc = client()
    trail = _open_audit(cfg.audit.url)
    try:
        return _register_audited(cfg, mc, trail, name, model_dir, report, bundle_info, features_dir, data_id,
                                 candidate, run_id, actor)
    finally:
        trail.close()


def _register_audited(cfg: Config, mc: MlflowClient, trail: Any, name: str, model_dir: Path, report: dict[str, Any],
                      bundle_info: dict[str, Any], features_dir: str | Path | None, data_id: str | None,
                      candidate: Any, run_id: str | None, actor: str | None) -> RegistrationResult:
    from hftpipe import audit
    from hftpipe.audit.trail import default_actor

    champion_version = _alias_version(mc, name, CHAMPION)
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


# ------------------------------------------------------------------------------------------- model card

MODEL_CARD_DIR = "model_cards"


def model_card_path(version: str) -> str:
    """Where a version's card lives in its run's artifacts (``model_card.md`` and ``model_card.json``)."""
    return f"{MODEL_CARD_DIR}/v{version}"


def _store_model_card(cfg: Config, mc: MlflowClient, name: str, version: str, run_id: str,
                      bundle_info: dict[str, Any], report: dict[str, Any], decision: GateDecision, alias: str,
                      actor: str, tags: dict[str, Any]) -> None:
    """Write the version's model card (Markdown + JSON) into its run and point tags at it.

    A card that cannot be written does not undo the registration (the audit record stands): the version
    gets ``model_card.error`` and the log says why.
    """
    from hftpipe.audit.model_card import build_model_card, card_json, render_markdown

    try:
        backtest = None
        if cfg.register.backtest_report:
            backtest = json.loads(Path(cfg.register.backtest_report).read_text())
        lineage = {k: tags[k] for k in ("git.commit", "git.dirty", "data.test_id") if tags.get(k) is not None}
        card = build_model_card(name, version, bundle_info, report,
                                {"decision": decision.decision, "alias": alias, "reasons": decision.reasons},
                                registered_by=actor, registered_at=str(tags.get("registered_at")),
                                promoted_by=actor if alias == CHAMPION else None, run_id=run_id, lineage=lineage,
                                backtest=backtest)
        where = model_card_path(version)
        mc.log_text(run_id, render_markdown(card), f"{where}/model_card.md")
        mc.log_text(run_id, card_json(card), f"{where}/model_card.json")
        _set_version_tags(mc, name, version, {"model_card": where,
                                              "model_card.backtest": card["trading_backtest"]["status"]})
    except (OSError, ValueError, MlflowException) as exc:
        log.error("model card of %s v%s not written: %s", name, version, exc)
        mc.set_model_version_tag(name, version, "model_card.error", _tag(str(exc)))


def read_model_card(name: str, version: str) -> tuple[dict[str, Any], str]:
    """(card JSON, card Markdown) of a registered version.

    Raises:
        RegistryError: no such version, or it has no card (registered before cards existed, or writing failed).
    """
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    where = (mv.tags or {}).get("model_card")
    if not where or not mv.run_id:
        why = (mv.tags or {}).get("model_card.error") or "registered before model cards existed"
        raise RegistryError(f"{name} v{version} has no model card ({why})")
    try:
        with fluent_store():
            text = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{where}/model_card.json")
            markdown = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{where}/model_card.md")
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"the model card of {name} v{version} cannot be read from run {mv.run_id}: {exc}") from exc
    return json.loads(text), markdown


# ------------------------------------------------------------------------------------ list and rollback

def list_versions(name: str) -> list[VersionInfo]:
    """Every version of ``name``, newest first, with aliases, gate decision and key metrics.

    Raises:
        RegistryError: no such registered model.
    """
    mc = client()
    _require_model(mc, name)
    versions = mc.search_model_versions(f"name = '{name}'")
    # Search results do not carry aliases on every store; the registered model holds them all.
    aliases: dict[str, list[str]] = {}
    for alias, version in (mc.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        tags = dict(mv.tags or {})
        out.append(VersionInfo(
            version=str(mv.version),
            aliases=sorted(aliases.get(str(mv.version), [])),
            decision=tags.get("gate.decision"),
            reasons=[r for r in tags.get("gate.reasons", "").split("\n") if r],
            metrics={k.removeprefix("metrics."): v for k, v in tags.items() if k.startswith("metrics.")},
            created=_utc(mv.creation_timestamp),
            run_id=mv.run_id,
            tags=tags,
        ))
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def rollback(name: str, actor: str | None = None, reason: str = "", audit_url: str | None = None) -> RollbackResult:
    """Move ``champion`` back to the ``previous`` version; the demoted version is tagged as rolled back.

    ``previous`` then points at the champion the restored version had replaced (so repeated rollbacks walk
    back through the promotion history), or is removed when there is none.

    One ``rollback`` audit record (who: ``actor``; why: ``reason``) is written before any alias moves;
    when it cannot be written nothing moves.

    Raises:
        RegistryError: no such model, no champion, or no previous version to restore.
        AuditError: the audit record could not be written (nothing was changed).
    """
    from hftpipe import audit

    mc = client()
    _require_model(mc, name)
    champion = _alias_version(mc, name, CHAMPION)
    if champion is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = _alias_version(mc, name, PREVIOUS)
    if previous is None:
        raise RegistryError(f"{name} has no 'previous' version to roll back to (champion is v{champion.version}); "
                            "set one with `mlflow` or register a new model")
    demoted, restored = str(champion.version), str(previous.version)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    older = (previous.tags or {}).get("promotion.replaced")
    new_previous = older if older and older not in (demoted, restored) and _version_exists(mc, name, older) else None
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.ROLLBACK, name, reason or f"rollback of v{demoted}",
               {"model_name": name, "demoted": demoted, "restored": restored, "previous": new_previous},
               actor, "nothing was rolled back")
    finally:
        trail.close()
    mc.set_registered_model_alias(name, CHAMPION, restored)
    _set_version_tags(mc, name, demoted, {"rollback.demoted": "true", "rollback.at": now,
                                          "rollback.replaced_by": restored})
    _set_version_tags(mc, name, restored, {"rollback.restored_at": now})
    if new_previous is not None:
        mc.set_registered_model_alias(name, PREVIOUS, new_previous)
    else:
        mc.delete_registered_model_alias(name, PREVIOUS)
    log.info("%s: champion rolled back from v%s to v%s (previous -> %s)", name, demoted, restored, new_previous)
    return RollbackResult(name, demoted, restored, new_previous)


def promote(name: str, version: str, reason: str, actor: str | None = None, audit_url: str | None = None,
            force: bool = False) -> PromotionResult:
    """Make ``version`` the champion by hand (e.g. after a canary); the old champion becomes ``previous``.

    One ``promote`` audit record is written before any alias moves; without it nothing moves. A version
    whose gate decision is not ``pass`` needs ``force`` (and the record says so).

    Raises:
        RegistryError: unknown model or version, no reason, already champion, or a failed gate without force.
        AuditError: the audit record could not be written (nothing was changed).
    """
    from hftpipe import audit

    if not reason or not reason.strip():
        raise RegistryError("a manual promotion needs --reason TEXT (why, for the audit trail)")
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    version = str(mv.version)
    champion = _alias_version(mc, name, CHAMPION)
    old = str(champion.version) if champion is not None else None
    if old == version:
        raise RegistryError(f"{name} v{version} is already the champion")
    decision = (mv.tags or {}).get("gate.decision")
    if decision != "pass" and not force:
        raise RegistryError(f"{name} v{version} did not pass the promotion gate (gate.decision={decision}); "
                            "promote it anyway only with --force and a reason")
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.PROMOTE, f"{name}/{version}", reason,
               {"model_name": name, "champion": version, "replaced": old, "previous": old, "manual": True,
                "gate": decision, "forced": decision != "pass"}, actor, "nothing was promoted")
    finally:
        trail.close()
    if old is not None:
        mc.set_registered_model_alias(name, PREVIOUS, old)
    mc.set_registered_model_alias(name, CHAMPION, version)
    _set_version_tags(mc, name, version, {"promotion.replaced": old, "promotion.by": actor or _actor(),
                                          "promotion.manual": "true"})
    log.info("%s: v%s promoted by hand (previous champion %s)", name, version, old)
    return PromotionResult(name, version, old, forced=decision != "pass")


def move_alias(name: str, alias: str, version: str, reason: str, actor: str | None = None,
               audit_url: str | None = None) -> str | None:
    """Point ``alias`` (not ``champion``: see :func:`promote` and :func:`rollback`) at ``version``; one
    ``alias_move`` audit record first. Returns the version the alias pointed at before (None: new alias).

    Raises:
        RegistryError: champion, unknown version, bad alias name or no reason. AuditError: nothing moved.
    """
    from hftpipe import audit

    if alias == CHAMPION:
        raise RegistryError("the champion moves only through the gate (hftpipe register), hftpipe registry promote "
                            "or hftpipe registry rollback, each with its audit record")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,62}", alias):
        raise RegistryError(f"{alias!r} is not an alias name (letters, digits, - and _, starting with a letter)")
    if not reason or not reason.strip():
        raise RegistryError("an alias move needs --reason TEXT (why, for the audit trail)")
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    before = _alias_version(mc, name, alias)
    old = str(before.version) if before is not None else None
    trail = _open_audit(audit_url)
    try:
        _audit(trail, audit.ALIAS_MOVE, f"{name}/{mv.version}", reason,
               {"model_name": name, "alias": alias, "version": str(mv.version), "was": old}, actor, "nothing was moved")
    finally:
        trail.close()
    mc.set_registered_model_alias(name, alias, str(mv.version))
    return old


def _actor() -> str:
    from hftpipe.audit.trail import default_actor

    return default_actor()


def _version_exists(mc: MlflowClient, name: str, version: str) -> bool:
    try:
        mc.get_model_version(name, version)
    except MlflowException:
        return False
    return True


# ----------------------------------------------------------------------------------------------- resolve

def _parse_models_uri(mc: MlflowClient, uri: str) -> ModelVersion:
    match = _URI.match(uri)
    if not match:
        raise RegistryError(f"{uri!r} is not a registry URI; use models:/NAME@ALIAS or models:/NAME/VERSION")
    name = match["name"]
    _require_model(mc, name)
    if match["alias"]:
        mv = _alias_version(mc, name, match["alias"])
        if mv is None:
            raise RegistryError(f"{name} has no alias {match['alias']!r}; see `hftpipe registry list`")
        return mv
    version = match["version"]
    if version == "latest":
        versions = mc.search_model_versions(f"name = '{name}'")
        return max(versions, key=lambda v: int(v.version))
    try:
        return mc.get_model_version(name, version)
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version!r}; see `hftpipe registry list`") from exc


def current_version(uri: str) -> str:
    """The version a registry URI points at now (cheap: no download), e.g. for alias polling."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0]
    return str(_parse_models_uri(client(), uri).version)


def _bundle_in(model_root: Path) -> Path:
    """The bundle folder inside a downloaded pyfunc model (from its MLmodel file)."""
    mlmodel = model_root / "MLmodel"
    if mlmodel.is_file():
        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifact = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts", {}).get(BUNDLE_ARTIFACT)
        if artifact and (model_root / artifact["path"] / "bundle.json").is_file():
            return model_root / artifact["path"]
    if (model_root / "bundle.json").is_file():
        return model_root
    found = sorted(model_root.rglob("bundle.json"))
    if not found:
        raise ModelError(f"{model_root} holds no hftpipe model bundle (bundle.json); it was not registered by "
                         "`hftpipe register`")
    return found[0].parent


def _cache_problem(model_root: Path) -> str | None:
    """Why a downloaded model cannot be used (bundle weights fail their sha256), or None if it is intact."""
    from hftpipe.models.bundle import BUNDLE_FILE, MODEL_FILE, read_bundle_json

    try:
        bundle = _bundle_in(model_root)
    except ModelError:
        return None  # not a bundle at all: resolve_model's caller reports that, not a hash problem
    try:
        expected = read_bundle_json(bundle).get("model_sha256")
        weights = bundle / MODEL_FILE
        if not weights.is_file():
            return f"{MODEL_FILE} is missing"
        if file_sha256(weights) != expected:
            return f"{MODEL_FILE} does not match the sha256 in {BUNDLE_FILE}"
    except (ModelError, DataFormatError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _download(artifact_uri: str, destination: Path) -> Path:
    """Download once into ``destination`` (atomic: a half-finished download is never seen).

    A cached copy is checked on every use: one that fails its hash (a download of an artifact corrupted
    at the time, a disk error) is discarded and downloaded again, so restoring the artifact is enough.

    Raises:
        ModelError: the freshly downloaded artifact fails its hash too (the registry's copy is corrupt).
    """
    if destination.is_dir():
        problem = _cache_problem(destination)
        if problem is None:
            return destination
        log.warning("cached copy of %s is corrupt (%s): discarding it and downloading again", artifact_uri, problem)
        trash = destination.with_name(f".discard-{destination.name}-{os.getpid()}")
        try:
            os.replace(destination, trash)
        except OSError:
            pass  # another process discarded it first
        shutil.rmtree(trash, ignore_errors=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=destination.parent))
    try:
        with fluent_store():
            mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging))
        problem = _cache_problem(staging)
        if problem is not None:
            raise ModelError(f"{artifact_uri}: the artifact in the registry is corrupt ({problem}); restore it in "
                             "the MLflow artifact store, or move the alias to a good version (`hftpipe registry "
                             "rollback`); nothing was cached, so the next try downloads it again")
        try:
            os.replace(staging, destination)
        except OSError:
            if not destination.is_dir():  # another process finished the same download first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return destination


def resolve_model(uri: str | Path) -> tuple[Path, str | None, str | None]:
    """Resolve a model reference to a local bundle folder.

    Args:
        uri: a bundle folder, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` (or ``/latest``), or
            ``runs:/RUN_ID/model``. Registry versions are downloaded once into a cache under HFTPIPE_HOME.
    Returns:
        (bundle folder, registered name or None, version or None).
    Raises:
        RegistryError: unknown model, alias or version. ModelError: the download holds no bundle.
    """
    text = str(uri)
    if not text.startswith(("models:/", "runs:/")):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise RegistryError(f"{text!r} is neither a bundle folder nor a registry URI "
                                "(models:/NAME@champion, models:/NAME/3)")
        return _bundle_in(path), None, None
    cache = paths.sub("model_cache")
    if text.startswith("runs:/"):
        key = re.sub(r"[^A-Za-z0-9._-]+", "_", text.removeprefix("runs:/"))
        return _bundle_in(_download(text, cache / "runs" / key)), None, None
    mc = client()
    mv = _parse_models_uri(mc, text)
    name, version = mv.name, str(mv.version)
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    # A version's content never changes, so the cache is keyed by version (an alias resolves to its version
    # first) plus the store and the version's source, so another store or a re-created model never hits it.
    origin = hashlib.sha256(f"{mc.tracking_uri}|{mv.source}".encode()).hexdigest()[:12]
    local = _download(f"models:/{name}/{version}", cache / safe_name / f"{version}-{origin}")
    return _bundle_in(local), name, version
