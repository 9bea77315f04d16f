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


def test_trade_with_a_clock_time_horizon_and_no_hold_events_fails_at_start_up_in_one_line(hftpipe_home) -> None:
    result = CliRunner().invoke(main, ["-S", "paper.horizon=1s", "trade", "--paper", "--policy", "threshold"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    said = [line for line in result.output.splitlines() if "hold_events" in line]
    assert len(said) == 1 and "the model's horizon is 1 s of clock time: set trading.hold_events" in said[0]


def test_policies_take_a_clock_time_horizon_only_with_an_explicit_hold() -> None:
    import dataclasses

    import pytest

    from hftpipe.config import Config
    from hftpipe.errors import ConfigError
    from hftpipe.trading.policies import make_policy

    trading = Config().trading
    assert make_policy("threshold", trading, 10).hold_events == 10  # events: the model's k, as before
    assert make_policy("passive", trading, "1s").name == "passive"  # holds nothing: no unit to misread
    with pytest.raises(ConfigError, match=r"horizon is 0.5 s of clock time: set trading.hold_events"):
        make_policy("threshold", trading, "500ms")
    held = make_policy("threshold", dataclasses.replace(trading, hold_events=40), "1s")
    assert held.hold_events == 40


def test_the_trader_says_once_when_signals_are_not_at_the_horizon_it_holds_for(hftpipe_home, caplog) -> None:
    from hftpipe.config import Config
    from hftpipe.contracts import Signal, horizon_fields
    from hftpipe.trading.paper import PaperTrader

    trader = PaperTrader(Config(), client=None)  # type: ignore[arg-type]  # paper.horizon 10, threshold policy

    def signal(horizon: object, version: str = "3") -> Signal:
        return Signal(symbol="GOOG", venue="NASDAQ", seq=1, event_time=1.0, input_publish_time=1.0,
                      publish_time=1.0, probabilities=[0.2, 0.5, 0.3], predicted=1, model_name="m",
                      model_version=version, **horizon_fields(horizon))

    with caplog.at_level("WARNING", logger="hftpipe.trading.paper"):
        trader._check_horizon(signal(10))
        assert not caplog.records
        trader._check_horizon(signal("1s"))
        trader._check_horizon(signal("1s"))
    [record] = caplog.records
    assert "signals of m 3 are at horizon 1 s but the threshold policy holds for paper.horizon=10 events" in \
        record.getMessage()
