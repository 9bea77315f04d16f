"""Where the live page gets the served model's horizon and alpha from, in order."""

from __future__ import annotations

import json
from pathlib import Path

from hftpipe.config import Config
from hftpipe.ui import modelinfo


def _cfg(features_dir: Path, horizon: int | str = 50) -> Config:
    cfg = Config()
    return cfg.replace(features=cfg.features.__class__(output=str(features_dir)),
                       train=cfg.train.__class__(horizon=horizon))


def test_the_model_server_answer_wins(tmp_path: Path) -> None:
    info = modelinfo.resolve(_cfg(tmp_path), {"horizon": 100, "alpha": 3e-5, "label": "deeplob",
                                              "sampling": "top_of_book"}, "m", "7")
    assert (info.horizon, info.alpha, info.label, info.sampling) == (100, 3e-5, "deeplob", "top_of_book")
    assert info.source == "model server" and info.scoreable


def test_local_feature_set_is_the_last_resort(tmp_path: Path) -> None:
    (tmp_path / "features_meta.json").write_text(json.dumps(
        {"alpha": {"10": 1e-5, "50": 2.5e-5}, "label": "forward", "sampling": "all"}))
    info = modelinfo.resolve(_cfg(tmp_path, horizon=50), {}, "m", "local-abc")
    assert (info.horizon, info.alpha) == (50, 2.5e-5) and "local feature set" in info.source


def test_without_any_source_the_model_is_not_scored(tmp_path: Path) -> None:
    info = modelinfo.resolve(_cfg(tmp_path / "missing"), {}, "m", "local-abc")
    assert not info.scoreable and info.to_dict()["horizon"] is None


def test_a_clock_time_model_keeps_its_unit_from_every_source(tmp_path: Path) -> None:
    info = modelinfo.resolve(_cfg(tmp_path), {"horizon": "1s", "horizon_unit": "seconds", "alpha": 3e-5}, "m", "7")
    assert info.horizon == "1s" and info.scoreable
    shown = info.to_dict()
    assert (shown["horizon_unit"], shown["horizon_text"]) == ("seconds", "1 s")
    assert modelinfo.resolve(_cfg(tmp_path), {"horizon": 10, "alpha": 1e-5}, "m", "7").to_dict()["horizon_text"] \
        == "10 events"
    (tmp_path / "features_meta.json").write_text(json.dumps(
        {"alpha": {"10": 1e-5, "500ms": 9.0, "0.5s": 4e-5}, "label": "forward", "sampling": "all"}))
    local = modelinfo.resolve(_cfg(tmp_path, horizon="500ms"), {}, "m", "local-abc")
    assert (local.horizon, local.alpha) == ("0.5s", 4e-5)  # the alpha of 0.5 s, the key features write
    # a horizon that is no horizon is not guessed at: the next source is asked
    assert modelinfo.resolve(_cfg(tmp_path / "none"), {"horizon": "10", "alpha": 1e-5}, "m", "7").horizon is None
