"""DVC in a fresh clone: `dvc repro` of the data stages, push/pull through the local remote, `dvc exp run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.import_graph import covered, needed_deps

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # stage commands find `hftpipe`
    env["HFTPIPE_HOME"] = str(home)
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture()
def clone(tmp_path: Path, hftpipe_home: Path) -> Path:
    target = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    # Keep the test quick: the 1-level GOOG file instead of the 10-level default.
    params = yaml.safe_load((target / "params.yaml").read_text())
    params["data"]["source"] = "data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"
    (target / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "small data"],
                   cwd=target, check=True)
    return target


@pytest.mark.slow
def test_repro_push_and_pull_in_a_fresh_clone(clone: Path, tmp_path: Path, hftpipe_home: Path) -> None:
    env = _env(hftpipe_home)
    remote = hftpipe_home / "dvc-remote"
    _run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone, env)
    _run(["dvc", "repro", "features"], clone, env)
    for out in ("data/validation", "data/processed/events.parquet", "data/features/features.parquet"):
        assert (clone / out).exists(), out
    status = _run(["dvc", "status", "features"], clone, env).stdout
    assert "changed" not in status
    _run(["dvc", "push"], clone, env)
    assert any(remote.rglob("*")), "nothing was pushed to the local remote"

    # A fresh clone of that commit pulls the outputs from the remote instead of recomputing them.
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "repro"],
                   cwd=clone, check=True)
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(clone), str(other)], check=True)
    _run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], other, env)
    _run(["dvc", "pull", "features"], other, env)
    pulled = other / "data/features/features.parquet"
    assert pulled.read_bytes() == (clone / "data/features/features.parquet").read_bytes()


@pytest.mark.slow
def test_exp_run_trains_evaluates_and_registers(clone: Path, hftpipe_home: Path) -> None:
    env = _env(hftpipe_home)
    fast = ["-S", "train.epochs=1", "-S", "train.max_train_samples=3000", "-S", "train.window=20",
            "-S", "train.hidden=16", "-S", "evaluate.bootstrap=50"]
    _run(["dvc", "exp", "run", "-S", "train.model=lstm", *fast], clone, env)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    assert params["train"]["model"] == "lstm"
    assert (clone / "data/model/bundle.json").exists()
    metrics = _run(["dvc", "metrics", "show", "--json"], clone, env).stdout
    assert "macro_f1" in metrics
    assert (clone / "data/registration.json").exists()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_depends_on_the_code_it_imports(stage: str) -> None:
    """A part of src/hftpipe that the stage's command imports (transitively) but that is not a dep
    would let `dvc repro` reuse an output computed by older code."""
    from hftpipe.cli import main

    deps = STAGES[stage].get("deps", [])
    needed = needed_deps(main, STAGES[stage]["cmd"])
    assert "src/hftpipe/config.py" in needed  # the walk reached the code (every command reads the config)
    missing = sorted(p for p in needed if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage} runs {missing} but does not list them in deps"
    for dep in deps:  # code deps name real paths (a typo would silently depend on nothing)
        assert not dep.startswith(("src/", "expectations")) or (REPO / dep).exists(), f"{stage}: no {dep}"


def test_the_import_walk_follows_function_local_and_package_imports() -> None:
    from hftpipe.cli import main

    # `hftpipe features` reaches validation only through prepare's function bodies and data/__init__
    needed = needed_deps(main, "hftpipe features x -o y")
    assert {"src/hftpipe/features", "src/hftpipe/validation", "src/hftpipe/data", "expectations"} <= needed
    assert not any(p.startswith("src/hftpipe/cli") for p in needed)
    assert covered("src/hftpipe/data", ["src/hftpipe/data/"]) and covered("src/hftpipe/data/x.py", ["src/hftpipe"])
    assert not covered("src/hftpipe/data_extra", ["src/hftpipe/data"])
