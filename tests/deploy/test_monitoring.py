"""kubernetes/monitoring: prometheus-operator resources valid against their CRDs, the PrometheusRule equal
to the repository's rules, the dashboards ConfigMap equal to the dashboards, monitors that select real
pods and ports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

from hftpipe.monitoring.dashboards import DASHBOARDS, grafana_json
from hftpipe.monitoring.manifests import rendered_files
from hftpipe.monitoring.prometheus import RULES_FILE
from tests.deploy.conftest import REPO, find
from tests.deploy.kustomize import json_patch
from tests.deploy.schemas import (
    CUSTOM_SCHEMAS,
    PROMETHEUS_OPERATOR_SOURCE,
    SCHEMA_DIR,
    ManifestInvalid,
    validate_manifest,
)

MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_generated_files_are_fresh() -> None:
    for path, text in rendered_files(REPO).items():
        assert path.is_file() and path.read_text() == text, f"{path} is stale: run `hftpipe monitor render`"


@pytest.mark.parametrize("overlay", ["prod", "prod-canary"])
def test_monitoring_resources_validate_against_the_crds(rendered, overlay) -> None:
    found = {r["kind"] for r in rendered[overlay] if r["kind"] in MONITORING_KINDS}
    assert found == MONITORING_KINDS
    for res in rendered[overlay]:
        if res["kind"] in MONITORING_KINDS:
            assert validate_manifest(res).startswith("crd:"), res["metadata"]["name"]


def test_dev_has_no_operator_resources(rendered) -> None:
    """Dev clusters need not run prometheus-operator: its CRDs would be missing there."""
    assert not [r for r in rendered["dev"] if r["kind"] in MONITORING_KINDS]


def test_the_prometheusrule_carries_exactly_the_repository_rules(rendered) -> None:
    rule = find(rendered["prod"], "PrometheusRule", "hftpipe")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]
    assert rule["metadata"]["namespace"] == "hftpipe"
    assert rule["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hftpipe"  # what ruleSelector matches


def test_the_dashboards_configmap_carries_every_dashboard(rendered) -> None:
    cm = find(rendered["prod"], "ConfigMap", "hftpipe-grafana-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {k: json.loads(v) for k, v in cm["data"].items()} == {f"{d.uid}.json": grafana_json(d) for d in DASHBOARDS}


def _pod_labels(res: dict) -> dict:
    if res["kind"] == "InferenceService":
        return {"serving.kserve.io/inferenceservice": res["metadata"]["name"]}
    return res["spec"]["template"]["metadata"]["labels"]


def _ports(res: dict) -> set[str]:
    if res["kind"] == "InferenceService":
        containers = res["spec"]["predictor"]["containers"]
    else:
        containers = res["spec"]["template"]["spec"]["containers"]
    return {p["name"] for c in containers for p in c.get("ports", [])}


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_monitors_select_real_pods_on_named_ports(rendered) -> None:
    resources = rendered["prod"]
    workloads = [r for r in resources if r["kind"] in ("Deployment", "InferenceService")]
    jobs = set()
    for pm in (r for r in resources if r["kind"] == "PodMonitor"):
        hits = [w for w in workloads if _selects(pm["spec"]["selector"], _pod_labels(w))]
        assert hits, f"PodMonitor/{pm['metadata']['name']} selects no pod"
        for endpoint in pm["spec"]["podMetricsEndpoints"]:
            for w in hits:
                assert endpoint["port"] in _ports(w), f"{w['metadata']['name']} has no port {endpoint['port']}"
            for relabel in endpoint["relabelings"]:
                if "replacement" in relabel:
                    jobs.add(relabel["replacement"])
                else:
                    jobs |= {_pod_labels(w)["app.kubernetes.io/name"] for w in hits}
    sm = find(resources, "ServiceMonitor", "hftpipe-ui")
    service = find(resources, "Service", "hftpipe-ui")
    assert _selects(sm["spec"]["selector"], service["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    jobs.add(sm["spec"]["endpoints"][0]["relabelings"][0]["replacement"])
    # The same job names as the local scrape config, so one set of rules and dashboards serves both.
    assert jobs == {"hftpipe-model-server", "hftpipe-feed", "hftpipe-signals", "hftpipe-ui"}


BROKEN = [
    ("ServiceMonitor", "hftpipe-ui", {"op": "add", "path": "/spec/endpoints/0/prot", "value": "http"},
     "'prot' was unexpected"),
    ("ServiceMonitor", "hftpipe-ui", {"op": "replace", "path": "/spec/endpoints", "value": {"port": "http"}},
     "is not of type 'array'"),
    ("ServiceMonitor", "hftpipe-ui", {"op": "remove", "path": "/spec/selector"}, "'selector' is a required property"),
    ("PodMonitor", "hftpipe-streaming", {"op": "replace", "path": "/spec/podMetricsEndpoints/0/relabelings/0/action",
                                         "value": "rewrite"}, "'rewrite' is not one of"),
    ("PodMonitor", "hftpipe-predictor", {"op": "add", "path": "/spec/podMetricsEndpoint", "value": []},
     "'podMetricsEndpoint' was unexpected"),
    ("PrometheusRule", "hftpipe", {"op": "remove", "path": "/spec/groups/0/name"}, "'name' is a required property"),
    ("PrometheusRule", "hftpipe", {"op": "replace", "path": "/spec/groups/1/rules/0/for", "value": 60},
     "is not of type 'string'"),
    ("PrometheusRule", "hftpipe", {"op": "add", "path": "/spec/groups/1/rules/0/labelz", "value": {}},
     "'labelz' was unexpected"),
]


@pytest.mark.parametrize("kind, name, op, message", BROKEN,
                         ids=[f"{k}-{o['op']}-{o['path'].rsplit('/', 1)[-1]}" for k, _, o, _ in BROKEN])
def test_a_broken_monitoring_resource_fails(rendered, kind, name, op, message) -> None:
    good = find(rendered["prod"], kind, name)
    validate_manifest(good)
    broken = copy.deepcopy(good)
    json_patch(broken, op)
    with pytest.raises(ManifestInvalid, match=re.escape(message)):
        validate_manifest(broken)


def test_the_vendored_schemas_name_their_source() -> None:
    for (api_version, _kind), name in CUSTOM_SCHEMAS.items():
        if api_version.startswith("monitoring.coreos.com/"):
            schema = json.loads((SCHEMA_DIR / name).read_text())
            assert PROMETHEUS_OPERATOR_SOURCE["commit"] in schema["$comment"]
            assert schema["properties"]["spec"]["additionalProperties"] is False
            assert Path(SCHEMA_DIR / name).stat().st_size > 1000
