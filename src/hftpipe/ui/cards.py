"""Model cards in the UI: a registered version's card (from MLflow) and its audit history (who promoted it)."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, render_template

from hftpipe.errors import HftpipeError
from hftpipe.ui import roles
from hftpipe.ui.keys import CONFIG_KEY

log = logging.getLogger(__name__)

bp = Blueprint("cards", __name__)


def _card(version: str) -> tuple[str, dict[str, Any], str]:
    from hftpipe.registry import read_model_card

    if not version.isdigit() or len(version) > 9:
        abort(404, description=f"{version!r} is not a version number")
    name = current_app.config[CONFIG_KEY].register.model_name
    try:
        card, markdown = read_model_card(name, version)
    except HftpipeError as exc:
        abort(404, description=str(exc))
    return name, card, markdown


@bp.get("/models/<version>/card")
@roles.require(roles.VIEW)
def page(version: str) -> Any:
    """The card as rendered Markdown text, with the version's audit records below."""
    from hftpipe import audit

    name, card, markdown = _card(version)
    history: list[Any] = []
    problem = None
    try:
        with audit.open_trail(current_app.config[CONFIG_KEY].audit.url) as trail:
            history = [r for r in trail.records() if r.subject in (f"{name}/{version}", name)
                       and (r.subject != name or version in (r.details.get("demoted"), r.details.get("restored")))]
    except Exception as exc:  # noqa: BLE001 - sqlite3 or psycopg errors of the audit store: said on the page
        problem = f"audit trail: {exc}"
    return render_template("card.html", active="models", name=name, version=version, card=card,
                           markdown=markdown, history=history, problem=problem)


@bp.get("/models/<version>/card.md")
@roles.require(roles.VIEW)
def markdown(version: str) -> Response:
    name, _, text = _card(version)
    return Response(text, mimetype="text/markdown",
                    headers={"Content-Disposition": f"attachment; filename={name}-v{version}-model-card.md"})


@bp.get("/models/<version>/card.json")
@roles.require(roles.VIEW)
def card_json(version: str) -> Response:
    name, card, _ = _card(version)
    return Response(json.dumps(card, indent=2) + "\n", mimetype="application/json",
                    headers={"Content-Disposition": f"attachment; filename={name}-v{version}-model-card.json"})
