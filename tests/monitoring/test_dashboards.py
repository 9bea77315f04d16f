"""Grafana dashboards: committed JSON equals the definitions, a valid dashboard model, every query parses
(promtool) and names a metric that a service exports (found in the code) or is in the metric contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kserve.metrics
import pytest
import yaml

from hftpipe.monitoring.dashboards import DASHBOARDS, grafana_json, key_panels
from hftpipe.monitoring.metrics import CONTRACT
from hftpipe.monitoring.prometheus import RULES_FILE

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "hftpipe"
DASH_DIR = SRC / "monitoring" / "grafana"
# Where each job's metrics are defined; a job whose file is not in this tree yet is checked against the
# contract only (the paper trader and the live-quality scorer are built on other branches).
SOURCES = {"hftpipe-model-server": SRC / "serving" / "metrics.py", "hftpipe-signals": SRC / "streaming" / "metrics.py",
           "hftpipe-feed": SRC / "feeds" / "replay.py", "hftpipe-ui": SRC / "ui" / "monitoring.py"}
DRIFT_NAMES = {"hftpipe_drift_psi", "hftpipe_drift_ks", "hftpipe_drift_prediction_psi", "hftpipe_drift_detected"}
FUNCTIONS = {"rate", "irate", "increase", "sum", "max", "min", "avg", "count", "histogram_quantile", "time", "by",
             "without", "on", "ignoring", "or", "and", "unless", "absent", "bool", "offset", "topk", "group_left",
             "group_right", "delta", "deriv", "clamp_min", "clamp_max", "abs", "le"}
_DEFINED = re.compile(r"(Counter|Gauge|Histogram|Summary|GaugeMetricFamily|CounterMetricFamily)\(\s*\"([a-zA-Z_:][\w:]*)\"")


def exported_names() -> set[str]:
    """Series names the code exposes: prometheus_client definitions under src/ and KServe's histograms."""
    found: set[str] = set()
    files = [*SRC.rglob("*.py"), Path(kserve.metrics.__file__)]
    for path in files:
        for kind, name in _DEFINED.findall(path.read_text()):
            base = name.removesuffix("_total")
            if kind in ("Counter", "CounterMetricFamily"):
                found |= {base + "_total", base + "_created"}
            elif kind in ("Histogram", "Summary"):
                found |= {name, name + "_bucket", name + "_sum", name + "_count"}
            else:
                found.add(name)
    return found


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label matchers, grouping clauses and strings removed)."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = {t for t in re.findall(r"[a-zA-Z_:][\w:]*", text) if t not in FUNCTIONS}
    return names


def regex_names(expr: str) -> list[str]:
    return re.findall(r'__name__=~"([^"]+)"', expr)


def all_queries() -> list[str]:
    exprs = [e for d in DASHBOARDS for p in d.panels for e, _ in p.queries]
    rules = yaml.safe_load(RULES_FILE.read_text())
    return exprs + [r["expr"] for g in rules["groups"] for r in g["rules"]]


def recording_names() -> set[str]:
    rules = yaml.safe_load(RULES_FILE.read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def test_committed_dashboards_are_fresh() -> None:
    for d in DASHBOARDS:
        path = DASH_DIR / f"{d.uid}.json"
        assert path.is_file(), f"{path} missing: run `hftpipe monitor render`"
        assert json.loads(path.read_text()) == grafana_json(d), f"{path} is stale: run `hftpipe monitor render`"
    assert {p.stem for p in DASH_DIR.glob("*.json")} == {d.uid for d in DASHBOARDS}


def test_dashboards_are_valid_grafana_models() -> None:
    assert {d.uid for d in DASHBOARDS} == {"hftpipe-serving", "hftpipe-streaming", "hftpipe-quality",
                                           "hftpipe-trading", "hftpipe-pipeline"}
    for d in DASHBOARDS:
        model = grafana_json(d)
        assert model["uid"] == d.uid and model["title"] and isinstance(model["schemaVersion"], int)
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)) and ids, d.uid
        for panel in model["panels"]:
            assert panel["type"] in {"timeseries", "stat"} and panel["title"]
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["datasource"]["type"] == "prometheus" and panel["targets"]
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])
    assert key_panels(), "the UI page draws at least one panel"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_every_panel_query_parses(tmp_path: Path) -> None:
    """promtool parses each expression, wrapped as a recording rule (a syntax error names the panel)."""
    rules = [{"record": f"hftpipe_dashboard:{d.uid.replace('-', '_')}:{p.id.replace('-', '_')}:{i}", "expr": expr}
             for d in DASHBOARDS for p in d.panels for i, (expr, _) in enumerate(p.queries)]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(path)], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "p", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}]}))
    assert subprocess.run(["promtool", "check", "rules", str(bad)], check=False, capture_output=True).returncode != 0


def test_every_query_names_a_metric_we_export() -> None:
    exported = exported_names()
    contract = {name for names in CONTRACT.values() for name in names}
    known = contract | recording_names() | {"up"}
    bucketed = {n + suffix for n in contract for suffix in ("_bucket", "_sum", "_count")}
    for expr in all_queries():
        names = metric_names(expr)
        patterns = regex_names(expr)
        assert names or patterns, f"no metric in {expr!r}"
        unknown = names - known - bucketed
        assert not unknown, f"{expr!r} reads {unknown}: neither exported nor in the metric contract"
        for pattern in patterns:
            assert any(re.fullmatch(pattern, n) for n in contract), f"{pattern} matches no contract metric"
    # Contract names of services present in this tree are really exported by their code.
    for job, path in SOURCES.items():
        if path.is_file():
            missing = set(CONTRACT[job]) - exported
            assert not missing, f"{job} ({path.name}) does not export {missing}"
    assert DRIFT_NAMES <= exported and DRIFT_NAMES <= set(CONTRACT["hftpipe-monitor"])


def test_the_name_parser() -> None:
    assert metric_names('histogram_quantile(0.99, sum by (job, le) (rate(request_predict_seconds_bucket[5m])))') == \
        {"request_predict_seconds_bucket"}
    assert metric_names('up{job="hftpipe-model-server"} == 0 or absent(up{job="x"})') == {"up"}
    assert "hftpipe_nope" in metric_names("rate(hftpipe_nope[5m])")
