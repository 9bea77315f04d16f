"""ModelSpec: one object from the train config to the built module to bundle.json and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hftpipe.config import Config, load_config
from hftpipe.errors import ConfigError
from hftpipe.features.window import WindowStats
from hftpipe.models import load_bundle, save_bundle
from hftpipe.models.spec import ModelSpec


def test_config_to_bundle_and_back_rebuilds_the_same_network(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.model=mlp", "train.window=12", "train.hidden=9", "train.dropout=0.2"])
    spec = ModelSpec.from_train(cfg.train, levels=3)
    assert spec == ModelSpec("mlp", 3, 12, 9, 0.2)
    module = spec.build()
    stats = WindowStats(mean=np.zeros(4 * 3), std=np.ones(4 * 3))
    save_bundle(tmp_path, module, config=Config().to_dict(), model_name=spec.name, levels=spec.levels,
                window=spec.window, horizon=10, alpha=None, stats=stats, hidden=spec.hidden, dropout=spec.dropout)
    info = json.loads((tmp_path / "bundle.json").read_text())
    assert ModelSpec.from_bundle_info(info) == spec
    assert {k: info[k] for k in spec.to_bundle_info()} == spec.to_bundle_info()
    loaded = load_bundle(tmp_path).module
    for (name, a), (_, b) in zip(module.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_bad_spec_is_refused_when_built() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        ModelSpec("transformer", 5, 10).build()
    with pytest.raises(ConfigError, match="dropout"):
        ModelSpec("mlp", 5, 10, 8, 1.5).build()
