from __future__ import annotations

from pathlib import Path

import pytest

from hftpipe.config import Config, load_config
from hftpipe.rl.day import Day, day_from_events, load_day

REPO = Path(__file__).resolve().parents[2]
GOOG = REPO / "data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
AAPL = REPO / "data/raw/LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"


@pytest.fixture(scope="session")
def rl_config() -> Config:
    return load_config(REPO / "params.yaml", ["rl.n_envs=4", "rl.episode_events=500"])


@pytest.fixture(scope="session")
def goog_day(rl_config: Config) -> Day:
    return load_day(rl_config, GOOG)


@pytest.fixture(scope="session")
def small_day(goog_day: Day, rl_config: Config) -> Day:
    """The first 30,000 events of the GOOG day (its own splits)."""
    events = goog_day.events.iloc[:30_000].reset_index(drop=True)
    return day_from_events(events, rl_config, goog_day.symbol, goog_day.date, goog_day.session)
