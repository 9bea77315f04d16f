"""The RL pipeline compiles, its committed YAML is current, and both RL steps are in the DAG."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import components

from pipelines.rl_pipeline import COMPILED, compile_rl


def test_committed_rl_yaml_is_current(tmp_path: Path) -> None:
    fresh = compile_rl(tmp_path / "rl_pipeline.yaml")
    assert COMPILED.exists(), f"{COMPILED} is missing: run `python -m pipelines.rl_pipeline`"
    assert yaml.safe_load(COMPILED.read_text()) == yaml.safe_load(fresh.read_text()), (
        f"{COMPILED} is stale: run `python -m pipelines.rl_pipeline` and commit the result")


def test_rl_yaml_loads_back_with_both_steps() -> None:
    pipeline = components.load_component_from_file(str(COMPILED))
    assert pipeline.name == "hftpipe-rl"
    assert set(pipeline.component_spec.inputs) == {"source", "config_json", "register"}
    tasks = set(yaml.safe_load(COMPILED.read_text())["root"]["dag"]["tasks"])
    assert {"rl-train", "rl-evaluate"} <= tasks
