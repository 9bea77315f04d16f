"""Every pipeline compiles, the committed IR YAML is current, and it loads back with the kfp SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kfp import components

from hftpipe.pipeline.runner import PIPELINES, compile_pipelines

COMPILED = Path(__file__).resolve().parents[2] / "pipelines" / "compiled"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled")
    compile_pipelines(out)
    return out


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_committed_yaml_is_current(name: str, fresh: Path) -> None:
    committed = COMPILED / f"{name}_pipeline.yaml"
    assert committed.exists(), f"{committed} is missing: run `hftpipe pipeline compile`"
    # All documents: a pipeline with Kubernetes platform config (the lake's volume) has two.
    assert list(yaml.safe_load_all(committed.read_text())) == list(yaml.safe_load_all(
        (fresh / committed.name).read_text())), (
        f"{committed} is stale: run `hftpipe pipeline compile` and commit the result"
    )


@pytest.mark.parametrize("name", ["training"])  # the lake pipeline's shape: tests/pipeline/test_lake_pipeline.py
def test_compiled_yaml_loads_back(name: str) -> None:
    pipeline = components.load_component_from_file(str(COMPILED / f"{name}_pipeline.yaml"))
    spec = yaml.safe_load((COMPILED / f"{name}_pipeline.yaml").read_text())
    assert pipeline.name == "hftpipe-training"
    assert set(pipeline.component_spec.inputs) == {
        "source", "config_json", "nproc", "accelerator_type", "accelerator_count"}
    tasks = set()
    for comp in spec["components"].values():
        tasks |= set(comp.get("dag", {}).get("tasks", {}))
    tasks |= set(spec["root"]["dag"]["tasks"])
    for step in ("validate", "ingest", "features", "train", "evaluate", "register", "deploy"):
        assert step in tasks, f"step {step} missing from the compiled DAG"


def test_data_steps_never_use_the_cache() -> None:
    """kubeflow/pipelines#4857: a scheduled run must re-read changing data, not reuse a cached artifact."""
    spec = yaml.safe_load((COMPILED / "training_pipeline.yaml").read_text())
    tasks = spec["root"]["dag"]["tasks"]
    for step in ("validate", "ingest"):
        assert tasks[step]["cachingOptions"].get("enableCache", False) is False


def test_deploy_runs_only_when_promoted() -> None:
    spec = yaml.safe_load((COMPILED / "training_pipeline.yaml").read_text())
    conditions = [
        task.get("triggerPolicy", {}).get("condition", "")
        for comp in spec["components"].values()
        for task in comp.get("dag", {}).get("tasks", {}).values()
    ]
    assert any("champion" in c for c in conditions), conditions


def test_every_component_body_is_one_call_into_hftpipe() -> None:
    spec = yaml.safe_load((COMPILED / "training_pipeline.yaml").read_text())
    for name, executor in spec["deploymentSpec"]["executors"].items():
        program = "\n".join(executor["container"]["command"])
        assert "from hftpipe.pipeline.steps import" in program, name
        assert executor["container"]["image"].startswith("ghcr.io/hftpipe/hftpipe"), name
