"""Champion re-scoring has one scorer: hftpipe.evaluation (no private fallback that measures differently)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from hftpipe.registry.rescore import score_on_test_split
from tests.registry.conftest import registry_config


def test_rescoring_never_falls_back_to_a_private_scorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A broken hftpipe.evaluation (its `evaluate` not importable, its metrics module still there): the old
    # code quietly scored macro-F1 its own way (no backtest, no scope); now the import error surfaces.
    import hftpipe.evaluation.metrics  # noqa: F401  (what the old fallback scored with)

    broken = types.ModuleType("hftpipe.evaluation")
    broken.__path__ = sys.modules["hftpipe.evaluation"].__path__
    monkeypatch.setitem(sys.modules, "hftpipe.evaluation", broken)
    with pytest.raises(ImportError):
        score_on_test_split(registry_config(), tmp_path / "bundle", tmp_path / "features", "champion-v1")
