"""The models page: champion, challenger and previous versions, their gate decisions and lineage."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

from hftpipe.errors import HftpipeError
from hftpipe.ui import catalog
from hftpipe.ui.keys import CONFIG_KEY

bp = Blueprint("models", __name__)


@bp.get("/models")
def page() -> str:
    """Registered versions with aliases first; a registry that cannot be read is said, not thrown."""

    cfg = current_app.config[CONFIG_KEY]
    error = None
    versions: list[catalog.VersionView] = []
    try:
        versions = catalog.model_versions(cfg)
    except HftpipeError as exc:
        error = str(exc)
    return render_template("models.html", versions=versions, error=error, model_name=cfg.register.model_name,
                           active="models")
