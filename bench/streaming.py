"""Benchmark: one HTTP request per event (today's path) vs feed -> NATS -> signal service -> subscriber.

One run, one model (params.yaml's train section, random weights: speed does not depend on their values), the
same real GOOG 2012-06-21 10-level book states spread over SYMBOLS symbols:

(a) ``hftpipe serve`` in streaming mode, one V1 request per event from a loop on one keep-alive connection
    (each symbol's window filled first, so every timed request predicts);
(b) the events are published to a real ``nats-server -js`` (loopback, temp store); ``hftpipe signals``
    (one process, one torch thread, ``signals.backlog=all``) turns each into a signal on ``sig.<symbol>``.

Measured: sustained events/s into signals -- for (a) the request loop's rate, for (b) the signal process
draining a backlog of BACKLOG events (first to last signal publish time); then, for (b), the latency from the
feed's publish to the signal's arrival at a subscriber while events are published at a fixed RATE events/s
round-robin over the symbols. Targets (issue 11): (b) >= 5,000 events/s per process, >= 5x (a), p99 <= 3 ms.

    python bench/streaming.py [--backlog 20000] [--paced-seconds 5] [--requests 1000] [--json out.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import asyncio
import http.client
import json
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

import numpy as np
import orjson

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
SYMBOLS = 20
RATE = 1000.0  # events/s for the latency measurement
TARGET_RATE, TARGET_RATIO, TARGET_P99_MS = 5000.0, 5.0, 3.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bundle(book: np.ndarray, folder: Path) -> Path:
    import torch

    from hftpipe.config import load_config
    from hftpipe.features.window import fit_window_stats
    from hftpipe.models.bundle import save_bundle
    from hftpipe.models.nets import build_model

    cfg = load_config(REPO / "params.yaml")
    t, levels = cfg.train.window, book.shape[1] // 4
    torch.manual_seed(0)
    module = build_model(cfg.train.model, levels, t, cfg.train.hidden, 0.0)
    stats = fit_window_stats(book, np.arange(t, len(book) * 7 // 10), t)
    return save_bundle(folder, module, config=cfg.to_dict(), model_name=cfg.train.model, levels=levels, window=t,
                       horizon=cfg.train.horizon, alpha=None, stats=stats, hidden=cfg.train.hidden, dropout=0.0)


class Proc:
    """A subprocess in its own session; ready when ``ready()`` says so; always stopped."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path, ready) -> None:
        self.cmd, self.env, self.log, self.ready = cmd, env, log, ready

    def __enter__(self) -> Self:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[:4]} exited: {self.log.read_text()[-2000:]}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{self.cmd[:4]} not ready: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def http_ready(port: int, path: str):
    def probe() -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False
    return probe


def port_open(port: int):
    def probe() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    return probe


def row_for(rows: list, symbol: int, i: int) -> list[float]:
    return rows[(symbol * 997 + i) % len(rows)]


# ----------------------------------------------------------------------------------------------- (a)

def http_path(bundle: Path, rows: list, t: int, n: int, env: dict[str, str], work: Path) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "hftpipe.cli", "-S", "serve.torch_threads=1", "serve", "--model-uri", str(bundle),
           "--host", "127.0.0.1", "--port", str(port), "--reload-interval", "0"]
    with Proc(cmd, env, work / "serve.log", http_ready(port, "/v2/health/ready")):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())["models"]
        path = f"/v1/models/{models[0]}:predict"

        def post(symbol: int, i: int) -> bytes:
            conn.request("POST", path, body=orjson.dumps({"symbol": f"S{symbol:02d}", "book": row_for(rows, symbol, i)}),
                         headers={"content-type": "application/json"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {body[:200]!r}")
            return body

        for s in range(SYMBOLS):  # fill each symbol's window
            for i in range(t):
                post(s, i)
        lat = np.empty(n)
        t0 = time.perf_counter()
        for k in range(n):
            start = time.perf_counter()
            post(k % SYMBOLS, t + k // SYMBOLS)
            lat[k] = time.perf_counter() - start
        elapsed = time.perf_counter() - t0
        conn.close()
    return {"events_per_s": n / elapsed, "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "events": n}


# ----------------------------------------------------------------------------------------------- (b)

async def publish_backlog(cfg, url: str, rows: list, per_symbol: int, start: int) -> float:
    from hftpipe.bus.connection import connect, ensure_streams
    from hftpipe.feeds.replay import FeedPublisher

    client = await connect(cfg, "bench-feed", url=url, max_pending=20000)
    await ensure_streams(client.js, cfg)
    pubs = [FeedPublisher(client, "BENCH", f"S{s:02d}", max_pending=20000) for s in range(SYMBOLS)]
    for p in pubs:
        p.next_seq = start
    t0 = time.perf_counter()
    for i in range(per_symbol):
        for s, p in enumerate(pubs):
            await p.publish(float(i), row_for(rows, s, i), 10)
    for p in pubs:
        await p.settle(0)
    elapsed = time.perf_counter() - t0
    await client.close()
    return elapsed


async def paced(cfg, url: str, rows: list, seconds: float, start: int) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Publish at RATE events/s round-robin; return feed-publish -> signal-received latencies (s)."""
    import nats

    from hftpipe.bus.connection import connect
    from hftpipe.contracts import Signal, decode
    from hftpipe.feeds.replay import FeedPublisher

    received: list[float] = []
    service_side: list[float] = []  # signal publish - feed publish: the broker hop + the service, no subscriber
    expected_first = start + 60  # the windows are warm: every event gets a signal; skip the first ramp

    async def on_signal(msg) -> None:
        now = time.time()
        sig = decode(msg.data)
        if isinstance(sig, Signal) and sig.seq >= expected_first:
            received.append(now - sig.input_publish_time)
            service_side.append(sig.publish_time - sig.input_publish_time)

    sub_nc = await nats.connect(url)
    await sub_nc.subscribe("sig.>", cb=on_signal)
    client = await connect(cfg, "bench-feed-paced", url=url, max_pending=20000)
    pubs = [FeedPublisher(client, "BENCH", f"S{s:02d}", max_pending=20000) for s in range(SYMBOLS)]
    for p in pubs:
        p.next_seq = start
    n = int(seconds * RATE)
    t0 = time.perf_counter()
    for k in range(n):
        ahead = t0 + k / RATE - time.perf_counter()
        if ahead > 0.0005:
            await asyncio.sleep(ahead)
        s = k % SYMBOLS
        await pubs[s].publish(float(k), row_for(rows, s, start + k // SYMBOLS), 10)
    actual_rate = n / (time.perf_counter() - t0)
    for p in pubs:
        await p.settle(0)
    await asyncio.sleep(1.0)  # the last signals
    await client.close()
    await sub_nc.close()
    expected = n - (expected_first - start) * SYMBOLS
    return np.array(received), np.array(service_side), expected, actual_rate


async def signal_span(url: str, n: int) -> tuple[int, float]:
    """(signals in SIG, first-to-last publish time) once n signals are there."""
    import nats

    from hftpipe.contracts import decode

    nc = await nats.connect(url)
    js = nc.jetstream()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (await js.stream_info("SIG")).state.messages < n:
        await asyncio.sleep(0.2)
    first = decode((await js.get_msg("SIG", seq=1)).data)
    info = await js.stream_info("SIG")
    last = decode((await js.get_msg("SIG", seq=info.state.last_seq)).data)
    await nc.close()
    return info.state.messages, last.publish_time - first.publish_time


def bus_path(bundle: Path, rows: list, t: int, backlog: int, seconds: float, env: dict[str, str],
             work: Path) -> dict:
    from hftpipe.config import BusConfig

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    cfg = BusConfig(port=port, monitor_port=0)
    nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
    per_symbol = backlog // SYMBOLS
    with Proc([nats_bin, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(work / "js")], env,
              work / "nats.log", port_open(port)):
        publish_s = asyncio.run(publish_backlog(cfg, url, rows, per_symbol, 1))
        home = Path(env["HFTPIPE_HOME"])
        ready = home / "run" / "signals.ready"
        sets = [f"bus.port={port}", "bus.monitor_port=0", "signals.metrics_port=0", "signals.backlog=all",
                "signals.reload_interval_s=0", "signals.torch_threads=1"]
        cmd = [sys.executable, "-m", "hftpipe.cli", *[a for s in sets for a in ("-S", s)], "signals", "--model",
               str(bundle)]
        with Proc(cmd, env, work / "signals.log", ready.exists) as sig:
            expected = SYMBOLS * (per_symbol - t + 1)
            count, span = asyncio.run(signal_span(url, expected))
            latencies, service_side, paced_expected, actual_rate = asyncio.run(
                paced(cfg, url, rows, seconds, per_symbol + 1))
            del sig
    return {"events_per_s": (count - 1) / span if span > 0 else float("nan"), "signals": count,
            "expected_signals": expected, "backlog_publish_events_per_s": backlog / publish_s,
            "paced_rate": actual_rate, "paced_signals": len(latencies), "paced_expected": paced_expected,
            "p50_ms": float(np.percentile(latencies, 50) * 1e3) if len(latencies) else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99) * 1e3) if len(latencies) else float("nan"),
            "service_p50_ms": float(np.percentile(service_side, 50) * 1e3) if len(service_side) else float("nan"),
            "service_p99_ms": float(np.percentile(service_side, 99) * 1e3) if len(service_side) else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--requests", type=int, default=1000, help="(a): timed HTTP requests")
    parser.add_argument("--backlog", type=int, default=20000, help="(b): events drained for the throughput")
    parser.add_argument("--paced-seconds", type=float, default=5.0, help="(b): seconds at RATE events/s")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hftpipe-bench-streaming-"))
    os.environ["HFTPIPE_HOME"] = str(work / "home")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    from hftpipe.data import book_matrix, load_lobster

    try:
        book = book_matrix(load_lobster(args.source).frame)[:20_000]
        bundle = make_bundle(book, work / "bundle")
        from hftpipe.models.bundle import load_bundle

        b = load_bundle(bundle)
        print(f"model {b.model_name} T={b.window} L={b.levels} hidden {json.loads((bundle / 'bundle.json').read_text()).get('hidden')}; "
              f"{SYMBOLS} symbols of real GOOG book states; {platform.machine()}, {os.cpu_count()} cores", flush=True)
        rows = book.tolist()
        a = http_path(bundle, rows, b.window, args.requests, env, work)
        print(f"(a) HTTP per event : {a['events_per_s']:8.0f} events/s   p50 {a['p50_ms']:.2f} ms  p99 {a['p99_ms']:.2f} ms",
              flush=True)
        bb = bus_path(bundle, rows, b.window, args.backlog, args.paced_seconds, env, work)
        print(f"(b) NATS -> signals: {bb['events_per_s']:8.0f} events/s   ({bb['signals']} signals of "
              f"{bb['expected_signals']} expected; backlog published at {bb['backlog_publish_events_per_s']:.0f} ev/s)")
        print(f"(b) at {bb['paced_rate']:.0f} events/s over {SYMBOLS} symbols: feed publish -> signal received "
              f"p50 {bb['p50_ms']:.2f} ms  p99 {bb['p99_ms']:.2f} ms  ({bb['paced_signals']}/{bb['paced_expected']} "
              "signals timed)")
        print(f"    of which feed publish -> signal published (broker + service): p50 {bb['service_p50_ms']:.2f} ms  "
              f"p99 {bb['service_p99_ms']:.2f} ms")
        print(f"    load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        ratio = bb["events_per_s"] / a["events_per_s"]
        checks = {
            f"(b) >= {TARGET_RATE:.0f} events/s per signal process": bb["events_per_s"] >= TARGET_RATE,
            f"(b) / (a) = {ratio:.1f}x >= {TARGET_RATIO:.0f}x": ratio >= TARGET_RATIO,
            f"(b) p99 {bb['p99_ms']:.2f} ms <= {TARGET_P99_MS:.0f} ms at {RATE:.0f} events/s": bb["p99_ms"] <= TARGET_P99_MS,
        }
        for text, ok in checks.items():
            print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
        if args.json:
            Path(args.json).write_text(json.dumps({"a": a, "b": bb, "ratio": ratio,
                                                   "checks": {k: bool(v) for k, v in checks.items()}}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
