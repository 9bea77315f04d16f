"""Report images (matplotlib, Agg backend: no display needed on servers or in pipelines)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hftpipe.evaluation.metrics import CLASS_NAMES

MAX_CURVE_POINTS = 4000  # a curve of 150k events is drawn from this many points: the file stays small


def plot_confusions(confusions: dict[str, Sequence[Sequence[int]]], path: str | Path) -> Path:
    """Row-normalised confusion matrices side by side (cell text: share of the true class and count)."""
    fig, axes = plt.subplots(1, len(confusions), figsize=(4.2 * len(confusions), 3.8), squeeze=False)
    for ax, (title, conf) in zip(axes[0], confusions.items()):
        counts = np.asarray(conf, dtype=np.float64)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
        ax.imshow(share, vmin=0.0, vmax=1.0, cmap="Blues")
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                ax.text(j, i, f"{share[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=8)
        ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pnl(curves: dict[str, np.ndarray], time: np.ndarray, path: str | Path,
             gross: np.ndarray | None = None) -> Path:
    """Net PnL curves (dollars per share) of the model and the baselines against time of day."""
    time = np.asarray(time, dtype=np.float64)
    step = max(1, time.size // MAX_CURVE_POINTS)
    idx = np.unique(np.concatenate([np.arange(0, time.size, step), [time.size - 1]]))
    hours = time[idx] / 3600.0
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, curve in curves.items():
        ax.plot(hours, np.asarray(curve)[idx], label=f"{name} (net)", linewidth=1.6 if name == "model" else 1.0)
    if gross is not None:
        ax.plot(hours, np.asarray(gross)[idx], label="model (gross, mid to mid)", linestyle="--", linewidth=1.0)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_xlabel("time of day (hours)")
    ax.set_ylabel("PnL ($ per share)")
    ax.set_title("Backtest PnL after spread and fees")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
