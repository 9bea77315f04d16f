"""The RL policy as its own registered model, promoted by a gate against the simple policies.

Gate (on an ``hftpipe rl evaluate`` report): the learned policy's net PnL beats the best simple policy
(flat, threshold, passive, random) by more than ``rl.min_margin`` dollars AND the lower bound of its
own net-PnL bootstrap interval is above zero; then the new version becomes ``champion``, else
``challenger``. Uses the existing tracking helpers (a tracked run holds the policy folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from hftpipe.config import Config
from hftpipe.errors import ModelError, RegistryError
from hftpipe.registry.tracker import mlflow_run

log = logging.getLogger(__name__)

POLICY_META = "policy.json"  # hftpipe.rl.agent.META_FILE (the registry stays below hftpipe.rl)


def policy_gate(report: dict[str, Any], min_margin: float) -> dict[str, Any]:
    """The gate's decision and reasons from an ``rl evaluate`` report."""
    pols = report["policies"]
    learned = pols["learned"]
    best = report["best_simple"]
    margin = learned["net_pnl"] - pols[best]["net_pnl"]
    low = learned["net_pnl_interval"]["low"]
    checks = {"margin": margin > min_margin, "interval_above_zero": low > 0}
    reasons = [(f"net PnL {learned['net_pnl']:+.2f} $ vs best simple policy {best} {pols[best]['net_pnl']:+.2f} $ "
               f"(margin {margin:+.2f}, required > {min_margin:+.2f})"),
               f"net PnL 95% interval lower bound {low:+.2f} $ (required > 0)"]
    passed = all(checks.values())
    return {"passed": passed, "alias": "champion" if passed else "challenger", "margin": margin,
            "best_simple": best, "checks": checks, "reasons": reasons}


def register_policy(cfg: Config, policy_dir: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Log the policy folder to a tracked run, register it under ``rl.model_name``, alias it by the gate."""
    name = cfg.rl.model_name
    gate = policy_gate(report, cfg.rl.min_margin)
    with mlflow_run(cfg, "rl-register", tags={"step": "rl-register"}) as tracker:
        tracker.log_artifact(policy_dir, "policy")
        tracker.log_dict(report, "rl_evaluation.json")
        tracker.log_metrics({"net_pnl": report["policies"]["learned"]["net_pnl"], "margin": gate["margin"]})
        mc = tracker.client
        try:
            mc.get_registered_model(name)
        except MlflowException:
            mc.create_registered_model(name, description="hftpipe RL trading policy (stable-baselines3); "
                                                         "aliases champion / challenger")
        source = f"{mc.get_run(tracker.run_id).info.artifact_uri}/policy"
        version = mc.create_model_version(name, source, run_id=tracker.run_id,
                                          tags={"gate": gate["alias"], "data": str(report["data"].get("symbol")),
                                                "scope": str(report["data"].get("scope"))})
        mc.set_registered_model_alias(name, gate["alias"], version.version)
        tracker.set_tags({"gate": gate["alias"], "registered_model": f"{name}/{version.version}"})
    log.info("registered %s v%s as %s", name, version.version, gate["alias"])
    return {"name": name, "version": str(version.version), **gate}


def resolve_policy(uri: str, destination: str | Path) -> Path:
    """Download the policy folder of ``models:/NAME@alias`` or ``models:/NAME/VERSION`` to ``destination``."""
    import mlflow

    from hftpipe.registry.tracker import fluent_store

    with fluent_store():
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))


def registered_policy_uri(cfg: Config) -> str:
    """``models:/<rl.model_name>@champion`` when a version holds the alias, else the newest registered version.

    Raises:
        RegistryError: no version of the policy is registered.
    """
    from hftpipe.registry.tracker import client

    name = cfg.rl.model_name
    mc = client()
    try:
        mc.get_model_version_by_alias(name, "champion")
        return f"models:/{name}@champion"
    except MlflowException:
        pass
    try:
        versions = mc.search_model_versions(f"name='{name}'")
    except MlflowException:
        versions = []
    if not versions:
        raise RegistryError(f"no RL policy is registered as {name!r}: run `hftpipe rl train` then "
                            "`hftpipe rl evaluate --register` (or pass a policy folder with --rl-policy)")
    newest = max(int(v.version) for v in versions)
    log.info("no champion RL policy; using the newest registered version, %s/%d", name, newest)
    return f"models:/{name}/{newest}"


def policy_folder(ref: str, workdir: str | Path) -> Path:
    """The policy folder of ``ref``: a ``models:/`` URI is downloaded under ``workdir``, a folder is itself.

    Raises:
        ModelError: the URI or the folder holds no trained policy.
    """
    if ref.startswith("models:/"):
        root = resolve_policy(ref, workdir)
        found = sorted(p.parent for p in root.rglob(POLICY_META))
        if not found:
            raise ModelError(f"{ref} holds no {POLICY_META}; register a policy with `hftpipe rl evaluate --register`")
        return found[0]
    return Path(ref)
