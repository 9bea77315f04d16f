"""Read-only views of the MLflow registry and tracking store for the models and runs pages.

The store is reached through :mod:`hftpipe.registry` (the MLflow edge: ``list_versions`` and its client);
this module only shapes what it returns into plain data for the templates. An unreachable store raises :class:`RegistryError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hftpipe.config import Config
from hftpipe.errors import ConfigError, RegistryError
from hftpipe.horizons import horizon_from_key

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger", "previous")
# Metrics shown first (substring match, in this order); the rest follow alphabetically.
KEY_METRICS = ("macro_f1", "margin", "accuracy", "mcc", "net_pnl", "sharpe", "hit_rate", "loss")
LINEAGE_TAGS = {"git.commit": "git commit", "mlflow.source.git.commit": "git commit",
                "git.dirty": "uncommitted changes", "data.source_sha256": "raw data sha256",
                "data.features_sha256": "features sha256", "data.features_dvc_md5": "features DVC md5",
                "data.input_sha256": "input sha256", "data.symbol": "symbol", "data.date": "date",
                "data.levels": "levels"}
MODEL_TAGS = {"model.name": "architecture", "model.horizon": "horizon", "model.window": "window (states)",
              "model.levels": "book levels"}


def _model_tag(key: str, value: str) -> str:
    """A model tag for people: the horizon with its unit ('10 events', '1 s'), the others as they are."""
    if key == "model.horizon":
        try:
            return horizon_from_key(value).describe()
        except ConfigError:
            return value
    return value


def _client() -> Any:
    try:
        from hftpipe.registry.tracker import client
    except ImportError as exc:  # mlflow missing from this install
        raise RegistryError(f"the MLflow registry is not available: {exc}") from exc
    return client()


def _when(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _metric_order(name: str) -> tuple[int, str]:
    for rank, key in enumerate(KEY_METRICS):
        if key in name:
            return rank, name
    return len(KEY_METRICS), name


def split_metrics(metrics: dict[str, float]) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(model metrics, baseline metrics), key metrics first; a name holding 'baseline' is a baseline's."""
    finite = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    model = sorted(((k, v) for k, v in finite.items() if "baseline" not in k), key=lambda kv: _metric_order(kv[0]))
    base = sorted(((k, v) for k, v in finite.items() if "baseline" in k), key=lambda kv: _metric_order(kv[0]))
    return model, base


@dataclass
class VersionView:
    """One registered version as the models page shows it."""

    aliases: list[str]
    name: str
    version: str
    created: str
    run_id: str | None
    decision: str
    reasons: list[str]
    versus: list[tuple[str, str, str]] = field(default_factory=list)  # (what, model, best baseline)
    model: list[tuple[str, str]] = field(default_factory=list)  # architecture, horizon, window, levels
    metrics: list[tuple[str, float]] = field(default_factory=list)  # the run's own metrics
    baselines: list[tuple[str, float]] = field(default_factory=list)
    lineage: list[tuple[str, str]] = field(default_factory=list)
    mlflow_url: str = ""
    run_url: str = ""
    has_card: bool = False  # a model card was stored at registration (link to /models/<v>/card)


def _num(tags: dict[str, str], key: str) -> float | None:
    try:
        value = float(tags[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def versus_rows(tags: dict[str, str]) -> list[tuple[str, str, str]]:
    """Test metrics of a version against the best naive baseline, from the registry's version tags."""
    if _num(tags, "metrics.macro_f1") is None:
        return []
    best = tags.get("metrics.best_baseline") or "best baseline"
    rows = [("macro-F1", _fmt(_num(tags, "metrics.macro_f1")),
             f"{_fmt(_num(tags, 'metrics.best_baseline_macro_f1'))} ({best})")]
    point, low, high = (_num(tags, f"metrics.margin_{k}") for k in ("point", "low", "high"))
    if point is not None:
        interval = f" [{_fmt(low, '+.4f')}, {_fmt(high, '+.4f')}]" if low is not None else ""
        rows.append(("margin over the baseline (95% interval)", f"{point:+.4f}{interval}", ""))
    for key, what, spec in (("accuracy", "accuracy", ".4f"), ("mcc", "MCC", ".4f"),
                            ("net_pnl", "net PnL ($/share, test split)", "+.3f"),
                            ("net_pnl_bps", "net PnL (bps, summed)", "+.1f")):
        value = _num(tags, f"metrics.{key}")
        if value is not None:
            rows.append((what, format(value, spec), ""))
    return rows


def model_versions(cfg: Config, limit: int = 10) -> list[VersionView]:
    """Champion, challenger and previous first, then the latest other versions (from ``list_versions``)."""
    from hftpipe.registry import list_versions

    name = cfg.register.model_name
    base = cfg.ui.mlflow_ui_url.rstrip("/")
    try:
        versions = list_versions(name)
    except RegistryError as exc:
        if str(exc).startswith("no registered model"):
            return []
        raise
    except Exception as exc:  # an unreachable or broken store raises mlflow's own exception types
        raise RegistryError(f"cannot read registered model {name!r}: {exc}") from exc

    def rank(info: Any) -> tuple[int, int]:
        # champion, challenger, previous, then the other versions newest first
        held = [ALIASES.index(a) for a in info.aliases if a in ALIASES]
        return (min(held) if held else len(ALIASES), -int(info.version))

    client = _client()
    views = []
    for info in sorted(versions, key=rank)[:limit]:
        metrics: dict[str, float] = {}
        lineage: dict[str, str] = {}
        run_url = ""
        if info.run_id:
            try:
                run = client.get_run(info.run_id)
                metrics = dict(run.data.metrics)
                run_tags = dict(run.data.tags)
                lineage = {label: run_tags[key] for key, label in LINEAGE_TAGS.items() if key in run_tags}
                run_url = f"{base}/#/experiments/{run.info.experiment_id}/runs/{info.run_id}"
            except Exception as exc:  # noqa: BLE001 - a deleted run still leaves the version visible
                log.warning("run %s of %s v%s is not readable: %s", info.run_id, name, info.version, exc)
        tags = dict(info.tags)
        for key, label in LINEAGE_TAGS.items():
            if key in tags and label not in lineage:
                lineage[label] = tags[key]
        model, baselines = split_metrics(metrics)
        views.append(VersionView(
            aliases=sorted(info.aliases, key=lambda a: ALIASES.index(a) if a in ALIASES else len(ALIASES)),
            name=name, version=str(info.version), created=f"{info.created} UTC" if info.created else "",
            run_id=info.run_id, decision=info.decision or "", reasons=list(info.reasons),
            versus=versus_rows(tags),
            model=[(label, _model_tag(key, tags[key])) for key, label in MODEL_TAGS.items() if tags.get(key)],
            metrics=model, baselines=baselines, lineage=sorted(lineage.items()),
            mlflow_url=f"{base}/#/models/{name}/versions/{info.version}", run_url=run_url,
            has_card=bool(tags.get("model_card"))))
    return views


@dataclass
class RunView:
    """One training or evaluation run for the runs table."""

    run_id: str
    name: str
    status: str
    step: str
    started: str
    started_ms: int
    params: dict[str, str]
    metrics: dict[str, float]
    commit: str
    url: str
    evaluated: str = ""  # evaluation runs: the model that was evaluated (its registry name or bundle)


# Params that describe the model a run trained; for an evaluation they must come from the evaluated
# model's own training run, not from the config the evaluation happened to run with.
MODEL_PARAM_PREFIXES = ("train.", "features.")


def _is_training(run: Any) -> bool:
    """A run that trained a model: tagged ``step=train``, or the pipeline's training run that its
    evaluation step continued (re-tagged ``step=evaluate``, but with no ``evaluated_model`` tag and with
    the trainer's ``train_loss`` curve or its ``train-<model>`` name)."""
    tags = run.data.tags
    step = tags.get("step")
    if step == "train":
        return True
    return (step == "evaluate" and "evaluated_model" not in tags and "model_run_id" not in tags
            and ("train_loss" in run.data.metrics or tags.get("mlflow.runName", "").startswith("train-")))


def _step_label(run: Any) -> str:
    step = run.data.tags.get("step", "")
    return "train + evaluate" if step == "evaluate" and _is_training(run) else step


def _evaluated_model(client: Any, run: Any, cache: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(what was evaluated, that model's training params) for a stand-alone evaluation run."""
    tags = run.data.tags
    if tags.get("model_name"):
        what = f"{tags['model_name']} v{tags.get('model_version', '?')}"
    else:
        what = tags.get("evaluated_model", "")
    source = tags.get("model_run_id")
    params: dict[str, str] = {}
    if source:
        if source not in cache:
            try:
                cache[source] = dict(client.get_run(source).data.params)
            except Exception as exc:  # noqa: BLE001 - a deleted training run leaves the evaluation readable
                log.warning("training run %s of evaluation %s is not readable: %s", source, run.info.run_id, exc)
                cache[source] = {}
        params = cache[source]
    return what, params


def recent_runs(cfg: Config, limit: int = 50, step: str | None = "train") -> list[RunView]:
    """The latest runs of experiment ``register.experiment``, newest first.

    Args:
        step: ``train`` (runs that trained a model, including the pipeline's trained-and-evaluated
            runs), ``evaluate`` or ``register`` (runs tagged ``step=<step>``); None: every run.
    """
    client = _client()
    try:
        experiment = client.get_experiment_by_name(cfg.register.experiment)
    except Exception as exc:
        raise RegistryError(f"cannot reach the MLflow store: {exc}") from exc
    if experiment is None:
        return []

    def search(query: str) -> list[Any]:
        return client.search_runs([experiment.experiment_id], filter_string=query,
                                  order_by=["attributes.start_time DESC"], max_results=limit)

    if step == "train":
        found = search("tags.step = 'train'") + [r for r in search("tags.step = 'evaluate'") if _is_training(r)]
        runs = sorted(found, key=lambda r: r.info.start_time or 0, reverse=True)[:limit]
    else:
        runs = search(f"tags.step = '{step}'" if step else "")
    base = cfg.ui.mlflow_ui_url.rstrip("/")
    cache: dict[str, Any] = {}
    out = []
    for run in runs:
        tags = run.data.tags
        params = dict(run.data.params)
        evaluated = ""
        if tags.get("step") == "evaluate" and not _is_training(run):
            evaluated, model_params = _evaluated_model(client, run, cache)
            if model_params or "model.name" not in tags:
                # Older evaluation runs logged the evaluating config, whose model params say nothing about
                # the evaluated model: show the params of the run that trained it, or none. (Runs tagged
                # model.name already logged the evaluated model's own train / features sections.)
                params = {k: v for k, v in params.items() if not k.startswith(MODEL_PARAM_PREFIXES)}
                params.update({k: v for k, v in model_params.items() if k.startswith(MODEL_PARAM_PREFIXES)})
        out.append(RunView(
            run_id=run.info.run_id, name=tags.get("mlflow.runName", run.info.run_id[:8]),
            status=run.info.status, step=_step_label(run), started=_when(run.info.start_time), started_ms=int(run.info.start_time or 0),
            params=params,
            metrics={k: v for k, v in run.data.metrics.items() if math.isfinite(v)},
            commit=(tags.get("git.commit") or tags.get("mlflow.source.git.commit") or "")[:10],
            url=f"{base}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}", evaluated=evaluated))
    return out


def key_metric_names(runs: list[RunView], limit: int = 4) -> list[str]:
    """The metrics most runs share, key metrics first (what the runs chart and table show)."""
    counts: dict[str, int] = {}
    for run in runs:
        for name in run.metrics:
            counts[name] = counts.get(name, 0) + 1
    # The model's own metrics first: a baseline's score is context, not what a run is compared on.
    ranked = sorted(counts, key=lambda n: ("baseline" in n, _metric_order(n)[0], -counts[n], n))
    return [n for n in ranked if _metric_order(n)[0] < len(KEY_METRICS)][:limit] or ranked[:limit]
