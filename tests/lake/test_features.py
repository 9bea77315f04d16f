"""Features per partition on a real Dask cluster equal the single-file path's, column for column."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from hftpipe.config import FeaturesConfig
from hftpipe.data.lobster import load_lobster
from hftpipe.data.market import load_market
from hftpipe.data.schema import write_events
from hftpipe.errors import DataFormatError, PartitionsFailed
from hftpipe.features import build_features, load_feature_set
from hftpipe.features.bars import bar_feature_set
from hftpipe.lake import features_dataset, features_dir, ingest_dataset, read_manifest
from hftpipe.lake.dataset import partition_file

RAW = Path(__file__).resolve().parents[2] / "data" / "raw"
GOOG1 = RAW / "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"
SP500 = RAW / "sp500-1min-2019-11" / "SP500_NOV2019_IDayRVol.csv"
GOOG_KEY = "source=lobster_l1/symbol=GOOG/date=2012-06-21"
SP500_KEY = "source=bars_1min/symbol=SP500/date=2019-11-05_2019-11-08"
CFG = FeaturesConfig()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, dask_client) -> Path:
    root = tmp_path_factory.mktemp("lake")
    ingest_dataset([GOOG1, SP500], root, client=dask_client)
    report = features_dataset(root, CFG, client=dask_client)
    assert sorted(report.written) == [SP500_KEY, GOOG_KEY]
    return root


@pytest.mark.slow
def test_order_book_partition_through_dask_equals_the_single_file_path(lake: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.parquet"
    write_events(load_lobster(GOOG1), events)  # what `hftpipe ingest` writes for this file
    single = build_features(CFG, events, tmp_path / "features")
    from_lake = load_feature_set(features_dir(lake, GOOG_KEY))
    assert_frame_equal(from_lake.frame, single.frame)
    assert_frame_equal(from_lake.frame, load_feature_set(tmp_path / "features").frame)
    lake_meta, single_meta = dict(from_lake.meta), dict(single.meta)
    assert lake_meta.pop("build_id") != single_meta.pop("build_id")
    assert json.loads(json.dumps(lake_meta)) == json.loads(json.dumps(single_meta))


@pytest.mark.slow
def test_bar_partition_through_dask_equals_the_single_file_path(lake: Path) -> None:
    single, _alphas = bar_feature_set(load_market(SP500), group="day")
    from_lake = pd.read_parquet(features_dir(lake, SP500_KEY) / "bar_features.parquet")
    assert_frame_equal(from_lake, single)
    # Windows restart each exchange day: every day's first bar has no 1-bar return.
    first_of_day = from_lake.groupby(from_lake["ts"].dt.tz_convert("America/New_York").dt.date).head(1)
    assert len(first_of_day) == 4 and first_of_day["ret_1"].isna().all()


@pytest.mark.slow
def test_manifest_records_features_and_a_rerun_skips_them(lake: Path, dask_client) -> None:
    manifest = read_manifest(lake)
    entry = manifest["features"][GOOG_KEY]
    assert entry["split"] == "within"  # one day: the row split inside the partition
    assert entry["rows"] == entry["events"] == manifest["partitions"][GOOG_KEY]["rows"]
    assert entry["row_split"]["train"] > entry["row_split"]["val"] > 0
    mtime = (features_dir(lake, GOOG_KEY) / "features.parquet").stat().st_mtime_ns
    report = features_dataset(lake, CFG, client=dask_client)
    assert report.written == [] and sorted(report.unchanged) == [SP500_KEY, GOOG_KEY]
    assert (features_dir(lake, GOOG_KEY) / "features.parquet").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_a_failing_partition_is_listed_and_keep_going_keeps_the_others(lake: Path, tmp_path: Path,
                                                                        dask_client) -> None:
    root = tmp_path / "lake"
    shutil.copytree(lake, root)
    partition_file(root, SP500_KEY).write_bytes(b"not parquet")  # a partition damaged on disk
    with pytest.raises(PartitionsFailed, match=f"{SP500_KEY}: .*--keep-going exits 0"):
        features_dataset(root, CFG, client=dask_client, force=True)
    report = features_dataset(root, CFG, client=dask_client, force=True, keep_going=True)
    assert report.written == [GOOG_KEY]
    assert [f.item for f in report.failed] == [SP500_KEY] and "Parquet" in report.failed[0].reason
    assert SP500_KEY not in read_manifest(root)["features"]


def test_unknown_partition_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="no partition source=x/symbol=Y/date=1 in"):
        features_dataset(tmp_path, CFG, partitions=["source=x/symbol=Y/date=1"], workers=0)


@pytest.mark.slow
def test_local_workers_keep_glibcs_adaptive_mmap_threshold(dask_client) -> None:
    # Dask's default MALLOC_TRIM_THRESHOLD_ made each feature build page-fault ~16x more (runner.py).
    import os

    assert set(dask_client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    assert len(dask_client.scheduler_info()["workers"]) == 2
