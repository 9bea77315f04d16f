"""The runs page: recent MLflow runs in a table and a chart of their key metrics."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from hftpipe.errors import HftpipeError
from hftpipe.ui import catalog
from hftpipe.ui.keys import CONFIG_KEY

bp = Blueprint("runs", __name__)

PARAMS_SHOWN = ("train.model", "train.horizon", "train.window", "train.epochs", "data.source")
STEPS = {"train": "Training", "evaluate": "Evaluation", "register": "Registration", "all": "All runs"}


@bp.get("/runs")
def page() -> str:
    """Newest runs first; the chart data travels as inert JSON (no inline script under the CSP)."""

    cfg = current_app.config[CONFIG_KEY]
    asked = request.args.get("step")
    step = asked if asked in STEPS else "train"
    error = note = None
    runs: list[catalog.RunView] = []
    try:
        runs = catalog.recent_runs(cfg, step=None if step == "all" else step)
        if not runs and asked not in STEPS:
            # The default tab is empty: open the first one that has runs rather than an empty table.
            for other in ("evaluate", "register", "all"):
                runs = catalog.recent_runs(cfg, step=None if other == "all" else other)
                if runs:
                    note = f"No training run yet: showing {STEPS[other].lower()}."
                    step = other
                    break
    except HftpipeError as exc:
        error = str(exc)
    metrics = catalog.key_metric_names(runs)
    chart = {"metrics": metrics,
             "runs": [{"name": r.name, "started": r.started, "id": r.run_id[:8],
                       "values": {m: r.metrics.get(m) for m in metrics}} for r in reversed(runs)]}
    return render_template("runs.html", runs=runs, metrics=metrics, params=PARAMS_SHOWN, chart=chart,
                           error=error, note=note, experiment=cfg.register.experiment, steps=STEPS, step=step,
                           active="runs")
