"""The monitoring page and the UI's own /metrics (the live Prometheus path: tests/monitoring)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hftpipe.monitoring.dashboards import key_panels
from hftpipe.ui import create_app
from tests.ui.conftest import closed_port_url, free_port, ui_config


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_are_public_and_count_requests(client) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/monitoring").status_code == 302  # login required
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    samples = _samples(resp.get_data(as_text=True))
    assert samples[("hftpipe_ui_requests_total", (("endpoint", "health.healthz"), ("status", "200")))] == 2
    assert samples[("hftpipe_ui_requests_total", (("endpoint", "monitoring.page"), ("status", "302")))] == 1
    assert samples[("hftpipe_ui_request_seconds_count", (("endpoint", "health.healthz"),))] == 2
    assert not [k for k in samples if dict(k[1]).get("endpoint") == "monitoring.metrics"]  # scrapes not counted


def test_two_apps_keep_separate_registries(replay_events: Path, credentials, client) -> None:
    other = create_app(ui_config(replay_events, closed_port_url()), settings={"TESTING": True},
                       credentials=credentials).test_client()
    client.get("/healthz")
    assert "health.healthz" not in other.get("/metrics").get_data(as_text=True)


def test_the_page_lists_every_key_panel(client, auth) -> None:
    auth.login()
    page = client.get("/monitoring").get_data(as_text=True)
    for _, panel in key_panels():
        assert f'data-panel="{panel.id}"' in page
    assert 'src="/static/monitoring.js' in page and "<script>" not in page  # no inline script under the CSP


def test_panel_api_refuses_unknown_panels_and_bad_ranges(client, auth) -> None:
    assert client.get("/api/monitoring/panel/serving-rate").status_code == 401  # JSON 401 before log-in
    auth.login()
    assert client.get("/api/monitoring/panel/drop-tables").status_code == 404
    assert client.get("/api/monitoring/panel/serving-rate?minutes=abc").status_code == 400
    assert client.get("/api/monitoring/panel/serving-rate?minutes=0").status_code == 400


def test_panel_api_says_when_prometheus_is_down(replay_events: Path, credentials) -> None:
    cfg = ui_config(replay_events, closed_port_url())
    cfg = cfg.replace(monitor=dataclasses.replace(cfg.monitor, prometheus_url=f"http://127.0.0.1:{free_port()}"))
    app = create_app(cfg, settings={"TESTING": True, "WTF_CSRF_ENABLED": False}, credentials=credentials)
    client = app.test_client()
    from tests.ui.conftest import PASSWORD, USER

    client.post("/login", data={"username": USER, "password": PASSWORD})
    resp = client.get("/api/monitoring/panel/serving-latency")
    assert resp.status_code == 502 and "is not answering" in resp.get_json()["error"]


def test_pipeline_run_gauges_come_from_the_tracking_store(client) -> None:
    import mlflow

    from hftpipe import paths

    mlflow.set_tracking_uri(paths.mlflow_tracking_uri())
    exp = mlflow.create_experiment("hftpipe", artifact_location=paths.mlflow_artifact_root())
    for step in ("train", "train", "evaluate"):
        with mlflow.start_run(experiment_id=exp, tags={"step": step}):
            pass
    samples = _samples(client.get("/metrics").get_data(as_text=True))
    assert samples[("hftpipe_pipeline_runs", (("status", "finished"), ("step", "train")))] == 2
    assert samples[("hftpipe_pipeline_runs", (("status", "finished"), ("step", "evaluate")))] == 1
    assert samples[("hftpipe_pipeline_last_run_timestamp_seconds", (("step", "train"),))] > 1.7e9


def test_live_page_shows_the_outcome_stores_live_quality_beside_the_replay(client, auth, hftpipe_home: Path) -> None:
    """Recorded outcomes (model and baselines on the same events) appear on /live with the quality figures of
    hftpipe.monitoring.quality; without any the panel says how to start the outcome store."""
    import re

    import numpy as np

    from hftpipe.monitoring import feedback_store as fs
    from hftpipe.monitoring.quality import RollingQuality
    from tests.monitoring.test_quality import outcome

    auth.login()
    assert 'id="live-quality-empty"' in client.get("/live").get_data(as_text=True)
    rng = np.random.default_rng(3)
    outcomes = []
    for seq in range(1, 401):
        y = int(rng.integers(0, 3))
        model = y if rng.random() < 0.6 else int(rng.integers(0, 3))
        outcomes.append(outcome(y, model, int(rng.integers(0, 3)), y if rng.random() < 0.4 else 1, seq=seq))
    buffer = fs.RowBuffer(hftpipe_home / "feedback" / ".buf.sqlite")
    buffer.commit([("outcomes", "GOOG", "2012-06-21", o.seq, fs.outcome_row(o)) for o in outcomes], {})
    fs.flush(buffer, hftpipe_home / "feedback", 1000, partial=True)
    buffer.close()
    want = RollingQuality(5000)
    for o in outcomes:
        want.add(o)
    snap = want.snapshot()
    page = client.get("/live").get_data(as_text=True)
    assert 'id="live-quality-table"' in page and "live-quality-empty" not in page
    for name in ("model", "persistence", "momentum"):
        row = re.search(rf'<tr data-source="{name}">(.*?)</tr>', page, re.S).group(1)
        f1, acc, hit = re.findall(r'<td class="q-(?:f1|acc|hit)">([^<]*)</td>', row)
        sc = snap.scores[name]
        assert f1 == f"{100 * sc['macro_f1']:.1f} %" and acc == f"{100 * sc['accuracy']:.1f} %"
        assert hit == f"{100 * sc['hit_rate']:.1f} %"
    assert snap.scores["model"]["macro_f1"] > snap.scores["persistence"]["macro_f1"]  # real, distinct numbers
    assert f'<b id="q-brier">{snap.brier:.4f}</b>' in page and f"{snap.n} scored outcomes" in page
