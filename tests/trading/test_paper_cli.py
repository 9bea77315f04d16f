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
    assert result.exit_code == 2 and "'martingale' is not one of 'threshold', 'passive', 'rl'" in result.output



def test_trade_with_the_rl_policy_and_none_registered_says_what_to_run(hftpipe_home) -> None:
    result = CliRunner().invoke(main, ["trade", "--paper", "--policy", "rl"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    # one line says what is missing and what to run (MLflow may log its store's creation before it)
    said = [line for line in result.output.splitlines() if "no RL policy is registered" in line]
    assert len(said) == 1 and "as 'hftpipe-rl-policy': run `hftpipe rl train`" in said[0]


def test_trade_with_an_rl_policy_folder_that_holds_none_says_so(hftpipe_home, tmp_path) -> None:
    result = CliRunner().invoke(main, ["trade", "--paper", "--policy", "rl", "--rl-policy", str(tmp_path)])
    assert result.exit_code != 0 and "holds no trained policy" in result.output and "hftpipe rl train" in result.output


def test_rl_policy_option_needs_the_rl_policy(hftpipe_home, tmp_path) -> None:
    result = CliRunner().invoke(main, ["trade", "--paper", "--policy", "passive", "--rl-policy", str(tmp_path)])
    assert result.exit_code != 0 and "--rl-policy needs --policy rl" in result.output
