"""The paper trader on a real nats-server: `hftpipe feed replay` of a real LOBSTER file -> `hftpipe signals` ->
`hftpipe trade --paper` -> orders, fills and positions on the bus; the kill switch and a max-loss breach on the
bus; kill -9 and restart without a duplicated or lost fill; the learned rl policy on the bus equals the core."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from hftpipe.contracts import BookUpdate, Fill, Order, PositionUpdate, Signal, encode
from tests.conftest import lobster_zip
from tests.online_fixtures import Service, free_port, read_stream, stream_count

pytestmark = pytest.mark.slow

FILE = lobster_zip("GOOG", 10)
NO_LIMITS = ["risk.max_book_age_s=1000000000000.0", "risk.max_signal_age_s=1000000000000.0",
             "risk.price_band_bps=1000000000000.0",
             "risk.max_orders=0"]


def _sets(*sets: str) -> list[str]:
    return [a for s in sets for a in ("-S", s)]


def _trader(nats_server, home: Path, policy: str, *sets: str) -> Service:
    return Service([*nats_server.overrides(), *_sets("paper.metrics_port=0", *sets), "trade", "--paper",
                    "--policy", policy], home, ready="trader", name="trader")


def _feed(nats_server, home: Path, limit: int, speed: str = "max") -> Service:
    return Service([*nats_server.overrides(), "feed", "replay", str(FILE), "--speed", speed, "--limit", str(limit)],
                   home, ready=None, name="feed")


def _cli(nats_server, home: Path, *args: str) -> str:
    svc = Service([*nats_server.overrides(), *args], home, ready=None, name="cli").start()
    assert svc.wait() == 0, svc.log()
    return svc.log()


def _wait_for(predicate, timeout_s: float, what: str, log=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


def _of(url: str, subject: str, kind: type) -> list:
    return [m for m in read_stream(url, subject) if isinstance(m, kind)]


def _last_pos_seq(url: str) -> int:
    pos = _of(url, "pos.>", PositionUpdate)
    return pos[-1].seq if pos else 0


def _publish(url: str, messages: list, subject_of) -> None:
    import nats

    async def _go() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for m in messages:
            await js.publish(subject_of(m), encode(m))
        await nc.close()

    asyncio.run(_go())


def _check_consistent(url: str) -> tuple[list[Fill], list[PositionUpdate]]:
    """Fill ids 1..K once each; every position message equals the sum of the fills up to its seq."""
    fills = _of(url, "fill.>", Fill)
    ids = [f.fill_id for f in fills]
    assert [i for i, n in Counter(ids).items() if n > 1] == [], "duplicated fill"
    assert sorted(ids) == list(range(1, len(ids) + 1)), "lost fill"
    positions = _of(url, "pos.>", PositionUpdate)
    for p in positions:
        assert p.position == pytest.approx(sum(f.side * f.qty for f in fills if f.seq <= p.seq)), p
    return fills, positions


def test_feed_signals_trader_end_to_end(nats_server, hftpipe_home: Path, tmp_path_factory) -> None:
    import requests

    from hftpipe.data import load_lobster
    from hftpipe.data.schema import book_matrix
    from tests.serving.conftest import WINDOW, make_bundle

    bundle = make_bundle(tmp_path_factory.mktemp("paper") / "bundle",
                         book_matrix(load_lobster(FILE).frame)[:2000])
    limit = 300
    signals = Service([*nats_server.overrides(), *_sets("signals.backlog=all", "signals.reload_interval_s=0"),
                       "signals", "--model", str(bundle)], hftpipe_home, ready="signals", name="signals").start()
    port = free_port()
    # threshold 0: every signal is a trade signal, so the test does not depend on the random model's confidence.
    trader = _trader(nats_server, hftpipe_home, "threshold", *NO_LIMITS, f"paper.metrics_port={port}",
                     "trading.threshold=0.0", "trading.hold_events=1000").start()
    try:
        # Paced (about 6 s), as a live feed is: the decision on book N uses the newest signal that arrived, that
        # of book N-1 or so. At full speed the books would all be handled before the first signal arrives.
        from hftpipe.feeds.replay import load_replay

        times = load_replay(FILE).event_time
        speed = float(times[limit - 1] - times[0]) / 6.0
        assert _feed(nats_server, hftpipe_home, limit, f"{speed:.6f}").start().wait(timeout_s=60) == 0
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= limit and stream_count(nats_server.url, "SIG") >=
                  limit - WINDOW + 1, 90, "the trader to reach the last book", trader.log)
        time.sleep(1.0)
        orders = _of(nats_server.url, "ord.>", Order)
        accepted = [o for o in orders if o.status == "accepted"]
        assert accepted and all(o.signal_seq >= WINDOW for o in accepted)  # no order before the first signal
        assert all(o.policy == "threshold" and o.symbol == "GOOG" for o in orders)
        fills, positions = _check_consistent(nats_server.url)
        assert fills and {f.order_id for f in fills} <= {o.order_id for o in accepted}
        assert abs(positions[-1].position) == 100.0 and positions[-1].risk_state == "ACTIVE"
        assert not math.isnan(positions[-1].mid)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert f"hftpipe_paper_events_in_total{{kind=\"book\"}} {float(limit)}" in metrics
        assert f'hftpipe_paper_orders_total{{status="accepted",symbol="GOOG"}} {float(len(accepted))}' in metrics
        assert 'hftpipe_paper_risk_state{state="ACTIVE"} 1.0' in metrics
        assert f'hftpipe_paper_position{{symbol="GOOG"}} {positions[-1].position}' in metrics
        db = sqlite3.connect(hftpipe_home / "paper" / "paper.sqlite")
        assert db.execute("SELECT count(*) FROM fills").fetchone()[0] == len(fills)
        assert db.execute("SELECT position FROM positions WHERE symbol='GOOG'").fetchone()[0] == \
            positions[-1].position
        assert trader.stop() < 5.0 and trader.proc.returncode == 0
        assert not (hftpipe_home / "run" / "trader.ready").exists()
    finally:
        trader.stop()
        signals.stop()


def _shifted(update: BookUpdate, seq: int, delta: float) -> BookUpdate:
    book = [v + delta if i % 2 == 0 else v for i, v in enumerate(update.book)]  # prices move, sizes stay
    return BookUpdate(venue=update.venue, symbol=update.symbol, seq=seq, event_time=update.event_time + 0.001 * seq,
                      recv_time=time.time(), publish_time=time.time(), levels=update.levels, book=book, event_type=1,
                      price=book[2], size=100.0, direction=1)


def test_risk_halt_stops_orders_before_the_next_event(nats_server, hftpipe_home: Path) -> None:
    trader = _trader(nats_server, hftpipe_home, "passive", *NO_LIMITS).start()
    try:
        assert _feed(nats_server, hftpipe_home, 100).start().wait() == 0
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= 100, 60, "the first 100 books", trader.log)
        assert any(o.status == "accepted" for o in _of(nats_server.url, "ord.>", Order))  # quotes are out
        out = _cli(nats_server, hftpipe_home, "risk", "halt", "--reason", "desk stop", "--actor", "alice")
        assert "ACTIVE -> HALTED" in out
        last = _of(nats_server.url, "md.>", BookUpdate)[-1]
        # The touch moves by a cent on every event: without the halt, each would re-quote.
        _publish(nats_server.url, [_shifted(last, 100 + i, 0.01 * i) for i in range(1, 6)],
                 lambda m: "md.NASDAQ.GOOG")
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= 105, 30, "the books after the halt", trader.log)
        after = [o for o in _of(nats_server.url, "ord.>", Order) if o.seq > 100]
        assert after and {o.status for o in after} == {"cancel"} and {o.reason for o in after} == {"halted"}
        assert {o.seq for o in after} == {101}  # the first event after the halt pulls the quotes, once
        assert _of(nats_server.url, "pos.>", PositionUpdate)[-1].risk_state == "HALTED"
        _cli(nats_server, hftpipe_home, "risk", "resume", "--reason", "all clear", "--actor", "bob")
        _publish(nats_server.url, [_shifted(last, 106, 0.06)], lambda m: "md.NASDAQ.GOOG")
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= 106, 30, "the book after the resume", trader.log)
        assert {o.status for o in _of(nats_server.url, "ord.>", Order) if o.seq == 106} == {"accepted"}
    finally:
        trader.stop()


def test_max_loss_breach_on_the_bus_halts_within_one_event(nats_server, hftpipe_home: Path) -> None:
    from hftpipe import audit

    # Buy 100 at market on the first signal: crossing the spread alone loses more than $1. Then the signals
    # say DOWN: without the halt the policy would sell at once after the fill.
    trader = _trader(nats_server, hftpipe_home, "threshold", *NO_LIMITS, "risk.max_daily_loss=1.0",
                     "trading.hold_events=1000").start()
    try:
        up, down = [0.05, 0.05, 0.9], [0.9, 0.05, 0.05]
        sigs = [Signal(symbol="GOOG", venue="NASDAQ", seq=s, event_time=0.0, input_publish_time=time.time(),
                       publish_time=time.time(), probabilities=up if s <= 3 else down, predicted=2, model_name="m",
                       model_version="1", horizon=10) for s in range(1, 201)]
        _publish(nats_server.url, sigs, lambda m: "sig.GOOG")
        assert _feed(nats_server, hftpipe_home, 200).start().wait() == 0
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= 200, 60, "all books", trader.log)
        fills = _of(nats_server.url, "fill.>", Fill)
        assert len(fills) >= 1
        breach = fills[0].seq  # the fill's event books the loss
        orders = _of(nats_server.url, "ord.>", Order)
        assert [o.status for o in orders if o.seq > breach] == []  # not a single order after it
        assert [o.status for o in orders] == ["accepted"]  # the buy; the sell after the fill never went
        last = _of(nats_server.url, "pos.>", PositionUpdate)[-1]
        assert last.risk_state == "HALTED" and last.position == 100.0 and last.day_pnl < -1.0
        status = _cli(nats_server, hftpipe_home, "risk", "status")
        assert "trading HALTED" in status and "risk-engine" in status and "daily loss" in status
        records = [r for r in audit.open_trail(f"sqlite:///{hftpipe_home / 'audit.db'}").records()
                   if r.action == audit.KILL_SWITCH]
        assert len(records) == 1 and records[0].actor == "risk-engine"
    finally:
        trader.stop()


def test_kill_9_and_restart_recovers_without_duplicate_fills(nats_server, hftpipe_home: Path) -> None:
    from hftpipe.config import Config, TradingConfig
    from hftpipe.trading.execution import Fees, Latency
    from hftpipe.trading.paper_core import PaperCore
    from hftpipe.trading.policies import make_policy
    from hftpipe.trading.risk import RiskEngine, limits_from_config

    limit = 3000
    assert _feed(nats_server, hftpipe_home, limit).start().wait() == 0
    # Passive quotes need no signal: the outcome depends on the books alone, so it can be recomputed exactly.
    sets = (*NO_LIMITS, "paper.batch_max=10", "paper.pull_batch=20", "paper.wall_clock_guard=false")
    trader = _trader(nats_server, hftpipe_home, "passive", *sets).start()
    try:
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= 400, 60, "the first books", trader.log)
        trader.kill9()
        assert _last_pos_seq(nats_server.url) < limit, "finished before the kill: not a mid-stream test"
        trader = _trader(nats_server, hftpipe_home, "passive", *sets).start()
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= limit, 120, "all books", trader.log)
        time.sleep(1.0)  # a duplicate would arrive now
        fills, positions = _check_consistent(nats_server.url)
        assert "resumed GOOG after book seq" in trader.log()
        # The uninterrupted run, in process, on the same books: the same fills and the same final position.
        cfg = Config()
        tcfg: TradingConfig = cfg.trading
        risk = limits_from_config(dataclasses.replace(cfg.risk, max_book_age_s=1e12, max_signal_age_s=1e12,
                                                      price_band_bps=1e12, max_orders=0))
        core = PaperCore(lambda: make_policy("passive", tcfg, 10), RiskEngine(risk),
                         Latency(tcfg.feed_latency_s, tcfg.order_latency_s),
                         Fees(tcfg.maker_fee_per_share, tcfg.taker_fee_per_share, tcfg.fee_bps))
        expected = []
        for update in _of(nats_server.url, "md.>", BookUpdate):
            expected.extend(core.on_book(update).fills)
        assert len(expected) > 0
        assert [(f.fill_id, f.order_id, f.qty, f.price, f.seq) for f in fills] == \
            [(f.fill_id, f.order_id, f.qty, f.price, f.seq) for f in expected]
        assert positions[-1].position == core.symbols["GOOG"].position
        assert positions[-1].seq == limit
    finally:
        trader.stop()


def test_rl_policy_on_the_bus_trades_as_the_core_does(nats_server, hftpipe_home: Path, tmp_path) -> None:
    """`trade --paper --policy rl` on replayed books: the orders and fills on the bus are the in-process core's."""
    from hftpipe.config import load_config
    from hftpipe.rl.agent import load_policy
    from hftpipe.rl.live import LivePolicy
    from hftpipe.trading.execution import Fees, Latency
    from hftpipe.trading.paper_core import PaperCore
    from hftpipe.trading.risk import RiskEngine, limits_from_config
    from tests.rl.tiny import train_tiny

    folder = train_tiny(tmp_path / "policy")
    limit = 600  # the first 100 are the windows' warm-up (the policy holds)
    sets = (*NO_LIMITS, "paper.wall_clock_guard=false")
    assert _feed(nats_server, hftpipe_home, limit).start().wait() == 0
    trader = Service([*nats_server.overrides(), *_sets("paper.metrics_port=0", *sets), "trade", "--paper",
                      "--policy", "rl", "--rl-policy", str(folder)], hftpipe_home, ready="trader",
                     name="trader").start()
    try:
        _wait_for(lambda: _last_pos_seq(nats_server.url) >= limit, 60, "all books", trader.log)
        time.sleep(0.5)
        orders = _of(nats_server.url, "ord.>", Order)
        fills, positions = _check_consistent(nats_server.url)
        assert "rl policy: " + str(folder) in trader.log()
    finally:
        trader.stop()
    cfg = load_config(Path(__file__).resolve().parents[2] / "params.yaml", list(sets))
    t = cfg.trading
    loaded = load_policy(folder)
    core = PaperCore(lambda: LivePolicy.from_loaded(loaded), RiskEngine(limits_from_config(cfg.risk)),
                     Latency(t.feed_latency_s, t.order_latency_s),
                     Fees(t.maker_fee_per_share, t.taker_fee_per_share, t.fee_bps))
    want_orders, want_fills = [], []
    for update in _of(nats_server.url, "md.>", BookUpdate):
        step = core.on_book(update)
        want_orders.extend(step.orders)
        want_fills.extend(step.fills)
    assert {o.policy for o in orders} == {"rl"} and any(o.status == "accepted" for o in orders) and fills
    assert min(o.seq for o in orders) > max(cfg.features.windows)  # nothing during the warm-up
    key = lambda o: (o.seq, o.status, o.order_id, o.side, o.qty, o.price, o.reason)
    assert [key(o) for o in orders] == [key(o) for o in want_orders]
    assert [(f.fill_id, f.order_id, f.qty, f.price, f.seq) for f in fills] == \
        [(f.fill_id, f.order_id, f.qty, f.price, f.seq) for f in want_fills]
    assert positions[-1].position == core.symbols["GOOG"].position
