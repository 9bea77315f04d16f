"""Models and runs pages read a real MLflow store (sqlite) with versions, aliases and gate tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hftpipe.config import Config
from hftpipe.ui import create_app, modelinfo
from tests.ui.conftest import HORIZON, PASSWORD, USER, closed_port_url, tiny_bundle, ui_config

pytestmark = pytest.mark.slow  # creating the MLflow sqlite schema alone takes 10-20 s here

MODEL = "hftpipe-lob"
EXPERIMENT = "hftpipe"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite store for the module (creating its schema costs seconds), filled like a real pipeline."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    client.create_registered_model(MODEL)
    for i, (f1, decision) in enumerate([(0.41, "pass"), (0.44, "pass"), (0.39, "fail")], start=1):
        run = client.create_run(exp, run_name=f"train-{i}", tags={"step": "train", "git.commit": f"{i}abc1234def5678",
                                                                   "data.source_sha256": f"{i}" * 64})
        client.log_param(run.info.run_id, "train.model", "lstm")
        client.log_param(run.info.run_id, "train.horizon", "10")
        client.log_metric(run.info.run_id, "val_macro_f1", f1)
        client.log_metric(run.info.run_id, "baseline_persistence_macro_f1", 0.35)
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        tags = {"gate.decision": decision,
                "gate.reasons": f"{decision}: margin over persistence {f1 - 0.35:+.3f}\n"
                                f"{decision}: net PnL checked",
                "metrics.macro_f1": f"{f1:.6f}", "metrics.best_baseline": "persistence",
                "metrics.best_baseline_macro_f1": "0.350000", "metrics.margin_point": f"{f1 - 0.35:+.6f}",
                "metrics.margin_low": f"{f1 - 0.37:+.6f}", "metrics.margin_high": f"{f1 - 0.33:+.6f}",
                "metrics.net_pnl": "-1.250000", "model.name": "lstm", "model.horizon": "10"}
        for key, value in tags.items():
            client.set_model_version_tag(MODEL, mv.version, key, value)
    evaluation = client.create_run(exp, run_name="evaluate-lstm", tags={"step": "evaluate"})
    client.log_metric(evaluation.info.run_id, "test_macro_f1", 0.43)
    client.set_terminated(evaluation.info.run_id)
    client.set_registered_model_alias(MODEL, "champion", "2")
    client.set_registered_model_alias(MODEL, "previous", "1")
    client.set_registered_model_alias(MODEL, "challenger", "3")
    return uri


@pytest.fixture
def logged_in(store: str, replay_events: Path, credentials, monkeypatch: pytest.MonkeyPatch):
    def make(cfg: Config):
        app = create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=credentials)
        client = app.test_client()
        client.post("/login", data={"username": USER, "password": PASSWORD})
        return client

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return make


def test_models_page_shows_aliases_gate_and_lineage(logged_in, replay_events: Path) -> None:
    cfg = ui_config(replay_events, closed_port_url())
    cfg = cfg.replace(ui=cfg.ui.__class__(**{**cfg.ui.__dict__, "mlflow_links": "show"}))
    page = logged_in(cfg).get("/models").text
    order = [page.index(f"<h2>v{v}") for v in (2, 3, 1)]
    assert order == sorted(order)  # champion, challenger, previous
    for text in ("alias-champion", "alias-challenger", "alias-previous", "decision-pass", "decision-fail",
                 "margin over persistence +0.090", "0.4400", "0.3500 (persistence)", "+0.0900 [+0.0700, +0.1100]",
                 "2abc1234def5678", "2" * 64, "#/models/hftpipe-lob/versions/2", cfg.ui.mlflow_ui_url):
        assert text in page, text


def test_runs_page_table_and_chart_data(logged_in, replay_events: Path) -> None:
    page = logged_in(ui_config(replay_events, closed_port_url())).get("/runs").text
    assert all(f"train-{i}" in page for i in (1, 2, 3))
    data = json.loads(page.split('<script type="application/json" id="runs-data">')[1].split("</script>")[0])
    assert data["metrics"][0] == "val_macro_f1"
    assert [r["values"]["val_macro_f1"] for r in data["runs"]] == [0.41, 0.44, 0.39]  # oldest first
    assert "0.4400" in page and "3abc1234de" in page
    assert "evaluate-lstm" not in page  # training runs by default


def test_runs_page_filters_by_step(logged_in, replay_events: Path) -> None:
    client = logged_in(ui_config(replay_events, closed_port_url()))
    evaluation = client.get("/runs?step=evaluate").text
    assert "evaluate-lstm" in evaluation and "train-1" not in evaluation
    everything = client.get("/runs?step=all").text
    assert "evaluate-lstm" in everything and "train-1" in everything
    assert "train-1" in client.get("/runs?step=bogus").text  # unknown step: the default view


def test_empty_registry_says_what_to_run(logged_in, replay_events: Path) -> None:
    cfg = ui_config(replay_events, closed_port_url())
    cfg = cfg.replace(register=cfg.register.__class__(model_name="never-registered", experiment="nothing-yet"))
    client = logged_in(cfg)
    assert "No version of <b>never-registered</b>" in client.get("/models").text
    assert "No training run in experiment <b>nothing-yet</b>" in client.get("/runs").text


def test_unreachable_store_is_a_notice_not_a_traceback(logged_in, replay_events: Path,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # discard port: nothing answers
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = logged_in(ui_config(replay_events, closed_port_url()))
    for path, text in (("/models", "The model registry cannot be read"), ("/runs", "The tracking store cannot be read")):
        response = client.get(path)
        assert response.status_code == 200 and text in response.text and "Traceback" not in response.text


def test_live_scoring_parameters_from_a_registered_version(store: str, replay_events: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry-served model that does not say its horizon/alpha: the UI reads its bundle.json."""
    import mlflow

    from hftpipe.registry.pyfunc import log_bundle_model
    from hftpipe.registry.tracker import client, fluent_store

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    bundle = tiny_bundle(tmp_path / "bundle", replay_events, tmp_path / "features")
    meta = json.loads((tmp_path / "features" / "features_meta.json").read_text())
    mc = client()
    run = mc.create_run(mc.get_experiment_by_name(EXPERIMENT).experiment_id, run_name="register-lstm")
    with fluent_store():
        logged = log_bundle_model(bundle, run.info.run_id)
        version = mlflow.register_model(logged.model_uri, "scored-model").version
    info = modelinfo.resolve(Config(), {}, "scored-model", str(version))
    assert info.source == f"registry (scored-model v{version})"
    assert info.horizon == HORIZON and info.alpha == pytest.approx(meta["alpha"][str(HORIZON)])
    assert (info.label, info.sampling) == ("forward", "all")


def _with_experiment(cfg: Config, experiment: str) -> Config:
    return cfg.replace(register=cfg.register.__class__(**{**cfg.register.__dict__, "experiment": experiment}))


@pytest.fixture(scope="module")
def pipeline_runs(store: str) -> dict[str, str]:
    """Runs tagged as the code that writes them does (hftpipe.pipeline.tracked, hftpipe.cli.evaluate)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store, registry_uri=store)
    ids = {}
    # The pipeline: a training run that its evaluation step continues and re-tags step=evaluate.
    only = client.create_experiment("pipeline-only")
    run = client.create_run(only, run_name="train-lstm", tags={"step": "train"})
    client.log_param(run.info.run_id, "train.model", "lstm")
    client.log_metric(run.info.run_id, "val_macro_f1", 0.42)
    client.log_metric(run.info.run_id, "train_loss", 0.9)
    client.set_tag(run.info.run_id, "step", "evaluate")
    client.log_metric(run.info.run_id, "test_macro_f1", 0.40)
    client.set_terminated(run.info.run_id)
    ids["pipeline"] = run.info.run_id
    # `hftpipe evaluate --model models:/...` of a deeplob model, run with a config that says lstm.
    mixed = client.create_experiment("evaluations")
    trained = client.create_run(mixed, run_name="train-deeplob", tags={"step": "train"})
    for key, value in (("train.model", "deeplob"), ("train.horizon", "50"), ("train.window", "100")):
        client.log_param(trained.info.run_id, key, value)
    client.set_terminated(trained.info.run_id)
    evaluation = client.create_run(mixed, run_name="evaluate-deeplob-features", tags={
        "step": "evaluate", "evaluated_model": "models:/hftpipe-lob@champion",
        "model_run_id": trained.info.run_id, "model_name": "hftpipe-lob", "model_version": "7"})
    for key, value in (("train.model", "lstm"), ("train.horizon", "10"), ("train.window", "10")):
        client.log_param(evaluation.info.run_id, key, value)
    client.log_metric(evaluation.info.run_id, "test_macro_f1", 0.45)
    client.set_terminated(evaluation.info.run_id)
    # An experiment with evaluations only.
    lone = client.create_experiment("evaluations-only")
    run = client.create_run(lone, run_name="evaluate-bundle", tags={"step": "evaluate",
                                                                   "evaluated_model": "/tmp/bundle"})
    client.set_terminated(run.info.run_id)
    return ids


def _row(page: str, name: str) -> str:
    return next(row for row in page.split("<tbody>")[1].split("<tr>") if name in row)


def test_runs_default_tab_shows_pipeline_runs(logged_in, pipeline_runs, replay_events: Path) -> None:
    cfg = _with_experiment(ui_config(replay_events, closed_port_url()), "pipeline-only")
    page = logged_in(cfg).get("/runs").text
    assert "No training run" not in page and "train-lstm" in page and "0.4200" in page
    assert "<td>train + evaluate</td>" in _row(page, "train-lstm")


def test_evaluation_rows_show_the_evaluated_model(logged_in, pipeline_runs, replay_events: Path) -> None:
    cfg = _with_experiment(ui_config(replay_events, closed_port_url()), "evaluations")
    client = logged_in(cfg)
    row = _row(client.get("/runs?step=evaluate").text, "evaluate-deeplob-features")
    assert "evaluated hftpipe-lob v7" in row
    assert "deeplob" in row.split("evaluated")[1] and "<td>50</td>" in row and "<td>100</td>" in row
    assert "<td>lstm</td>" not in row and "<td>10</td>" not in row  # not the evaluating config's model
    training = client.get("/runs").text
    assert "train-deeplob" in training and "evaluate-deeplob-features" not in training


def test_an_empty_default_tab_opens_one_with_runs(logged_in, pipeline_runs, replay_events: Path) -> None:
    cfg = _with_experiment(ui_config(replay_events, closed_port_url()), "evaluations-only")
    page = logged_in(cfg).get("/runs").text
    assert "No training run yet: showing evaluation." in page and "evaluate-bundle" in page


def test_run_links_to_mlflow_only_when_it_answers(logged_in, pipeline_runs, replay_events: Path) -> None:
    cfg = _with_experiment(ui_config(replay_events, closed_port_url()), "pipeline-only")
    assert "#/experiments/" not in logged_in(cfg).get("/runs").text  # nothing answers at mlflow_ui_url
    shown = cfg.replace(ui=cfg.ui.__class__(**{**cfg.ui.__dict__, "mlflow_links": "show"}))
    assert "#/experiments/" in logged_in(shown).get("/runs").text
