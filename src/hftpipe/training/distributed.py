"""Distributed set-up read from the environment (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK).

The same code runs single-process (no variables: world size 1, no process group) and under torchrun.
Backend: nccl when the process drives a CUDA device, gloo otherwise.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from hftpipe.errors import ConfigError
from hftpipe.proctree import stop_tree_on_signal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: no process group (single process)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, checkpoints, writes the bundle and talks to the tracker."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from exc


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA device ``local_rank`` when available, else CPU.

    Raises:
        ConfigError: ``cuda`` requested on a machine without CUDA.
    """
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but torch sees no CUDA device; use train.device=cpu or auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_distributed(device: str = "auto") -> DistInfo:
    """Read RANK/WORLD_SIZE/LOCAL_RANK and join the process group when the world size is above 1.

    A process group that already exists (e.g. set up by a test with ``init_method="file://..."``) is used
    as it is. Under torchrun the rendezvous address comes from MASTER_ADDR/MASTER_PORT (``env://``).
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        dev = resolve_device(device, local_rank)
        return DistInfo(rank, world, local_rank, dev, dist.get_backend())
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world <= 1:
        return DistInfo(0, 1, 0, dev, None)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    if rank == 0:  # only rank 0 logs
        log.info("process group of %d ranks up: backend %s, rank 0 on %s", world, backend, dev)
    return DistInfo(rank, world, local_rank, dev, backend)


def teardown_distributed(info: DistInfo, owned: bool) -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    if owned and info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op for one process)."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (one element for one process)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Make buffers (BatchNorm running statistics) identical on every rank: floats averaged, others rank 0's.

    DDP broadcasts rank 0's buffers before each forward, so after the last step of an epoch every rank holds
    stats updated by its own last batch; validation and the saved weights must not depend on the rank.
    """
    if not info.distributed:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data, op=dist.ReduceOp.SUM)
            buf.data /= info.world_size
        else:
            dist.broadcast(buf.data, src=0)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(nproc: int, params: str, overrides: Sequence[str], train_args: Sequence[str],
                     port: int, verbosity: Sequence[str] = ()) -> list[str]:
    """The torchrun command line whose ``nproc`` ranks each run ``hftpipe train train_args`` on loopback."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "hftpipe.cli",
               "--params", params, *verbosity]
    for item in overrides:
        command += ["-S", item]
    return command + ["train", *train_args]


def launch_torchrun(nproc: int, params: str, train_args: Sequence[str], overrides: Sequence[str] = (),
                    stop_tree: bool = True) -> int:
    """Run ``hftpipe train`` as ``nproc`` ranks under torchrun on this machine; return torchrun's exit code.

    The one launcher for ``hftpipe train --nproc`` and the pipeline's train step. ``train_args`` must not
    hold ``--nproc``: the ranks (RANK set) train, and torchrun's parser would take it for its own. The
    ranks log as verbosely as this process. torchrun starts each rank in a session of its own, so on
    SIGINT / SIGTERM the whole tree is stopped here, and the code is then 128 + the signal number.

    ``stop_tree=False`` (the pipeline's train step): the run's own guard (``pipeline.runner``) already stops
    every process of the run, and the step must end by the signal, unrecorded, so that the run reports
    which step it interrupted.
    """
    level = logging.getLogger().getEffectiveLevel()
    verbosity = ["-vv"] if level <= logging.DEBUG else ["-v"] if level <= logging.INFO else []
    command = torchrun_command(nproc, params, overrides, train_args, _free_port(), verbosity)
    env = {**os.environ, "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    log.info("launching %d processes: %s", nproc, " ".join(command))
    if not stop_tree:
        return subprocess.call(command, env=env)
    try:
        with stop_tree_on_signal() as interrupt:
            return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        log.warning("interrupted by %s: stopped %d process(es)", interrupt.name, interrupt.stopped)
        return 128 + (interrupt.signum or 2)
