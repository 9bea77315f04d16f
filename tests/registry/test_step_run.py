"""One MLflow run wrapper for every step: the CLI and the pipeline name and tag a step's run alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.registry.tracker import step_run, train_subject
from tests.registry.conftest import registry_config

pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")


def test_a_training_run_is_named_after_model_and_horizon_and_tagged_with_its_step(hftpipe_home: Path) -> None:
    cfg = registry_config("register.experiment=step-runs")
    assert train_subject(cfg) == f"mlp-k{cfg.train.horizon}"
    # A caller's tags cannot relabel the step: the UI's Runs page filters on it.
    with step_run(cfg, "train", train_subject(cfg), {"step": "other", "extra": "yes"}) as tracker:
        run_id = tracker.run_id
    run = MlflowClient(paths.mlflow_tracking_uri()).get_run(run_id)
    assert run.info.run_name == f"train-mlp-k{cfg.train.horizon}"
    assert run.data.tags["step"] == "train" and run.data.tags["extra"] == "yes"
    assert run.info.status == "FINISHED"
