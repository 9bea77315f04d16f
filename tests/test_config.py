"""The strict params.yaml loader: unknown keys and wrong types are errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hftpipe.config import Config, config_from_dict, load_config
from hftpipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_params_yaml_loads_and_matches_its_own_round_trip() -> None:
    cfg = load_config(REPO / "params.yaml")
    assert config_from_dict(cfg.to_dict()) == cfg


def test_defaults_without_a_file() -> None:
    assert load_config(None) == Config()


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"trian": {"model": "lstm"}}, "unknown key(s) in params: trian"),
        ({"train": {"modle": "lstm"}}, "unknown key(s) in section 'train': modle"),
        ({"train": {"model": "transformer"}}, "train.model: 'transformer' is not one of"),
        ({"train": {"epochs": "3"}}, "train.epochs: expected an integer, got '3'"),
        ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer, got 2.5"),
        ({"train": {"class_weights": "yes"}}, "train.class_weights: expected true or false"),
        ({"features": {"horizons": 10}}, "features.horizons: expected a list, got 10"),
        ({"features": {"horizons": [10, "x"]}}, "features.horizons[1]: expected an integer"),
        ({"evaluate": {"fees_bps": True}}, "evaluate.fees_bps: expected a number"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, raw: dict, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_overrides_are_typed_and_checked() -> None:
    cfg = load_config(None, ["train.model=deeplob", "features.horizons=[10, 20]", "features.alpha=0.00002"])
    assert cfg.train.model == "deeplob"
    assert cfg.features.horizons == (10, 20)
    assert cfg.features.alpha == pytest.approx(2e-5)
    with pytest.raises(ConfigError, match="must name a section and a key"):
        load_config(None, ["model=lstm"])
    with pytest.raises(ConfigError, match="train.window: expected an integer"):
        load_config(None, ["train.window=big"])


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "other.yaml")
