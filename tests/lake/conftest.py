"""Fixtures of the dataset tests: a real two-worker Dask cluster on loopback, shared per module."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A LocalCluster with 2 worker processes (1 thread each) bound to 127.0.0.1, closed afterwards."""
    from hftpipe.lake.runner import dask_client as open_client

    with open_client(workers=2, memory_limit="2GiB") as client:
        yield client


def rewrite_zip(src: Path, dst: Path, edit: Any) -> None:
    """Copy a LOBSTER zip, passing each member's lines through ``edit(name, lines) -> lines``."""
    with zipfile.ZipFile(src) as zin:
        members = {name: zin.read(name) for name in zin.namelist()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members.items():
            lines = data.decode().splitlines(keepends=True)
            zout.writestr(name, "".join(edit(name, lines)))
    dst.write_bytes(buffer.getvalue())
