"""The batched environment against the trading package's objects on real GOOG events."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.config import Config
from hftpipe.rl.actions import ACTIONS, BUY, FLATTEN, HOLD, QUOTE_ASK, QUOTE_BID, SELL
from hftpipe.rl.day import Day
from hftpipe.rl.env import BatchLobEnv, BatchSim, LobEnv, SimSettings
from hftpipe.rl.policy import AgentPolicy
from hftpipe.trading.backtest import run_backtest
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.risk import RiskEngine

QUOTING = np.array([0.55, 0.01, 0.01, 0.2, 0.2, 0.02, 0.01])
TAKING = np.array([0.55, 0.04, 0.04, 0.15, 0.15, 0.03, 0.04])


def _actions(n: int, seed: int, p: np.ndarray = QUOTING) -> np.ndarray:
    """Random actions, mostly holds and quotes (so quotes rest, queue and fill)."""
    rng = np.random.default_rng(seed)
    return rng.choice(len(ACTIONS), size=n, p=p)


def _backtest(day: Day, cfg: Config, start: int, actions: np.ndarray, seen: dict | None = None):
    settings = SimSettings.from_config(cfg)

    def choose(obs: np.ndarray, i: int) -> int:
        if seen is not None:
            seen[i] = obs
        return int(actions[min(i - start, actions.size - 1)])

    policy = AgentPolicy("replay", choose, day, settings, start=start)
    events = day.events.iloc[start:start + actions.size + 1].reset_index(drop=True)
    t = cfg.trading
    res = run_backtest(events, np.full((len(events), 3), np.nan), policy, RiskEngine(settings.limits),
                       Latency(t.feed_latency_s, t.order_latency_s),
                       Fees(t.maker_fee_per_share, t.taker_fee_per_share, t.fee_bps), bootstrap=0,
                       flatten_at_end=False)
    return res, policy


@pytest.mark.slow
@pytest.mark.parametrize("start,seed,taking", [(12_000, 1, True), (20_000, 2, False), (25_500, 3, False),
                                               (14_000, 4, False)])
def test_fills_and_pnl_equal_the_execution_model(small_day: Day, rl_config: Config, start: int, seed: int,
                                                 taking: bool) -> None:
    n = 3000
    actions = _actions(n, seed, TAKING if taking else QUOTING)
    seen: dict[int, np.ndarray] = {}
    res, policy = _backtest(small_day, rl_config, start, actions, seen)
    assert res.n_fills > 20 and res.maker_fills >= 3  # the slice exercises queues and market orders
    assert (res.risk_state == "HALTED") == taking  # so the loss halt is exercised too
    # the backtest stops asking the policy at the event where the risk engine halts
    halt = policy.i - start if taking else None

    sim = BatchSim(small_day, SimSettings.from_config(rl_config), 1)
    sim.reset_all(np.array([start]), np.array([start + n]))
    pos, equity = [0.0], [0.0]
    np.testing.assert_array_equal(sim.observe()[0], seen[start])
    for a in actions[:-1]:
        sim.step(np.array([a]))
        pos.append(sim.pos[0])
        equity.append(sim.equity[0])
        if sim.halted[0]:
            break
        # the learned policy sees in the backtest exactly what it saw in the environment
        np.testing.assert_array_equal(sim.observe()[0], seen[int(sim.cur[0])])
    # the environment halts (and ends the episode) on the same event
    assert (len(pos) - 1 if sim.halted[0] else None) == halt
    m = len(pos)
    # the backtest's last index holds its end-of-replay flush: compare every event before it
    np.testing.assert_allclose(np.array(pos[:m]), res.position[:m], atol=1e-9)
    np.testing.assert_allclose(np.array(equity[:m]), res.equity_net[:m], atol=1e-6)
    assert sim.n_orders[0] == res.n_orders
    assert sim.n_denied[0] == sum(res.risk_denials.values())


def test_several_envs_step_independently(small_day: Day, rl_config: Config) -> None:
    starts = np.array([12_000, 20_000, 25_500])
    acts = np.stack([_actions(1500, s) for s in (1, 2, 3)])
    sim = BatchSim(small_day, SimSettings.from_config(rl_config), 3)
    sim.reset_all(starts, starts + 1500)
    for k in range(1499):
        sim.step(acts[:, k])
    for e in range(3):
        one = BatchSim(small_day, SimSettings.from_config(rl_config), 1)
        one.reset_all(starts[e:e + 1], starts[e:e + 1] + 1500)
        for k in range(1499):
            one.step(acts[e:e + 1, k])
        assert one.pos[0] == sim.pos[e] and one.equity[0] == pytest.approx(sim.equity[e])


def test_reward_is_the_pnl_change_by_hand(small_day: Day, rl_config: Config) -> None:
    """Buy 100 at market, hold: the reward is the mark change less the taker fee and inventory penalty."""
    cfg = rl_config
    settings = SimSettings.from_config(cfg)
    d = small_day
    start = 15_000
    sim = BatchSim(d, settings, 1)
    sim.reset_all(np.array([start]), np.array([start + 100]))
    rewards, pnls = [], []
    for a in [BUY] + [HOLD] * 30:
        r, p = sim.step(np.array([a]))
        rewards.append(r[0])
        pnls.append(p[0])
    # by hand: the order reaches the exchange after feed + order latency and meets the book then
    arrive = d.times[start] + settings.feed_s + settings.order_s
    j = int(np.searchsorted(d.times, arrive, side="right"))  # first event after the arrival
    book = j - 1
    asks, sizes = d.ask_price[book], d.ask_size[book]
    left, cost = 100.0, 0.0
    for price, size in zip(asks, sizes):
        take = min(left, size)
        cost += take * price
        left -= take
        if left <= 0:
            break
    fee = 100 * cfg.trading.taker_fee_per_share
    k = j - start - 1  # step whose event j books the fill
    assert all(p == 0.0 for p in pnls[:k])
    assert pnls[k] == pytest.approx(-cost - fee + 100 * d.bid_ff[j])
    for step in range(k + 1, 31):
        i = start + step + 1
        assert pnls[step] == pytest.approx(100 * (d.bid_ff[i] - d.bid_ff[i - 1]))
        assert rewards[step] == pytest.approx((pnls[step] - settings.inventory_penalty * 100) * settings.reward_scale)
    assert sim.fees[0] == pytest.approx(fee)


@pytest.mark.slow
def test_no_look_ahead(goog_day: Day, rl_config: Config) -> None:
    """Cutting the future off the day changes no observation and no reward up to the cut."""
    cut = 20_000
    start = 17_000
    acts = _actions(cut - start - 1, 7)
    full = goog_day.cut(40_000)
    short = goog_day.cut(cut)
    out = []
    for day in (full, short):
        stats = (np.zeros(day.features.shape[1]), np.ones(day.features.shape[1]))  # fixed: the split moves with the cut
        sim = BatchSim(day, SimSettings.from_config(rl_config), 1, stats)
        sim.reset_all(np.array([start]), np.array([cut - 1]))
        obs, rew = [sim.observe()], []
        for a in acts[:-1]:
            r, _ = sim.step(np.array([a]))
            rew.append(r)
            obs.append(sim.observe())
        out.append((np.concatenate(obs), np.concatenate(rew)))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_vec_env_is_seeded_and_episodes_stay_in_training(small_day: Day, rl_config: Config) -> None:
    runs = []
    for _ in range(2):
        env = BatchLobEnv(small_day, rl_config, n_envs=4, episode_events=200, seed=5)
        obs = env.reset()
        total = np.zeros(4)
        rng = np.random.default_rng(0)
        for _ in range(450):
            obs, r, _done, _infos = env.step(rng.integers(0, len(ACTIONS), size=4))
            total += r
            assert (small_day.split[env.sim.cur] == 0).all()
        runs.append((obs, total))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_single_env_follows_the_gymnasium_api(small_day: Day, rl_config: Config) -> None:
    from gymnasium.utils.env_checker import check_env

    env = LobEnv(small_day, rl_config, episode_events=100)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0, options={"start": 12_000})
    for a in (QUOTE_BID, QUOTE_ASK, SELL, FLATTEN):
        obs, reward, _terminated, _truncated, _info = env.step(a)
        assert np.isfinite(reward) and obs.shape == env.observation_space.shape
