"""The Istio mesh (kubernetes/mesh, in prod): schemas with negative cases, and what a schema cannot
see: mTLS is strict everywhere, the AuthorizationPolicies allow exactly the calls the architecture
needs, the NetworkPolicies open the same ports, and the routes point at real Services."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from tests.deploy.conftest import containers, find
from tests.deploy.kustomize import json_patch
from tests.deploy.schemas import ManifestInvalid, validate_manifest
from tests.deploy.test_consistency import pod_labels, selects

MESH_OVERLAYS = ("prod", "prod-canary")
ISTIO_KINDS = {"PeerAuthentication", "AuthorizationPolicy", "VirtualService", "DestinationRule", "Gateway"}
WORKLOADS = ("Deployment", "StatefulSet", "InferenceService", "PyTorchJob")
# Identities outside the namespace that may call in (each named in authorizationpolicies.yaml).
EXTERNAL_PRINCIPALS = {
    "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
    "cluster.local/ns/ingress-nginx/sa/ingress-nginx",
    "cluster.local/ns/kubeflow/sa/pipeline-runner",
}
# The whole call graph: (caller, callee workload, port). A caller is a service account of the
# namespace, an external principal, or "ns:<namespace>" (any identity of a namespace).
EXPECTED_CALLS = {
    # UI -> model server and MLflow; browsers -> UI
    ("hftpipe-ui", "hftpipe-lob", "8080"), ("hftpipe-ui", "hftpipe-lob", "8012"),
    ("hftpipe-ui", "hftpipe-mlflow", "5000"),
    ("istio-system/istio-ingressgateway-service-account", "hftpipe-ui", "5000"),
    ("ingress-nginx/ingress-nginx", "hftpipe-ui", "5000"),
    # the Serverless data path in front of the predictor
    ("ns:knative-serving", "hftpipe-lob", "8012"), ("ns:istio-system", "hftpipe-lob", "8012"),
    # the registry's readers and writers
    ("hftpipe-predictor", "hftpipe-mlflow", "5000"), ("hftpipe-signals", "hftpipe-mlflow", "5000"),
    ("hftpipe-trainer", "hftpipe-mlflow", "5000"), ("hftpipe-pipeline", "hftpipe-mlflow", "5000"),
    ("kubeflow/pipeline-runner", "hftpipe-mlflow", "5000"),
    # the bus: feed and signal service (and the UI's live stream) -> NATS; the servers' routes
    ("hftpipe-feed", "hftpipe-nats", "4222"), ("hftpipe-signals", "hftpipe-nats", "4222"),
    ("hftpipe-ui", "hftpipe-nats", "4222"), ("hftpipe-nats", "hftpipe-nats", "6222"),
    # Prometheus -> metrics ports
    ("ns:monitoring", "hftpipe-lob", "9091"), ("ns:monitoring", "hftpipe-lob", "8080"),
    ("ns:monitoring", "hftpipe-nats", "8222"), ("ns:monitoring", "hftpipe-feed", "9102"),
    ("ns:monitoring", "hftpipe-signals", "9101"),
    # the paper trader: NATS client, scraped by Prometheus
    ("hftpipe-trader", "hftpipe-nats", "4222"), ("ns:monitoring", "hftpipe-trader", "9103"),
    # distributed training among its own pods
    ("hftpipe-trainer", "hftpipe-train", "*"),
}


def of_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def namespace(resources: list[dict[str, Any]]) -> str:
    return of_kind(resources, "Namespace")[0]["metadata"]["name"]


def selected_workloads(resources: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in resources if w["kind"] in WORKLOADS and any(selects(selector, lab) for lab in pod_labels(w))]


def declared_ports(workload: dict[str, Any]) -> set[str]:
    ports = {str(p["containerPort"]) for _, c in containers(workload, init=False) for p in c.get("ports", [])}
    if workload["kind"] == "InferenceService":
        ports |= {"8012", "9091"}  # Knative's queue-proxy sidecar: data path and metrics
    return ports


def caller_names(source: dict[str, Any], ns: str) -> list[str]:
    names = []
    for principal in source.get("principals", []):
        match = re.fullmatch(r"cluster\.local/ns/([\w-]+)/sa/([\w-]+)", principal)
        assert match, f"principal {principal!r} is not cluster.local/ns/<namespace>/sa/<account>"
        names.append(match.group(2) if match.group(1) == ns else f"{match.group(1)}/{match.group(2)}")
    names += [f"ns:{n}" for n in source.get("namespaces", [])]
    assert names, f"a rule source names nobody: {source}"
    return names


def allowed_calls(resources: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    ns = namespace(resources)
    calls = set()
    for policy in of_kind(resources, "AuthorizationPolicy"):
        if not policy["spec"]:
            continue
        (workload,) = {w["metadata"]["name"] for w in
                       selected_workloads(resources, policy["spec"]["selector"]["matchLabels"])}
        for rule in policy["spec"]["rules"]:
            ports = [p for to in rule.get("to", [{}]) for p in to.get("operation", {}).get("ports", ["*"])]
            for source in rule["from"]:
                for caller in caller_names(source["source"], ns):
                    calls |= {(caller, workload, port) for port in ports}
    return calls


# ---- schemas: every Istio kind, valid and broken -----------------------------------------------------------

@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_mesh_resources_validate_against_istio_crds(rendered, overlay):
    used = {}
    for res in rendered[overlay]:
        if res["kind"] in ISTIO_KINDS:
            used[res["kind"]] = validate_manifest(res)
    assert set(used) == ISTIO_KINDS
    assert all(u.startswith("crd:") and "istio.io" in u for u in used.values())


def test_dev_runs_without_the_mesh(rendered):
    assert not [r for r in rendered["dev"] if r["kind"] in ISTIO_KINDS]


BROKEN = [
    ("PeerAuthentication", "default", {"op": "add", "path": "/spec/mtls/mod", "value": "STRICT"}, "'mod' was unexpected"),
    ("PeerAuthentication", "default", {"op": "replace", "path": "/spec/mtls/mode", "value": "STRICTEST"},
     "'STRICTEST' is not one of"),
    ("AuthorizationPolicy", "hftpipe-mlflow", {"op": "add", "path": "/spec/rules/0/from/0/source/principal",
                                               "value": ["x"]}, "'principal' was unexpected"),
    ("AuthorizationPolicy", "hftpipe-mlflow", {"op": "replace", "path": "/spec/rules/0/to/0/operation/ports",
                                               "value": "5000"}, "is not of type 'array'"),
    ("AuthorizationPolicy", "hftpipe-mlflow", {"op": "replace", "path": "/spec/action", "value": "PERMIT"},
     "'PERMIT' is not one of"),
    ("VirtualService", "hftpipe-ui", {"op": "add", "path": "/spec/http/1/retry", "value": {"attempts": 2}},
     "'retry' was unexpected"),
    ("VirtualService", "hftpipe-ui", {"op": "replace", "path": "/spec/http/1/retries/attempts", "value": "two"},
     "is not of type 'integer'"),
    ("VirtualService", "hftpipe-lob-predictor", {"op": "remove", "path": "/spec/http/0/route/0/destination/host"},
     "'host' is a required property"),
    ("DestinationRule", "hftpipe-ui", {"op": "remove", "path": "/spec/host"}, "'host' is a required property"),
    ("DestinationRule", "hftpipe-lob-predictor", {"op": "add", "path": "/spec/trafficPolicy/tls/mod",
                                                  "value": "ISTIO_MUTUAL"}, "'mod' was unexpected"),
    ("DestinationRule", "hftpipe-lob-predictor", {"op": "replace",
                                                  "path": "/spec/trafficPolicy/connectionPool/http/http2MaxRequests",
                                                  "value": "many"}, "is not of type 'integer'"),
    ("Gateway", "hftpipe", {"op": "remove", "path": "/spec/servers/0/port/protocol"},
     "'protocol' is a required property"),
    ("Gateway", "hftpipe", {"op": "add", "path": "/spec/servers/0/tlss", "value": {}}, "'tlss' was unexpected"),
]


@pytest.mark.parametrize("kind, name, op, message", BROKEN,
                         ids=[f"{k}-{o['op']}-{o['path'].rsplit('/', 1)[-1]}" for k, _, o, _ in BROKEN])
def test_a_broken_istio_resource_fails(rendered, kind, name, op, message):
    good = find(rendered["prod"], kind, name)
    validate_manifest(good)
    broken = copy.deepcopy(good)
    json_patch(broken, op)
    with pytest.raises(ManifestInvalid, match=re.escape(message)):
        validate_manifest(broken)


def test_the_crd_conversion():
    from tests.deploy.schemas import _openapi_to_json_schema

    node = {"type": "object", "description": "d", "x-kubernetes-validations": [{"rule": "self.a > 0"}],
            "properties": {"port": {"x-kubernetes-int-or-string": True},
                           "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                           "name": {"type": "string", "nullable": True},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
    assert _openapi_to_json_schema(node) == {
        "type": "object", "additionalProperties": False,
        "properties": {"port": {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "open": {"type": "object"},
                       "name": {"type": ["string", "null"]},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}


# ---- policy ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_mutual_tls_is_strict_for_the_whole_namespace(rendered, overlay):
    resources = rendered[overlay]
    (peer,) = of_kind(resources, "PeerAuthentication")
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}  # no selector, no port exempt
    ns = find(resources, "Namespace", namespace(resources))
    assert ns["metadata"]["labels"]["istio-injection"] == "enabled"


@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_authorization_allows_exactly_the_architecture(rendered, overlay):
    resources = rendered[overlay]
    policies = of_kind(resources, "AuthorizationPolicy")
    deny_all = [p for p in policies if p["spec"] == {}]
    assert len(deny_all) == 1, "one ALLOW policy without rules denies everything not allowed below"
    for policy in policies:
        if policy in deny_all:
            continue
        assert policy["spec"]["action"] == "ALLOW"
        selector = policy["spec"]["selector"]["matchLabels"]
        assert selected_workloads(resources, selector), f"AuthorizationPolicy/{policy['metadata']['name']} selects nothing"
    calls = allowed_calls(resources)
    assert calls == EXPECTED_CALLS, {"not in the architecture": sorted(calls - EXPECTED_CALLS),
                                     "missing": sorted(EXPECTED_CALLS - calls)}


@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_principals_name_real_service_accounts(rendered, overlay):
    resources = rendered[overlay]
    ns = namespace(resources)
    accounts = {r["metadata"]["name"] for r in of_kind(resources, "ServiceAccount")}
    for caller, _, _ in allowed_calls(resources):
        if caller.startswith("ns:"):
            continue
        if "/" in caller:
            assert f"cluster.local/ns/{caller.split('/')[0]}/sa/{caller.split('/')[1]}" in EXTERNAL_PRINCIPALS
        else:
            assert caller in accounts, f"no ServiceAccount {caller} in {ns}"
    # and each workload runs as the account its callers are named by
    for res in resources:
        if res["kind"] == "Deployment":
            assert res["spec"]["template"]["spec"]["serviceAccountName"] in accounts


@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_policies_name_declared_ports_and_network_policies_agree(rendered, overlay):
    resources = rendered[overlay]
    netpols = [p for p in of_kind(resources, "NetworkPolicy") if p["spec"].get("ingress")]
    workloads = {w["metadata"]["name"]: w for w in resources if w["kind"] in WORKLOADS}
    for _, callee, port in allowed_calls(resources):
        workload = workloads[callee]
        if port != "*":
            assert port in declared_ports(workload), f"{callee} declares no port {port}"
        opened = [rule for p in netpols for rule in p["spec"]["ingress"]
                  if any(selects(p["spec"]["podSelector"].get("matchLabels", {}), lab) for lab in pod_labels(workload))
                  and (port == "*" or "ports" not in rule or any(str(x["port"]) == port for x in rule["ports"]))]
        assert opened, f"the NetworkPolicies block {callee}:{port} that the mesh allows"


# ---- traffic -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", MESH_OVERLAYS)
def test_routes_have_timeouts_and_retries_and_reach_real_services(rendered, overlay):
    resources = rendered[overlay]
    services = {s["metadata"]["name"]: s for s in of_kind(resources, "Service")}
    isvc = find(resources, "InferenceService", "hftpipe-lob")
    predictor_host = f"{isvc['metadata']['name']}-predictor"  # the Service KServe creates
    gateways = {g["metadata"]["name"] for g in of_kind(resources, "Gateway")}
    rules = {d["spec"]["host"]: d for d in of_kind(resources, "DestinationRule")}
    for vs in of_kind(resources, "VirtualService"):
        assert set(vs["spec"]["gateways"]) <= gateways | {"mesh"}
        for route in vs["spec"]["http"]:
            assert "timeout" in route and "retries" in route, f"{vs['metadata']['name']}/{route['name']}"
            for dest in route["route"]:
                host, port = dest["destination"]["host"], dest["destination"]["port"]["number"]
                if host == predictor_host:
                    assert port == 80
                else:
                    assert port in {p["port"] for p in services[host]["spec"]["ports"]}, (host, port)
                assert rules[host]["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
    ui = find(resources, "VirtualService", "hftpipe-ui")
    stream = next(r for r in ui["spec"]["http"] if r["match"][0]["uri"]["prefix"] == "/live/stream")
    assert stream["timeout"] == "0s" and stream["retries"]["attempts"] == 0  # server-sent events stay open
    assert ui["spec"]["http"][-1].get("match") is None  # the catch-all comes last
    # the gateway serves the Ingress's host, the predictor route the host the UI calls
    ingress_host = find(resources, "Ingress", "hftpipe-ui")["spec"]["rules"][0]["host"]
    assert ingress_host in ui["spec"]["hosts"]
    assert all(ingress_host in s["hosts"] for g in of_kind(resources, "Gateway") for s in g["spec"]["servers"])
    ui_args = find(resources, "Deployment", "hftpipe-ui")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"ui.serving_url=http://{predictor_host}" in ui_args
    assert find(resources, "VirtualService", "hftpipe-lob-predictor")["spec"]["hosts"] == [predictor_host]
    assert find(resources, "VirtualService", "hftpipe-lob-predictor")["spec"]["http"][0]["timeout"] == \
        f"{isvc['spec']['predictor']['timeout']}s"
