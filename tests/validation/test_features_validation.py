"""validate_features_frame on features built from a real GOOG slice, and on corrupted copies of it."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import FeaturesConfig, ValidateConfig
from hftpipe.data import load_lobster
from hftpipe.features.build import build_frame
from hftpipe.validation import validate_features_frame
from tests.conftest import REPO
from tests.data.lobster_pairs import raw_slice, write_pair

ROWS = 3000


@functools.lru_cache(maxsize=1)
def _built(folder: str) -> tuple[pd.DataFrame, dict]:
    from pathlib import Path

    messages, book = raw_slice(ROWS)
    table = load_lobster(write_pair(Path(folder), messages, book))
    return build_frame(FeaturesConfig(), table.frame, table.meta.levels, table.meta.to_dict())


@pytest.fixture
def features(tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    frame, meta = _built(str(tmp_path_factory.getbasetemp() / "features_source"))
    return frame.copy(), dict(meta)


def _fails(frame: pd.DataFrame, meta: dict) -> str:
    result = validate_features_frame(frame, meta, ValidateConfig())
    assert not result.success
    return "\n".join(result.summary_lines())


def test_real_features_pass(features) -> None:
    frame, meta = features

    result = validate_features_frame(frame, meta, ValidateConfig())

    assert result.success, "\n".join(result.summary_lines())
    n_feat = len(meta["feature_names"])
    # Every template of expectations/features.json is repeated once per level / horizon / feature.
    per = {None: 1, "level": meta["levels"], "horizon": len(meta["horizons"]), "feature": n_feat}
    suite = json.loads((REPO / "expectations" / "features.json").read_text())
    kinds = [(e.get("meta", {}).get("hftpipe") or {}).get("for_each") for e in suite["expectations"]]
    assert result.checks == sum(per[k] for k in kinds) > 2 * n_feat
    assert result.meta["symbol"] == "GOOG" and result.meta["features"] == n_feat


def test_label_outside_its_set(features) -> None:
    frame, meta = features
    frame.loc[500, "label_k50"] = 3

    out = _fails(frame, meta)
    assert "[features] expect_column_values_to_be_in_set (label_k{h}): 1 unexpected" in out
    assert "row 500: h=50" in out and "label_k50=3" in out


def test_label_defined_where_its_return_is_not(features) -> None:
    frame, meta = features
    last = len(frame) - 1  # the last k rows have no future: ret NaN, label -1
    assert np.isnan(frame.loc[last, "ret_k10"])
    frame.loc[last, "label_k10"] = 1

    out = _fails(frame, meta)
    assert "a label is -1 (undefined) wherever its return is undefined" in out


def test_split_outside_its_set_and_out_of_time_order(features) -> None:
    frame, meta = features
    frame.loc[10, "split"] = 5

    out = _fails(frame, meta)
    assert "[features] expect_column_values_to_be_in_set (split): 1 unexpected" in out
    assert "splits follow event time" in out


def test_nan_and_inf_in_feature_columns(features) -> None:
    frame, meta = features
    name_a, name_b = meta["feature_names"][0], meta["feature_names"][-1]
    frame.loc[42, name_a] = np.nan
    frame.loc[43, name_b] = np.inf

    out = _fails(frame, meta)
    assert "[features] expect_column_values_to_not_be_null ({feature}): 1 unexpected" in out
    assert f"row 42: feature={name_a}" in out
    assert "feature values are finite (no inf)" in out and f"row 43: feature={name_b}" in out


def test_non_positive_mid(features) -> None:
    frame, meta = features
    frame.loc[7, "mid"] = 0.0

    out = _fails(frame, meta)
    assert "[features] expect_column_values_to_be_between (mid): 1 unexpected" in out


def test_missing_feature_column(features) -> None:
    frame, meta = features
    frame = frame.drop(columns=[meta["feature_names"][3]])

    out = _fails(frame, meta)
    assert "expect_table_columns_to_match_set" in out
    assert f"missing column(s): {meta['feature_names'][3]}" in out


def test_meta_keys_may_be_read_off_the_columns(features) -> None:
    frame, meta = features
    minimal = {"rows": len(frame)}  # no levels, horizons or feature names: inferred from the columns

    result = validate_features_frame(frame, minimal, ValidateConfig())

    assert result.success, "\n".join(result.summary_lines())
    assert result.meta["horizons"] == list(meta["horizons"]) and result.meta["features"] == len(meta["feature_names"])


def test_cli_validates_a_feature_set_folder(tmp_path) -> None:
    from tests.validation.conftest import run_cli

    messages, book = raw_slice(ROWS)
    events = tmp_path / "events.parquet"
    assert run_cli("ingest", str(write_pair(tmp_path / "raw", messages, book)), "-o", str(events)).exit_code == 0
    assert run_cli("features", str(events), "-o", str(tmp_path / "features")).exit_code == 0

    good = run_cli("validate", str(tmp_path / "features"))

    assert good.exit_code == 0, good.stdout
    assert good.stdout.startswith("PASSED") and "features " in good.stdout
    meta_path = tmp_path / "features" / "features_meta.json"
    meta = json.loads(meta_path.read_text())
    meta["build_id"] = "another-build"
    meta_path.write_text(json.dumps(meta))

    bad = run_cli("validate", str(tmp_path / "features"))

    assert bad.exit_code == 1
    assert "[structure] expect_readable_feature_set" in bad.stdout and "different builds" in bad.stdout
