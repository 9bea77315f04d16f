"""Rendered overlays and helpers shared by the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.kustomize import build

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "kubernetes"
OVERLAYS = ("dev", "prod", "prod-canary")
# Kustomizations applied on their own, into another namespace than the overlays' (rendered and
# validated by their own tests): kubernetes/dask goes where the KFP lake pipeline's tasks run.
STANDALONE = ("dask",)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered once: overlay name -> resources."""
    return {name: build(KUBERNETES / "overlays" / name) for name in OVERLAYS}


def find(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one resource of ``kind`` named ``name``."""
    hits = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def pod_specs(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) for every pod a resource creates (Deployment, Job, PyTorchJob, InferenceService)."""
    kind, spec = resource["kind"], resource.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        yield "spec.template.spec", spec["template"]["spec"]
    elif kind == "CronJob":
        yield "spec.jobTemplate.spec.template.spec", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "PyTorchJob":
        for rtype, replica in spec["pytorchReplicaSpecs"].items():
            yield f"spec.pytorchReplicaSpecs.{rtype}.template.spec", replica["template"]["spec"]
    elif kind == "InferenceService":
        yield "spec.predictor", spec["predictor"]
    elif kind == "DaskCluster":
        for role in ("scheduler", "worker"):
            yield f"spec.{role}.spec", spec[role]["spec"]


def containers(resource: dict[str, Any], init: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, container) for every container (and init container) of a resource's pods."""
    for where, pod in pod_specs(resource):
        keys = ("initContainers", "containers") if init else ("containers",)
        for key in keys:
            for container in pod.get(key, []):
                yield f"{resource['kind']}/{resource['metadata']['name']} {where}.{key}[{container['name']}]", container
