"""Real LOBSTER slices shared by the feature tests (loaded once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from hftpipe.data import EventTable, load_lobster
from tests.conftest import lobster_zip


@pytest.fixture(scope="session")
def goog1_table() -> EventTable:
    return load_lobster(lobster_zip("GOOG", 1))


@pytest.fixture(scope="session")
def goog10_table() -> EventTable:
    return load_lobster(lobster_zip("GOOG", 10))


@pytest.fixture(scope="session")
def goog10_slice(goog10_table: EventTable) -> pd.DataFrame:
    """The first 4000 events of the 10-level file: openings auction aftermath, trades, quote changes."""
    return goog10_table.frame.iloc[:4000].reset_index(drop=True)
