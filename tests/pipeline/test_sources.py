"""`hftpipe pipeline run` on several sources refuses a bad list in one line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hftpipe.cli import main
from tests.conftest import lobster_zip


@pytest.mark.parametrize("data,message", [
    (["data/raw/nothing_*.zip"], "data.source: 'data/raw/nothing_*.zip' matches no file"),
    ([str(lobster_zip("GOOG", 1)), str(lobster_zip("GOOG", 10))], "data.source mixes book depths"),
    ([str(lobster_zip("GOOG", 1)), "data/raw/missing.zip"], "data file data/raw/missing.zip does not exist"),
])
def test_bad_sources_fail_in_one_line_and_start_nothing(data: list[str], message: str, hftpipe_home: Path) -> None:
    args = [a for d in data for a in ("--data", d)]
    result = CliRunner().invoke(main, ["pipeline", "run", *args])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (hftpipe_home / "runs").exists()  # no run folder: nothing was started


def test_pipeline_call_keeps_one_source_on_the_single_pipeline() -> None:
    from hftpipe.config import Config
    from hftpipe.pipeline.runner import pipeline_call

    name, args, files = pipeline_call(Config(), str(lobster_zip("GOOG", 1)))
    assert name == "training" and args == {"source": str(lobster_zip("GOOG", 1).resolve())} and len(files) == 1
    name, args, _ = pipeline_call(Config(), [str(lobster_zip("GOOG", 1)), str(lobster_zip("AAPL", 1))])
    assert name == "pooled_training" and [Path(p).name for p in args["sources"]] == [
        "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip", "LOBSTER_SampleFile_AAPL_2012-06-21_1.zip"]
    # the glob of the shipped 1-level files: both, sorted
    _, args, _ = pipeline_call(Config(), "data/raw/LOBSTER_SampleFile_*_2012-06-21_1.zip")
    assert [Path(p).name.split("_")[2] for p in args["sources"]] == ["AAPL", "GOOG"]
