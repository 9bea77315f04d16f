"""Benchmark: events/s of the full feature set, vectorised (numpy) vs a naive per-row Python loop.

Both run in the same process on one core (BLAS/OpenMP threads 1, CPU affinity pinned to one core) on the
GOOG 2012-06-21 10-level LOBSTER sample. The naive loop computes the same features row by row in plain
Python (running sums, O(1) per row and window, the way one would write it without numpy); it runs on a
prefix of the file and its time is extrapolated per event. Both outputs are checked to agree on that
prefix before any number is printed.

    python bench/features.py [--source ZIP] [--naive-rows 20000] [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import os

# One core: thread pools must be sized before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from hftpipe.data import load_lobster  # noqa: E402
from hftpipe.features import compute_features, feature_names  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
WINDOWS = (10, 50, 100)
TARGET_RATIO = 200.0
TARGET_RATE = 5e6


def naive_features(book: list[list[float]], event_type: list[int], size: list[int], direction: list[int],
                   windows: tuple[int, ...]) -> list[list[float]]:
    """The same columns as ``compute_features`` (mid first), one Python loop over the rows."""
    levels = len(book[0]) // 4
    rows: list[list[float]] = []
    p_ofi, p_signed, p_count, p_sq = [0.0], [0.0], [0.0], [0.0]  # prefix sums, leading 0
    log_mids: list[float] = []
    prev_bid_p = prev_bid_q = prev_ask_p = prev_ask_q = 0.0
    for t, row in enumerate(book):
        ask_p, ask_q, bid_p, bid_q = row[0], row[1], row[2], row[3]
        mid = (ask_p + bid_p) * 0.5
        total = ask_q + bid_q
        micro = (ask_p * bid_q + bid_p * ask_q) / total if total > 0 else math.nan
        out = [mid, ask_p - bid_p, micro]
        per, cum = [], []
        bids = asks = 0.0
        for k in range(levels):
            b, a = row[4 * k + 3], row[4 * k + 1]
            per.append((b - a) / (b + a) if b + a > 0 else 0.0)
            bids += b
            asks += a
            cum.append((bids - asks) / (bids + asks) if bids + asks > 0 else 0.0)
        out += per
        out += cum
        # Cont-Kukanov-Stoikov increment; an empty side is price -inf (bid) / +inf (ask).
        bp = bid_p if bid_p == bid_p else -math.inf
        ap = ask_p if ask_p == ask_p else math.inf
        if t == 0:
            e = 0.0
        else:
            e = ((bid_q if bp >= prev_bid_p else 0.0) - (prev_bid_q if bp <= prev_bid_p else 0.0)
                 - (ask_q if ap <= prev_ask_p else 0.0) + (prev_ask_q if ap >= prev_ask_p else 0.0))
        prev_bid_p, prev_bid_q, prev_ask_p, prev_ask_q = bp, bid_q, ap, ask_q
        executed = event_type[t] == 4 or event_type[t] == 5
        signed = -direction[t] * size[t] if executed else 0
        log_mid = math.log(mid)
        step = log_mid - log_mids[-1] if t else 0.0
        log_mids.append(log_mid)
        p_ofi.append(p_ofi[-1] + e)
        p_signed.append(p_signed[-1] + signed)
        p_count.append(p_count[-1] + (1.0 if executed else 0.0))
        p_sq.append(p_sq[-1] + step * step)
        for w in windows:
            j = t - w + 1 if t >= w else 0  # prefix index of the window's first row (warm-up: row 0)
            vol = p_sq[t + 1] - p_sq[j]
            out += [
                p_ofi[t + 1] - p_ofi[j],
                log_mid - log_mids[t - w if t >= w else 0],
                math.sqrt(vol if vol > 0.0 else 0.0),
                p_signed[t + 1] - p_signed[j],
                (p_count[t + 1] - p_count[j]) / w,
            ]
        rows.append(out)
    return rows


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned (no sched_setaffinity)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="LOBSTER zip (default: GOOG 10 levels)")
    parser.add_argument("--naive-rows", type=int, default=20_000, help="prefix the naive loop runs on")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each implementation")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    pinned = _pin_one_core()
    table = load_lobster(args.source)
    frame = table.frame
    book = table.book()
    event_type = frame["type"].to_numpy()
    size = frame["size"].to_numpy()
    direction = frame["direction"].to_numpy()
    n = len(book)
    names = ["mid", *feature_names(table.levels, WINDOWS)]

    compute_features(book, event_type, size, direction, WINDOWS)  # warm-up (page faults, caches)
    vec_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        vec = compute_features(book, event_type, size, direction, WINDOWS)
        vec_times.append(time.perf_counter() - start)

    m = min(args.naive_rows, n)
    lists = (book[:m].tolist(), event_type[:m].tolist(), size[:m].tolist(), direction[:m].tolist())
    naive_times = []
    for _ in range(max(1, min(args.repeat, 3))):
        start = time.perf_counter()
        naive = naive_features(*lists, WINDOWS)
        naive_times.append(time.perf_counter() - start)

    got = np.column_stack([vec[name][:m] for name in names])
    ref = np.asarray(naive, dtype=np.float64)
    if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True):
        bad = np.argwhere(~np.isclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True))
        raise SystemExit(f"vectorised and naive features disagree, e.g. at (row, column) {bad[:5].tolist()}")

    vec_best, vec_median = min(vec_times), statistics.median(vec_times)
    naive_best = min(naive_times)
    vec_rate = n / vec_best
    naive_rate = m / naive_best
    ratio = vec_rate / naive_rate

    print(f"feature set: {len(names)} columns (mid + {len(names) - 1} features), {table.meta.symbol} "
          f"{table.meta.date}, {table.levels} levels, windows {WINDOWS}, {n:,} events")
    print(f"one core ({pinned}), BLAS/OpenMP threads 1, numpy {np.__version__}, Python {platform.python_version()}; "
          f"best of {args.repeat} runs (naive: best of {len(naive_times)})")
    print(f"both implementations agree on the first {m:,} events (rtol 1e-9)")
    print()
    print(f"{'implementation':<26}{'events':>10}{'seconds':>12}{'events/s':>16}")
    print(f"{'vectorised (numpy)':<26}{n:>10,}{vec_best:>12.4f}{vec_rate:>16,.0f}")
    print(f"{'naive per-row Python loop':<26}{m:>10,}{naive_best:>12.4f}{naive_rate:>16,.0f}")
    print()
    if m < n:
        print(f"naive loop ran on the first {m:,} events and is extrapolated per event "
              f"(full file: about {n / naive_rate:.1f} s)")
    print(f"vectorised median of {args.repeat}: {vec_median:.4f} s ({n / vec_median:,.0f} events/s)")
    print(f"speed-up: {ratio:,.0f}x (target >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
          f"vectorised {vec_rate / 1e6:.2f} M events/s "
          f"(target >= {TARGET_RATE / 1e6:.0f} M: {'met' if vec_rate >= TARGET_RATE else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({
            "source": str(args.source), "events": n, "columns": len(names), "windows": list(WINDOWS),
            "vectorised_seconds": vec_times, "vectorised_events_per_s": vec_rate,
            "naive_rows": m, "naive_seconds": naive_times, "naive_events_per_s": naive_rate,
            "speedup": ratio, "pinned": pinned,
        }, indent=2))


if __name__ == "__main__":
    main()
