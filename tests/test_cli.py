"""The CLI turns a user's mistake into one clear line and an exit status, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner

from hftpipe.cli import main


def test_every_step_has_a_command() -> None:
    names = set(main.commands)
    for command in ("ingest", "validate", "features", "pipeline", "retrain"):
        assert command in names, f"hftpipe {command} is missing"


def test_bad_override_is_one_line_exit_2() -> None:
    result = CliRunner().invoke(main, ["-S", "train.modle=lstm", "features"])
    assert result.exit_code == 2
    assert "unknown key(s) in section 'train': modle" in result.output
    assert "Traceback" not in result.output


def test_missing_data_file_is_one_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["ingest", str(tmp_path / "missing.zip"), "-o", str(tmp_path / "e.parquet")])
    assert result.exit_code == 2
    assert "does not exist" in result.output
    assert "Traceback" not in result.output
