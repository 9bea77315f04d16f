"""Every command a manifest runs exists: `hftpipe ...` against the real click group, `mlflow server`
against MLflow's, torchrun against torch's own argument parser; and every -S override is a valid config."""

from __future__ import annotations

import re
import shlex
from typing import Any

import click
import pytest

from hftpipe.cli import main as hftpipe_main
from hftpipe.config import load_config
from hftpipe.errors import ConfigError
from tests.deploy.conftest import OVERLAYS, REPO, containers
from tests.deploy.test_dockerfile import final_stage, parse_dockerfile

# What the training operator injects into PyTorchJob pods, and $(VAR) references resolve to.
OPERATOR_ENV = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_NPROC_PER_NODE": "2",
                "PET_MASTER_ADDR": "hftpipe-train-master-0", "PET_MASTER_PORT": "23456"}


class EntryPointError(Exception):
    """A manifest runs a command the image does not have, or with arguments it does not accept."""


def image_entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT without the init process (tini --)."""
    entry = next(i for i in final_stage(parse_dockerfile()) if i.keyword == "ENTRYPOINT").exec_form()
    return entry[entry.index("--") + 1:] if entry and entry[0] == "tini" else entry


def argv_of(container: dict[str, Any]) -> list[str]:
    """What the container executes: its command, or the image's entry point, then its args."""
    command = container.get("command") or image_entrypoint()
    return [*command, *container.get("args", [])]


def expand(token: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of command and args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), token)


def _remaining(ctx: click.Context) -> list[str]:
    # click >= 8.2 keeps the sub-command name apart from its arguments; `protected_args` is deprecated.
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


def check_click_command(group: click.Group, prog: str, args: list[str]) -> list[str]:
    """Parse ``args`` exactly as the command line would (options, sub-commands, required arguments).

    Returns the resolved command path, e.g. ["pipeline", "schedule"]; raises EntryPointError.
    """
    path: list[str] = []
    try:
        ctx = group.make_context(prog, list(args))
        command: click.Command = group
        while isinstance(command, click.Group):
            rest = _remaining(ctx)
            if not rest:
                raise EntryPointError(f"{prog} {' '.join(path)}: no sub-command given")
            name, sub, sub_args = command.resolve_command(ctx, rest)
            if sub is None:
                raise EntryPointError(f"{prog}: no command {rest[0]!r}")
            path.append(name)
            ctx = sub.make_context(name, list(sub_args), parent=ctx)
            command = sub
    except click.ClickException as exc:
        raise EntryPointError(f"{prog} {' '.join(path)}: {exc.format_message()}") from exc
    return path


def check_hftpipe(args: list[str]) -> list[str]:
    """Check an `hftpipe` invocation: the command exists and parses, and the -S overrides load."""
    path = check_click_command(hftpipe_main, "hftpipe", args)
    overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-S", "--set")]
    overrides += [a.split("=", 1)[1] for a in args if a.startswith("--set=")]
    try:
        load_config(None, overrides)
    except ConfigError as exc:
        raise EntryPointError(f"hftpipe {' '.join(path)}: {exc}") from exc
    return path


def check_argv(argv: list[str], env: dict[str, str]) -> tuple[str, ...]:
    """Check one container's argv; return what it runs, e.g. ("hftpipe", "serve")."""
    argv = [expand(a, env) for a in argv]
    if argv[:2] == ["tini", "--"]:  # the image's init process (see the Dockerfile's ENTRYPOINT)
        argv = argv[2:]
    program = argv[0]
    if program == "hftpipe":
        return ("hftpipe", *check_hftpipe(argv[1:]))
    if program == "mlflow":
        from mlflow.cli import cli as mlflow_cli
        return ("mlflow", *check_click_command(mlflow_cli, "mlflow", argv[1:]))
    if program == "torchrun":
        from torch.distributed.run import get_args_parser
        try:
            parsed = get_args_parser().parse_args(argv[1:])
        except SystemExit as exc:
            raise EntryPointError(f"torchrun rejects {shlex.join(argv[1:])}") from exc
        if not parsed.no_python or parsed.training_script != "hftpipe":
            raise EntryPointError("torchrun must run the hftpipe console script: torchrun ... --no-python hftpipe ...")
        for flag in ("nnodes", "node_rank", "nproc_per_node", "master_addr", "master_port"):
            if "$(" in str(getattr(parsed, flag)):
                raise EntryPointError(f"torchrun --{flag} refers to a variable the operator does not set")
        return ("torchrun", "hftpipe", *check_hftpipe(parsed.training_script_args))
    raise EntryPointError(f"{program!r} is not an entry point of the image (hftpipe, mlflow, torchrun)")


def _invocations(rendered) -> set[tuple[str, ...]]:
    """What every container of every overlay runs (each distinct argv checked once)."""
    distinct: dict[tuple[str, ...], str] = {}
    for overlay in OVERLAYS:
        for res in rendered[overlay]:
            for where, container in containers(res):
                if not container["image"].startswith("ghcr.io/hftpipe/hftpipe:"):
                    continue  # a third-party image (NATS): checked by its own tests (test_nats.py)
                env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
                if res["kind"] == "PyTorchJob":
                    env.update(OPERATOR_ENV)
                distinct.setdefault(tuple(expand(a, env) for a in argv_of(container)), f"{overlay}: {where}")
    runs = set()
    for argv, where in distinct.items():
        try:
            runs.add(check_argv(list(argv), {}))
        except EntryPointError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
    return runs


@pytest.mark.slow  # imports mlflow's CLI and torch.distributed (5-15 s on a loaded 2-core machine)
def test_every_manifest_command_exists_in_the_image(rendered):
    runs = _invocations(rendered)
    # Each process of the system appears, through the one image.
    for expected in [("hftpipe", "serve"), ("hftpipe", "ui"), ("hftpipe", "ingest"), ("hftpipe", "features"),
                     ("hftpipe", "pipeline", "schedule"), ("torchrun", "hftpipe", "train"), ("mlflow", "server"),
                     ("hftpipe", "feed", "replay"), ("hftpipe", "feed", "bitstamp"), ("hftpipe", "signals")]:
        assert expected in runs, f"no manifest runs {' '.join(expected)}; found {sorted(runs)}"


def test_torchrun_gets_one_process_per_gpu(rendered):
    for overlay in OVERLAYS:
        for res in rendered[overlay]:
            if res["kind"] != "PyTorchJob":
                continue
            for _, container in containers(res, init=False):
                args = container["args"]
                assert "--nproc_per_node=$(PET_NPROC_PER_NODE)" in args
                # hftpipe must not launch torchrun again inside torchrun.
                assert "train.nproc=1" in args


@pytest.mark.parametrize("argv, message", [
    (["hftpipe", "-S", "serve.host=0.0.0.0", "serv"], "No such command 'serv'"),
    (["hftpipe", "pipeline", "shedule", "--cron", "0 0 2 * * *"], "No such command 'shedule'"),
    (["hftpipe", "pipeline", "schedule", "--cron", "0 0 2 * * *"], "Missing option '--host'"),
    (["hftpipe", "serve", "--hots", "0.0.0.0"], "No such option"),
    (["hftpipe", "-S", "serve.hots=0.0.0.0", "serve"], "unknown key"),
    (["hftpipe", "-S", "serve.port=http", "serve"], "expected an integer"),
    (["hftpipe", "pipeline"], "Usage: hftpipe pipeline"),
    (["mlflow", "server", "--backend-store", "x"], "No such option"),
    (["torchrun", "--nproc_per_node=2", "-m", "hftpipe.cli", "train"], "--no-python hftpipe"),
    (["torchrun", "--no-python", "hftpipe", "trian"], "No such command 'trian'"),
    (["python", "-m", "hftpipe.cli", "serve"], "not an entry point"),
    (["tini", "--", "hftpipe", "sevre"], "No such command 'sevre'"),
])
def test_the_checker_rejects_what_the_image_cannot_run(argv, message):
    with pytest.raises(EntryPointError, match=re.escape(message)):
        check_argv(argv, {})


def test_entrypoint_is_the_console_script():
    import tomllib
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert image_entrypoint() == ["hftpipe"]
    assert scripts["hftpipe"] == "hftpipe.cli:main"
