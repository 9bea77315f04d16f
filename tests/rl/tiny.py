"""A policy trained for a few hundred steps on the GOOG sample: a real policy folder for the live tests, quickly."""

from __future__ import annotations

from pathlib import Path

from hftpipe.config import Config, load_config
from hftpipe.rl.agent import train
from hftpipe.rl.day import day_from_events, load_day

REPO = Path(__file__).resolve().parents[2]
GOOG = REPO / "data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
TINY = ["rl.total_timesteps=256", "rl.n_envs=2", "rl.n_steps=64", "rl.batch_size=64", "rl.n_epochs=1",
        "rl.hidden=16", "rl.episode_events=200", "rl.checkpoint_every=1000000"]


def tiny_config(*sets: str) -> Config:
    return load_config(REPO / "params.yaml", [*TINY, *sets])


def train_tiny(dest: Path, cfg: Config | None = None) -> Path:
    """Train on the first 20,000 GOOG events (a few seconds); returns the policy folder."""
    cfg = cfg or tiny_config()
    day = load_day(cfg, GOOG)
    small = day_from_events(day.events.iloc[:20_000].reset_index(drop=True), cfg, day.symbol, day.date, day.session)
    small.meta.update(source=str(GOOG))
    return train(cfg, small, dest, progress=False).policy_dir
