"""Helpers for validation tests: run the real CLI in-process on CSV pairs made from the real GOOG file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hftpipe.cli import main
from tests.conftest import REPO

PARAMS = str(REPO / "params.yaml")


def run_cli(*args: str) -> Result:
    """``hftpipe --params <repo params.yaml> ARGS`` in-process; exceptions other than SystemExit propagate."""
    return CliRunner().invoke(main, ["--params", PARAMS, *args], catch_exceptions=False)


@pytest.fixture
def reports(hftpipe_home: Path) -> Path:
    """Where validation reports land by default in this test's HFTPIPE_HOME."""
    return hftpipe_home / "reports" / "validation"
