"""The overlays build offline, hold every component, and the renderer refuses what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.conftest import KUBERNETES, OVERLAYS, STANDALONE, containers, find
from tests.deploy.kustomize import CLUSTER_SCOPED, KustomizeError, build, json_patch, resource_key

EXPECTED = {
    ("Namespace", None), ("ServiceAccount", "hftpipe-mlflow"), ("ServiceAccount", "hftpipe-predictor"),
    ("ServiceAccount", "hftpipe-ui"), ("ServiceAccount", "hftpipe-trainer"), ("ServiceAccount", "hftpipe-pipeline"),
    ("Role", "hftpipe-deployer"), ("RoleBinding", "hftpipe-deployer-kfp"),
    ("PersistentVolumeClaim", "hftpipe-mlflow-artifacts"), ("Deployment", "hftpipe-mlflow"),
    ("Service", "hftpipe-mlflow"), ("PodDisruptionBudget", "hftpipe-mlflow"),
    ("InferenceService", "hftpipe-lob"), ("PodDisruptionBudget", "hftpipe-predictor"),
    ("Deployment", "hftpipe-ui"), ("Service", "hftpipe-ui"), ("Ingress", "hftpipe-ui"),
    ("HorizontalPodAutoscaler", "hftpipe-ui"), ("PodDisruptionBudget", "hftpipe-ui"),
    ("PyTorchJob", "hftpipe-train"), ("Job", "hftpipe-schedule-retraining"),
    ("NetworkPolicy", "hftpipe-default-deny-ingress"), ("NetworkPolicy", "hftpipe-mlflow-ingress"),
    ("NetworkPolicy", "hftpipe-predictor-ingress"), ("NetworkPolicy", "hftpipe-ui-ingress"),
    ("NetworkPolicy", "hftpipe-train-peers"),
    ("ServiceAccount", "hftpipe-nats"), ("ServiceAccount", "hftpipe-feed"), ("ServiceAccount", "hftpipe-signals"),
    ("ConfigMap", "hftpipe-nats"), ("StatefulSet", "hftpipe-nats"), ("Service", "hftpipe-nats"),
    ("Service", "hftpipe-nats-headless"), ("PodDisruptionBudget", "hftpipe-nats"),
    ("Deployment", "hftpipe-feed"), ("Deployment", "hftpipe-signals"), ("NetworkPolicy", "hftpipe-nats-ingress"),
    ("NetworkPolicy", "hftpipe-feed-metrics"), ("NetworkPolicy", "hftpipe-signals-metrics"),
    ("ServiceAccount", "hftpipe-trader"), ("PersistentVolumeClaim", "hftpipe-trader-state"),
    ("Deployment", "hftpipe-trader"), ("NetworkPolicy", "hftpipe-trader-metrics"),
}
NAMESPACE = {"dev": "hftpipe-dev", "prod": "hftpipe", "prod-canary": "hftpipe"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_with_every_component(rendered, overlay):
    resources = rendered[overlay]
    present = {(r["kind"], r["metadata"]["name"]) for r in resources}
    missing = {(kind, name) for kind, name in EXPECTED
               if not any(k == kind and (name is None or n == name) for k, n in present)}
    assert not missing, f"{overlay} lacks {sorted(missing)}"
    namespaces = [r for r in resources if r["kind"] == "Namespace"]
    assert [n["metadata"]["name"] for n in namespaces] == [NAMESPACE[overlay]]
    for res in resources:
        if res["kind"] not in CLUSTER_SCOPED:
            assert res["metadata"].get("namespace") == NAMESPACE[overlay], resource_key(res)
        assert res["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hftpipe", resource_key(res)


# Images that are not the project's: each pinned to an exact release here, so an upgrade is a reviewed change.
THIRD_PARTY_IMAGES = {"nats": "2.10.24-alpine"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_project_images(rendered, overlay):
    for res in rendered[overlay]:
        for where, container in containers(res):
            name, _, tag = container["image"].rpartition(":")
            if name in THIRD_PARTY_IMAGES:
                assert tag == THIRD_PARTY_IMAGES[name], f"{where}: {container['image']}"
                continue
            assert name == "ghcr.io/hftpipe/hftpipe", f"{where}: {container['image']}"
            assert tag and tag != "latest", f"{where}: unpinned image {container['image']}"


def test_training_image_variant_per_overlay(rendered):
    dev = {c["image"] for _, c in containers(find(rendered["dev"], "PyTorchJob", "hftpipe-train"))}
    prod = {c["image"] for _, c in containers(find(rendered["prod"], "PyTorchJob", "hftpipe-train"))}
    assert dev == {"ghcr.io/hftpipe/hftpipe:0.1.0"}
    assert prod == {"ghcr.io/hftpipe/hftpipe:0.1.0-cuda"}


def test_canary_overlay_changes_only_the_predictor(rendered):
    prod = {resource_key(r): r for r in rendered["prod"]}
    canary = {resource_key(r): r for r in rendered["prod-canary"]}
    assert prod.keys() == canary.keys()
    changed = [k for k in prod if json.dumps(prod[k], sort_keys=True) != json.dumps(canary[k], sort_keys=True)]
    assert [k[1] for k in changed] == ["InferenceService"]
    predictor = canary[changed[0]]["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert "serve.model_uri=models:/hftpipe-lob@challenger" in predictor["containers"][0]["args"]
    assert "canaryTrafficPercent" not in prod[changed[0]]["spec"]["predictor"]
    assert prod[changed[0]]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


# ---- the renderer itself ---------------------------------------------------------------------------------

def test_json_patch_operations():
    doc = {"spec": {"args": ["a", "b"], "m": {"x/y": 1}}}
    json_patch(doc, {"op": "add", "path": "/spec/args/-", "value": "c"})
    json_patch(doc, {"op": "add", "path": "/spec/args/0", "value": "z"})
    json_patch(doc, {"op": "replace", "path": "/spec/m/x~1y", "value": 2})
    json_patch(doc, {"op": "remove", "path": "/spec/args/1"})
    json_patch(doc, {"op": "test", "path": "/spec/args/0", "value": "z"})
    assert doc == {"spec": {"args": ["z", "b", "c"], "m": {"x/y": 2}}}


@pytest.mark.parametrize("op, message", [
    ({"op": "replace", "path": "/spec/nope", "value": 1}, "no key 'nope'"),
    ({"op": "remove", "path": "/spec/args/5"}, "no list index 5"),
    ({"op": "test", "path": "/spec/args/0", "value": "b"}, "test failed"),
    ({"op": "move", "from": "/spec/args", "path": "/spec/x"}, "unsupported JSON patch op"),
])
def test_json_patch_refuses(op, message):
    with pytest.raises(KustomizeError, match=message):
        json_patch({"spec": {"args": ["a"]}}, op)


def _kustomization(tmp_path: Path, text: str) -> Path:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n")
    (tmp_path / "kustomization.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, message", [
    ("resources: [cm.yaml]\nconfigMapGenerator: [{name: x}]\n", "unsupported kustomize field"),
    ("resources: [cm.yaml]\npatches:\n  - target: {kind: ConfigMap, name: c}\n    patch: 'data: {a: c}'\n",
     "only RFC 6902"),
    ("resources: [cm.yaml]\npatches:\n  - target: {kind: Secret, name: c}\n    patch: '[]'\n", "matches no resource"),
    ("resources: [cm.yaml, missing.yaml]\n", "does not exist"),
    ("resources: [cm.yaml, cm.yaml]\n", "appears twice"),
    ("resources: [cm.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n", "includeSelectors"),
])
def test_renderer_refuses_what_it_does_not_support(tmp_path, text, message):
    with pytest.raises(KustomizeError, match=message):
        build(_kustomization(tmp_path, text))


def test_renderer_namespace_labels_images(tmp_path):
    (tmp_path / "d.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {template: {spec: {containers: [{name: c, image: 'reg/img:1'}, {name: o, image: other}]}}}\n"
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [d.yaml]\nnamespace: ns\nlabels: [{pairs: {team: q}}]\n"
        "images: [{name: reg/img, newName: reg2/img, newTag: '2'}]\n")
    deployment, namespace = build(tmp_path)
    assert deployment["metadata"] == {"name": "d", "namespace": "ns", "labels": {"team": "q"}}
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == ["reg2/img:2", "other"]
    assert "namespace" not in namespace["metadata"]


def test_every_kustomization_in_the_tree_is_reachable_from_an_overlay():
    """A kustomization no overlay includes would never be rendered, so never validated."""
    reached: set[Path] = set()

    def walk(directory: Path) -> None:
        reached.add(directory.resolve())
        import yaml
        spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
        for entry in spec.get("resources", []):
            if (directory / entry).is_dir():
                walk(directory / entry)

    for overlay in OVERLAYS:
        walk(KUBERNETES / "overlays" / overlay)
    for standalone in STANDALONE:
        walk(KUBERNETES / standalone)
    every = {p.parent.resolve() for p in KUBERNETES.rglob("kustomization.yaml")}
    assert every == reached


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_equals_real_kustomize(rendered, overlay):
    """tests/deploy/rendered/ holds `kubectl kustomize` (kustomize v5.5.0) output for each overlay.

    A failure means either kubernetes/ changed and the reference is stale (regenerate it with the
    command in the file's header, which needs kubectl) or the Python renderer diverged from kustomize.
    """
    from tests.deploy.kustomize import load_documents

    reference = {resource_key(r): r for r in load_documents(Path(__file__).parent / "rendered" / f"{overlay}.yaml")}
    ours = {resource_key(r): r for r in rendered[overlay]}
    assert ours.keys() == reference.keys()
    for key, resource in ours.items():
        assert json.dumps(resource, sort_keys=True) == json.dumps(reference[key], sort_keys=True), key
