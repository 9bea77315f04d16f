"""A small training run on the shipped GOOG data, its evaluation, and the registry gate."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from hftpipe.config import Config
from hftpipe.registry.rl import policy_gate
from hftpipe.rl.agent import load_policy, train
from hftpipe.rl.day import Day
from hftpipe.rl.evaluate import SIMPLE, evaluate_policies


def _small(cfg: Config, algo: str = "ppo") -> Config:
    rl = dataclasses.replace(cfg.rl, algo=algo, total_timesteps=2048, n_envs=4, n_steps=128, batch_size=256,
                             n_epochs=1, episode_events=300, checkpoint_every=1024, hidden=16)
    trading = dataclasses.replace(cfg.trading, bootstrap=50)
    return cfg.replace(rl=rl, trading=trading)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_train_checkpoint_load_and_evaluate(small_day: Day, rl_config: Config, tmp_path: Path, algo: str) -> None:
    cfg = _small(rl_config, algo)
    result = train(cfg, small_day, tmp_path / "policy", progress=False)
    assert result.timesteps >= 2048
    assert sorted(p.name for p in (tmp_path / "policy" / "checkpoints").iterdir())[:1] == ["step_1024.zip"]
    policy = load_policy(tmp_path / "policy")
    # the numpy forward pass chooses what stable-baselines3 chooses
    from stable_baselines3 import DQN, PPO

    model = (PPO if algo == "ppo" else DQN).load(tmp_path / "policy" / "policy.zip", device="cpu")
    obs = np.random.default_rng(0).normal(size=(64, policy.meta["obs_dim"])).astype(np.float32)
    sb3, _ = model.predict(obs, deterministic=True)
    assert [policy.choose(o) for o in obs] == sb3.tolist()

    report = evaluate_policies(cfg, small_day, policy)
    assert report["data"]["scope"] == "test"
    assert set(report["policies"]) == {"learned", *SIMPLE}
    for name, r in report["policies"].items():
        iv = r["net_pnl_interval"]
        assert iv["low"] <= r["net_pnl"] <= iv["high"] or r["net_pnl"] == 0.0, name
        assert {"sharpe", "max_drawdown", "shares_traded", "fill_ratio", "inventory_profile"} <= set(r)
    assert report["policies"]["flat"]["net_pnl"] == 0.0
    json.dumps(report, allow_nan=False)
    if algo == "ppo":  # registered as its own model, aliased by the gate (real MLflow sqlite store)
        from hftpipe.registry.rl import register_policy
        from hftpipe.registry.tracker import client

        out = register_policy(cfg, tmp_path / "policy", report)
        assert out["alias"] == policy_gate(report, cfg.rl.min_margin)["alias"]
        version = client().get_model_version_by_alias(cfg.rl.model_name, out["alias"])
        assert str(version.version) == out["version"] == "1"
        # `rl evaluate` without --policy takes the registered champion policy, else the newest trained one.
        from hftpipe.cli.rl import default_policy

        assert default_policy(cfg) == cfg.rl.output or out["alias"] == "champion"
        client().set_registered_model_alias(cfg.rl.model_name, "champion", out["version"])
        assert default_policy(cfg) == f"models:/{cfg.rl.model_name}@champion"


def _report(learned: float, low: float, others: dict[str, float]) -> dict:
    pols = {"learned": {"net_pnl": learned, "net_pnl_interval": {"low": low}}}
    pols.update({k: {"net_pnl": v, "net_pnl_interval": {"low": v}} for k, v in others.items()})
    return {"policies": pols, "best_simple": max(others, key=others.get)}


@pytest.mark.parametrize("learned,low,alias", [(50.0, 5.0, "champion"), (50.0, -1.0, "challenger"),
                                               (15.0, 5.0, "challenger")])
def test_gate_needs_a_margin_over_the_best_simple_policy_and_a_positive_interval(learned, low, alias) -> None:
    gate = policy_gate(_report(learned, low, {"flat": 0.0, "passive": 20.0, "threshold": -3.0, "random": -90.0}),
                       min_margin=0.0)
    assert gate["alias"] == alias
    assert gate["best_simple"] == "passive"
