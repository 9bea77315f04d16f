"""The learned policy live: the incremental observation equals the environment's at every event of a real slice,
and the paper core driven by the rl policy takes the environment's actions and gets its fills."""

from __future__ import annotations

import itertools
import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest

from hftpipe.config import Config
from hftpipe.contracts import BookUpdate, Gap, Signal
from hftpipe.data.schema import book_matrix, levels_of
from hftpipe.rl.actions import ACTIONS, HOLD, QUOTE_BID
from hftpipe.rl.agent import LoadedPolicy
from hftpipe.rl.day import Day, day_from_events
from hftpipe.rl.env import BatchSim, SimSettings, feature_stats
from hftpipe.rl.live import FeatureStream, LivePolicy, builder_for
from hftpipe.trading.execution import Fees, Latency
from hftpipe.trading.paper_core import PaperCore
from hftpipe.trading.risk import RiskEngine, RiskState

N = 6000  # events of the slice (about 2 minutes of GOOG)
QUOTING = np.array([0.55, 0.01, 0.01, 0.2, 0.2, 0.02, 0.01])
TAKING = np.array([0.55, 0.04, 0.04, 0.15, 0.15, 0.03, 0.04])


@pytest.fixture(scope="module")
def events(goog_day: Day) -> pd.DataFrame:
    frame = goog_day.events.iloc[:N].reset_index(drop=True)
    # The bus carries no exchange order ids; the paper core numbers each event -seq. Give the env the same ids.
    frame["order_id"] = -(np.arange(len(frame)) + 1)
    return frame


@pytest.fixture(scope="module")
def probs() -> np.ndarray:
    p = np.random.default_rng(3).dirichlet([1.0, 1.0, 1.0], size=N)
    p[:80] = np.nan  # the classifier's first window is not full yet
    return p


def _day(events: pd.DataFrame, cfg: Config, goog_day: Day, probs: np.ndarray | None) -> Day:
    return day_from_events(events, cfg, goog_day.symbol, goog_day.date, goog_day.session, probs)


def _updates(events: pd.DataFrame) -> list[BookUpdate]:
    levels = levels_of(events)
    mat = book_matrix(events, levels)
    return [BookUpdate(venue="NASDAQ", symbol="GOOG", seq=i + 1, event_time=float(r.time), recv_time=0.0,
                       publish_time=0.0, levels=levels, book=mat[i].tolist(), event_type=int(r.type),
                       price=float(r.price), size=float(r.size), direction=int(r.direction))
            for i, r in enumerate(events.itertuples(index=False))]


def _signal(seq: int, p: np.ndarray, t: float) -> Signal:
    return Signal(symbol="GOOG", venue="NASDAQ", seq=seq, event_time=t, input_publish_time=0.0, publish_time=0.0,
                  probabilities=p.tolist(), predicted=int(np.argmax(p)), model_name="m", model_version="1",
                  horizon=10)


def _meta(cfg: Config, day: Day, stats: tuple[np.ndarray, np.ndarray]) -> dict:
    return {"algo": "ppo", "feature_names": day.feature_names, "feature_mean": stats[0].tolist(),
            "feature_std": stats[1].tolist(), "with_probs": day.probs is not None, "session": list(day.session),
            "config": cfg.to_dict()}


def _network(obs_dim: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """A deterministic MLP with random weights: its greedy actions vary with the observation."""
    rng = np.random.default_rng(seed)
    sizes = [obs_dim, 32, 32, len(ACTIONS)]
    return [(rng.normal(0, 1.0 / math.sqrt(a), (a, b)).astype(np.float32), rng.normal(0, 0.3, b).astype(np.float32),
             "tanh" if k < 2 else "") for k, (a, b) in enumerate(itertools.pairwise(sizes))]


def _core(cfg: Config, make) -> PaperCore:
    t = cfg.trading
    return PaperCore(make, RiskEngine(SimSettings.from_config(cfg).limits), Latency(t.feed_latency_s, t.order_latency_s),
                     Fees(t.maker_fee_per_share, t.taker_fee_per_share, t.fee_bps))


def _run_core(core: PaperCore, events: pd.DataFrame, probs: np.ndarray | None):
    """Replay the slice through the core (each event's signal delivered before its book); per-event state."""
    times = events["time"].to_numpy()
    pos, fees, n_fills, denied, accepted = [], [], [], 0, 0
    for i, u in enumerate(_updates(events)):
        if probs is not None and np.isfinite(probs[i]).all():
            core.on_signal(_signal(u.seq, probs[i], float(times[i])))
        step = core.on_book(u)
        st = core.symbols["GOOG"]
        pos.append(st.position)
        fees.append(st.fees)
        n_fills.append(st.n_fills)
        denied += sum(o.status == "denied" for o in step.orders)
        accepted += sum(o.status == "accepted" for o in step.orders)
    return np.array(pos), np.array(fees), np.array(n_fills), denied, accepted


def _run_env(day: Day, cfg: Config, stats, start: int, choose) -> dict:
    """The environment from event ``start`` to the slice's end (or its halt): observations, actions, state."""
    sim = BatchSim(day, SimSettings.from_config(cfg), 1, stats)
    sim.reset_all(np.array([start]), np.array([len(day) - 1]))
    out = {"obs": [], "actions": [], "pos": [], "fees": [], "n_fills": []}
    while sim.cur[0] < len(day) - 1 and not sim.halted[0]:
        obs = sim.observe()[0]
        a = int(choose(obs))
        out["obs"].append(obs)
        out["actions"].append(a)
        sim.step(np.array([a]))
        out["pos"].append(sim.pos[0])
        out["fees"].append(sim.fees[0])
        out["n_fills"].append(int(sim.n_fills[0]))
    out.update(halted=bool(sim.halted[0]), n_orders=int(sim.n_orders[0]), n_denied=int(sim.n_denied[0]))
    return out


def test_feature_stream_equals_the_batch_features_row_for_row(events: pd.DataFrame, rl_config: Config,
                                                             goog_day: Day) -> None:
    day = _day(events, rl_config, goog_day, None)
    stream = FeatureStream(rl_config.rl.levels, rl_config.features.windows)
    assert stream.names == day.feature_names
    rows = np.array([stream.update(u.event_time, u.book, u.event_type, u.size, u.direction)
                     for u in _updates(events)])
    # the same operations in the same order: the same floating-point numbers, warm-up rows included
    np.testing.assert_array_equal(rows, day.features)
    # after a reset (a feed gap) the stream starts over as a day that begins there
    k = 4000
    stream.reset()
    rest = np.array([stream.update(u.event_time, u.book, u.event_type, u.size, u.direction)
                     for u in _updates(events)[k:]])
    later = _day(events.iloc[k:].reset_index(drop=True), rl_config, goog_day, None)
    np.testing.assert_array_equal(rest, later.features)


@pytest.mark.parametrize("with_probs,p_actions,seed", [(False, QUOTING, 1), (True, TAKING, 2)])
def test_live_observation_equals_the_env_at_every_event(events: pd.DataFrame, probs: np.ndarray, rl_config: Config,
                                                        goog_day: Day, with_probs: bool, p_actions: np.ndarray,
                                                        seed: int) -> None:
    """Random actions through both: what the live policy observes is what the environment shows, every step."""
    cfg = rl_config
    day = _day(events, cfg, goog_day, probs if with_probs else None)
    stats = feature_stats(day)
    warm = max(cfg.features.windows)  # the live policy decides from here (the env never starts earlier)
    actions = np.random.default_rng(seed).choice(len(ACTIONS), size=N, p=p_actions)
    seen: list[np.ndarray] = []

    def replay(obs: np.ndarray) -> int:
        seen.append(obs)
        return int(actions[len(seen) - 1])

    meta = _meta(cfg, day, stats)
    core = _core(cfg, lambda: LivePolicy(replay, builder_for(cfg, meta)))
    pos, fees, n_fills, denied, _ = _run_core(core, events, probs if with_probs else None)
    counter = iter(range(N))
    env = _run_env(day, cfg, stats, warm, lambda obs: int(actions[next(counter)]))
    m = len(env["obs"])
    assert m > 500 and (env["halted"] or m == N - 1 - warm)
    # the core stops deciding where the env halts; else it also decides on the last event, which the env does not
    assert len(seen) == m + (0 if env["halted"] else 1)
    obs = np.array(seen[:m])
    np.testing.assert_array_equal(obs, np.array(env["obs"]))  # exact: the same operations on the same numbers
    # the state part moved: positions, quotes and queues were exercised, not only the features
    f = len(day.feature_names) + (3 if with_probs else 0)
    assert np.abs(obs[:, f]).max() > 0 and obs[:, f + 1].any() and obs[:, f + 4].max() > 0
    end = warm + len(env["pos"])
    np.testing.assert_allclose(pos[warm + 1:end + 1], env["pos"], atol=1e-9)
    np.testing.assert_allclose(fees[warm + 1:end + 1], env["fees"], atol=1e-9)
    assert n_fills[end] == env["n_fills"][-1] > 10
    assert denied == env["n_denied"]


@pytest.mark.parametrize("with_probs", [False, True])
def test_the_paper_core_with_the_rl_policy_trades_like_the_env(events: pd.DataFrame, probs: np.ndarray,
                                                               rl_config: Config, goog_day: Day,
                                                               with_probs: bool) -> None:
    """A deterministic network: the same actions at every event, the same fills, positions and risk denials."""
    cfg = rl_config
    day = _day(events, cfg, goog_day, probs if with_probs else None)
    stats = feature_stats(day)
    meta = _meta(cfg, day, stats)
    net = LoadedPolicy(None, meta, _network(len(day.feature_names) + 7 + 3 * with_probs, 5))
    chosen: list[int] = []

    def choose(obs: np.ndarray) -> int:
        chosen.append(net.choose(obs))
        return chosen[-1]

    core = _core(cfg, lambda: LivePolicy(choose, builder_for(cfg, meta)))
    pos, fees, n_fills, denied, accepted = _run_core(core, events, probs if with_probs else None)
    warm = max(cfg.features.windows)
    env = _run_env(day, cfg, stats, warm, net.choose)
    m = len(env["actions"])
    assert len(chosen) == m + (0 if env["halted"] else 1)
    assert chosen[:m] == env["actions"]  # the same action at every event
    assert core.symbols["GOOG"].policy.actions[HOLD] >= warm  # the warm-up held without asking the network
    assert len(set(chosen)) >= 3  # the network's choices vary, so the comparison means something
    end = warm + m
    np.testing.assert_allclose(pos[warm + 1:end + 1], env["pos"], atol=1e-9)
    np.testing.assert_allclose(fees[warm + 1:end + 1], env["fees"], atol=1e-9)
    assert n_fills[end] == env["n_fills"][-1] > 0
    # every order the env's risk check allowed or refused, the core's risk engine did too (the last event's
    # decision, which the env never makes, may add one accepted order)
    assert denied == env["n_denied"] and accepted - env["n_orders"] in ((0,) if env["halted"] else (0, 1))


def test_kill_switch_halts_the_rl_policy_and_its_windows_keep_up(events: pd.DataFrame, rl_config: Config,
                                                                  goog_day: Day) -> None:
    day = _day(events, rl_config, goog_day, None)
    meta = _meta(rl_config, day, feature_stats(day))
    core = _core(rl_config, lambda: LivePolicy(lambda obs: QUOTE_BID, builder_for(rl_config, meta)))
    ups = _updates(events)
    for u in ups[:150]:
        core.on_book(u)
    st = core.symbols["GOOG"]
    assert st.execution.open_orders()  # the policy quotes
    core.risk.halt("operator", "test")
    step = core.on_book(ups[150])
    assert core.risk.state is RiskState.HALTED
    assert step.orders and all(o.status == "cancel" and o.reason == "halted" for o in step.orders)
    for u in ups[151:250]:
        assert not core.on_book(u).orders  # nothing is decided while halted ...
    assert st.policy.builder.stream.n == 250  # ... but every book reached the policy's windows
    core.risk.resume("operator", "test")
    step = core.on_book(ups[250])
    assert [o.status for o in step.orders] == ["accepted"]


def test_snapshot_leaves_the_network_out_and_restore_continues_exactly(events: pd.DataFrame, rl_config: Config,
                                                                       goog_day: Day) -> None:
    day = _day(events, rl_config, goog_day, None)
    meta = _meta(rl_config, day, feature_stats(day))
    net = LoadedPolicy(None, meta, _network(len(day.feature_names) + 7, 9))
    ups = _updates(events)[:3000]

    def make() -> LivePolicy:
        return LivePolicy.from_loaded(net, "v1")

    whole = _core(rl_config, make)
    for u in ups:
        whole.on_book(u)
    first = _core(rl_config, make)
    for u in ups[:1500]:
        first.on_book(u)
    blob = first.snapshot()
    assert b"choose" in blob and len(blob) < 200_000
    assert pickle.loads(blob)[0]["GOOG"].policy.choose is None  # the weights are not pickled with each batch
    second = _core(rl_config, make)
    second.restore(blob)
    for u in ups[1500:]:
        second.on_book(u)
    a, b = whole.symbols["GOOG"], second.symbols["GOOG"]
    assert a.n_fills > 0 and (a.position, a.fees, a.n_fills) == (b.position, b.fees, b.n_fills)
    np.testing.assert_array_equal(a.policy.actions, b.policy.actions)


def test_a_gap_restarts_the_windows(events: pd.DataFrame, rl_config: Config, goog_day: Day) -> None:
    day = _day(events, rl_config, goog_day, None)
    meta = _meta(rl_config, day, feature_stats(day))
    core = _core(rl_config, lambda: LivePolicy(lambda obs: HOLD, builder_for(rl_config, meta)))
    for u in _updates(events)[:200]:
        core.on_book(u)
    policy = core.symbols["GOOG"].policy
    assert policy.builder.stream.warm
    core.on_gap(Gap(venue="NASDAQ", symbol="GOOG", next_seq=201, reason="test", publish_time=0.0))
    assert policy.builder.stream.n == 0 and not policy.builder.stream.warm


@pytest.mark.slow
def test_trader_loads_the_champion_else_the_newest_registered_policy(tmp_path) -> None:
    from hftpipe.cli.trade import rl_policy_factory
    from hftpipe.errors import RegistryError
    from hftpipe.registry.rl import register_policy, registered_policy_uri
    from tests.rl.tiny import tiny_config, train_tiny

    cfg = tiny_config()
    folder = train_tiny(tmp_path / "policy", cfg)
    with pytest.raises(RegistryError, match="no RL policy is registered .*run `hftpipe rl train`"):
        registered_policy_uri(cfg)

    # Hand-made evaluation reports (only the gate reads them here): the first fails the gate, the second passes.
    def report(learned: float, low: float) -> dict:
        return {"policies": {"learned": {"net_pnl": learned, "net_pnl_interval": {"low": low}},
                             "flat": {"net_pnl": 0.0, "net_pnl_interval": {"low": 0.0}}},
                "best_simple": "flat", "data": {"symbol": "GOOG", "scope": "test"}}

    assert register_policy(cfg, folder, report(-5.0, -9.0))["alias"] == "challenger"
    name = cfg.rl.model_name
    assert registered_policy_uri(cfg) == f"models:/{name}/1"  # no champion: the newest version
    make, uri = rl_policy_factory(cfg, None)
    assert uri == f"models:/{name}/1" and make().name == "rl"
    assert register_policy(cfg, folder, report(5.0, 1.0))["alias"] == "champion"
    make, uri = rl_policy_factory(cfg, None)
    assert uri == f"models:/{name}@champion"
    policy = make()
    assert policy.model_id == uri
    assert policy.builder.stream.names == json.loads((folder / "policy.json").read_text())["feature_names"]
