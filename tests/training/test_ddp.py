"""Two DDP processes (gloo over loopback) on a real slice: same weights on both ranks, loss goes down."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hftpipe.config import TrainConfig
from hftpipe.training.distributed import setup_distributed
from hftpipe.training.trainer import fit
from tests.training.conftest import make_slice

CFG = TrainConfig(model="deeplob", window=10, hidden=8, dropout=0.1, batch_size=32, epochs=3, patience=5,
                  lr=3e-3, device="cpu", max_train_samples=960, seed=5)


def _worker(rank: int, world: int, init_file: str, out_dir: str, model: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        s = make_slice(rows=3000)
        info = setup_distributed("cpu")
        assert (info.rank, info.world_size) == (rank, world)
        result = fit(s.book, s.labels, s.split, replace(CFG, model=model), info=info,
                     checkpoint_dir=Path(out_dir) / "ckpt")
        torch.save({"state": result.module.state_dict(), "losses": [h.train_loss for h in result.history],
                    "f1": [h.val_macro_f1 for h in result.history]}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deeplob"])  # BatchNorm buffers make it the harder case
def test_two_ranks_end_with_identical_weights_and_learn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         model: str) -> None:
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), model), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name, value in r0["state"].items():
        torch.testing.assert_close(value, r1["state"][name], rtol=0, atol=0, msg=name)
    assert r0["f1"] == r1["f1"]  # validation is all-reduced: both ranks take the same early-stopping path
    assert r0["losses"] == r1["losses"]
    assert r0["losses"][-1] < r0["losses"][0]
    assert (tmp_path / "ckpt" / "last.pt").exists()  # written by rank 0
    fresh = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert len(fresh["rng"]) == 2  # every rank's RNG state is kept for an exact resume
