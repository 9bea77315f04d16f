"""Every registry and serving change leaves its audit record; no promotion, rollback or deployment without one.

Real sqlite MLflow registry and real audit store (HFTPIPE_HOME/audit.db) per test; the "audit store
fails" cases make the real store unusable (a path under a regular file) or fail one write on purpose.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from hftpipe import audit, paths
from hftpipe.audit import AuditError, AuditTrail
from hftpipe.cli import main
from hftpipe.evaluation import evaluate
from hftpipe.pipeline.deploy import deploy
from hftpipe.registry import read_model_card, register, rollback
from tests.registry.conftest import make_bundle, registry_config

pytestmark = pytest.mark.usefixtures("_fresh_mlflow_store")

NAME = "hftpipe-lob"
LENIENT = ("register.use_interval=false", "register.min_margin=-1.0")


@pytest.fixture(scope="session")
def two_scored(features_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    """Two seeded MLPs and their evaluation reports, worse first (so the second beats the first as champion)."""
    root = tmp_path_factory.mktemp("audited")
    out = []
    for seed in (0, 1):
        bundle = make_bundle(root / f"bundle{seed}", features_dir, seed)
        report = evaluate(registry_config(), bundle, features_dir, root / f"eval{seed}")
        out.append((float(report.report["model"]["macro_f1"]), bundle, root / f"eval{seed}" / "report.json"))
    assert out[0][0] != out[1][0], "the fixture needs two distinct scores"
    return [(b, r) for _, b, r in sorted(out, key=lambda item: item[0])]


def _records() -> list[audit.AuditRecord]:
    with audit.open_trail() as trail:
        return trail.records()


def _alias(alias: str) -> str | None:
    try:
        return str(MlflowClient(paths.mlflow_tracking_uri()).get_model_version_by_alias(NAME, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


@pytest.mark.slow
def test_registration_promotion_rollback_and_deploy_each_leave_one_record(two_scored, features_dir: Path) -> None:
    cfg = registry_config(*LENIENT)
    (b1, r1), (b2, r2) = two_scored
    first = register(cfg, b1, r1, features_dir=features_dir, actor="carol")
    recs = _records()
    assert [(r.action, r.subject, r.actor) for r in recs] == [
        ("register", f"{NAME}/1", "carol"), ("promote", f"{NAME}/1", "carol")]
    assert recs[1].details == {"model_name": NAME, "champion": "1", "replaced": None, "previous": None}
    assert MlflowClient(paths.mlflow_tracking_uri()).get_model_version(NAME, "1").tags["promotion.by"] == "carol"

    second = register(cfg, b2, r2, features_dir=features_dir, actor="dave")
    assert second.passed and first.passed
    new = _records()[2:]
    assert [(r.action, r.subject) for r in new] == [("register", f"{NAME}/2"), ("promote", f"{NAME}/2")]
    assert new[1].details["replaced"] == "1"

    before = len(_records())
    rollback(NAME, actor="erin", reason="bad fills after the promotion")
    added = _records()[before:]
    assert [(r.action, r.subject, r.actor, r.reason) for r in added] == [
        ("rollback", NAME, "erin", "bad fills after the promotion")]
    assert added[0].details == {"model_name": NAME, "demoted": "2", "restored": "1", "previous": None}

    # Each version carries its model card (artifact + tag), and the UI shows it with who promoted it.
    card, markdown = read_model_card(NAME, "2")
    tags = MlflowClient(paths.mlflow_tracking_uri()).get_model_version(NAME, "2").tags
    assert (tags["model_card"], tags["model_card.backtest"]) == ("model_cards/v2", "not run")
    assert card["promotion"] == {"registered_by": "dave", "registered_at": tags["registered_at"], "promoted": True,
                                 "promoted_by": "dave"}
    assert card["metrics"]["model"]["macro_f1"] == pytest.approx(float(tags["metrics.macro_f1"]), abs=1e-6)
    assert set(card["metrics"]["baselines"]) >= {"majority", "persistence"}
    assert card["lineage"]["git.commit"] == tags["git.commit"] and card["lineage"]["mlflow_run_id"]
    assert "Queue-aware backtest under each trading policy: **not run**" in markdown
    _check_card_page(cfg)

    before = len(_records())
    deploy(cfg, NAME, "1", actor="frank")
    added = _records()[before:]
    assert [(r.action, r.subject, r.actor) for r in added] == [("deploy", f"{NAME}/1", "frank")]
    with audit.open_trail() as trail:
        assert trail.verify().ok


@pytest.mark.slow
def test_no_promotion_without_its_audit_record(two_scored, features_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = registry_config(*LENIENT)
    (b1, r1), _ = two_scored
    real_record = AuditTrail.record

    def failing_promote(self, action, *args, **kwargs):  # the store refuses exactly the promote write
        if action == audit.PROMOTE:
            raise OSError("disk full")
        return real_record(self, action, *args, **kwargs)

    monkeypatch.setattr(AuditTrail, "record", failing_promote)
    with pytest.raises(AuditError, match=r"'promote' for hftpipe-lob/1 could not be written \(disk full\); version 1 "
                                         r"stays registered as challenger but was NOT promoted"):
        register(cfg, b1, r1, features_dir=features_dir)
    assert _alias("champion") is None and _alias("challenger") == "1"
    tags = MlflowClient(paths.mlflow_tracking_uri()).get_model_version(NAME, "1").tags
    assert tags["promotion.blocked"].startswith("no audit record")
    assert [r.action for r in _records()] == ["register"]


@pytest.mark.slow
def test_unreachable_audit_store_registers_nothing(two_scored, features_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cfg = registry_config(*LENIENT, f"audit.url=sqlite:///{tmp_path}/file/audit.db")
    (b1, r1), _ = two_scored
    with pytest.raises(AuditError, match="cannot open the audit trail .*nothing was changed"):
        register(cfg, b1, r1, features_dir=features_dir)
    client = MlflowClient(paths.mlflow_tracking_uri())
    assert client.search_model_versions(f"name = '{NAME}'") == []


@pytest.mark.slow
def test_rollback_and_deploy_refused_when_the_audit_store_fails(two_scored, features_dir: Path,
                                                                tmp_path: Path) -> None:
    cfg = registry_config(*LENIENT)
    (b1, r1), (b2, r2) = two_scored
    register(cfg, b1, r1, features_dir=features_dir)
    assert register(cfg, b2, r2, features_dir=features_dir).passed
    (tmp_path / "file").write_text("not a folder")
    broken = f"sqlite:///{tmp_path}/file/audit.db"
    with pytest.raises(AuditError, match="nothing was changed"):
        rollback(NAME, audit_url=broken)
    assert _alias("champion") == "2" and _alias("previous") == "1"
    with pytest.raises(AuditError, match="nothing was deployed"):
        deploy(registry_config(*LENIENT, f"audit.url={broken}"), NAME, "1")
    ledger = paths.home() / "deployments.jsonl"
    assert not ledger.exists()


def test_retrain_refused_without_its_audit_record(tmp_path: Path) -> None:
    """``hftpipe retrain`` writes its trigger record before anything runs; a broken store stops it."""
    (tmp_path / "file").write_text("not a folder")
    params = tmp_path / "params.yaml"
    params.write_text(f"audit:\n  url: sqlite:///{tmp_path}/file/audit.db\n")
    result = CliRunner().invoke(main, ["--params", str(params), "retrain", "--data", str(tmp_path / "none.zip"),
                                       "--log-file", str(tmp_path / "retrain.log")])
    assert result.exit_code == 2, result.output
    assert "retrain_trigger' could not be written" in result.output and "nothing was retrained" in result.output
    assert "retrain refused: audit record not written" in (tmp_path / "retrain.log").read_text()


def test_retrain_trigger_record(tmp_path: Path) -> None:
    import logging
    from types import SimpleNamespace

    from hftpipe.cli.pipeline import _audit_retrain
    from hftpipe.config import Config

    _audit_retrain(SimpleNamespace(config=Config()), "data/raw/x.zip", None, logging.getLogger("test"))
    (rec,) = _records()
    assert (rec.action, rec.subject, rec.details["data"], rec.details["host"]) == (
        "retrain_trigger", NAME, "data/raw/x.zip", "local")


def _check_card_page(cfg) -> None:
    """The models page links the card; the card page shows it and the version's audit history."""
    from werkzeug.security import generate_password_hash

    from hftpipe.ui import create_app
    from hftpipe.ui.security import Credentials

    creds = Credentials(users={"tina": generate_password_hash("pw-for-tests")}, secret_key="s" * 40,
                        roles={"tina": "trader"})
    client = create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=creds).test_client()
    assert client.post("/login", data={"username": "tina", "password": "pw-for-tests"}).status_code == 302
    assert 'href="/models/2/card"' in client.get("/models").text
    page = client.get("/models/2/card")
    assert page.status_code == 200
    assert 'promoted by <b id="promoted-by">dave</b>' in page.text
    assert "# Model card: hftpipe-lob version 2" in page.text
    # The version's history: its registration and promotion by dave, then erin's rollback that demoted it.
    assert ["register", "promote", "rollback"] == re.findall(r"<td>(?:dave|erin)</td><td>(\w+)</td>", page.text)
    assert client.get("/models/2/card.json").json["model"]["version"] == "2"
    assert client.get("/models/99/card").status_code == 404
    assert client.get("/models/x1/card").status_code == 404


@pytest.mark.slow
def test_manual_promotion_and_alias_moves_each_leave_one_record(two_scored, features_dir: Path,
                                                                tmp_path: Path) -> None:
    from hftpipe.errors import RegistryError
    from hftpipe.registry import move_alias, promote

    cfg = registry_config("register.min_margin=1.0")  # nothing passes: both stay challengers
    (b1, r1), (b2, r2) = two_scored
    register(cfg, b1, r1, features_dir=features_dir)
    register(cfg, b2, r2, features_dir=features_dir)
    assert _alias("champion") is None
    before = len(_records())
    with pytest.raises(RegistryError, match="did not pass the promotion gate .*only with --force"):
        promote(NAME, "1", "canary looked fine")
    with pytest.raises(RegistryError, match="needs --reason"):
        promote(NAME, "1", " ", force=True)
    assert len(_records()) == before

    result = promote(NAME, "1", "canary looked fine", actor="gina", force=True)
    assert (result.champion, result.replaced, result.forced) == ("1", None, True)
    (rec,) = _records()[before:]
    assert (rec.action, rec.subject, rec.actor, rec.details["forced"], rec.details["manual"]) == (
        "promote", f"{NAME}/1", "gina", True, True)
    assert _alias("champion") == "1"

    runner = CliRunner()
    out = runner.invoke(main, ["registry", "promote", "2", "--reason", "second canary", "--force", "--actor", "gina"])
    assert out.exit_code == 0, out.output
    assert "champion v1 -> v2 (forced past the gate); audit record written" in out.output
    assert (_alias("champion"), _alias("previous")) == ("2", "1")

    before = len(_records())
    assert move_alias(NAME, "canary", "1", "shadow traffic", actor="hank") is None
    (rec,) = _records()[before:]
    assert (rec.action, rec.subject, rec.details) == ("alias_move", f"{NAME}/1", {
        "model_name": NAME, "alias": "canary", "version": "1", "was": None})
    assert _alias("canary") == "1"
    with pytest.raises(RegistryError, match="the champion moves only through the gate"):
        move_alias(NAME, "champion", "1", "sneaky")
    ok = runner.invoke(main, ["registry", "alias", "challenger", "1", "--reason", "re-run the canary"])
    assert ok.exit_code == 0 and "alias challenger v2 -> v1; audit record written" in ok.output
    with audit.open_trail() as trail:
        assert trail.verify().ok
