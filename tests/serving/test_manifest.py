"""serving/inferenceservice.yaml: a valid InferenceService v1beta1 that runs `hftpipe serve` as we test it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hftpipe.cli import main
from tests.deploy.schemas import validate_manifest

MANIFEST = Path(__file__).resolve().parents[2] / "serving" / "inferenceservice.yaml"


def _predictor() -> tuple[dict, dict]:
    (isvc,) = list(yaml.safe_load_all(MANIFEST.read_text()))
    return isvc, isvc["spec"]["predictor"]["containers"][0]


def test_manifest_is_a_valid_inferenceservice():
    isvc, _ = _predictor()
    assert validate_manifest(isvc).startswith("crd:")


def test_container_runs_hftpipe_serve_with_settings_our_config_accepts():
    isvc, container = _predictor()
    assert container["image"].startswith("ghcr.io/hftpipe/hftpipe")
    assert container["command"][-1] == "hftpipe" and container["args"][-1] == "serve"
    overrides = [a for i, a in enumerate(container["args"][:-1]) if container["args"][i - 1] == "-S"]
    from hftpipe.config import load_config

    cfg = load_config(None, overrides)  # strict: a misspelt serve.* key fails here
    assert cfg.serve.host == "0.0.0.0" and cfg.serve.grpc is False
    port = container["ports"][0]["containerPort"]
    assert cfg.serve.port == port
    name = cfg.serve.model_uri.removeprefix("models:/").split("@")[0]
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v2/models/{name}/ready"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port
    predictor = isvc["spec"]["predictor"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert "canaryTrafficPercent" in MANIFEST.read_text()  # the canary procedure is documented
    # The CLI accepts the same arguments (without starting a server: --help stops after parsing).
    result = CliRunner().invoke(main, [*container["args"], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_entry_module_reports_a_missing_model_in_one_line_and_exits_2(tmp_path):
    import os
    import subprocess
    import sys

    entry = MANIFEST.parent / "predictor.py"
    result = subprocess.run([sys.executable, str(entry), f"serve.model_uri={tmp_path / 'nowhere'}"],
                            capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,  # no params.yaml: defaults
                            env={k: v for k, v in os.environ.items() if k != "HFTPIPE_PARAMS"})
    assert result.returncode == 2
    assert "is neither a registry URI" in result.stderr and "Traceback" not in result.stderr
