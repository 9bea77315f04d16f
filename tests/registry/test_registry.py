"""Registration, the promotion gate, aliases, rollback and model resolution against a REAL sqlite MLflow
registry under the test's HFTPIPE_HOME, with real bundles scored by hftpipe.evaluation on real GOOG data."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.cli import main
from hftpipe.errors import RegistryError
from hftpipe.evaluation import evaluate
from hftpipe.models import load_bundle
from hftpipe.registry import list_versions, mlflow_run, register, resolve_model, rollback
from hftpipe.registry.tracker import fluent_store
from tests.registry.conftest import make_bundle, raw_windows, registry_config

pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")

NAME = "hftpipe-lob"
# Untrained models do not beat the naive baselines; these tests isolate the champion comparison by
# letting any finite point margin through (a configurable gate setting, not a hack).
LENIENT = ("register.use_interval=false", "register.min_margin=-1.0")


@pytest.fixture(scope="session")
def scored(features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path, float]]:
    """Seed -> (bundle dir, report.json, model macro-F1) for three seeded MLPs evaluated on the test split."""
    root = tmp_path_factory.mktemp("scored")
    out = {}
    for seed in (0, 1, 2):
        bundle = make_bundle(root / f"bundle{seed}", features_dir, seed)
        report = evaluate(registry_config(), bundle, features_dir, root / f"eval{seed}")
        out[seed] = (bundle, root / f"eval{seed}" / "report.json", float(report.report["model"]["macro_f1"]))
    return out


def _client() -> MlflowClient:
    return MlflowClient(paths.mlflow_tracking_uri())


def _alias(alias: str) -> str | None:
    try:
        return str(_client().get_model_version_by_alias(NAME, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


@pytest.mark.slow
def test_better_model_becomes_champion_worse_stays_challenger_and_rollback(scored, features_dir: Path) -> None:
    by_score = sorted(scored, key=lambda seed: scored[seed][2])
    worst, middle, best = by_score
    assert scored[worst][2] < scored[middle][2] < scored[best][2], "the fixture needs three distinct scores"
    cfg = registry_config(*LENIENT)

    first = register(cfg, scored[middle][0], scored[middle][1], features_dir=features_dir)
    assert (first.version, first.passed, first.alias) == ("1", True, "champion")
    assert first.reasons[1] == "pass: no current champion: nothing to beat"

    better = register(cfg, scored[best][0], scored[best][1], features_dir=features_dir)
    assert (better.version, better.passed, better.alias, better.previous_champion) == ("2", True, "champion", "1")
    assert (_alias("champion"), _alias("previous")) == ("2", "1")
    tags = _client().get_model_version(NAME, "2").tags
    # The champion was re-scored on the same test rows: it gets exactly its own report's macro-F1.
    assert float(tags["gate.champion_macro_f1"]) == pytest.approx(scored[middle][2], abs=1e-6)
    assert tags["gate.decision"] == "pass" and tags["promotion.replaced"] == "1"
    assert float(tags["metrics.macro_f1"]) == pytest.approx(scored[best][2], abs=1e-6)
    assert tags["data.source_sha256"] == json.loads((features_dir / "features_meta.json").read_text())["source_sha256"]
    assert len(tags["git.commit"]) == 40

    worse = register(cfg, scored[worst][0], scored[worst][1], features_dir=features_dir)
    assert (worse.version, worse.passed, worse.alias) == ("3", False, "challenger")
    assert worse.reasons[1] == (f"fail: macro-F1 {scored[worst][2]:.4f} < champion v2 {scored[best][2]:.4f} "
                                f"on the same test data ({worse.reasons[1].split('(', 1)[1]}")
    assert (_alias("champion"), _alias("previous"), _alias("challenger")) == ("2", "1", "3")
    tags = _client().get_model_version(NAME, "3").tags
    assert tags["gate.decision"] == "fail" and tags["gate.check.champion_macro_f1"] == "fail"
    assert tags["gate.reasons"].split("\n") == worse.reasons

    listed = {v.version: v for v in list_versions(NAME)}
    assert [v.version for v in list_versions(NAME)] == ["3", "2", "1"]
    assert listed["2"].aliases == ["champion"] and listed["3"].decision == "fail"

    back = rollback(NAME)
    assert (back.demoted, back.restored, back.previous) == ("2", "1", None)
    assert (_alias("champion"), _alias("previous")) == ("1", None)
    assert _client().get_model_version(NAME, "2").tags["rollback.demoted"] == "true"
    with pytest.raises(RegistryError, match="has no 'previous' version to roll back to"):
        rollback(NAME)


@pytest.mark.slow
def test_default_gate_keeps_an_untrained_model_out(scored, features_dir: Path) -> None:
    bundle, report, _ = scored[0]
    result = register(registry_config(), bundle, report, features_dir=features_dir)
    assert not result.passed and result.alias == "challenger"
    assert result.reasons[0].startswith("fail: macro-F1 margin over best baseline")
    assert "(95% lower bound)" in result.reasons[0]
    assert _alias("champion") is None and _alias("challenger") == "1"
    assert result.to_dict()["decision"] == "challenger" and result.to_dict()["gate"] == "fail"


@pytest.mark.slow
def test_pyfunc_model_and_resolution(scored, features_dir: Path, tmp_path: Path) -> None:
    _bundle_dir, report, _ = scored[1]
    cfg = registry_config(*LENIENT)
    with mlflow_run(cfg, "train-like") as tracker:
        run_id = tracker.run_id
    own = make_bundle(tmp_path / "own", features_dir, seed=1, mlflow_run_id=run_id)
    result = register(cfg, own, report)  # features from the report's own data section
    assert result.run_id == run_id  # logged into the bundle's training run

    windows = raw_windows(features_dir)
    expected = load_bundle(own).predict_proba(windows)
    with fluent_store():
        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    got = model.predict(windows)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got.shape == (len(windows), 3)
    spec = model.metadata.get_input_schema().inputs[0]
    assert spec.shape == (-1, 10, 4) and spec.type == np.dtype("float64")

    by_alias, name, version = resolve_model(f"models:/{NAME}@champion")
    assert (name, version) == (NAME, "1")
    assert str(by_alias).startswith(str(paths.home()))
    np.testing.assert_allclose(load_bundle(by_alias).predict_proba(windows), expected, rtol=1e-6)
    by_version, _, _ = resolve_model(f"models:/{NAME}/1")
    assert by_version == by_alias  # one cached download per version
    assert resolve_model(own) == (own, None, None)
    # Without a feature set (and with the report's own folder gone) the champion cannot be re-scored on
    # the same data: the gate refuses rather than compare numbers from different data.
    moved = json.loads(Path(report).read_text())
    moved["data"]["features_dir"] = str(tmp_path / "gone")
    # A report that names its data's sha256 lets the champion's recorded score on that same table count;
    # without it (an older report) the data is unknown.
    del moved["data"]["features_sha256"]
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    blind = register(cfg, own, tmp_path / "moved.json")
    assert (blind.version, blind.alias) == ("2", "challenger")
    assert "pass the feature set (--features DIR)" in blind.reasons[1]
    assert resolve_model(f"models:/{NAME}@challenger")[2] == "2"

    with pytest.raises(RegistryError, match="has no alias 'nope'"):
        resolve_model(f"models:/{NAME}@nope")
    with pytest.raises(RegistryError, match="has no version '7'"):
        resolve_model(f"models:/{NAME}/7")
    with pytest.raises(RegistryError, match="no registered model named 'other'"):
        resolve_model("models:/other@champion")


@pytest.mark.slow
def test_cli_register_list_rollback(scored, features_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    params = tmp_path / "params.yaml"
    params.write_text("features:\n  horizons: [10]\n  windows: [10]\ntrain:\n  window: 10\n  model: mlp\n"
                      "evaluate:\n  bootstrap: 50\nregister:\n  use_interval: false\n  min_margin: -1.0\n")
    out = tmp_path / "registration.json"
    for seed in sorted(scored, key=lambda s: scored[s][2])[1:]:  # middle, then best: two promotions
        bundle, report, _ = scored[seed]
        result = runner.invoke(main, ["--params", str(params), "register", str(bundle), "--report", str(report),
                                      "--features", str(features_dir), "--out", str(out)])
        assert result.exit_code == 0, result.output
    assert "hftpipe-lob version 2: gate pass -> champion" in result.output
    assert "previous champion v1 keeps alias 'previous'" in result.output
    assert json.loads(out.read_text())["decision"] == "champion"

    listed = runner.invoke(main, ["--params", str(params), "registry", "list", "--reasons"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0] == "hftpipe-lob: 2 version(s)"
    assert lines[2].split()[:3] == ["2", "champion", "pass"] and "pass: macro-F1" in listed.output

    back = runner.invoke(main, ["--params", str(params), "registry", "rollback"])
    assert back.exit_code == 0 and "champion v2 -> v1" in back.output
    again = runner.invoke(main, ["--params", str(params), "registry", "rollback"])
    assert again.exit_code == 2 and "error: hftpipe-lob has no 'previous' version" in again.output


def test_report_of_another_model_is_refused(scored, features_dir: Path, tmp_path: Path) -> None:
    bundle, report, _ = scored[0]
    other = json.loads(Path(report).read_text())
    other["model_info"]["horizon"] = 50
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(RegistryError, match="computed for a model with horizon=50, but this bundle has horizon=10"):
        register(registry_config(), bundle, tmp_path / "other.json", features_dir=features_dir)
    assert _alias("champion") is None and _alias("challenger") is None  # nothing was registered


def test_missing_report_and_unknown_model_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="run `hftpipe evaluate` first"):
        from hftpipe.registry.registry import read_report
        read_report(tmp_path / "report.json")
    with pytest.raises(RegistryError, match="no registered model named 'absent'"):
        list_versions("absent")
    with pytest.raises(RegistryError, match="neither a bundle folder nor a registry URI"):
        resolve_model(str(tmp_path / "missing"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_mlflow_models_serve_answers_for_the_champion(scored, features_dir: Path, tmp_path: Path) -> None:
    bundle, report, _ = scored[2]
    register(registry_config(*LENIENT), bundle, report, features_dir=features_dir)
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri(), "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                               f"models:/{NAME}@champion", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log_tail = (tmp_path / "serve.log").read_text()[-2000:]
                    raise AssertionError(f"mlflow models serve did not come up: {log_tail}")
                time.sleep(0.5)
        windows = raw_windows(features_dir, count=4)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": windows.tolist()}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        np.testing.assert_allclose(np.asarray(answer["predictions"]), load_bundle(bundle).predict_proba(windows),
                                   rtol=1e-6)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_champion_moved_during_scoring_is_not_overwritten(scored, features_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import hftpipe.registry.registration as registry_module

    worst, best = min(scored, key=lambda s: scored[s][2]), max(scored, key=lambda s: scored[s][2])
    cfg = registry_config(*LENIENT)
    register(cfg, scored[worst][0], scored[worst][1], features_dir=features_dir)
    real_score = registry_module.champion_score

    def score_then_someone_else_acts(*args, **kwargs):
        result = real_score(*args, **kwargs)
        _client().delete_registered_model_alias(NAME, "champion")  # e.g. a concurrent rollback tool
        return result

    monkeypatch.setattr(registry_module, "champion_score", score_then_someone_else_acts)
    late = register(cfg, scored[best][0], scored[best][1], features_dir=features_dir)
    assert late.reasons[1].startswith("pass: macro-F1")  # it did beat the champion it was compared with
    assert not late.passed and late.alias == "challenger"
    assert late.reasons[-1].startswith("fail: the champion changed to v- while this version was compared with v1")
    assert _client().get_model_version(NAME, late.version).tags["gate.decision"] == "fail"
    assert _alias("champion") is None


def test_report_is_bound_to_its_bundle_and_its_data(scored, features_dir: Path, tmp_path: Path) -> None:
    """Issue 10 finding 2: another model's report, an edited hash or other data never pass the gate."""
    bundle0, report0, _ = scored[0]
    _bundle1, report1, _ = scored[1]
    cfg = registry_config(*LENIENT)  # a gate every model passes: only the binding can refuse
    runner = CliRunner()
    lenient = [f"-S{item}" for item in (*LENIENT, "features.horizons=[10]", "features.windows=[10]",
                                         "train.window=10", "train.model=mlp", "evaluate.bootstrap=50")]

    # The other model's report (same architecture, horizon, window: only the weights differ).
    other = runner.invoke(main, [*lenient, "register", str(bundle0), "--report", str(report1),
                                 "--features", str(features_dir)])
    assert other.exit_code == 2, other.output
    assert "scored another model" in other.output and "Traceback" not in other.output
    assert len([line for line in other.output.splitlines() if line.strip()]) == 1

    # This model's report with the hash edited (or removed) to match nothing / bypass the check.
    tampered = json.loads(Path(report0).read_text())
    tampered["model_info"]["bundle_sha256"] = "0" * 64
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    with pytest.raises(RegistryError, match="scored another model"):
        register(cfg, bundle0, tmp_path / "tampered.json", features_dir=features_dir)
    del tampered["model_info"]["bundle_sha256"]
    (tmp_path / "stripped.json").write_text(json.dumps(tampered))
    with pytest.raises(RegistryError, match="does not name the bundle it scored"):
        register(cfg, bundle0, tmp_path / "stripped.json", features_dir=features_dir)

    # The right report, but registered against another feature set than the one it scored.
    import pandas as pd

    shifted = tmp_path / "shifted"
    shifted.mkdir()
    (shifted / "features_meta.json").write_text((features_dir / "features_meta.json").read_text())
    pd.read_parquet(features_dir / "features.parquet").iloc[1:].to_parquet(shifted / "features.parquet")
    with pytest.raises(RegistryError, match="computed on other data than"):
        register(cfg, bundle0, report0, features_dir=shifted)
    # The data the report names was changed after the report was written (no --features given).
    moved = json.loads(Path(report0).read_text())
    moved["data"]["features_dir"] = str(shifted)
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(RegistryError, match="computed on other data than"):
        register(cfg, bundle0, tmp_path / "moved.json")
    assert _alias("champion") is None and _alias("challenger") is None  # nothing was registered

    right = runner.invoke(main, [*lenient, "register", str(bundle0), "--report", str(report0),
                                 "--features", str(features_dir)])
    assert right.exit_code == 0, right.output
    assert _alias("champion") == "1"
