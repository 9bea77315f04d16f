"""hftpipe.prepare: the load-validate-write orchestration above data/, validation/ and features/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hftpipe import prepare
from hftpipe.config import DataConfig, FeaturesConfig, ValidateConfig
from hftpipe.data import read_events
from hftpipe.errors import ConfigError, ValidationFailed
from tests.data.lobster_pairs import raw_slice, write_pair

ROWS = 1500


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Sources passed to the events suites (Great Expectations runs), in order."""
    calls: list[str] = []
    real = prepare.validate_table

    def spy(table, cfg, source=None):
        calls.append(str(source or table.meta.source))
        return real(table, cfg, source=source)

    monkeypatch.setattr(prepare, "validate_table", spy)
    return calls


def test_validate_then_ingest_validates_the_source_once(tmp_path: Path, counted: list[str]) -> None:
    """The pipeline's validate step then ingest step: Great Expectations runs once, the table is written."""
    source = write_pair(tmp_path, *raw_slice(ROWS))
    vcfg, dcfg = ValidateConfig(), DataConfig()

    assert prepare.validate_path(source, vcfg, dcfg).success
    table = prepare.ingest(dcfg, source=source, output=tmp_path / "events.parquet", validate_cfg=vcfg)

    assert len(counted) == 1
    assert table.meta.rows == ROWS and read_events(tmp_path / "events.parquet").meta.rows == ROWS


def test_other_settings_or_suites_validate_again(tmp_path: Path, counted: list[str]) -> None:
    source = write_pair(tmp_path, *raw_slice(ROWS))
    suites = tmp_path / "suites"
    shutil.copytree(prepare.suites_dir("expectations"), suites)
    prepare.validate_path(source, ValidateConfig(suites_dir=str(suites)))

    prepare.ingest(DataConfig(), source=source, output=tmp_path / "a.parquet",
                   validate_cfg=ValidateConfig(suites_dir=str(suites), sample_rows=3))
    (suites / "book.json").write_text((suites / "book.json").read_text() + "\n")  # an edited suite
    prepare.ingest(DataConfig(), source=source, output=tmp_path / "b.parquet",
                   validate_cfg=ValidateConfig(suites_dir=str(suites)))

    assert len(counted) == 3


def test_ingest_without_a_prior_validation_still_refuses_bad_data(tmp_path: Path) -> None:
    messages, book = raw_slice(ROWS)
    book.iloc[100, 0], book.iloc[100, 2] = 2_000_000, 1_000_000  # ask below bid: a crossed book
    with pytest.raises(ValidationFailed):
        prepare.ingest(DataConfig(), source=write_pair(tmp_path, messages, book), output=tmp_path / "e.parquet")
    assert not (tmp_path / "e.parquet").exists()


def test_build_feature_set_uses_the_configured_suites(tmp_path: Path) -> None:
    """Regression: build_features validated with a default ValidateConfig(), ignoring validate.suites_dir."""
    events = tmp_path / "events.parquet"
    prepare.ingest(DataConfig(), source=write_pair(tmp_path, *raw_slice(3000)), output=events)
    features = FeaturesConfig(windows=(10,), horizons=(10,))
    with pytest.raises(ConfigError, match="nowhere"):
        prepare.build_feature_set(features, events, tmp_path / "f", ValidateConfig(suites_dir=str(tmp_path / "nowhere")))
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())
    assert prepare.build_feature_set(features, events, tmp_path / "f", ValidateConfig()).meta["rows"] > 0
