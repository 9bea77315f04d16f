"""`hftpipe trade`: the paper flag is required; a bad policy is refused before anything starts."""

from __future__ import annotations

from click.testing import CliRunner

from hftpipe.cli import main


def test_trade_without_paper_says_what_to_run(hftpipe_home) -> None:
    result = CliRunner().invoke(main, ["trade"])
    assert result.exit_code != 0
    assert "only paper trading exists: run `hftpipe trade --paper`" in result.output


def test_trade_refuses_an_unknown_policy(hftpipe_home) -> None:
    result = CliRunner().invoke(main, ["trade", "--paper", "--policy", "martingale"])
    assert result.exit_code == 2 and "'martingale' is not one of 'threshold', 'passive'" in result.output

