"""Every pipeline compiles, the committed IR YAML is current, and it loads back with the kfp SDK."""

from __future__ import annotations

import json
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


# name -> (pipeline name, its data input); every other input is shared
SHAPES = {"training": ("hftpipe-training", "source"), "pooled_training": ("hftpipe-pooled-training", "sources")}


def test_every_pipeline_is_checked() -> None:
    assert set(PIPELINES) == set(SHAPES) | {"lake"}  # the lake pipeline's shape: tests/pipeline/test_lake_pipeline.py


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of the compiled DAG, nested groups included."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_compiled_yaml_loads_back(name: str) -> None:
    pipeline = components.load_component_from_file(str(COMPILED / f"{name}_pipeline.yaml"))
    spec = yaml.safe_load((COMPILED / f"{name}_pipeline.yaml").read_text())
    title, data_input = SHAPES[name]
    assert pipeline.name == title
    assert set(pipeline.component_spec.inputs) == {
        data_input, "config_json", "nproc", "accelerator_type", "accelerator_count"}
    tasks = set(_tasks(spec))
    for step in ("validate", "ingest", "features", "train", "evaluate", "register", "deploy"):
        assert step in tasks, f"step {step} missing from the compiled DAG"


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_data_steps_never_use_the_cache(name: str) -> None:
    """kubeflow/pipelines#4857: a scheduled run must re-read changing data, not reuse a cached artifact."""
    tasks = _tasks(yaml.safe_load((COMPILED / f"{name}_pipeline.yaml").read_text()))
    for step in ("validate", "ingest"):
        assert tasks[step]["cachingOptions"].get("enableCache", False) is False


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_deploy_runs_only_when_promoted(name: str) -> None:
    spec = yaml.safe_load((COMPILED / f"{name}_pipeline.yaml").read_text())
    conditions = [
        task.get("triggerPolicy", {}).get("condition", "")
        for comp in spec["components"].values()
        for task in comp.get("dag", {}).get("tasks", {}).values()
    ]
    assert any("champion" in c for c in conditions), conditions


def test_pooled_pipeline_loops_over_sources_then_pools_once() -> None:
    """validate, ingest and features run once per source (ParallelFor); train sees one collection of them all."""
    spec = yaml.safe_load((COMPILED / "pooled_training_pipeline.yaml").read_text())
    root = spec["root"]["dag"]["tasks"]
    loops = [(k, t) for k, t in root.items() if "parameterIterator" in t]
    assert len(loops) == 1
    loop_name, loop = loops[0]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--sources"}
    inside = set(spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"])
    assert inside == {"validate", "ingest", "features"}
    pooled = root["pool-features"]["inputs"]["artifacts"]["feature_sets"]["taskOutputArtifact"]
    assert pooled["producerTask"] == loop_name  # the loop's collected feature sets
    tasks = _tasks(spec)
    for step in ("train", "train-2", "evaluate", "register"):
        feeds = tasks[step]["inputs"]["artifacts"]["feature_set"]
        assert "pool-features" in json.dumps(feeds), (step, feeds)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_component_body_is_one_call_into_hftpipe(name: str) -> None:
    spec = yaml.safe_load((COMPILED / f"{name}_pipeline.yaml").read_text())
    for executor_name, executor in spec["deploymentSpec"]["executors"].items():
        program = "\n".join(executor["container"]["command"])
        assert "from hftpipe.pipeline.steps import" in program, executor_name
        assert executor["container"]["image"].startswith("ghcr.io/hftpipe/hftpipe"), executor_name
