"""Health of the UI and of the model server behind it (the banner on every page polls this)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, render_template

from hftpipe.ui.client import ServingClient, ServingStatus
from hftpipe.ui.keys import SERVING_KEY

bp = Blueprint("health", __name__)

BANNER_RETRY_S = 5  # how often the page re-probes the model server while it is down


def serving_client() -> ServingClient:
    return current_app.extensions[SERVING_KEY]


def serving_status() -> ServingStatus:
    """Probe the model server (never raises: a failure is a status with ``up=False``)."""
    return serving_client().status()


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness of the UI process itself, for probes; public and says nothing else."""
    return {"status": "ok"}


@bp.get("/health/status")
def status() -> dict[str, Any]:
    """The model server's status as JSON, for the banner's automatic retry."""
    return {**serving_status().to_dict(), "retry_s": BANNER_RETRY_S}


@bp.get("/health")
def page() -> str:
    """A page with the model server's status and the configured endpoints."""
    return render_template("health.html", status=serving_status(), retry_s=BANNER_RETRY_S, active="health")
