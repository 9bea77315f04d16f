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
from hftpipe.registry.tracker import mlflow_run

log = logging.getLogger(__name__)


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
