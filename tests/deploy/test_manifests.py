"""Every rendered resource matches its schema, and a broken one fails: core kinds and custom resources."""

from __future__ import annotations

import copy
import json

import pytest

from tests.deploy.conftest import KUBERNETES, OVERLAYS, find
from tests.deploy.kustomize import json_patch, load_documents
from tests.deploy.schemas import CUSTOM_SCHEMAS, ManifestInvalid, custom_schema, validate_manifest


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_matches_its_schema(rendered, overlay):
    errors, used = [], set()
    for res in rendered[overlay]:
        try:
            used.add(validate_manifest(res).split(":")[0])
        except ManifestInvalid as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)
    assert used == {"kubernetes", "crd"}


def test_every_base_file_matches_its_schema():
    """The base files on their own (what a reader copies from), before any overlay patch."""
    files = sorted(p for p in (KUBERNETES / "base").glob("*.yaml") if p.name != "kustomization.yaml")
    assert files
    for path in files:
        for res in load_documents(path):
            validate_manifest(res)


# Each case: (kind, name, JSON patch that breaks it, what the error must say). Wrong field, wrong type
# and missing required field, for a core kind and for each custom resource kind, at the top of the spec
# and deep inside a pod template (where the CRD schemas reference the Kubernetes types).
BROKEN = [
    # core: Deployment, Service, Ingress
    ("Deployment", "hftpipe-ui", {"op": "add", "path": "/spec/replica", "value": 2}, "'replica' was unexpected"),
    ("Deployment", "hftpipe-ui", {"op": "replace", "path": "/spec/replicas", "value": "two"}, "is not of type 'integer'"),
    ("Deployment", "hftpipe-ui", {"op": "remove", "path": "/spec/selector"}, "'selector' is a required property"),
    ("Deployment", "hftpipe-ui", {"op": "add", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet/pth",
                                  "value": "/healthz"}, "'pth' was unexpected"),
    ("Deployment", "hftpipe-mlflow", {"op": "remove", "path": "/spec/template/spec/containers/0/name"},
     "'name' is a required property"),
    ("Service", "hftpipe-ui", {"op": "replace", "path": "/spec/ports/0/port", "value": "eighty"},
     "is not of type 'integer'"),
    ("Ingress", "hftpipe-ui", {"op": "add", "path": "/spec/tls/0/secret", "value": "x"}, "'secret' was unexpected"),
    # InferenceService
    ("InferenceService", "hftpipe-lob", {"op": "add", "path": "/spec/predictor/minReplica", "value": 1},
     "'minReplica' was unexpected"),
    ("InferenceService", "hftpipe-lob", {"op": "replace", "path": "/spec/predictor/maxReplicas", "value": "4"},
     "is not of type 'integer'"),
    ("InferenceService", "hftpipe-lob", {"op": "remove", "path": "/spec/predictor"},
     "'predictor' is a required property"),
    ("InferenceService", "hftpipe-lob", {"op": "add", "path": "/spec/predictor/model", "value": {"storageUri": "s3://b/m"}},
     "'modelFormat' is a required property"),
    ("InferenceService", "hftpipe-lob", {"op": "add", "path": "/spec/predictor/containers/0/resource", "value": {}},
     "'resource' was unexpected"),
    ("InferenceService", "hftpipe-lob", {"op": "replace", "path": "/spec/predictor/containers/0/ports/0/containerPort",
                                         "value": "8080"}, "is not of type 'integer'"),
    ("InferenceService", "hftpipe-lob", {"op": "remove", "path": "/spec/predictor/containers/0/name"},
     "'name' is a required property"),
    # PyTorchJob
    ("PyTorchJob", "hftpipe-train", {"op": "add", "path": "/spec/pytorchReplicaSpecs/Worker/replica", "value": 2},
     "'replica' was unexpected"),
    ("PyTorchJob", "hftpipe-train", {"op": "replace", "path": "/spec/nprocPerNode", "value": 2},
     "is not of type 'string'"),
    ("PyTorchJob", "hftpipe-train", {"op": "remove", "path": "/spec/pytorchReplicaSpecs"},
     "'pytorchReplicaSpecs' is a required property"),
    ("PyTorchJob", "hftpipe-train", {"op": "add", "path": "/spec/runPolicy/cleanupPolicy", "value": "All"},
     "'cleanupPolicy' was unexpected"),
    ("PyTorchJob", "hftpipe-train", {"op": "add",
                                     "path": "/spec/pytorchReplicaSpecs/Master/template/spec/containers/0/resources/limit",
                                     "value": {"cpu": "1"}}, "'limit' was unexpected"),
    ("PyTorchJob", "hftpipe-train", {"op": "remove", "path": "/spec/pytorchReplicaSpecs/Worker/template/spec/containers"},
     "'containers' is a required property"),
    ("PyTorchJob", "hftpipe-train", {"op": "replace", "path": "/spec/pytorchReplicaSpecs/Worker/replicas", "value": "3"},
     "is not of type 'integer'"),
]


@pytest.mark.parametrize("overlay", ["dev", "prod"])
@pytest.mark.parametrize("kind, name, op, message", BROKEN,
                         ids=[f"{k}-{o['op']}-{o['path'].rsplit('/', 1)[-1]}" for k, _, o, _ in BROKEN])
def test_a_broken_manifest_fails(rendered, overlay, kind, name, op, message):
    good = find(rendered[overlay], kind, name)
    validate_manifest(good)  # the mutation, not the original, is what fails
    broken = copy.deepcopy(good)
    json_patch(broken, op)
    with pytest.raises(ManifestInvalid, match=message.replace("(", r"\(")):
        validate_manifest(broken)


def test_an_unknown_kind_is_an_error_not_a_warning():
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    with pytest.raises(ManifestInvalid, match="no schema for example.com/v1 Widget"):
        validate_manifest(widget)


@pytest.mark.parametrize("api_version, kind", sorted(CUSTOM_SCHEMAS))
def test_custom_schemas_are_strict_at_every_level(api_version, kind):
    """Every object node of the custom schemas either forbids unknown keys or is a typed map/ref."""
    loose = []

    def visit(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                loose.append(where)
            for key, value in node.items():
                if key not in ("status",):
                    visit(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{where}/{i}")

    visit(custom_schema(api_version, kind), "#")
    assert not loose, loose
    assert json.dumps(custom_schema(api_version, kind)).count("$ref") > 0
