"""Benchmark: features for N symbol-days, serially with pandas and on Dask with 1 and 2 workers.

The partitions are one shipped LOBSTER file repeated under distinct symbol names (``S000``, ``S001``...),
staged straight into a fresh dataset (loaded once and written N times; ingest and its validation are
not what is timed here). Every mode then builds the features of all N partitions with
:func:`hftpipe.lake.features_dataset` (``force=True``): in this process one partition after the other
(``serial``), and on a local Dask cluster of 1 and of 2 worker processes (one thread each). Cluster
start-up and a warm-up build in every process (imports) are outside the timed part.

Reported per mode and N: wall seconds, events/s, and peak resident memory (psutil, sampled every
50 ms) of the driver process and of the largest worker process. Targets: Dask 2 workers >= 1.7x Dask
1 worker on a 2-core machine, and peak memory flat in N (each task holds one partition; nothing loads
the whole dataset).

    python bench/scale.py [--n 2 6] [--source ZIP] [--json out.json]
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    # One thread per process: the parallelism measured is Dask's, not BLAS's.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import argparse
import dataclasses
import json
import logging
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import psutil

from hftpipe.config import FeaturesConfig
from hftpipe.data.lobster import load_lobster
from hftpipe.data.schema import write_events
from hftpipe.lake import features_dataset
from hftpipe.lake.dataset import partition_file, partition_key, read_manifest, write_manifest
from hftpipe.lake.features import build_partition
from hftpipe.lake.runner import dask_client

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_1.zip"
TARGET_SPEEDUP = 1.7


class PeakRSS:
    """Peak RSS of this process and of each of its descendants (the Dask workers), sampled in a thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.driver = 0
        self.worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                self.driver = max(self.driver, me.memory_info().rss)
                for child in me.children(recursive=True):
                    try:
                        self.worker = max(self.worker, child.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stage(root: Path, source: Path, n: int) -> int:
    """Write N copies of the file as partitions S000..S{n-1}; returns events per partition."""
    table = load_lobster(source)
    manifest = read_manifest(root)
    for i in range(n):
        symbol = f"S{i:03d}"
        copy = dataclasses.replace(table, meta=dataclasses.replace(table.meta, symbol=symbol))
        key = partition_key(f"lobster_l{table.meta.levels}", symbol, table.meta.date)
        path = partition_file(root, key)
        write_events(copy, path)
        manifest["partitions"][key] = {"kind": "events", "rows": table.meta.rows, "levels": table.meta.levels,
                                       "start": "", "end": "", "source": str(source),
                                       "source_sha256": f"{table.meta.source_sha256}-{i}",
                                       "validation": {"success": True, "checks": 0, "failed": 0},
                                       "written_at": ""}
    write_manifest(root, manifest)
    return table.meta.rows


def warm_up(root: Path, cfg: FeaturesConfig, client: Any) -> None:
    """Build one partition's features in every process first (untimed): the first build in a process
    imports Great Expectations and pyarrow's Parquet writer, seconds that are not per-partition work."""
    key = min(read_manifest(root)["partitions"])
    if client is None:
        build_partition(str(root), key, cfg)
    else:
        client.run(build_partition, str(root), key, cfg)


def timed(root: Path, cfg: FeaturesConfig, client: Any) -> tuple[float, PeakRSS]:
    with PeakRSS() as peak:
        start = time.perf_counter()
        features_dataset(root, cfg, workers=0 if client is None else None, client=client, force=True)
        seconds = time.perf_counter() - start
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs=2, default=[2, 6], metavar=("N1", "N2"))
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = FeaturesConfig()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hftpipe-scale-") as tmp:
        os.environ.setdefault("HFTPIPE_HOME", str(Path(tmp) / "home"))
        roots = {}
        for n in args.n:
            roots[n] = Path(tmp) / f"lake-{n}"
            events = stage(roots[n], args.source, n)
        for mode, workers in (("serial", 0), ("dask-1", 1), ("dask-2", 2)):
            started = time.perf_counter()
            if workers:
                context = dask_client(workers=workers, memory_limit="2GiB")
                client = context.__enter__()
            else:
                context, client = None, None
            startup = time.perf_counter() - started
            warm_up(roots[args.n[0]], cfg, client)
            try:
                for n in args.n:
                    seconds, peak = timed(roots[n], cfg, client)
                    row = {"mode": mode, "n": n, "events": n * events, "seconds": round(seconds, 2),
                           "events_per_s": round(n * events / seconds), "startup_s": round(startup, 2),
                           "driver_peak_mib": round(peak.driver / 2**20),
                           "worker_peak_mib": round(peak.worker / 2**20) if workers else None}
                    rows.append(row)
                    print(f"{mode:7s} N={n:3d}: {row['events']:>9d} events in {seconds:7.2f} s = "
                          f"{row['events_per_s']:>8d} events/s; peak RSS driver {row['driver_peak_mib']} MiB, "
                          f"largest worker {row['worker_peak_mib']} MiB (cluster start {startup:.1f} s)",
                          flush=True)
            finally:
                if context is not None:
                    context.__exit__(None, None, None)

    def rate(mode: str, n: int) -> float:
        return next(r["events_per_s"] for r in rows if r["mode"] == mode and r["n"] == n)

    n1, n2 = args.n
    summary = {}
    for n in args.n:
        summary[f"dask2_over_dask1_N{n}"] = round(rate("dask-2", n) / rate("dask-1", n), 2)
        summary[f"dask2_over_serial_N{n}"] = round(rate("dask-2", n) / rate("serial", n), 2)
    for mode in ("serial", "dask-1", "dask-2"):
        key = "driver_peak_mib" if mode == "serial" else "worker_peak_mib"
        mem = {r["n"]: r[key] for r in rows if r["mode"] == mode}
        summary[f"memory_ratio_{mode}_N{n2}_over_N{n1}"] = round(mem[n2] / mem[n1], 2)
    print(f"Dask 2 workers / Dask 1 worker: {summary[f'dask2_over_dask1_N{n2}']}x at N={n2} "
          f"(target >= {TARGET_SPEEDUP}x), {summary[f'dask2_over_dask1_N{n1}']}x at N={n1}")
    print("peak memory N2/N1 (1.0 = flat in N): "
          + ", ".join(f"{m} {summary[f'memory_ratio_{m}_N{n2}_over_N{n1}']}" for m in ("serial", "dask-1", "dask-2")))
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (other processes share these cores)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "source": str(args.source),
                                         "loadavg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
