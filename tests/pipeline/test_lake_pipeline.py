"""The lake pipeline: one task per partition under a ParallelFor, the claim mounted, and, run with
kfp.local on two real LOBSTER days, the same dataset as `hftpipe lake ingest` + `hftpipe lake features`."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hftpipe.cli import main
from hftpipe.config import load_config
from hftpipe.pipeline.runner import keep_builtin_print
from tests.lake.conftest import rewrite_zip
from tests.lake.test_fanout import AAPL, AAPL_KEY, GOOG, GOOG_KEY, assert_same_outputs

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / "pipelines" / "compiled" / "lake_pipeline.yaml"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipelines.lake_pipeline import LAKE_MOUNT, LAKE_PVC, PARALLELISM, build_lake_pipeline


def compile_to(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    from kfp import compiler

    target = tmp_path / "lake.yaml"
    compiler.Compiler().compile(build_lake_pipeline(**kwargs), str(target))
    docs = list(yaml.safe_load_all(target.read_text()))
    return {"spec": docs[0], "platform": docs[1] if len(docs) > 1 else {}}


def loop_of(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task name, task) of the pipeline's one ParallelFor."""
    (loop,) = [(name, t) for name, t in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in t]
    return loop


def test_one_task_per_partition_then_collect() -> None:
    docs = list(yaml.safe_load_all(COMPILED.read_text()))
    spec = docs[0]
    assert spec["pipelineInfo"]["name"] == "hftpipe-lake"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"inputs", "root", "config_json"}
    root_tasks = spec["root"]["dag"]["tasks"]
    loop_name, loop = loop_of(spec)
    assert loop["iteratorPolicy"]["parallelismLimit"] == PARALLELISM
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("lake-list-Output")
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(inner) == {"lake-partition"}
    collect = root_tasks["lake-collect"]
    assert collect["dependentTasks"] == [loop_name] and loop["taskInfo"]["name"] == "partitions"
    # dsl.Collected: the collect step receives every partition task's result as one list.
    assert "lake-partition" in json.dumps(collect["inputs"]["parameters"]["results"])
    for name in ("lake-list", "lake-collect"):
        assert root_tasks[name]["cachingOptions"].get("enableCache", False) is False
    assert inner["lake-partition"]["cachingOptions"].get("enableCache", False) is False


def test_every_task_mounts_the_lake_claim_and_calls_hftpipe() -> None:
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-lake-list", "exec-lake-partition", "exec-lake-collect"}
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        program = "\n".join(executor["container"]["command"])
        assert "from hftpipe.pipeline.lake_steps import" in program, name
        assert executor["container"]["image"].startswith("ghcr.io/hftpipe/hftpipe"), name
        (mount,) = mounts[name]["pvcMount"]
        assert mount["mountPath"] == LAKE_MOUNT and mount["pvcNameParameter"]["runtimeValue"]["constant"] == LAKE_PVC
    resources = executors["exec-lake-partition"]["container"]["resources"]
    assert resources["resourceCpuRequest"] == "1" and resources["resourceMemoryLimit"] == "3Gi"


def test_the_claim_is_the_one_the_manifests_create_and_the_mount_is_hftpipe_home() -> None:
    """kubernetes/dask declares the claim; the image's HFTPIPE_HOME (root "": its lake/) is the mount point."""
    from tests.deploy.kustomize import build

    claims = [r for r in build(REPO / "kubernetes" / "dask") if r["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == [LAKE_PVC]
    assert claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "HFTPIPE_HOME=/var/lib/hftpipe" in (REPO / "Dockerfile").read_text() and LAKE_MOUNT == "/var/lib/hftpipe"


def test_parallelism_and_claim_are_compile_options(tmp_path: Path) -> None:
    compiled = compile_to(tmp_path, parallelism=3, pvc="")
    assert loop_of(compiled["spec"])[1]["iteratorPolicy"]["parallelismLimit"] == 3
    assert compiled["platform"] == {}


# -- kfp.local on two real LOBSTER days (slow: about 25 s) ------------------------------------------

def run_local(tmp_path: Path, inputs: list[str], root: Path) -> None:
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp-root"),
               raise_on_error=True)
    cfg = load_config(REPO / "params.yaml")
    # kfp.local's ParallelFor can leave its indenting print in place (numba then fails to compile any
    # jitted function that prints, in later tests): the same guard as `hftpipe pipeline run`.
    with keep_builtin_print():
        _run(cfg, inputs, root)


def _run(cfg: Any, inputs: list[str], root: Path) -> None:
    with warnings.catch_warnings():
        # Locally the image, the resources and the volume do not apply; kfp says so for every task.
        warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner", category=UserWarning)
        build_lake_pipeline()(inputs=inputs, root=str(root), config_json=json.dumps(cfg.to_dict()))


@pytest.mark.slow
def test_kfp_local_run_equals_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(REPO)
    cli_root = tmp_path / "cli"
    for args in (["lake", "ingest", str(GOOG), str(AAPL)], ["lake", "features"]):
        result = CliRunner().invoke(main, [*args, "--root", str(cli_root), "--workers", "0"])
        assert result.exit_code == 0, result.output
    root = tmp_path / "kfp"
    run_local(tmp_path, [str(GOOG), str(AAPL)], root)
    assert_same_outputs(root, cli_root, [GOOG_KEY, AAPL_KEY])


@pytest.mark.slow
def test_kfp_local_run_fails_naming_the_failed_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(REPO)
    bad = tmp_path / AAPL.name
    rewrite_zip(AAPL, bad, lambda name, lines: lines[:-5] if "orderbook" in name else lines)
    root = tmp_path / "kfp"
    with pytest.raises(RuntimeError, match="lake-collect"):
        run_local(tmp_path, [str(GOOG), str(bad)], root)
    # The good partition is in, features and all; the bad one is recorded with its reason.
    from hftpipe.lake import read_manifest

    manifest = read_manifest(root)
    assert set(manifest["partitions"]) == {GOOG_KEY} and manifest["features"][GOOG_KEY]["split"] == "within"
    assert "truncated file" in manifest["failures"][str(bad)]["reason"]
