"""What a schema cannot see: the pieces of each overlay fit together, and match the Python settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hftpipe.config import Config
from tests.deploy.conftest import OVERLAYS, REPO, containers, find, pod_specs

WORKLOADS = ("Deployment", "StatefulSet", "Job", "PyTorchJob", "InferenceService")


def pod_labels(res: dict[str, Any]) -> list[dict[str, str]]:
    """Labels of the pods a resource creates (KServe adds its own label to predictor pods)."""
    if res["kind"] == "InferenceService":
        labels = dict(res["spec"]["predictor"].get("labels", {}))
        labels["serving.kserve.io/inferenceservice"] = res["metadata"]["name"]
        return [labels]
    if res["kind"] == "PyTorchJob":
        return [r["template"]["metadata"]["labels"] for r in res["spec"]["pytorchReplicaSpecs"].values()]
    return [res["spec"]["template"]["metadata"]["labels"]]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def long_running(res: dict[str, Any]) -> bool:
    return res["kind"] in ("Deployment", "StatefulSet", "InferenceService")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_a_locked_down_security_context(rendered, overlay):
    for res in rendered[overlay]:
        for where, container in containers(res):
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{where}: {section}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_servers_have_probes_on_a_declared_port(rendered, overlay):
    for res in rendered[overlay]:
        if not long_running(res):
            continue
        for where, container in containers(res, init=False):
            ports = {p.get("name") for p in container.get("ports", [])} | {p["containerPort"]
                                                                          for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{where}: no {probe}"
                assert container[probe]["httpGet"]["port"] in ports, f"{where}: {probe} port not declared"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_between_resources_resolve(rendered, overlay):
    resources = rendered[overlay]
    names = {(r["kind"], r["metadata"]["name"]) for r in resources}
    workloads = [r for r in resources if r["kind"] in WORKLOADS]
    for res in resources:
        kind, name = res["kind"], res["metadata"]["name"]
        for where, pod in pod_specs(res):
            account = pod.get("serviceAccountName")
            assert ("ServiceAccount", account) in names, f"{kind}/{name} {where}: service account {account}"
            for volume in pod.get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert ("PersistentVolumeClaim", claim) in names, f"{kind}/{name}: PVC {claim}"
        if kind == "Service":
            targets = [c for w in workloads if any(selects(res["spec"]["selector"], lab) for lab in pod_labels(w))
                       for _, c in containers(w, init=False)]
            assert targets, f"Service/{name} selects no pods"
            declared = {p.get("name") for c in targets for p in c.get("ports", [])}
            for port in res["spec"]["ports"]:
                assert port["targetPort"] in declared, f"Service/{name}: targetPort {port['targetPort']}"
        if kind in ("PodDisruptionBudget", "NetworkPolicy"):
            selector = (res["spec"].get("selector") or res["spec"].get("podSelector"))["matchLabels"] \
                if kind == "PodDisruptionBudget" or res["spec"]["podSelector"] else {}
            assert any(selects(selector, lab) for w in workloads for lab in pod_labels(w)), f"{kind}/{name} selects nothing"
        if kind == "HorizontalPodAutoscaler":
            ref = res["spec"]["scaleTargetRef"]
            assert (ref["kind"], ref["name"]) in names
            assert res["spec"]["minReplicas"] <= res["spec"]["maxReplicas"]
        if kind == "RoleBinding":
            assert (res["roleRef"]["kind"], res["roleRef"]["name"]) in names
        if kind == "Ingress":
            hosts = {h for tls in res["spec"]["tls"] for h in tls["hosts"]}
            for rule in res["spec"]["rules"]:
                assert rule["host"] in hosts, f"Ingress/{name}: {rule['host']} is served without TLS"
                for path in rule["http"]["paths"]:
                    assert ("Service", path["backend"]["service"]["name"]) in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_behind_a_default_deny_and_an_allow_rule(rendered, overlay):
    policies = [r for r in rendered[overlay] if r["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies)
    for res in rendered[overlay]:
        if res["kind"] in ("Deployment", "StatefulSet", "InferenceService", "PyTorchJob"):
            for labels in pod_labels(res):
                assert any(p["spec"].get("ingress") and selects(p["spec"]["podSelector"].get("matchLabels", {}), labels)
                           for p in policies), f"{res['kind']}/{res['metadata']['name']}: no allow rule"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_find_each_other(rendered, overlay):
    """URLs in env and -S overrides name the real Services and ports (in the same namespace)."""
    resources = rendered[overlay]
    mlflow_service = find(resources, "Service", "hftpipe-mlflow")
    mlflow_url = f"http://hftpipe-mlflow:{mlflow_service['spec']['ports'][0]['port']}"
    isvc = find(resources, "InferenceService", "hftpipe-lob")
    for res in resources:
        for where, container in containers(res):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "MLFLOW_TRACKING_URI" in env:
                assert env["MLFLOW_TRACKING_URI"] == mlflow_url, where
            for arg in container.get("args", []):
                if arg.startswith("ui.serving_url="):
                    assert arg == f"ui.serving_url=http://{isvc['metadata']['name']}-predictor", where
    ui = find(resources, "Deployment", "hftpipe-ui")["spec"]["template"]["spec"]["containers"][0]
    assert "MLFLOW_TRACKING_URI" in {e["name"] for e in ui["env"]}


def test_the_predictor_runs_hftpipe_serve_as_configured(rendered):
    """Port, model and protocol of the InferenceService agree with `hftpipe serve`'s settings."""
    defaults = Config().serve
    for overlay in OVERLAYS:
        container = find(rendered[overlay], "InferenceService", "hftpipe-lob")["spec"]["predictor"]["containers"][0]
        args = container["args"]
        overrides = dict(args[i + 1].split("=", 1) for i, a in enumerate(args[:-1]) if a == "-S")
        assert args[-1] == "serve"
        assert overrides["serve.host"] == "0.0.0.0"  # 127.0.0.1 (the laptop default) is unreachable in a pod
        assert int(overrides["serve.port"]) == defaults.port == container["ports"][0]["containerPort"]
        assert overrides["serve.grpc"] == "false"  # one port per Knative container
        assert overrides["serve.model_uri"].startswith(f"models:/{Config().register.model_name}@")
        assert container["name"] == "kserve-container"


def test_the_predictor_mirrors_the_serving_manifest():
    """kubernetes/ deploys the same predictor as serving/inferenceservice.yaml (the serving module's own).

    The base may add cluster wiring (service account, pod security context, labels); every field the
    serving manifest sets must be the same here, except the image tag (pinned per overlay) and the
    deployment mode (chosen per overlay).
    """
    import yaml

    from tests.deploy.kustomize import load_documents

    (serving,) = load_documents(REPO / "serving" / "inferenceservice.yaml")
    base = next(r for r in load_documents(REPO / "kubernetes" / "base" / "inferenceservice.yaml")
                if r["kind"] == "InferenceService")
    assert base["metadata"]["name"] == serving["metadata"]["name"]
    for key, value in serving["metadata"].get("annotations", {}).items():
        if key != "serving.kserve.io/deploymentMode":
            assert base["metadata"]["annotations"].get(key) == value, key
    for key, value in serving["spec"]["predictor"].items():
        if key == "containers":
            assert len(base["spec"]["predictor"]["containers"]) == len(value)
            for mine, theirs in zip(base["spec"]["predictor"]["containers"], value):
                mine, theirs = dict(mine), dict(theirs)
                assert mine.pop("image").split(":")[0] == theirs.pop("image").split(":")[0]
                assert mine == theirs, yaml.safe_dump({"kubernetes/base": mine, "serving": theirs})
        else:
            assert base["spec"]["predictor"].get(key) == value, key


def test_pipeline_settings_match_the_manifests(rendered):
    """The pipeline's deploy step patches this InferenceService in this namespace."""
    pipeline = Config().pipeline
    prod = rendered["prod"]
    isvc = find(prod, "InferenceService", "hftpipe-lob")
    assert (isvc["metadata"]["namespace"], isvc["metadata"]["name"]) == (pipeline.namespace, pipeline.inference_service)
    role = find(prod, "Role", "hftpipe-deployer")
    assert pipeline.inference_service in role["rules"][0]["resourceNames"]
    for overlay in OVERLAYS:
        job = find(rendered[overlay], "Job", "hftpipe-schedule-retraining")
        container = job["spec"]["template"]["spec"]["containers"][0]
        # Pipeline steps run the same build as the job that schedules them.
        assert f"pipeline.base_image={container['image']}" in container["args"], overlay
        cron = container["args"][container["args"].index("--cron") + 1]
        assert cron == pipeline.cron and len(cron.split()) == 6


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pytorchjob_follows_the_training_operator_rules(rendered, overlay):
    job = find(rendered[overlay], "PyTorchJob", "hftpipe-train")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) <= {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    nproc = job["spec"]["nprocPerNode"]
    for rtype, replica in replicas.items():
        pod = replica["template"]["spec"]
        # The operator finds the training container and its port by these names.
        main = [c for c in pod["containers"] if c["name"] == "pytorch"]
        assert len(main) == 1, f"{rtype}: exactly one container must be named pytorch"
        container = main[0]
        assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in container["ports"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        device = next(a for a in container["args"] if a.startswith("train.device="))
        if gpus is not None:
            assert str(gpus) == nproc, f"{rtype}: one process per GPU"
            assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
            assert device == "train.device=cuda"
            env = {e["name"] for e in container["env"]}
            assert {"NCCL_DEBUG", "NCCL_SOCKET_IFNAME"} <= env
            assert any(t["key"] == "nvidia.com/gpu" for t in pod.get("tolerations", []))
        else:
            assert device == "train.device=cpu", f"{rtype}: no GPU requested"
        assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])
        assert pod["containers"][0]["image"] == pod["initContainers"][0]["image"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "training"
    gpus_prod = find(rendered["prod"], "PyTorchJob", "hftpipe-train")
    total = sum(r["replicas"] for r in gpus_prod["spec"]["pytorchReplicaSpecs"].values())
    assert total * int(gpus_prod["spec"]["nprocPerNode"]) == 8  # prod: 4 nodes x 2 GPUs (docs/deploy.md)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_exist_or_are_created_by_the_documented_commands(rendered, overlay):
    docs = (REPO / "docs" / "deploy.md").read_text()
    present = {r["metadata"]["name"]: r for r in rendered[overlay] if r["kind"] == "Secret"}
    for res in rendered[overlay]:
        for where, container in containers(res):
            refs = [(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"], False)
                    for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            refs += [(s["secretRef"]["name"], None, s["secretRef"].get("optional", False))
                     for s in container.get("envFrom", []) if "secretRef" in s]
            for name, key, optional in refs:
                if name in present:
                    assert key is None or key in present[name].get("stringData", {}), f"{where}: {name}.{key}"
                elif not optional:
                    assert re.search(rf"kubectl .*create secret generic {name}\b", docs), (
                        f"{where}: Secret {name} is neither in the overlay nor created in docs/deploy.md")
                    assert key is None or f"--from-literal={key}=" in docs, f"{where}: key {key} not documented"


def test_mlflow_credentials_never_appear_in_manifests(rendered):
    for overlay in OVERLAYS:
        mlflow = find(rendered[overlay], "Deployment", "hftpipe-mlflow")["spec"]["template"]["spec"]["containers"][0]
        assert "--backend-store-uri=$(MLFLOW_BACKEND_STORE_URI)" in mlflow["args"]
        env = {e["name"]: e for e in mlflow["env"]}
        assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["name"] == "hftpipe-mlflow"
    assert not [r for r in rendered["prod"] if r["kind"] == "Secret"], "prod Secrets are created out of band"


def test_kubernetes_tree_has_no_stray_files():
    allowed = {".yaml"}
    stray = [p for p in (REPO / "kubernetes").rglob("*") if p.is_file() and p.suffix not in allowed]
    assert not stray, stray
    assert Path(REPO / "kubernetes" / "base" / "kustomization.yaml").exists()
