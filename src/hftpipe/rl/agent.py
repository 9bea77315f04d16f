"""Train a PPO (or DQN) agent on the batched environment; save, checkpoint and load the policy.

The policy folder holds ``policy.zip`` (stable-baselines3), ``policy.json`` (algorithm, the feature
standardisation fitted on the training split, the observation layout, the resolved config, the data's
identity and the training numbers) and ``checkpoints/``. :func:`load_policy` turns the saved network
into a small numpy function (an MLP forward pass costs microseconds, where SB3's ``predict`` costs
a hundred), so evaluating it event by event through the backtest stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hftpipe.config import Config, config_from_dict
from hftpipe.errors import ConfigError, ModelError
from hftpipe.rl.day import Day
from hftpipe.rl.env import BatchLobEnv, feature_stats
from hftpipe.tracking import NullTracker, Tracker

log = logging.getLogger(__name__)

POLICY_FILE = "policy.zip"
META_FILE = "policy.json"


@dataclass(frozen=True)
class TrainResult:
    policy_dir: Path
    algo: str
    timesteps: int
    elapsed_s: float
    steps_per_s: float
    episodes: int
    mean_episode_pnl: float  # $, over the last 100 finished episodes

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["policy_dir"] = str(self.policy_dir)
        return out


def _callback(total: int, checkpoint_every: int, checkpoints: Path, tracker: Tracker, progress: bool) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class Progress(BaseCallback):
        """tqdm bar, finished-episode PnL to the tracker, a checkpoint every ``checkpoint_every`` steps."""

        def __init__(self) -> None:
            super().__init__()
            self.bar: Any = None
            self.episode_pnl: list[float] = []
            self.next_checkpoint = checkpoint_every
            self.last_logged = 0

        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, desc="rl train", unit="step", disable=not (progress and sys.stderr.isatty()))

        def _on_step(self) -> bool:
            n = self.training_env.num_envs
            self.bar.update(n)
            for info in self.locals.get("infos", []):
                if "episode_pnl" in info:
                    self.episode_pnl.append(info["episode_pnl"])
            if self.num_timesteps >= self.next_checkpoint:
                self.model.save(checkpoints / f"step_{self.num_timesteps}.zip")
                self.next_checkpoint += checkpoint_every
            if self.episode_pnl and self.num_timesteps - self.last_logged >= 10_000:
                recent = self.episode_pnl[-100:]
                tracker.log_metrics({"episode_pnl": float(np.mean(recent)), "episodes": len(self.episode_pnl)},
                                    step=self.num_timesteps)
                self.bar.set_postfix(pnl=f"{np.mean(recent):+.0f}$")
                self.last_logged = self.num_timesteps
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return Progress()


def make_model(cfg: Config, env: BatchLobEnv) -> Any:
    """The stable-baselines3 model of ``rl.algo`` with the ``rl`` hyper-parameters."""
    import torch
    from stable_baselines3 import DQN, PPO

    r = cfg.rl
    torch.set_num_threads(max(1, r.threads))
    arch = [r.hidden, r.hidden]
    if r.algo == "ppo":
        return PPO("MlpPolicy", env, learning_rate=r.learning_rate, n_steps=r.n_steps,
                   batch_size=min(r.batch_size, r.n_steps * env.num_envs), n_epochs=r.n_epochs, gamma=r.gamma,
                   ent_coef=r.ent_coef, policy_kwargs={"net_arch": {"pi": arch, "vf": arch}}, seed=r.seed,
                   device="cpu", verbose=0)
    if r.algo == "dqn":
        return DQN("MlpPolicy", env, learning_rate=r.learning_rate, batch_size=r.batch_size, gamma=r.gamma,
                   buffer_size=100_000, learning_starts=min(5_000, r.total_timesteps // 10), train_freq=4,
                   target_update_interval=2_000, exploration_fraction=0.3, policy_kwargs={"net_arch": arch},
                   seed=r.seed, device="cpu", verbose=0)
    raise ConfigError(f"rl.algo must be ppo or dqn; got {r.algo!r}")


def train(cfg: Config, day: Day, output: str | Path | None = None, tracker: Tracker | None = None,
          progress: bool = True) -> TrainResult:
    """Train ``rl.algo`` on random episodes of the training split of ``day``; save the policy folder."""
    tracker = tracker or NullTracker()
    out = Path(output or cfg.rl.output)
    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    stats = feature_stats(day)
    env = BatchLobEnv(day, cfg, stats=stats)
    model = make_model(cfg, env)
    total = int(cfg.rl.total_timesteps)
    callback = _callback(total, max(1, cfg.rl.checkpoint_every), checkpoints, tracker, progress)
    started = time.perf_counter()
    model.learn(total_timesteps=total, callback=callback)
    elapsed = time.perf_counter() - started
    model.save(out / POLICY_FILE)
    pnl = callback.episode_pnl
    result = TrainResult(out, cfg.rl.algo, int(model.num_timesteps), elapsed, model.num_timesteps / max(elapsed, 1e-9),
                         len(pnl), float(np.mean(pnl[-100:])) if pnl else 0.0)
    meta = {
        "algo": cfg.rl.algo,
        "feature_names": day.feature_names,
        "feature_mean": stats[0].tolist(),
        "feature_std": stats[1].tolist(),
        "with_probs": day.probs is not None,
        "classifier": day.meta.get("classifier"),
        "session": list(day.session),  # the time of day's origin and scale (the live policy reads it)
        "obs_dim": int(env.observation_space.shape[0]),
        "data": {"symbol": day.symbol, "date": day.date, "source": day.meta.get("source"),
                 "source_sha256": day.meta.get("source_sha256"), "train_events": int(day.rows(0).size)},
        "train": result.to_dict(),
        "config": cfg.to_dict(),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    tracker.log_metrics({"train_seconds": elapsed, "steps_per_s": result.steps_per_s,
                         "mean_episode_pnl": result.mean_episode_pnl, "episodes": len(pnl)}, step=result.timesteps)
    tracker.log_artifact(out / POLICY_FILE, "policy")
    tracker.log_artifact(out / META_FILE, "policy")
    log.info("trained %s for %d steps in %.0f s (%.0f steps/s)", cfg.rl.algo, result.timesteps, elapsed,
             result.steps_per_s)
    return result


@dataclass
class LoadedPolicy:
    """A saved policy as a numpy function: observation (obs_dim,) -> action."""

    directory: Path
    meta: dict[str, Any]
    layers: list[tuple[np.ndarray, np.ndarray, str]]  # (W, b, activation after it)

    @property
    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.meta["feature_mean"]), np.asarray(self.meta["feature_std"])

    @property
    def config(self) -> Config:
        return config_from_dict(self.meta["config"])

    def scores(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        for w, b, act in self.layers:
            x = x @ w + b
            if act == "tanh":
                x = np.tanh(x)
            elif act == "relu":
                x = np.maximum(x, 0.0)
        return x

    def choose(self, obs: np.ndarray, i: int = 0) -> int:
        """The greedy action (PPO: the most likely one; DQN: the highest Q value)."""
        return int(np.argmax(self.scores(obs)))


def _layers(modules: list[Any]) -> list[tuple[np.ndarray, np.ndarray, str]]:
    import torch

    out: list[tuple[np.ndarray, np.ndarray, str]] = []
    for m in modules:
        if isinstance(m, torch.nn.Linear):
            out.append((m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy(), ""))
        elif isinstance(m, (torch.nn.Tanh, torch.nn.ReLU)) and out:
            w, b, _ = out[-1]
            out[-1] = (w, b, "tanh" if isinstance(m, torch.nn.Tanh) else "relu")
    return out


def load_policy(directory: str | Path) -> LoadedPolicy:
    """Load a policy folder written by :func:`train`.

    Raises:
        ModelError: the folder holds no trained policy.
    """
    from stable_baselines3 import DQN, PPO

    directory = Path(directory)
    meta_path, zip_path = directory / META_FILE, directory / POLICY_FILE
    if not meta_path.is_file() or not zip_path.is_file():
        raise ModelError(f"{directory} holds no trained policy ({POLICY_FILE} + {META_FILE}); run `hftpipe rl train`")
    meta = json.loads(meta_path.read_text())
    if meta["algo"] == "ppo":
        model = PPO.load(zip_path, device="cpu")
        policy = model.policy
        modules = list(policy.mlp_extractor.policy_net) + [policy.action_net]
    else:
        model = DQN.load(zip_path, device="cpu")
        modules = list(model.q_net.q_net)
    return LoadedPolicy(directory, meta, _layers(modules))


def chooser(policy: LoadedPolicy) -> Callable[[np.ndarray, int], int]:
    return policy.choose
