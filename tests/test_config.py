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


# data.source: one file (a string, as always), or several (a list; globs allowed) for `hftpipe pipeline run`.

RAW = REPO / "data" / "raw"
GOOG1, AAPL1, GOOG10 = (str(RAW / f"LOBSTER_SampleFile_{n}.zip") for n in ("GOOG_2012-06-21_1", "AAPL_2012-06-21_1",
                                                                          "GOOG_2012-06-21_10"))


def test_data_source_string_list_and_glob() -> None:
    from hftpipe.config import single_source
    from hftpipe.prepare import resolve_sources

    one = load_config(None, ["data.source=some/file.zip"])
    assert one.data.source == "some/file.zip" and resolve_sources(one.data) == ["some/file.zip"]  # passed on as is
    assert single_source(one.data, "ingest") == "some/file.zip"
    listed = load_config(None, [f"data.source=[{GOOG1}, {AAPL1}]"])
    assert listed.data.source == (GOOG1, AAPL1) and resolve_sources(listed.data) == [GOOG1, AAPL1]
    assert config_from_dict(listed.to_dict()) == listed  # the resolved config round-trips (pipeline's config_json)
    globbed = load_config(None, [f"data.source={RAW}/LOBSTER_SampleFile_*_2012-06-21_1.zip"])
    assert resolve_sources(globbed.data) == sorted([GOOG1, AAPL1])
    with pytest.raises(ConfigError, match=r"data.source lists 2 files but ingest reads one"):
        single_source(listed.data, "ingest")


@pytest.mark.parametrize("source,message", [
    ([f"{RAW}/nothing_*.zip"], r"data.source: '.*nothing_\*.zip' matches no file; check the pattern"),
    ([GOOG1, GOOG10], (r"data.source mixes book depths \(LOBSTER_SampleFile_GOOG_2012-06-21_1.zip: 1, "
                       r"LOBSTER_SampleFile_GOOG_2012-06-21_10.zip: 10\); pool files with one depth")),
    ([GOOG1, AAPL1, GOOG1], r"data.source lists .*GOOG_2012-06-21_1.zip more than once"),
    ([], r"data.source is an empty list"),
])
def test_bad_data_source_lists_fail_in_one_line(source: list, message: str) -> None:
    from hftpipe.prepare import resolve_sources

    cfg = config_from_dict({"data": {"source": source}})
    with pytest.raises(ConfigError, match=message) as info:
        resolve_sources(cfg.data)
    assert "\n" not in str(info.value)


def test_several_sources_refuse_a_single_file_symbol_and_accept_one_depth_by_setting() -> None:
    from hftpipe.prepare import resolve_sources

    with pytest.raises(ConfigError, match="data.symbol / data.date name one file"):
        resolve_sources(config_from_dict({"data": {"source": [GOOG1, AAPL1], "symbol": "GOOG"}}).data)
    # data.levels reads every file at one depth: mixed file depths are then fine
    assert len(resolve_sources(config_from_dict({"data": {"source": [GOOG1, GOOG10], "levels": 1}}).data)) == 2


def test_data_source_of_the_wrong_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match="data.source: 3 is not str or tuple"):
        config_from_dict({"data": {"source": 3}})
