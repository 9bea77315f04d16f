"""MlflowTracker and mlflow_run against a real sqlite MLflow store under the test's HFTPIPE_HOME."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.config import Config, load_config
from hftpipe.registry.tracker import dvc_hash, file_sha256, flatten_config, lineage_tags, mlflow_run

pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")


def test_run_logs_config_lineage_and_metrics(tmp_path: Path, hftpipe_home: Path) -> None:
    cfg = load_config(None, ["train.model=mlp", "register.experiment=unit-exp"])
    features = tmp_path / "features"
    features.mkdir()
    (features / "features_meta.json").write_text(json.dumps(
        {"symbol": "GOOG", "date": "2012-06-21", "levels": 10, "source_sha256": "ab" * 32}))
    (features / "features.parquet").write_bytes(b"not really parquet, hashed as bytes")
    with mlflow_run(cfg, "unit", {"step": "train"}, features_dir=features) as tracker:
        tracker.log_metrics({"loss": 0.5, "val_macro_f1": 0.4}, step=1)
        tracker.log_metrics({"loss": 0.25}, step=2)
        run_id = tracker.run_id

    client = MlflowClient(paths.mlflow_tracking_uri())
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.model"] == "mlp"
    assert run.data.params["features.horizons"] == "[10, 50, 100]"
    assert run.data.tags["step"] == "train"
    assert run.data.tags["data.source_sha256"] == "ab" * 32
    assert run.data.tags["data.features_sha256"] == file_sha256(features / "features.parquet")
    assert run.data.tags["data.symbol"] == "GOOG"
    assert len(run.data.tags["git.commit"]) == 40
    assert [m.value for m in client.get_metric_history(run_id, "loss")] == [0.5, 0.25]
    # The store and the artifacts both live under HFTPIPE_HOME, not ./mlruns.
    assert paths.mlflow_tracking_uri() == f"sqlite:///{hftpipe_home / 'mlflow' / 'mlflow.db'}"
    assert run.info.artifact_uri.startswith((hftpipe_home / "mlflow" / "artifacts").as_uri())
    config_path = Path(client.download_artifacts(run_id, "config.json", str(tmp_path)))
    assert json.loads(config_path.read_text()) == cfg.to_dict()
    assert client.get_experiment(run.info.experiment_id).name == "unit-exp"


def test_failed_body_marks_run_failed_and_reraises() -> None:
    with pytest.raises(RuntimeError, match="boom"), mlflow_run(Config(), "failing") as tracker:
        run_id = tracker.run_id
        raise RuntimeError("boom")
    assert MlflowClient(paths.mlflow_tracking_uri()).get_run(run_id).info.status == "FAILED"


def test_tracking_uri_env_overrides_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         hftpipe_home: Path, _empty_mlflow_db: Path) -> None:
    shutil.copyfile(_empty_mlflow_db, tmp_path / "elsewhere.db")
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with mlflow_run(Config(), "elsewhere") as tracker:
        assert tracker.tracking_uri == uri
    assert MlflowClient(uri).get_experiment_by_name("hftpipe") is not None
    home_store = MlflowClient(f"sqlite:///{hftpipe_home / 'mlflow' / 'mlflow.db'}")
    assert home_store.get_experiment_by_name("hftpipe") is None  # nothing went to the default store


def test_continue_existing_run_keeps_params() -> None:
    with mlflow_run(Config(), "first") as tracker:
        run_id = tracker.run_id
    with mlflow_run(Config(), "resumed", {"resumed": "yes"}, run_id=run_id) as tracker:
        assert tracker.run_id == run_id
        tracker.log_metrics({"epoch_loss": 1.0}, step=3)
    run = MlflowClient(paths.mlflow_tracking_uri()).get_run(run_id)
    assert run.data.tags["resumed"] == "yes" and run.info.status == "FINISHED"
    assert run.data.metrics["epoch_loss"] == 1.0


def test_flatten_config_names_sections() -> None:
    flat = flatten_config({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None})
    assert flat == {"a.b": 1, "a.c.d": [1, 2], "e": None}


def test_dvc_hash_from_lock_and_pointer(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  features:\n    cmd: hftpipe features\n    outs:\n"
        "    - path: data/features\n      md5: 0123abcd.dir\n      nfiles: 2\n")
    (tmp_path / "data" / "raw.zip").write_bytes(b"zip")
    (tmp_path / "data" / "raw.zip.dvc").write_text("outs:\n- md5: feedbeef\n  size: 3\n  path: raw.zip\n")
    assert dvc_hash(tmp_path / "data" / "features", repo=tmp_path) == "0123abcd.dir"
    assert dvc_hash(tmp_path / "data" / "raw.zip", repo=tmp_path) == "feedbeef"
    assert dvc_hash(tmp_path / "data" / "other", repo=tmp_path) is None
    tags = lineage_tags(data_path=tmp_path / "data" / "raw.zip", repo=tmp_path)
    assert tags["data.input_dvc_md5"] == "feedbeef"
    assert tags["data.input_sha256"] == file_sha256(tmp_path / "data" / "raw.zip")
    assert "git.commit" not in tags  # tmp_path is no git checkout


def test_continued_run_keeps_the_step_that_created_it(hftpipe_home: Path) -> None:
    """Issue 10 finding 16: the pipeline's evaluate step re-tagged its training run as an evaluation."""
    cfg = load_config(None, ["register.experiment=unit-exp"])
    with mlflow_run(cfg, "train-like", {"step": "train"}) as tracker:
        run_id = tracker.run_id
    with mlflow_run(cfg, "evaluate-like", {"step": "evaluate"}, run_id=run_id):
        pass
    tags = MlflowClient(paths.mlflow_tracking_uri()).get_run(run_id).data.tags
    assert tags["step"] == "train" and tags["steps"] == "train,evaluate"
    with mlflow_run(cfg, "evaluate-again", {"step": "evaluate"}, run_id=run_id):
        pass
    assert MlflowClient(paths.mlflow_tracking_uri()).get_run(run_id).data.tags["steps"] == "train,evaluate"


def test_pipeline_training_run_stays_a_training_run(features_dir: Path, tmp_path: Path) -> None:
    """train_tracked + evaluate_tracked (what the pipeline's steps call): the UI's Training tab finds the run."""
    from hftpipe.pipeline.tracked import evaluate_tracked
    from tests.registry.conftest import make_bundle, registry_config

    cfg = registry_config("register.experiment=unit-exp")
    with mlflow_run(cfg, "train-mlp", {"step": "train"}, features_dir=features_dir) as tracker:
        run_id = tracker.run_id
    bundle = make_bundle(tmp_path / "bundle", features_dir, seed=0, cfg=cfg, mlflow_run_id=run_id)
    evaluate_tracked(cfg, bundle, features_dir, tmp_path / "report")
    client = MlflowClient(paths.mlflow_tracking_uri())
    experiment = client.get_experiment_by_name("unit-exp").experiment_id
    training = client.search_runs([experiment], filter_string="tags.step = 'train'")
    assert [r.info.run_id for r in training] == [run_id]
    assert "test_macro_f1" in training[0].data.metrics  # the evaluation went into the same run


def test_evaluation_run_records_the_evaluated_model_not_the_config(features_dir: Path, tmp_path: Path) -> None:
    """Issue 10 finding 16: `hftpipe evaluate --model <mlp bundle>` logged params.yaml's model (lstm)."""
    from click.testing import CliRunner

    from hftpipe.cli import main
    from tests.registry.conftest import make_bundle, registry_config

    bundle = make_bundle(tmp_path / "bundle", features_dir, seed=0, cfg=registry_config())
    result = CliRunner().invoke(main, ["-S", "train.model=lstm", "-S", "train.window=50", "-S",
                                       "register.experiment=unit-exp", "-S", "evaluate.bootstrap=20",
                                       "evaluate", "--model", str(bundle), "--data", str(features_dir),
                                       "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    client = MlflowClient(paths.mlflow_tracking_uri())
    experiment = client.get_experiment_by_name("unit-exp").experiment_id
    (run,) = client.search_runs([experiment], filter_string="tags.step = 'evaluate'")
    assert run.data.params["train.model"] == "mlp" and run.data.params["train.window"] == "10"
    assert run.data.params["evaluate.bootstrap"] == "20"  # the evaluation's own settings are this run's
    assert run.data.tags["model.name"] == "mlp"
