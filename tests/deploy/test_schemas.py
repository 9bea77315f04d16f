"""The vendored custom-resource schemas are current and resolve against the Kubernetes definitions."""

from __future__ import annotations

import json

import pytest

from tests.deploy.schemas import (
    CUSTOM_SCHEMAS,
    DASK_OPERATOR_SOURCE,
    INFERENCESERVICE_FILE,
    ISTIO_SOURCE,
    PROMETHEUS_OPERATOR_SOURCE,
    SCHEMA_DIR,
    _registry,
    custom_schema,
    inferenceservice_schema,
    k8s_definitions,
)


def test_inferenceservice_schema_matches_the_installed_kserve_sdk():
    """Fails after a kserve upgrade until `python -m tests.deploy.schemas` regenerates the file."""
    committed = json.loads(INFERENCESERVICE_FILE.read_text())
    assert committed == json.loads(json.dumps(inferenceservice_schema())), (
        "stale InferenceService schema: run `python -m tests.deploy.schemas` and commit the result")


def test_inferenceservice_schema_knows_the_fields_we_rely_on():
    defs = custom_schema("serving.kserve.io/v1beta1", "InferenceService")["$defs"]
    predictor = defs["V1beta1PredictorSpec"]["properties"]
    for field in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "canaryTrafficPercent",
                  "containerConcurrency", "timeout", "containers", "serviceAccountName", "labels"):
        assert field in predictor, field
    assert predictor["containers"]["items"] == {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/"
                                                        "io.k8s.api.core.v1.Container"}


@pytest.mark.parametrize("api_version, kind", sorted(CUSTOM_SCHEMAS))
def test_every_reference_resolves(api_version, kind):
    schema = custom_schema(api_version, kind)
    resolver = _registry().resolver()
    refs = []

    def visit(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    assert refs
    for ref in set(refs):
        if ref.startswith("#/$defs/"):
            assert ref.split("/")[-1] in schema["$defs"], ref
        else:
            assert resolver.lookup(ref).contents, ref


def test_schema_files_have_provenance():
    for name in CUSTOM_SCHEMAS.values():
        comment = json.loads((SCHEMA_DIR / name).read_text())["$comment"]
        assert (("kubeflow/training-operator" in comment and "c20bf65e" in comment) or "kserve==" in comment
                or (ISTIO_SOURCE["repo"] in comment and ISTIO_SOURCE["commit"] in comment
                    and ISTIO_SOURCE["path"] in comment)
                or (PROMETHEUS_OPERATOR_SOURCE["repo"] in comment and PROMETHEUS_OPERATOR_SOURCE["commit"] in comment)
                or (DASK_OPERATOR_SOURCE["repo"] in comment and DASK_OPERATOR_SOURCE["commit"] in comment)), name
    assert "io.k8s.api.core.v1.PodTemplateSpec" in k8s_definitions()["$defs"]
