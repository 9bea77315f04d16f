"""Model cards of registered versions: written into the version's run at registration, read back by the UI."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe.config import Config
from hftpipe.errors import RegistryError
from hftpipe.registry.common import (
    CHAMPION,
    _set_version_tags,
    _tag,
)
from hftpipe.registry.download import _parse_models_uri
from hftpipe.registry.gate import GateDecision
from hftpipe.registry.tracker import client, fluent_store

log = logging.getLogger(__name__)


MODEL_CARD_DIR = "model_cards"


def model_card_path(version: str) -> str:
    """Where a version's card lives in its run's artifacts (``model_card.md`` and ``model_card.json``)."""
    return f"{MODEL_CARD_DIR}/v{version}"


def _store_model_card(cfg: Config, mc: MlflowClient, name: str, version: str, run_id: str,
                      bundle_info: dict[str, Any], report: dict[str, Any], decision: GateDecision, alias: str,
                      actor: str, tags: dict[str, Any]) -> None:
    """Write the version's model card (Markdown + JSON) into its run and point tags at it.

    A card that cannot be written does not undo the registration (the audit record stands): the version
    gets ``model_card.error`` and the log says why.
    """
    from hftpipe.audit.model_card import build_model_card, card_json, render_markdown

    try:
        backtest = None
        if cfg.register.backtest_report:
            backtest = json.loads(Path(cfg.register.backtest_report).read_text())
        lineage = {k: tags[k] for k in ("git.commit", "git.dirty", "data.test_id") if tags.get(k) is not None}
        card = build_model_card(name, version, bundle_info, report,
                                {"decision": decision.decision, "alias": alias, "reasons": decision.reasons},
                                registered_by=actor, registered_at=str(tags.get("registered_at")),
                                promoted_by=actor if alias == CHAMPION else None, run_id=run_id, lineage=lineage,
                                backtest=backtest)
        where = model_card_path(version)
        mc.log_text(run_id, render_markdown(card), f"{where}/model_card.md")
        mc.log_text(run_id, card_json(card), f"{where}/model_card.json")
        _set_version_tags(mc, name, version, {"model_card": where,
                                              "model_card.backtest": card["trading_backtest"]["status"]})
    except (OSError, ValueError, MlflowException) as exc:
        log.error("model card of %s v%s not written: %s", name, version, exc)
        mc.set_model_version_tag(name, version, "model_card.error", _tag(str(exc)))


def read_model_card(name: str, version: str) -> tuple[dict[str, Any], str]:
    """(card JSON, card Markdown) of a registered version.

    Raises:
        RegistryError: no such version, or it has no card (registered before cards existed, or writing failed).
    """
    mc = client()
    mv = _parse_models_uri(mc, f"models:/{name}/{version}")
    where = (mv.tags or {}).get("model_card")
    if not where or not mv.run_id:
        why = (mv.tags or {}).get("model_card.error") or "registered before model cards existed"
        raise RegistryError(f"{name} v{version} has no model card ({why})")
    try:
        with fluent_store():
            text = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{where}/model_card.json")
            markdown = mlflow.artifacts.load_text(f"runs:/{mv.run_id}/{where}/model_card.md")
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"the model card of {name} v{version} cannot be read from run {mv.run_id}: {exc}") from exc
    return json.loads(text), markdown
