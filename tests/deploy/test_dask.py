"""kubernetes/dask: the Dask cluster of the partitioned dataset, valid against the dask-kubernetes operator's
CRDs (a broken one fails), and the pieces that must agree: image, claim, paths, worker flags, Dask config."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import KUBERNETES, REPO, containers, find
from tests.deploy.kustomize import build, json_patch
from tests.deploy.schemas import ManifestInvalid, validate_manifest

CLUSTER = "hftpipe-lake"


@pytest.fixture(scope="module")
def dask() -> list[dict[str, Any]]:
    return build(KUBERNETES / "dask")


def pod(cluster: dict[str, Any], role: str) -> dict[str, Any]:
    return cluster["spec"][role]["spec"]


def test_every_resource_matches_its_schema(dask) -> None:
    used = {(r["kind"], validate_manifest(r)) for r in dask}
    assert used == {("PersistentVolumeClaim", "kubernetes:1.33"), ("ConfigMap", "kubernetes:1.33"),
                    ("DaskCluster", "crd:daskcluster.kubernetes.dask.org_v1.json"),
                    ("DaskAutoscaler", "crd:daskautoscaler.kubernetes.dask.org_v1.json")}


# (kind, JSON patch that breaks it, what the error must say): unknown field, wrong type, missing required
# field, at the top of the spec and inside the pod templates the CRD inlines.
BROKEN = [
    ("DaskCluster", {"op": "add", "path": "/spec/worker/replica", "value": 2}, "'replica' was unexpected"),
    ("DaskCluster", {"op": "replace", "path": "/spec/worker/replicas", "value": "two"}, "is not of type 'integer'"),
    ("DaskCluster", {"op": "remove", "path": "/spec/scheduler/service"}, "'service' is a required property"),
    ("DaskCluster", {"op": "remove", "path": "/spec/worker"}, "'worker' is a required property"),
    ("DaskCluster", {"op": "add", "path": "/spec/idleTimeout", "value": "1h"}, "is not of type 'integer'"),
    ("DaskCluster", {"op": "add", "path": "/spec/worker/spec/containers/0/resource", "value": {}},
     "'resource' was unexpected"),
    ("DaskCluster", {"op": "remove", "path": "/spec/scheduler/spec/containers/0/name"},
     "'name' is a required property"),
    ("DaskCluster", {"op": "replace", "path": "/spec/scheduler/service/ports/0/port", "value": "8786"},
     "is not of type 'integer'"),
    ("DaskCluster", {"op": "add", "path": "/spec/worker/spec/volumes/0/persistentVolumeClaim/claim",
                     "value": "x"}, "'claim' was unexpected"),
    # A pod field newer than the Kubernetes 1.21 PodSpec the CRD inlines: the API server would prune it.
    ("DaskCluster", {"op": "add", "path": "/spec/worker/spec/containers/0/resizePolicy", "value": []},
     "'resizePolicy' was unexpected"),
    ("DaskAutoscaler", {"op": "replace", "path": "/spec/maximum", "value": "8"}, "is not of type 'integer'"),
    ("DaskAutoscaler", {"op": "remove", "path": "/spec/cluster"}, "'cluster' is a required property"),
    ("DaskAutoscaler", {"op": "add", "path": "/spec/max", "value": 8}, "'max' was unexpected"),
]


@pytest.mark.parametrize("kind, op, message", BROKEN,
                         ids=[f"{k}-{o['op']}-{o['path'].rsplit('/', 1)[-1]}" for k, o, _ in BROKEN])
def test_a_broken_dask_manifest_fails(dask, kind, op, message) -> None:
    good = find(dask, kind, CLUSTER)
    validate_manifest(good)  # the mutation, not the original, is what fails
    broken = copy.deepcopy(good)
    json_patch(broken, op)
    with pytest.raises(ManifestInvalid, match=message):
        validate_manifest(broken)


def test_workers_run_one_thread_under_a_2gib_dask_limit_inside_a_larger_pod_limit(dask) -> None:
    (worker,) = pod(find(dask, "DaskCluster", CLUSTER), "worker")["containers"]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"] and worker["command"] == ["tini", "--"]
    assert args[args.index("--nthreads") + 1] == "1" and args[args.index("--memory-limit") + 1] == "2GiB"
    assert worker["resources"]["requests"]["cpu"] == "1"
    limit = worker["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) > 2048  # room for the nanny beside the 2 GiB worker


def test_scheduler_and_workers_share_image_claim_path_and_dask_config(dask) -> None:
    cluster = find(dask, "DaskCluster", CLUSTER)
    claim = find(dask, "PersistentVolumeClaim", CLUSTER)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    config = find(dask, "ConfigMap", "hftpipe-lake-dask")
    images = {c["image"] for _, c in containers(cluster)}
    assert images == {"ghcr.io/hftpipe/hftpipe:0.1.0"}
    for role in ("scheduler", "worker"):
        spec = pod(cluster, role)
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert mounts["/etc/dask"]["configMap"]["name"] == config["metadata"]["name"], role
        assert container["securityContext"]["readOnlyRootFilesystem"] is True and "emptyDir" in mounts["/tmp"]
    worker = pod(cluster, "worker")["containers"][0]
    env = {e["name"]: e["value"] for e in worker["env"]}
    volumes = {v["name"]: v for v in pod(cluster, "worker")["volumes"]}
    home = next(volumes[m["name"]] for m in worker["volumeMounts"] if m["mountPath"] == env["HFTPIPE_HOME"])
    assert home["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    # The same claim at the same path as the KFP lake pipeline's tasks (tasks pass paths, never data).
    sys.path.insert(0, str(REPO))
    from pipelines.lake_pipeline import LAKE_MOUNT, LAKE_PVC

    assert (claim["metadata"]["name"], env["HFTPIPE_HOME"]) == (LAKE_PVC, LAKE_MOUNT)


def test_scheduler_service_and_autoscaler_point_at_the_cluster(dask) -> None:
    cluster = find(dask, "DaskCluster", CLUSTER)
    scheduler = cluster["spec"]["scheduler"]
    # The labels the operator puts on the scheduler pod (dask_kubernetes/operator/controller).
    assert scheduler["service"]["selector"] == {"dask.org/cluster-name": CLUSTER, "dask.org/component": "scheduler"}
    (container,) = scheduler["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    # The operator hands workers tcp://<cluster>-scheduler.<ns>.svc.cluster.local:8786: the port is fixed.
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert {(p["port"], p["targetPort"]) for p in scheduler["service"]["ports"]} == {
        (8786, "tcp-comm"), (8787, "http-dashboard")}
    for _, c in containers(cluster):
        for probe in ("readinessProbe", "livenessProbe"):
            assert c[probe]["httpGet"]["path"] == "/health"
            assert c[probe]["httpGet"]["port"] in {p["name"] for p in c["ports"]}
    autoscaler = find(dask, "DaskAutoscaler", CLUSTER)["spec"]
    assert autoscaler["cluster"] == CLUSTER and 1 <= autoscaler["minimum"] <= autoscaler["maximum"]


_WORKER_ENV = """
import os
from distributed import Client, LocalCluster
with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                  host="127.0.0.1") as cluster, Client(cluster) as client:
    print(list(client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())[0])
"""


def _worker_malloc_trim(config_dir: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    env["DASK_CONFIG"] = str(config_dir or "/nonexistent")  # no config file: dask's defaults
    out = subprocess.run([sys.executable, "-c", _WORKER_ENV], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_dask_config_drops_malloc_trim_threshold_in_nanny_workers(dask, tmp_path: Path) -> None:
    """Dask's own default sets it in every nanny-started worker; the ConfigMap's file removes it."""
    config = find(dask, "ConfigMap", "hftpipe-lake-dask")["data"]
    for name, text in config.items():
        assert yaml.safe_load(text)["distributed"]["nanny"]["pre-spawn-environ"] == {"MALLOC_TRIM_THRESHOLD_": None}
        (tmp_path / name).write_text(text)
    assert _worker_malloc_trim(None) == "65536", "dask's default changed: docs/lake.md and the ConfigMap are stale"
    assert _worker_malloc_trim(tmp_path) == "None"


def test_lake_doc_points_at_these_manifests() -> None:
    doc = (REPO / "docs" / "lake.md").read_text()
    assert "kubernetes/dask" in doc and "pipelines/lake_pipeline.py" in doc
    assert f"tcp://{CLUSTER}-scheduler:8786" in doc


def test_scheduler_and_worker_commands_parse_with_dasks_own_cli(dask) -> None:
    """Every flag exists: the args go through distributed's click commands (what `dask worker` runs)."""
    from distributed.cli.dask_scheduler import main as scheduler_cli
    from distributed.cli.dask_worker import main as worker_cli

    cli = {"scheduler": scheduler_cli, "worker": worker_cli}
    for where, container in containers(find(dask, "DaskCluster", CLUSTER)):
        argv = [*container["command"], *container["args"]]
        assert argv[:3] == ["tini", "--", "dask"], where
        # $(DASK_WORKER_NAME) is set by the operator in every worker container.
        args = [a.replace("$(DASK_WORKER_NAME)", "hftpipe-lake-default-worker-0") for a in argv[4:]]
        ctx = cli[argv[3]].make_context(f"dask {argv[3]}", args)
        assert not ctx.args, f"{where}: unexpected arguments {ctx.args}"
        if argv[3] == "worker":
            assert (ctx.params["nthreads"], ctx.params["memory_limit"]) == (1, "2GiB")
