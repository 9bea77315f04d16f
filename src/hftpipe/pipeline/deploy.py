"""The deploy step: put a promoted model version live.

Servers follow the ``champion`` alias themselves (hot reload), so deploying means: prove the version
loads and answers, record it, and on a cluster roll the InferenceService so KServe's canary logic applies.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import ModelError

log = logging.getLogger(__name__)


def smoke_window(window: int, levels: int, mid: float = 100.0, tick: float = 0.01) -> np.ndarray:
    """A well-formed (1, T, 4L) book window: a one-tick spread and a flat ladder of 100 shares."""
    row = np.empty(4 * levels)
    for k in range(levels):
        row[4 * k: 4 * k + 4] = (mid + tick * (k + 0.5), 100.0, mid - tick * (k + 0.5), 100.0)
    return np.tile(row, (1, window, 1))


def check_version(model_name: str, version: str) -> dict[str, Any]:
    """Load a registered version and check it answers a well-formed window with probabilities."""
    from hftpipe.models.bundle import load_bundle
    from hftpipe.registry import resolve_model

    local_dir, _, _ = resolve_model(f"models:/{model_name}/{version}")
    bundle = load_bundle(local_dir)
    probs = bundle.predict_proba(smoke_window(bundle.window, bundle.levels))
    if probs.shape != (1, 3) or not np.all(np.isfinite(probs)) or abs(float(probs.sum()) - 1.0) > 1e-3:
        raise ModelError(f"{model_name} version {version} gave {probs!r} on a smoke input; not deploying")
    return {"window": bundle.window, "levels": bundle.levels, "smoke_probabilities": probs[0].tolist()}


def deploy(cfg: Config, model_name: str, version: str, actor: str | None = None) -> dict[str, Any]:
    """Deploy ``model_name`` version ``version`` to ``cfg.pipeline.deploy_target``.

    One ``deploy`` audit record is written after the smoke check and BEFORE anything changes (the
    InferenceService patch, the deployment ledger): if it cannot be written, nothing is deployed.

    Raises:
        ModelError: the version fails the smoke check. AuditError: the audit record could not be written.
    """
    from hftpipe import audit

    checked = check_version(model_name, version)
    record = {"model_name": model_name, "version": str(version), "target": cfg.pipeline.deploy_target,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **checked}
    try:
        audit.record(audit.DEPLOY, f"{model_name}/{version}", reason=f"deploy to {cfg.pipeline.deploy_target}",
                     details={"model_name": model_name, "version": str(version), "target": cfg.pipeline.deploy_target,
                              "namespace": cfg.pipeline.namespace if cfg.pipeline.deploy_target == "kserve" else None},
                     actor=actor, url=cfg.audit.url)
    except audit.AuditError:
        raise
    except Exception as exc:  # the store's own errors (sqlite3, psycopg, OS): typed, with what was not done
        raise audit.AuditError(f"audit record 'deploy' for {model_name}/{version} could not be written ({exc}); "
                               "nothing was deployed") from exc
    if cfg.pipeline.deploy_target == "kserve":
        record["rollout"] = _roll_inference_service(cfg, model_name, str(version))
        record["status"] = "rolled-out"
    else:
        record["status"] = "live-local"  # a running `hftpipe serve` picks the alias up on its next check
    with open(paths.home() / "deployments.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    log.info("deployed %s version %s (%s)", model_name, version, record["status"])
    return record


def _roll_inference_service(cfg: Config, model_name: str, version: str) -> dict[str, Any]:
    """Annotate the InferenceService with the new version; KServe rolls (and canaries) the predictor."""
    from kubernetes import client, config  # installed with kserve; only used inside a cluster

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    patch = {"metadata": {"annotations": {"hftpipe.io/model-name": model_name,
                                          "hftpipe.io/model-version": version}},
             "spec": {"predictor": {"annotations": {"hftpipe.io/model-version": version}}}}
    client.CustomObjectsApi().patch_namespaced_custom_object(
        group="serving.kserve.io", version="v1beta1", namespace=cfg.pipeline.namespace,
        plural="inferenceservices", name=cfg.pipeline.inference_service, body=patch)
    return {"namespace": cfg.pipeline.namespace, "inference_service": cfg.pipeline.inference_service}
