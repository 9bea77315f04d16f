"""The NATS cluster and its clients: nats.conf parses with the real nats-server, the cluster routes
name the StatefulSet's pods, and every client reaches the client Service on its port."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import OVERLAYS, containers, find


def nats_conf(resources: list[dict[str, Any]]) -> str:
    return find(resources, "ConfigMap", "hftpipe-nats")["data"]["nats.conf"]


def check_conf(text: str, tmp_path: Path, pod_name: str = "hftpipe-nats-0") -> subprocess.CompletedProcess:
    """`nats-server -t`: parse the configuration as the server would, then exit."""
    server = shutil.which("nats-server")
    assert server, "nats-server is missing: `make setup` installs it (Debian package nats-server)"
    path = tmp_path / "nats.conf"
    path.write_text(text)
    return subprocess.run([server, "-t", "-c", str(path)], env={"POD_NAME": pod_name}, capture_output=True,
                          text=True, timeout=30, check=False)


def test_nats_conf_is_valid_for_nats_server(rendered, tmp_path):
    done = check_conf(nats_conf(rendered["prod"]), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is valid" in done.stderr + done.stdout


@pytest.mark.parametrize("old, new, message", [
    ("max_file_store", "max_file_stor", 'unknown field "max_file_stor"'),
    ("routes: [", "routes: [ [", "Parse error"),
    ("server_name: $POD_NAME", "server_name: $POD", "variable reference for 'POD'"),
])
def test_a_broken_nats_conf_fails(rendered, tmp_path, old, new, message):
    text = nats_conf(rendered["prod"])
    assert old in text
    done = check_conf(text.replace(old, new), tmp_path)
    assert done.returncode != 0
    assert message in done.stderr + done.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cluster_routes_and_ports_match_the_statefulset(rendered, overlay):
    resources = rendered[overlay]
    sts = find(resources, "StatefulSet", "hftpipe-nats")
    text = nats_conf(resources)
    replicas = sts["spec"]["replicas"]
    assert replicas >= 3 and replicas % 2 == 1, "JetStream needs an odd quorum of at least 3"
    headless = find(resources, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    routes = re.findall(r"nats://([\w.-]+):(\d+)", text)
    assert routes == [(f"hftpipe-nats-{i}.{headless['metadata']['name']}", str(ports["cluster"]))
                      for i in range(replicas)]
    assert f"listen: 0.0.0.0:{ports['client']}" in text and f"http: 0.0.0.0:{ports['monitor']}" in text
    assert f"listen: 0.0.0.0:{ports['cluster']}" in text
    # the JetStream store lives on the claim, the config comes from the ConfigMap
    store = re.search(r"store_dir: (\S+)", text).group(1)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]
    assert store.startswith(mounts[claim] + "/")
    assert container["args"] == ["--config", f"{mounts['config']}/nats.conf"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "monitor" and "/healthz" in container[probe]["httpGet"]["path"]
    pdb = find(resources, "PodDisruptionBudget", "hftpipe-nats")
    assert pdb["spec"]["maxUnavailable"] == (replicas - 1) // 2  # the quorum survives a drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_client_reaches_the_client_service(rendered, overlay):
    resources = rendered[overlay]
    service = find(resources, "Service", "hftpipe-nats")
    (port,) = service["spec"]["ports"]
    policy = find(resources, "NetworkPolicy", "hftpipe-nats-ingress")
    client_rule = next(r for r in policy["spec"]["ingress"] if {"port": port["port"], "protocol": "TCP"} in r["ports"])
    client_label = client_rule["from"][0]["podSelector"]["matchLabels"]
    clients = []
    for res in resources:
        for where, container in containers(res, init=False):
            args = container.get("args", [])
            if "bus.host=hftpipe-nats" not in args and not any(a.startswith("bus.") for a in args):
                continue
            clients.append(res["metadata"]["name"])
            assert f"bus.host={service['metadata']['name']}" in args, where
            assert f"bus.port={port['port']}" in args or not any(a.startswith("bus.port=") for a in args), where
            labels = res["spec"]["template"]["metadata"]["labels"]
            assert all(labels.get(k) == v for k, v in client_label.items()), f"{where}: NetworkPolicy blocks it"
    assert {"hftpipe-feed", "hftpipe-signals", "hftpipe-ui"} <= set(clients)


def test_feed_replays_in_dev_and_follows_bitstamp_in_prod(rendered):
    def argv(overlay):
        return find(rendered[overlay], "Deployment", "hftpipe-feed")["spec"]["template"]["spec"]["containers"][0]["args"]

    dev = argv("dev")
    assert dev[dev.index("feed"):][:2] == ["feed", "replay"] and dev[-1] == "--loop"
    assert (Path(__file__).resolve().parents[2] / dev[dev.index("replay") + 1]).is_file()  # shipped in the image
    prod = argv("prod")
    assert prod[prod.index("feed"):] == ["feed", "bitstamp", "--pair", "btcusd"]
    for overlay in OVERLAYS:
        feed = find(rendered[overlay], "Deployment", "hftpipe-feed")["spec"]
        assert feed["replicas"] == 1 and feed["strategy"]["type"] == "Recreate"  # one publisher per symbol
