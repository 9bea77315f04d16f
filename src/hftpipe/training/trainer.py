"""The training loop: one entry point for a single process and for every rank under torchrun.

:func:`fit` works on arrays (book, labels, split) so it can be tested without files; :func:`train` reads a
FeatureSet, calls :func:`fit` and writes the model bundle. Only rank 0 logs, checkpoints, writes the
bundle and calls the tracker; every rank takes part in the collectives (gradient all-reduce, validation
confusion matrix, RNG-state gather for checkpoints).

A checkpoint is written after every epoch (model, optimizer, scheduler, next epoch = sampler epoch, early-
stopping state, best weights and the RNG states of every rank), so ``resume=True`` replays exactly what an
uninterrupted run would have done: batches come from a permutation seeded by (seed, epoch), and dropout
draws from the restored torch RNG.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from hftpipe import paths
from hftpipe.config import Config, TrainConfig
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.features.window import WindowStats, fit_window_stats
from hftpipe.horizons import horizon_value
from hftpipe.models import N_CLASSES, save_bundle
from hftpipe.models.spec import ModelSpec
from hftpipe.tracking import Tracker
from hftpipe.training.data import (
    TRAIN,
    VAL,
    BookWindows,
    WindowBatchSampler,
    iter_eval_batches,
    make_loader,
    sample_ends,
)
from hftpipe.training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    gather_objects,
    setup_distributed,
    sync_buffers,
    teardown_distributed,
)

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
CHECKPOINT_FORMAT = 1
STATS_WINDOWS = 5000


@dataclass
class EpochRecord:
    """What one epoch measured (the same numbers go to the tracker)."""

    epoch: int
    train_loss: float
    val_macro_f1: float
    val_accuracy: float
    lr: float
    seconds: float
    samples_per_s: float


@dataclass
class FitResult:
    """The trained module (best weights, eval mode, CPU) and how training went."""

    module: nn.Module
    stats: WindowStats
    history: list[EpochRecord]
    best_epoch: int
    best_val_macro_f1: float
    best_val_accuracy: float
    stopped_early: bool
    train_samples: int
    val_samples: int
    class_weights: list[float] | None

    def metrics(self) -> dict[str, float]:
        """Summary metrics for the bundle and the tracker."""
        last = self.history[-1] if self.history else None
        return {
            "best_val_macro_f1": self.best_val_macro_f1,
            "best_val_accuracy": self.best_val_accuracy,
            "best_epoch": float(self.best_epoch),
            "epochs_run": float(len(self.history)),
            "final_train_loss": last.train_loss if last else float("nan"),
            "train_samples": float(self.train_samples),
            "val_samples": float(self.val_samples),
            "train_samples_per_s": float(np.mean([h.samples_per_s for h in self.history])) if self.history
            else float("nan"),
        }


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; only rank 0 has a bundle)."""

    bundle_dir: Path | None
    model: str
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    world_size: int = 1
    rank: int = 0
    checkpoint_path: Path | None = None


# ----------------------------------------------------------------------------------------------- metrics

def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Confusion matrix (true x predicted) as int64 counts."""
    return np.bincount(n_classes * np.asarray(y_true, dtype=np.int64) + np.asarray(y_pred, dtype=np.int64),
                       minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def macro_f1_from_confusion(cm: np.ndarray) -> float:
    """Macro-F1 over the classes present in the truth or the predictions (as scikit-learn's default)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    present = (support + predicted) > 0
    if not present.any():
        return float("nan")
    f1 = np.where(present, 2 * tp / np.maximum(support + predicted, 1e-12), 0.0)
    return float(f1[present].mean())


def inverse_frequency_weights(labels: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Class weights n / (C * count_c), so every class carries the same total weight in the loss."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights


# ------------------------------------------------------------------------------------------ RNG, seeds

def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------- checkpoints

def _fingerprint(tcfg: TrainConfig, book: np.ndarray, labels: np.ndarray, world_size: int) -> str:
    """What must not change between an interrupted run and its resumption."""
    keep = {k: v for k, v in asdict(tcfg).items() if k not in ("epochs", "patience", "output", "num_workers",
                                                                 "nproc")}
    digest = hashlib.sha256(json.dumps(keep, sort_keys=True).encode())
    digest.update(str((book.shape, world_size)).encode())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_checkpoint_dir(output_dir: str | Path) -> Path:
    """``HFTPIPE_HOME/checkpoints/<name>-<hash of the bundle folder>``: stable across runs of one output."""
    resolved = str(Path(output_dir).expanduser().resolve())
    key = hashlib.sha1(resolved.encode()).hexdigest()[:10]
    return paths.checkpoints_dir() / f"{Path(resolved).name}-{key}"


# --------------------------------------------------------------------------------------------- the loop

def _evaluate(module: nn.Module, dataset: BookWindows, batch_size: int, info: DistInfo) -> np.ndarray:
    """Validation confusion matrix summed over ranks (each rank scores its own unpadded shard)."""
    module.eval()
    cm = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    with torch.inference_mode(), _autocast(info.device):
        for x, y in iter_eval_batches(dataset, batch_size, info.rank, info.world_size):
            pred = module(x.to(info.device)).argmax(dim=1).cpu().numpy()
            cm += confusion_counts(y.numpy(), pred)
    total = torch.from_numpy(cm).to(info.device if info.backend == "nccl" else "cpu")
    return all_reduce_sum(total, info).cpu().numpy()


def _autocast(device: torch.device) -> torch.autocast:
    # bf16 autocast on CUDA only: CPU autocast would slow the LSTM down and change results.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def fit(
    book: np.ndarray,
    labels: np.ndarray,
    split: np.ndarray,
    tcfg: TrainConfig,
    *,
    info: DistInfo | None = None,
    tracker: Tracker | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> FitResult:
    """Train ``tcfg.model`` on windows of ``book`` labelled by ``labels`` (train split), early-stopping on val.

    Args:
        book: (n, 4L) raw book (dollars / shares).
        labels: (n,) int labels 0/1/2, -1 where undefined.
        split: (n,) int8 split codes (0 train, 1 val, 2 test, -1 purged).
        info: distributed info (default: :func:`setup_distributed`, which joins the process group when
            WORLD_SIZE > 1; :func:`train` also leaves it again).
        tracker: receives per-epoch metrics (used on rank 0 only).
        checkpoint_dir: where ``last.pt`` goes each epoch (rank 0); None: no checkpoints.
        resume: continue from ``checkpoint_dir/last.pt`` if it exists.
        progress: show a progress bar (default: when stderr is a terminal, rank 0 only).

    Raises:
        DataFormatError: no training or validation samples.
        ConfigError: the checkpoint was written by a different configuration or data.
    """
    info = info or setup_distributed(tcfg.device)
    book = np.ascontiguousarray(book, dtype=np.float64)
    labels = np.asarray(labels)
    if book.ndim != 2 or book.shape[1] % 4 or len(book) != len(labels):
        raise DataFormatError(f"book must be (n, 4L) with one label per row; got {book.shape} and {labels.shape}")
    levels = book.shape[1] // 4
    window = tcfg.window
    train_ends = sample_ends(labels, split, TRAIN, window)
    val_ends = sample_ends(labels, split, VAL, window)
    if len(train_ends) == 0 or len(val_ends) == 0:
        raise DataFormatError(f"no usable windows: {len(train_ends)} training and {len(val_ends)} validation "
                              f"samples with T={window}; use more data or a shorter train.window")
    if len(val_ends) < info.world_size:
        raise DataFormatError(f"{len(val_ends)} validation samples cannot be shared by {info.world_size} ranks")

    seed_everything(tcfg.seed)
    # A few thousand windows pin the column means/stds down; more only costs time on deep books.
    stats = fit_window_stats(book, train_ends, window, max_windows=STATS_WINDOWS, seed=tcfg.seed)
    train_set = BookWindows(book, train_ends, labels, window, stats)
    val_set = BookWindows(book, val_ends, labels, window, stats)
    per_epoch = min(tcfg.max_train_samples or len(train_ends), len(train_ends))
    per_rank = -(-per_epoch // info.world_size)
    sampler = WindowBatchSampler(len(train_ends), tcfg.batch_size, shuffle=True, seed=tcfg.seed,
                                 samples_per_epoch=per_epoch, rank=info.rank, world_size=info.world_size,
                                 drop_last=per_rank >= tcfg.batch_size)
    loader = make_loader(train_set, sampler, num_workers=tcfg.num_workers,
                         pin_memory=info.device.type == "cuda")

    module = ModelSpec.from_train(tcfg, levels).build().to(info.device)
    model: nn.Module = module
    if info.distributed:
        model = DistributedDataParallel(module, device_ids=[info.device] if info.device.type == "cuda" else None)
    weights = None
    if tcfg.class_weights:
        weights = inverse_frequency_weights(train_set.targets())
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weights is None else torch.tensor(weights, dtype=torch.float32, device=info.device))
    optimizer = torch.optim.AdamW(module.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(tcfg.epochs, 1))

    fingerprint = _fingerprint(tcfg, book, labels, info.world_size)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    start_epoch, best_f1, best_acc, best_epoch, bad_epochs = 0, -1.0, float("nan"), -1, 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[EpochRecord] = []
    finished = False
    if resume and ckpt_path is not None and ckpt_path.exists():
        # Our own file; it holds numpy/python RNG states, which weights_only=True refuses to unpickle.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("fingerprint") != fingerprint:
            raise ConfigError(f"checkpoint {ckpt_path} was written with another configuration, data or "
                              "process count; drop --resume to start afresh or restore the original settings")
        module.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt["epoch"]
        best_f1, best_acc, best_epoch = ckpt["best_f1"], ckpt["best_acc"], ckpt["best_epoch"]
        bad_epochs, best_state, finished = ckpt["bad_epochs"], ckpt["best_state"], ckpt["finished"]
        history = [EpochRecord(**h) for h in ckpt["history"]]
        set_rng_state(ckpt["rng"][info.rank])
        if info.is_main:
            log.info("resumed from %s at epoch %d (best val macro-F1 %.4f)", ckpt_path, start_epoch, best_f1)
    elif resume and info.is_main:
        log.warning("no checkpoint at %s: training from the start", ckpt_path)

    if info.is_main:
        log.info("training %s: %d train / %d val windows (T=%d, L=%d), %d per epoch, batch %d x %d rank(s), "
                 "device %s", tcfg.model, len(train_ends), len(val_ends), window, levels, per_epoch,
                 tcfg.batch_size, info.world_size, info.device)
    show = (sys.stderr.isatty() if progress is None else progress) and info.is_main

    for epoch in range(start_epoch, tcfg.epochs):
        if finished:
            break
        sampler.set_epoch(epoch)
        model.train()
        started = time.perf_counter()
        sums = torch.zeros(2, dtype=torch.float64)
        bar = tqdm(loader, total=len(sampler), desc=f"epoch {epoch + 1}/{tcfg.epochs}", disable=not show,
                   leave=False, unit="batch")
        for x, y in bar:
            x = x.to(info.device, non_blocking=True)
            y = y.to(info.device, non_blocking=True)
            with _autocast(info.device):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(module.parameters(), tcfg.grad_clip)
            optimizer.step()
            sums += torch.tensor([loss.item() * len(y), len(y)], dtype=torch.float64)
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        bar.close()
        sync_buffers(module, info)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        sums = all_reduce_sum(sums.to(info.device if info.backend == "nccl" else "cpu"), info).cpu()
        train_seconds = time.perf_counter() - started
        cm = _evaluate(module, val_set, max(tcfg.batch_size, 1024), info)
        f1 = macro_f1_from_confusion(cm)
        acc = float(np.trace(cm) / max(cm.sum(), 1))
        record = EpochRecord(epoch=epoch + 1, train_loss=float(sums[0] / max(sums[1], 1)), val_macro_f1=f1,
                             val_accuracy=acc, lr=lr, seconds=time.perf_counter() - started,
                             samples_per_s=float(sums[1]) / max(train_seconds, 1e-9))
        history.append(record)
        if f1 > best_f1 + 1e-9:
            best_f1, best_acc, best_epoch, bad_epochs = f1, acc, epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
        else:
            bad_epochs += 1
        finished = bad_epochs >= tcfg.patience or epoch + 1 == tcfg.epochs
        if info.is_main:
            log.info("epoch %d/%d: train loss %.4f, val macro-F1 %.4f, val accuracy %.4f (%.1f s, %.0f samples/s)",
                     record.epoch, tcfg.epochs, record.train_loss, f1, acc, record.seconds, record.samples_per_s)
            if tracker is not None:
                tracker.log_metrics({"train_loss": record.train_loss, "val_macro_f1": f1, "val_accuracy": acc,
                                     "lr": lr, "epoch_seconds": record.seconds,
                                     "train_samples_per_s": record.samples_per_s}, step=record.epoch)
        rngs = gather_objects(rng_state(), info)  # a collective: every rank takes part
        if ckpt_path is not None and info.is_main:
            _save_checkpoint(ckpt_path, {
                "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch + 1,
                "model": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "best_f1": best_f1, "best_acc": best_acc,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "best_state": best_state,
                "finished": finished, "history": [asdict(h) for h in history], "rng": rngs,
            })
        barrier(info)
        if bad_epochs >= tcfg.patience:
            if info.is_main:
                log.info("early stop: no val macro-F1 gain for %d epoch(s); best %.4f at epoch %d",
                         bad_epochs, best_f1, best_epoch)
            break

    final = copy.deepcopy(module).cpu()
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    return FitResult(
        module=final, stats=stats, history=history, best_epoch=best_epoch, best_val_macro_f1=best_f1,
        best_val_accuracy=best_acc, stopped_early=bad_epochs >= tcfg.patience, train_samples=len(train_ends),
        val_samples=len(val_ends), class_weights=None if weights is None else [float(w) for w in weights],
    )


# ------------------------------------------------------------------------------------- entry point

def cpu_threads(tcfg: TrainConfig) -> int:
    """torch intra-op threads per process: ``train.threads``, else 1.

    Measured on a shared 2-core machine: the default LSTM trained at 16,000 samples/s with one thread and
    at 280 samples/s with two, because torch's spinning worker threads fight other processes for the
    cores. Small recurrent models gain little from intra-op threads anyway; scale out with ``--nproc``
    (one process per core) or a GPU, or set ``train.threads`` on a dedicated machine.
    """
    return tcfg.threads or 1


def drift_reference(cfg: Config, book: np.ndarray, split: np.ndarray, module: nn.Module,
                    stats: WindowStats) -> dict[str, Any]:
    """Feature distributions of the training rows and the classes the model predicts on (a sample of) them."""
    from hftpipe.evaluation.drift import build_reference
    from hftpipe.features.window import model_input

    mcfg, window = cfg.monitor, cfg.train.window
    rows = np.flatnonzero(split == 0)
    ends = rows[rows >= window - 1]
    predicted = None
    if len(ends) and mcfg.reference_predictions > 0:
        ends = ends[np.unique(np.linspace(0, len(ends) - 1, min(mcfg.reference_predictions, len(ends))).astype(int))]
        raw = book[ends[:, None] + np.arange(-window + 1, 1)]
        device = next(module.parameters()).device
        with torch.inference_mode():
            predicted = np.concatenate([
                module(torch.from_numpy(model_input(raw[i:i + 1024], stats)).to(device)).argmax(dim=1).cpu().numpy()
                for i in range(0, len(raw), 1024)])
    return build_reference(book[rows], predicted, bins=mcfg.reference_bins, sketch=mcfg.reference_sketch,
                           chunks=mcfg.reference_chunks).to_dict()


def calibrate_on_validation(result: FitResult, book: np.ndarray, labels: np.ndarray, split: np.ndarray,
                            tcfg: TrainConfig) -> tuple[float, dict[str, Any]]:
    """Temperature of the trained module fitted on the validation windows, and Brier/reliability before/after."""
    from hftpipe.models.calibration import calibration_summary, fit_temperature

    val_set = BookWindows(np.ascontiguousarray(book, dtype=np.float64), sample_ends(labels, split, VAL, tcfg.window),
                          labels, tcfg.window, result.stats)
    chunks, ys = [], []
    with torch.inference_mode():
        for x, y in iter_eval_batches(val_set, max(tcfg.batch_size, 1024)):
            chunks.append(result.module(x).float().numpy())
            ys.append(y.numpy())
    logits, y_val = np.concatenate(chunks).astype(np.float64), np.concatenate(ys)
    temperature = fit_temperature(logits, y_val)
    summary = calibration_summary(logits, y_val, temperature)
    summary["fitted_on"] = "validation split"
    log.info("temperature %.3f: validation Brier %.4f -> %.4f", temperature, summary["uncalibrated"]["brier"],
             summary["calibrated"]["brier"])
    return temperature, summary


def train(cfg: Config, features_dir: str | Path, output_dir: str | Path, tracker: Tracker | None = None,
          resume: bool = False, checkpoint_dir: str | Path | None = None,
          progress: bool | None = None) -> TrainResult:
    """Train ``cfg.train.model`` on a FeatureSet folder and write the model bundle to ``output_dir``.

    Runs as one process or as one rank under torchrun (RANK/WORLD_SIZE/LOCAL_RANK in the environment).

    Args:
        checkpoint_dir: default ``HFTPIPE_HOME/checkpoints/<output name>-<hash>`` (what ``resume`` reads).

    Raises:
        ConfigError: ``train.horizon`` is not one of the feature set's horizons, or a bad setting.
        DataFormatError: the feature set has no usable windows.
    """
    from hftpipe.features import load_feature_set

    tcfg = cfg.train
    features = load_feature_set(features_dir)
    meta = dict(features.meta)
    horizons = [horizon_value(h) for h in meta.get("horizons", [])]
    # Compared with their units: train.horizon=10 (events) never matches a '10s' label.
    if horizons and horizon_value(tcfg.horizon) not in horizons:
        raise ConfigError(f"train.horizon={tcfg.horizon} is not among the feature set's horizons {horizons}; "
                          "set train.horizon to one of them or rebuild features with that horizon")
    from hftpipe.models.tabular import TABULAR_MODELS

    if tcfg.model in TABULAR_MODELS:  # engineered features, no torch loop (hftpipe.training.tabular)
        from hftpipe.training.tabular import train_tabular

        return train_tabular(cfg, features, output_dir, tracker=tracker)
    book = features.book()
    labels = features.labels(tcfg.horizon)
    split = features.split
    alpha_map = meta.get("alpha") or {}
    alpha = alpha_map.get(str(tcfg.horizon)) if isinstance(alpha_map, dict) else alpha_map

    torch.set_num_threads(cpu_threads(tcfg))
    was_initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    info = setup_distributed(tcfg.device)
    try:
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(output_dir)
        result = fit(book, labels, split, tcfg, info=info, tracker=tracker if info.is_main else None,
                     checkpoint_dir=ckpt_dir, resume=resume, progress=progress)
        bundle_dir = None
        metrics = result.metrics()
        if info.is_main:
            run_id = getattr(tracker, "run_id", None) if tracker is not None else None
            temperature, calibration = None, None
            if tcfg.calibrate:
                temperature, calibration = calibrate_on_validation(result, book, labels, split, tcfg)
                metrics.update({"temperature": temperature,
                                "val_brier_uncalibrated": calibration["uncalibrated"]["brier"],
                                "val_brier_calibrated": calibration["calibrated"]["brier"]})
            bundle_dir = save_bundle(
                output_dir, result.module, config=cfg.to_dict(), model_name=tcfg.model, levels=features.levels,
                window=tcfg.window, horizon=tcfg.horizon, alpha=alpha, stats=result.stats, hidden=tcfg.hidden,
                dropout=tcfg.dropout, feature_meta=meta, metrics=metrics, mlflow_run_id=run_id,
                drift_reference=drift_reference(cfg, book, split, result.module, result.stats),
                temperature=temperature, calibration=calibration)
            log.info("model bundle written to %s (best val macro-F1 %.4f at epoch %d)", bundle_dir,
                     result.best_val_macro_f1, result.best_epoch)
            if tracker is not None:
                tracker.log_metrics({f"final_{k}": v for k, v in metrics.items()}, step=len(result.history))
                tracker.set_tags({"train.world_size": str(info.world_size), "train.device": str(info.device),
                                  "data.symbol": str(meta.get("symbol")), "data.date": str(meta.get("date")),
                                  "data.source_sha256": str(meta.get("source_sha256"))})
                tracker.log_artifact(bundle_dir, "bundle")
        barrier(info)
        return TrainResult(bundle_dir=bundle_dir, model=tcfg.model, metrics=metrics,
                           history=[asdict(h) for h in result.history], world_size=info.world_size,
                           rank=info.rank, checkpoint_path=ckpt_dir / CHECKPOINT_FILE)
    finally:
        teardown_distributed(info, owned=not was_initialised)
