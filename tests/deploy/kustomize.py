"""Render a kustomization offline, in Python, for the subset of kustomize that kubernetes/ uses.

Why not the real kustomize: CI machines have no Go toolchain, Debian's `kubernetes-client` embeds a
kustomize from 2020 (v2.0.3, no `labels:` and no `patches:`), and PyPI carries no maintained
binary. The subset below is small and exact: `resources` (files and directories), `namespace`,
`labels` (without selectors or templates), `images`, and `patches` holding RFC 6902 JSON patches
(inline or in a file, target by kind and name). Any other key fails loudly, so nobody can add a
kustomize feature to kubernetes/ that these tests silently ignore. The output was checked equal to
`kubectl kustomize` (kustomize v5.5.0) for every overlay (see tests/deploy/test_kustomize.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}

# Kinds without a namespace, among those kubernetes/ may contain.
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
    "StorageClass", "PersistentVolume", "IngressClass", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "ClusterServingRuntime", "ClusterStorageContainer",
}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not support, or a patch does not apply."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Read every non-empty YAML document of a manifest file."""
    with open(path) as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def build(directory: str | Path) -> list[dict[str, Any]]:
    """Render the kustomization in ``directory`` to a list of resources (kustomize build)."""
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    if not kfile.exists():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = sorted(set(spec) - SUPPORTED_KEYS)
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported kustomize field(s) {unknown}; supported: {sorted(SUPPORTED_KEYS)}")
    if spec.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{kfile}: kind must be Kustomization")

    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            resources.extend(load_documents(target))
        else:
            raise KustomizeError(f"{kfile}: resource {entry} does not exist")
    _check_unique(resources, kfile)

    # kustomize's order of built-in transformers: patches, namespace, labels, images.
    for patch in spec.get("patches", []):
        _apply_patch(resources, patch, directory)
    if "namespace" in spec:
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED:
                res.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for label_set in spec.get("labels", []):
        if label_set.get("includeSelectors") or label_set.get("includeTemplates"):
            raise KustomizeError(f"{kfile}: labels with includeSelectors/includeTemplates are not supported")
        for res in resources:
            res.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
    for image in spec.get("images", []):
        _set_image(resources, image)
    return resources


def _check_unique(resources: list[dict[str, Any]], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for res in resources:
        key = (res.get("apiVersion", ""), res.get("kind", ""), res.get("metadata", {}).get("name", ""))
        if key in seen:
            raise KustomizeError(f"{where}: resource {key} appears twice")
        seen.add(key)


def _apply_patch(resources: list[dict[str, Any]], patch: dict[str, Any], directory: Path) -> None:
    target = patch.get("target") or {}
    if set(target) - {"kind", "name", "group", "version"} or not target.get("kind"):
        raise KustomizeError(f"patch target {target} must name a kind (and optionally a name)")
    if "path" in patch:
        ops = yaml.safe_load((directory / patch["path"]).read_text())
    elif "patch" in patch:
        ops = yaml.safe_load(patch["patch"])
    else:
        raise KustomizeError(f"patch {patch} has neither path nor patch")
    if not isinstance(ops, list):
        raise KustomizeError(f"patch for {target}: only RFC 6902 JSON patches (a list of operations) are supported")
    matched = [r for r in resources
               if r.get("kind") == target["kind"]
               and ("name" not in target or r.get("metadata", {}).get("name") == target["name"])]
    if not matched:
        raise KustomizeError(f"patch target {target} matches no resource")
    for res in matched:
        for op in ops:
            json_patch(res, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError) as exc:
                raise KustomizeError(f"{path}: no list index {part}") from exc
        elif isinstance(node, dict):
            if part not in node:
                raise KustomizeError(f"{path}: no key {part!r}")
            node = node[part]
        else:
            raise KustomizeError(f"{path}: cannot descend into a scalar at {part!r}")
    return node


def json_patch(doc: dict[str, Any], op: dict[str, Any]) -> None:
    """Apply one RFC 6902 operation (add, replace, remove, test) to ``doc`` in place."""
    kind, path = op.get("op"), op.get("path", "")
    parts = _pointer(path)
    if not parts:
        raise KustomizeError("patching the document root is not supported")
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if kind == "test":
        if _walk(doc, parts, path) != op["value"]:
            raise KustomizeError(f"test failed at {path}: {_walk(doc, parts, path)!r} != {op['value']!r}")
    elif kind == "remove":
        _walk(doc, parts, path)  # must exist
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    elif kind in ("add", "replace"):
        value = copy.deepcopy(op["value"])
        if kind == "replace":
            _walk(doc, parts, path)  # must exist
        if isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif kind == "add":
                parent.insert(int(last), value)
            else:
                parent[int(last)] = value
        elif isinstance(parent, dict):
            parent[last] = value
        else:
            raise KustomizeError(f"{path}: parent is a scalar")
    else:
        raise KustomizeError(f"unsupported JSON patch op {kind!r} at {path}")


def _set_image(resources: list[dict[str, Any]], image: dict[str, Any]) -> None:
    """Rewrite ``image`` of every container whose image name matches (any kind, any depth)."""
    name = image["name"]

    def rewrite(ref: str) -> str:
        base, tag = ref, None
        if "@" not in ref and ":" in ref.rsplit("/", 1)[-1]:
            base, tag = ref.rsplit(":", 1)
        if base != name:
            return ref
        new_tag = image.get("newTag", tag)
        return image.get("newName", base) + (f":{new_tag}" if new_tag else "")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            container["image"] = rewrite(container["image"])
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(resources)


def resource_key(res: dict[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): how kustomize and the API server identify a resource."""
    meta = res.get("metadata", {})
    return (res.get("apiVersion", ""), res.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
