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
        ({"features": {"horizons": [10, "x"]}}, "features.horizons[1]: 'x' is not a horizon"),
        # a bare '10' would be ambiguous (events or seconds?): refused
        ({"features": {"horizons": [10, "10"]}}, "features.horizons[1]: '10' is not a horizon"),
        ({"features": {"horizons": [0]}}, "features.horizons[0]: 0 is not a horizon"),
        ({"train": {"horizon": "1 min"}}, "train.horizon: '1 min' is not a horizon"),
        ({"train": {"horizon": 2.5}}, "train.horizon: 2.5 is not int or str"),
        ({"evaluate": {"fees_bps": True}}, "evaluate.fees_bps: expected a number"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, raw: dict, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_clock_horizons_keep_their_unit() -> None:
    cfg = load_config(None, ["features.horizons=[10, 1s, 500ms]", "train.horizon=10s"])
    assert cfg.features.horizons == (10, "1s", "0.5s")  # canonical: events stay ints, seconds carry 's'
    assert cfg.train.horizon == "10s"
    assert load_config(None, ["train.horizon=10"]).train.horizon == 10  # a plain integer stays 10 events
    assert cfg.to_dict()["features"]["horizons"] == [10, "1s", "0.5s"]


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
