"""Fixtures shared by every test: isolated HFTPIPE_HOME, the shipped raw files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"


@pytest.fixture(autouse=True)
def hftpipe_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state folder and MLflow store; nothing leaks into ./.hftpipe."""
    home = tmp_path_factory.mktemp("hftpipe_home")
    monkeypatch.setenv("HFTPIPE_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    return RAW


def lobster_zip(symbol: str = "GOOG", levels: int = 10) -> Path:
    """Path of a shipped LOBSTER sample zip."""
    return RAW / f"LOBSTER_SampleFile_{symbol}_2012-06-21_{levels}.zip"


@pytest.fixture(scope="session")
def goog10() -> Path:
    return lobster_zip("GOOG", 10)


@pytest.fixture(scope="session")
def goog1() -> Path:
    return lobster_zip("GOOG", 1)


# The online half: a real nats-server per test (tests/online_fixtures.py).
from tests.online_fixtures import nats_server  # noqa: F401
