"""Benchmark: our KServe predictor vs ``mlflow models serve`` vs the in-process forward pass (the floor).

One run, one registered model, the same inputs for every server: real GOOG 2012-06-21 10-level book
windows. For each target it measures p50/p99 latency of sequential requests and the throughput with 1, 4
and 16 concurrent keep-alive clients, then prints the ratios against the targets:

- throughput of our predictor (window mode, V1) >= 5x ``mlflow models serve`` at 4 clients;
- streaming-mode p99 <= 2x the in-process floor's p99 + 1 ms.

Targets: (a) ``hftpipe serve`` in window mode (V1 and V2) and streaming mode (V1 and V2), (b)
``mlflow models serve -m models:/NAME@champion --env-manager local -h 127.0.0.1``, (c)
``ModelBundle.predict_proba`` on one window in this process, and (d) a do-nothing ``kserve.Model`` behind
the same server set-up, sent the same window V1 bodies: KServe's own per-request cost, which bounds (a).
Servers run one at a time on 127.0.0.1, one worker, one torch thread; every loop is bounded by a request
count. Without ``--model-uri`` a fresh model (``train.model``/``train.window``/``train.hidden`` of
params.yaml, random weights: latency does not depend on their values) is registered in a temporary
HFTPIPE_HOME.

    python bench/serving.py [--model-uri models:/NAME@champion] [--requests 1000] [--json out.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import http.client
import json
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import orjson
import psutil

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
CLIENTS = (1, 4, 16)
BENCH_MODEL = "bench-lob"
THROUGHPUT_TARGET = 5.0
NOOP = "kserve do-nothing model"
JSON_HEADERS = {"content-type": "application/json"}


# ----------------------------------------------------------------------------------------------- clients

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP/1.1 connection; the same (cheap) client for every server."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes) -> bytes:
        self.conn.request("POST", path, body=body, headers=JSON_HEADERS)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path} -> {response.status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


@dataclass
class Target:
    """How to ask one server: a path and the request body for (client, request number)."""

    name: str
    path: str
    body: Callable[[int, int], bytes]
    prime: Callable[[Client, int], None] | None = None  # per-client set-up (streaming: fill the window)


@dataclass
class Result:
    name: str
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # CPU time of the serving process tree per sequential request: robust to a busy machine
    throughput: dict[int, float] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (mlflow serve forks uvicorn)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def sequential(port: int, target: Target, n: int, warmup: int, pid: int) -> tuple[np.ndarray, float]:
    """Latencies (ms) of ``n`` sequential requests on one connection after ``warmup`` unmeasured ones,
    and the server's CPU ms per request over them."""
    client = Client(port)
    try:
        if target.prime:
            target.prime(client, 0)
        for i in range(warmup):
            client.post(target.path, target.body(0, i))
        out = np.empty(n)
        cpu0 = cpu_seconds(pid)
        for i in range(n):
            body = target.body(0, warmup + i)
            start = time.perf_counter()
            client.post(target.path, body)
            out[i] = (time.perf_counter() - start) * 1e3
        return out, (cpu_seconds(pid) - cpu0) / n * 1e3
    finally:
        client.close()


def concurrent(port: int, target: Target, clients: int, total: int) -> float:
    """Requests per second with ``clients`` threads sharing ``total`` requests (each its own connection)."""
    per_client = max(1, total // clients)
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(c: int) -> None:
        client = Client(port)
        try:
            if target.prime:
                target.prime(client, c)
            bodies = [target.body(c, i) for i in range(per_client)]
            barrier.wait()
            for body in bodies:
                client.post(target.path, body)
        except BaseException as exc:  # noqa: BLE001 - reported after the join; aborting frees the others
            errors.append(exc)
            barrier.abort()
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{target.name} with {clients} clients failed: {errors[0]}")
    return per_client * clients / elapsed


def measure(port: int, target: Target, n: int, total: int, pid: int) -> Result:
    lat, cpu_ms = sequential(port, target, n, warmup=max(10, n // 10), pid=pid)
    result = Result(target.name, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), cpu_ms)
    for c in CLIENTS:
        result.throughput[c] = concurrent(port, target, c, total)
    print(f"  {target.name}: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, cpu {cpu_ms:.2f} ms/req, "
          + ", ".join(f"{c}c {r:.0f}/s" for c, r in result.throughput.items()), flush=True)
    return result


def floor(bundle, windows: np.ndarray, n: int, total: int) -> Result:
    """The in-process forward pass (preprocessing included) on one window: no HTTP, no JSON."""
    for i in range(20):
        bundle.predict_proba(windows[i % len(windows)][None])
    lat = np.empty(n)
    cpu0 = time.process_time()
    for i in range(n):
        w = windows[i % len(windows)][None]
        start = time.perf_counter()
        bundle.predict_proba(w)
        lat[i] = (time.perf_counter() - start) * 1e3
    cpu_ms = (time.process_time() - cpu0) / n * 1e3
    result = Result("in-process forward (floor)", float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                    cpu_ms)
    for c in CLIENTS:
        per = max(1, total // c)
        barrier = threading.Barrier(c + 1)

        def work(k: int, per: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            for i in range(per):
                bundle.predict_proba(windows[(k + i) % len(windows)][None])

        threads = [threading.Thread(target=work, args=(k, per, barrier), daemon=True) for k in range(c)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        result.throughput[c] = per * c / (time.perf_counter() - start)
    print(f"  {result.name}: p50 {result.p50_ms:.3f} ms, p99 {result.p99_ms:.3f} ms", flush=True)
    return result


# ----------------------------------------------------------------------------------------------- servers

class Server:
    """A server subprocess on 127.0.0.1, ready when ``probe`` answers 200; always stopped."""

    def __init__(self, cmd: list[str], port: int, probe: str, env: dict[str, str], log: Path) -> None:
        self.cmd, self.port, self.probe, self.env, self.log = cmd, port, probe, env, log

    def __enter__(self) -> Self:
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.probe)
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
                conn.close()
            except OSError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"{self.cmd[0]} not ready after 180 s: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            # Its own session: mlflow serve runs uvicorn in a child process, stop the whole group.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


# ----------------------------------------------------------------------------------------------- set-up

def register_bench_model(book: np.ndarray, work: Path) -> str:
    """Build a model like params.yaml's train section, register it, make it champion; return its URI."""
    import mlflow
    import torch

    from hftpipe.config import load_config
    from hftpipe.features.window import fit_window_stats
    from hftpipe.models.bundle import save_bundle
    from hftpipe.models.nets import build_model
    from hftpipe.registry.pyfunc import log_bundle_model
    from hftpipe.registry.tracker import client, ensure_experiment, fluent_store

    cfg = load_config(REPO / "params.yaml")
    t, levels = cfg.train.window, book.shape[1] // 4
    torch.manual_seed(0)
    module = build_model(cfg.train.model, levels, t, cfg.train.hidden, 0.0)
    stats = fit_window_stats(book, np.arange(t, len(book) * 7 // 10), t)
    folder = save_bundle(work / "bundle", module, config=cfg.to_dict(), model_name=cfg.train.model, levels=levels,
                         window=t, horizon=cfg.train.horizon, alpha=None, stats=stats, hidden=cfg.train.hidden,
                         dropout=0.0)
    mc = client()
    run_id = mc.create_run(ensure_experiment(mc, "bench")).info.run_id
    with fluent_store():
        info = log_bundle_model(folder, run_id)
        version = mlflow.register_model(info.model_uri, BENCH_MODEL).version
    mc.set_terminated(run_id)
    mc.set_registered_model_alias(BENCH_MODEL, "champion", str(version))
    return f"models:/{BENCH_MODEL}@champion"


def serve_noop(port: int, name: str) -> None:
    """Serve a ``kserve.Model`` that answers every request with a constant, with hftpipe serve's server
    set-up (loopback, body limit, uvloop, no access log): the cost of KServe itself per request."""
    import torch

    torch.set_num_threads(1)
    from hftpipe.serving._kserve import kserve
    from hftpipe.serving.server import HostModelServer, quiet_kserve

    class Noop(kserve.Model):
        def __init__(self) -> None:
            super().__init__(name, return_response_headers=True)
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None) -> bytes:
            response_headers["content-type"] = "application/json"
            return b'{"predictions":[]}'

    quiet_kserve()
    HostModelServer(host="127.0.0.1", max_body_bytes=16 << 20, http_port=port, enable_grpc=False, workers=1,
                    enable_latency_logging=False, enable_docs_url=False).start([Noop()])


def table(results: list[Result]) -> str:
    head = "| target | p50 ms | p99 ms | CPU ms/req | " + " | ".join(f"req/s @{c}" for c in CLIENTS) + " |"
    rows = [head, "|" + "---|" * (4 + len(CLIENTS))]
    for r in results:
        rows.append(f"| {r.name} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.cpu_ms:.2f} | "
                    + " | ".join(f"{r.throughput[c]:.0f}" for c in CLIENTS) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-uri", help="benchmark this registered model (default: register a fresh one)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="LOBSTER file for the input windows")
    parser.add_argument("--requests", type=int, default=1000,
                        help="sequential requests per target (a p99 of fewer is a handful of outliers)")
    parser.add_argument("--throughput-requests", type=int, default=2000,
                        help="requests per concurrency level (fewer last a fraction of a second: noisy)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--serve-noop", nargs=2, metavar=("PORT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_noop:
        serve_noop(int(args.serve_noop[0]), args.serve_noop[1])
        return 0

    work = Path(tempfile.mkdtemp(prefix="hftpipe-bench-serving-"))
    if not args.model_uri:
        os.environ["HFTPIPE_HOME"] = str(work / "home")  # a private registry for the fresh model
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    import torch

    torch.set_num_threads(1)
    from hftpipe import paths
    from hftpipe.data import book_matrix, load_lobster
    from hftpipe.models.bundle import load_bundle
    from hftpipe.registry import resolve_model

    try:
        book = book_matrix(load_lobster(args.source).frame)[:20_000]
        uri = args.model_uri or register_bench_model(book, work)
        bundle_dir, name, version = resolve_model(uri)
        bundle = load_bundle(bundle_dir)
        t, cols = bundle.window, 4 * bundle.levels
        if book.shape[1] != cols:
            raise SystemExit(f"{args.source} has {book.shape[1] // 4} levels; the model takes {bundle.levels}")
        rng = np.random.default_rng(0)
        ends = np.sort(rng.choice(np.arange(t, len(book)), size=256, replace=False))
        windows = np.stack([book[e - t + 1:e + 1] for e in ends])
        print(f"model {name} version {version}: {bundle.model_name}, T={t}, L={bundle.levels}; "
              f"{len(windows)} real windows from {Path(args.source).name}; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", flush=True)

        v1_window = [orjson.dumps({"instances": [w.tolist()]}) for w in windows]
        v2_window = [orjson.dumps({"inputs": [{"name": "windows", "shape": [1, t, cols], "datatype": "FP64",
                                               "data": w.ravel().tolist()}]}) for w in windows]
        mlflow_window = [orjson.dumps({"inputs": [w.tolist()]}) for w in windows]
        rows = book.tolist()

        def v1_stream(c: int, i: int) -> bytes:
            return orjson.dumps({"symbol": f"S{c}", "book": rows[(c * 997 + t + i) % len(rows)]})

        def v2_stream(c: int, i: int) -> bytes:
            return orjson.dumps({"parameters": {"symbol": f"V{c}"},
                                 "inputs": [{"name": "book", "shape": [cols], "datatype": "FP64",
                                             "data": rows[(c * 997 + t + i) % len(rows)]}]})

        def primer(path: str, make: Callable[[int, int], bytes]) -> Callable[[Client, int], None]:
            def prime(client: Client, c: int) -> None:  # fill the symbol's window: every timed answer predicts
                for i in range(-t, 0):
                    client.post(path, make(c, i))
            return prime

        results: list[Result] = []
        print("in-process:", flush=True)
        results.append(floor(bundle, windows, args.requests, args.throughput_requests))

        env = {**os.environ, "HFTPIPE_HOME": str(paths.home()), "OMP_NUM_THREADS": "1"}
        port = free_port()
        cmd = [sys.executable, "-m", "hftpipe.cli", "-S", "serve.torch_threads=1", "serve", "--model-uri", uri,
               "--host", "127.0.0.1", "--port", str(port)]
        v1 = f"/v1/models/{name}:predict"
        v2 = f"/v2/models/{name}/infer"
        print("hftpipe serve:", flush=True)
        with Server(cmd, port, "/v2/health/ready", env, work / "serve.log") as server:
            check = Client(port)
            got = orjson.loads(check.post(v1, v1_window[0]))["predictions"][0]["probabilities"]
            check.close()
            np.testing.assert_allclose(got, bundle.predict_proba(windows[0])[0], rtol=1e-9)
            n = len(windows)
            for target in (
                Target("predictor window V1", v1, lambda c, i: v1_window[(c * 31 + i) % n]),
                Target("predictor window V2", v2, lambda c, i: v2_window[(c * 31 + i) % n]),
                Target("predictor streaming V1", v1, v1_stream, primer(v1, v1_stream)),
                Target("predictor streaming V2", v2, v2_stream, primer(v2, v2_stream)),
            ):
                results.append(measure(port, target, args.requests, args.throughput_requests, server.proc.pid))

        port = free_port()
        print("kserve do-nothing model:", flush=True)
        with Server([sys.executable, str(Path(__file__).resolve()), "--serve-noop", str(port), name], port,
                    "/v2/health/ready", env, work / "noop.log") as server:
            results.append(measure(port, Target(NOOP, v1, lambda c, i: v1_window[(c * 31 + i) % n]),
                                   args.requests, args.throughput_requests, server.proc.pid))

        mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        port = free_port()
        # mlflow runs `uvicorn` from PATH: put this interpreter's bin folder (the venv) first.
        env = {**env, "MLFLOW_TRACKING_URI": paths.mlflow_tracking_uri(),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
        cmd = [mlflow_bin, "models", "serve", "-m", f"models:/{name}@champion" if "@" in uri else uri,
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        print("mlflow models serve:", flush=True)
        with Server(cmd, port, "/ping", env, work / "mlflow.log") as server:
            check = Client(port)
            got = orjson.loads(check.post("/invocations", mlflow_window[0]))["predictions"][0]
            check.close()
            np.testing.assert_allclose(got, bundle.predict_proba(windows[0])[0], rtol=1e-9)
            results.append(measure(port, Target("mlflow models serve", "/invocations",
                                                lambda c, i: mlflow_window[(c * 31 + i) % len(windows)]),
                                   args.requests, args.throughput_requests, server.proc.pid))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    by = {r.name: r for r in results}
    mlf, flo = by["mlflow models serve"], by["in-process forward (floor)"]
    print()
    print(table(results))
    print()
    ratios = {}
    for name_ in ("predictor window V1", "predictor window V2", "predictor streaming V1"):
        ratios[f"{name_} / mlflow @4"] = by[name_].throughput[4] / mlf.throughput[4]
        # CPU per request: what throughput would be on idle dedicated cores, whatever else runs here.
        ratios[f"mlflow CPU ms/req / {name_}"] = mlf.cpu_ms / by[name_].cpu_ms
    # What KServe alone allows: a model that does nothing, against mlflow serving the real one.
    ratios[f"{NOOP} / mlflow @4"] = by[NOOP].throughput[4] / mlf.throughput[4]
    ratios[f"mlflow CPU ms/req / {NOOP}"] = mlf.cpu_ms / by[NOOP].cpu_ms
    for k, v in ratios.items():
        print(f"{k}: {v:.1f}x")
    stream = by["predictor streaming V1"]
    bound = 2 * flo.p99_ms + 1.0
    checks = {
        f"throughput @4 >= {THROUGHPUT_TARGET:.0f}x mlflow serve (window V1)":
            ratios["predictor window V1 / mlflow @4"] >= THROUGHPUT_TARGET,
        f"streaming p99 {stream.p99_ms:.2f} ms <= 2 x floor p99 + 1 ms = {bound:.2f} ms": stream.p99_ms <= bound,
    }
    print(f"streaming p99 / floor p99: {stream.p99_ms / flo.p99_ms:.1f}x")
    for text, ok in checks.items():
        print(f"{'PASS' if ok else 'MISS'}: {text}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": {"uri": uri, "name": name, "version": version, "window": t, "levels": bundle.levels,
                      "kind": bundle.model_name},
            "results": [r.__dict__ for r in results], "ratios": ratios,
            "targets": {k: bool(v) for k, v in checks.items()},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
