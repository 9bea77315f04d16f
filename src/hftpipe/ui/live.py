"""The live page: a recorded trading day replayed through the model server, pushed by server-sent events."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from hftpipe.config import Config
from hftpipe.errors import HftpipeError
from hftpipe.ui import modelinfo
from hftpipe.ui.client import ServingClient, ServingRejected, ServingUnavailable, StreamPrediction
from hftpipe.ui.keys import CONFIG_KEY
from hftpipe.ui.replay import (
    OutcomeTracker,
    Prediction,
    ReplayFile,
    list_replay_files,
    load_replay_day,
    replay_updates,
)

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)

SPEEDS = (1.0, 5.0, 20.0, 50.0, 100.0, 250.0)  # events per second offered on the page; 0 = as fast as served
MAX_SPEED = 1000.0
SETUP_RETRY_S = (1.0, 2.0, 5.0)
SSE_RETRY_MS = 3000


def _config() -> Config:
    return current_app.config[CONFIG_KEY]


def replay_files() -> list[ReplayFile]:
    return list_replay_files(_config().ui.replay_source)


@bp.get("/")
def index() -> Any:
    return redirect(url_for("live.page"))


def live_quality(cfg: Config) -> dict[str, Any]:
    """The outcome store's live quality (model and baselines on the same served events), from its data set."""
    from hftpipe.monitoring.feedback_store import data_set_root, recorded_quality

    try:
        snap = recorded_quality(data_set_root(cfg), cfg.feedback.quality_window, cfg.feedback.reliability_bins)
    except (OSError, ValueError, HftpipeError) as exc:  # an unreadable data set must not take the page down
        log.warning("live quality unavailable: %s", exc)
        return {"n": 0, "error": str(exc)}
    return {"n": snap.n, "scores": snap.scores, "brier": snap.brier, "ece": snap.reliability.get("ece"),
            "window": cfg.feedback.quality_window}


@bp.get("/live")
def page() -> str:
    """The live page; the replay starts when the trader presses Start (no page reload afterwards)."""
    cfg = _config()
    speeds = sorted(set(SPEEDS) | {cfg.ui.replay_speed})
    return render_template("live.html", files=replay_files(), speeds=speeds, default_speed=cfg.ui.replay_speed,
                           replay_source=cfg.ui.replay_source, fees_bps=cfg.evaluate.fees_bps,
                           latency=cfg.evaluate.latency_events, min_move_ticks=cfg.ui.min_move_ticks,
                           quality=live_quality(cfg), active="live")


def sse(message: dict[str, Any], event_id: int | None = None) -> str:
    """One server-sent event carrying a JSON message."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(message, separators=(',', ':'), allow_nan=False)}\n\n"


def _to_prediction(pred: StreamPrediction) -> Prediction:
    return Prediction(ready=pred.ready, cls=pred.cls, label=pred.label, probabilities=pred.probabilities)


def default_start(cfg: Config, events: int) -> int:
    """Where a fresh replay begins: at the test part of the day by default, so a trader watching the
    model's own training file sees out-of-sample predictions, not ones it was fitted on."""
    if cfg.ui.replay_from == "start":
        return 0
    return min(events - 1, int(events * (cfg.features.train_frac + cfg.features.val_frac)))


def replay_stream(cfg: Config, client: ServingClient, replay: ReplayFile, speed: float,
                  start: int | None = None) -> Iterator[str]:
    """The SSE body of one replay: set-up (reset the server's window, find the model's horizon and alpha,
    with retries while the server is down), then ticks until the end of the day.

    ``start`` None: :func:`default_start` (a reconnecting browser passes where it stopped)."""
    yield f"retry: {SSE_RETRY_MS}\n\n"
    # A key of our own so two traders replaying the same symbol never share the server's rolling window.
    stream_key = f"{replay.symbol}:ui-{secrets.token_hex(4)}"[:32]
    attempt = 0
    while True:
        try:
            try:
                first = client.reset(stream_key)
            except ServingRejected:
                # The server only streams an allow-list of symbols (serve.symbols): use the plain symbol.
                stream_key = replay.symbol
                first = client.reset(stream_key)
            break
        except ServingUnavailable as exc:
            delay = SETUP_RETRY_S[min(attempt, len(SETUP_RETRY_S) - 1)]
            attempt += 1
            yield sse({"type": "serving_down", "detail": str(exc), "retry_in": delay, "index": start or 0})
            time.sleep(delay)
        except ServingRejected as exc:
            yield sse({"type": "fatal", "detail": str(exc)})
            return
    info = modelinfo.resolve(cfg, first.extra, first.model_name or client.model_name(), first.model_version)
    try:
        day = load_replay_day(replay.path, info.sampling)  # type: ignore[arg-type]
    except HftpipeError as exc:
        yield sse({"type": "fatal", "detail": str(exc)})
        return
    if start is None:
        start = default_start(cfg, len(day.mid))
    tracker = None
    note = ""
    if info.scoreable:
        tracker = OutcomeTracker(info.horizon or 1, info.alpha or 0.0, fees_bps=cfg.evaluate.fees_bps,
                                 latency=cfg.evaluate.latency_events, label=info.label,  # type: ignore[arg-type]
                                 min_move=cfg.ui.min_move_ticks * day.tick)
    else:
        note = ("The model server, the registry and the local feature set do not say this model's horizon "
                "and alpha: predictions are shown but not scored.")
    yield sse({"type": "start", "symbol": day.symbol, "date": day.date, "levels": day.levels,
               "events": len(day.mid), "start": start, "speed": speed, "model": info.to_dict(), "note": note,
               "fees_bps": cfg.evaluate.fees_bps, "latency": cfg.evaluate.latency_events,
               "tick": day.tick, "min_move_ticks": cfg.ui.min_move_ticks,
               "serving_url": client.base_url}, start)
    version = {"name": info.name, "version": info.version}

    def predict(book: Any) -> Prediction:
        pred = client.predict_book(stream_key, book.tolist())
        if pred.model_version is not None and pred.model_version != version["version"]:
            version.update(name=pred.model_name, version=pred.model_version)
        return _to_prediction(pred)

    try:
        for message in replay_updates(day, predict, tracker, speed, start=start, unavailable=ServingUnavailable):
            message["model_version"] = version["version"]
            last = message.get("index")
            if message["type"] == "ticks" and message["ticks"]:
                last = message["ticks"][-1]["i"] + 1
            yield sse(message, last)
    except ServingRejected as exc:
        yield sse({"type": "fatal", "detail": str(exc)})


@bp.get("/live/stream")
def stream() -> Response:
    """Server-sent events of one replay: ``?file=<n>&speed=<events/s>``; resumes at ``Last-Event-ID``."""
    cfg = _config()
    files = replay_files()
    index = request.args.get("file", 0, type=int)
    if not files:
        abort(404, description=f"no ingested events file to replay at {cfg.ui.replay_source}; "
                               "run `hftpipe ingest` first")
    if index is None or not 0 <= index < len(files):
        abort(404, description=f"no replay file number {request.args.get('file')}")
    speed = request.args.get("speed", cfg.ui.replay_speed, type=float)
    if speed is None or not 0 <= speed <= MAX_SPEED:
        abort(400, description=f"speed must be between 0 (as fast as served) and {MAX_SPEED:g} events/s")
    start = request.headers.get("Last-Event-ID", "")
    start_index = int(start) if start.isdigit() else None
    client = ServingClient(cfg.ui.serving_url, timeout_s=cfg.ui.serving_timeout_s)

    def body() -> Iterator[str]:
        try:
            yield from replay_stream(cfg, client, files[index], speed, start_index)
        finally:
            client.close()

    response = Response(stream_with_context(body()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # proxies must not hold events back
    return response
