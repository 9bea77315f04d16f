"""Training throughput: our data path + loop against the naive loop, measured in the same run.

Naive: every window materialised up front as a tensor in a Python list (``model_input`` per window), a
default ``DataLoader(batch_size=B, shuffle=True)`` that indexes and collates sample by sample.
Ours: :class:`hftpipe.training.data.BookWindows` over the shared book (per-row preparation once, one
gather per batch), :class:`~hftpipe.training.data.WindowBatchSampler`, ``DataLoader(batch_size=None)``.
Both train the same model (same seed) with the same batch size on the same windows for one epoch.

Reported per model: set-up seconds, loop samples/s, end-to-end samples/s (set-up + epoch), the memory the
naive list holds, and the ratios. Run: ``python bench/training.py [--features DIR] [--models lstm,mlp]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hftpipe.config import FeaturesConfig, TrainConfig
from hftpipe.features import build_features, fit_window_stats, load_feature_set, model_input
from hftpipe.models import build_model
from hftpipe.training.data import TRAIN, BookWindows, WindowBatchSampler, make_loader, sample_ends

REPO = Path(__file__).resolve().parents[1]


def _features(path: str | None) -> Path:
    """The given feature folder, or one built from the shipped GOOG 10-level sample."""
    if path:
        return Path(path)
    from hftpipe.data.lobster import load_lobster
    from hftpipe.data.schema import write_events

    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    table = load_lobster(REPO / "data" / "raw" / "LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")
    events = write_events(table, tmp / "events.parquet")
    build_features(FeaturesConfig(), events, tmp / "features")
    return tmp / "features"


def _train_epoch(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """One epoch of the same loop for both paths; returns the samples seen."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    seen = 0
    for x, y in batches:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


def _timed(setup: Callable[[], Iterable], model_factory: Callable[[], torch.nn.Module],
           repeats: int) -> dict[str, float]:
    """Best of ``repeats`` (set-up + one epoch) on a fresh model each time; a shared machine adds noise."""
    best: dict[str, float] = {}
    for _ in range(repeats):
        model = model_factory()
        started = time.perf_counter()
        batches = setup()
        ready = time.perf_counter()
        seen = _train_epoch(model, batches)
        done = time.perf_counter()
        result = {"setup_s": ready - started, "loop_s": done - ready, "samples": seen,
                  "loop_sps": seen / (done - ready), "total_sps": seen / (done - started)}
        if not best or result["total_sps"] > best["total_sps"]:
            best = result
    return best


def run(features_dir: Path, models: list[str], samples: int, window: int, batch_size: int, hidden: int,
        horizon: int, seed: int, repeats: int = 2) -> list[dict[str, float | str]]:
    fs = load_feature_set(features_dir)
    book, labels = fs.book(), fs.labels(horizon)
    ends_all = sample_ends(labels, fs.split, TRAIN, window)
    rng = np.random.default_rng(seed)
    ends = np.sort(rng.choice(ends_all, size=min(samples, len(ends_all)), replace=False))
    stats = fit_window_stats(book, ends_all, window, max_windows=5000, seed=seed)
    levels = fs.levels
    print(f"{fs.meta['symbol']} {levels} level(s): {len(ends)} windows of T={window} x {4 * levels} columns, "
          f"batch {batch_size}, {torch.get_num_threads()} thread(s)")

    def ours() -> Iterable:
        dataset = BookWindows(book, ends, labels, window, stats)
        sampler = WindowBatchSampler(len(dataset), batch_size, shuffle=True, seed=seed)
        return make_loader(dataset, sampler)

    naive_bytes = 0

    def naive() -> Iterable:
        nonlocal naive_bytes
        items = [(torch.from_numpy(model_input(book[e - window + 1:e + 1], stats)), int(labels[e])) for e in ends]
        naive_bytes = sum(x.element_size() * x.nelement() for x, _ in items)
        return DataLoader(items, batch_size=batch_size, shuffle=True)

    rows = []
    for name in models:
        def factory(name: str = name) -> torch.nn.Module:
            torch.manual_seed(seed)
            return build_model(name, levels, window, hidden, 0.1)

        _train_epoch(factory(), [next(iter(ours()))] * 3)  # warm-up: first-call allocations, lazy init
        result_ours = _timed(ours, factory, repeats)
        result_naive = _timed(naive, factory, repeats)
        rows.append({"model": name, **{f"ours_{k}": v for k, v in result_ours.items()},
                     **{f"naive_{k}": v for k, v in result_naive.items()}, "naive_mb": naive_bytes / 1e6,
                     "loop_ratio": result_ours["loop_sps"] / result_naive["loop_sps"],
                     "total_ratio": result_ours["total_sps"] / result_naive["total_sps"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--features", help="FeatureSet folder (default: built from the GOOG 10-level sample)")
    parser.add_argument("--models", default="logreg,mlp,lstm")
    defaults = TrainConfig()
    parser.add_argument("--samples", type=int, default=20_000, help="training windows (one epoch)")
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--horizon", type=int, default=defaults.horizon)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fair on a shared machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    rows = run(_features(args.features), args.models.split(","), args.samples, args.window, args.batch_size,
               args.hidden, args.horizon, args.seed, args.repeats)
    print(f"{'model':8} {'ours setup s':>12} {'ours loop/s':>12} {'ours e2e/s':>11} {'naive setup s':>13} "
          f"{'naive loop/s':>12} {'naive e2e/s':>11} {'naive MB':>9} {'loop x':>7} {'e2e x':>6}")
    for r in rows:
        print(f"{r['model']:8} {r['ours_setup_s']:12.2f} {r['ours_loop_sps']:12.0f} {r['ours_total_sps']:11.0f} "
              f"{r['naive_setup_s']:13.2f} {r['naive_loop_sps']:12.0f} {r['naive_total_sps']:11.0f} "
              f"{r['naive_mb']:9.0f} {r['loop_ratio']:7.2f} {r['total_ratio']:6.2f}")


if __name__ == "__main__":
    main()
