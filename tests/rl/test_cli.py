"""`hftpipe rl` answers a user's mistake with one clear line and a non-zero status."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hftpipe.cli import main


def test_evaluate_without_a_trained_policy_says_what_to_do(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["rl", "evaluate", "--policy", str(tmp_path / "none")])
    assert res.exit_code != 0
    assert "holds no trained policy" in res.output and "hftpipe rl train" in res.output
    assert "Traceback" not in res.output


def test_train_on_a_missing_file_says_so(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["rl", "train", "--no-track", "--data", str(tmp_path / "x.zip")])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_rl_commands_are_registered() -> None:
    res = CliRunner().invoke(main, ["rl", "--help"])
    assert res.exit_code == 0 and "train" in res.output and "evaluate" in res.output
