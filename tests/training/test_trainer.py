"""The training loop on a real slice: learning, early stopping, checkpoints and exact resumption."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from hftpipe.config import TrainConfig
from hftpipe.errors import ConfigError, DataFormatError
from hftpipe.tracking import NullTracker
from hftpipe.training.trainer import (
    confusion_counts,
    fit,
    inverse_frequency_weights,
    macro_f1_from_confusion,
)
from tests.training.conftest import Slice

SMALL = TrainConfig(model="lstm", window=10, hidden=8, dropout=0.2, batch_size=32, epochs=3, patience=5,
                    lr=3e-3, device="cpu", max_train_samples=640, seed=3)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.5, y_true, rng.integers(0, 2, 200))  # class 2 rarely predicted
    cm = confusion_counts(y_true, y_pred)
    assert macro_f1_from_confusion(cm) == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    only_two = y_true % 2
    assert macro_f1_from_confusion(confusion_counts(only_two, only_two)) == pytest.approx(1.0)


def test_inverse_frequency_weights_balance_the_classes() -> None:
    labels = np.array([0] * 10 + [1] * 30 + [2] * 20)
    w = inverse_frequency_weights(labels)
    np.testing.assert_allclose(w * np.bincount(labels), [20, 20, 20])


class _Interrupt(Exception):
    pass


class _CrashAt(NullTracker):
    """Raises when metrics for epoch ``at`` arrive, i.e. after epoch at-1's checkpoint and before epoch at's."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step == self.at:
            raise _Interrupt
        super().log_metrics(metrics, step)


def test_resume_after_interruption_equals_uninterrupted_run(goog_slice: Slice, tmp_path: Path) -> None:
    s = goog_slice
    full_tracker = NullTracker()
    full = fit(s.book, s.labels, s.split, SMALL, tracker=full_tracker, checkpoint_dir=tmp_path / "a")
    with pytest.raises(_Interrupt):
        fit(s.book, s.labels, s.split, SMALL, tracker=_CrashAt(2), checkpoint_dir=tmp_path / "b")
    torch.manual_seed(12345)  # the resumed process starts from a different RNG state
    np.random.seed(54321)
    resumed_tracker = NullTracker()
    resumed = fit(s.book, s.labels, s.split, SMALL, tracker=resumed_tracker, checkpoint_dir=tmp_path / "b",
                  resume=True)
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert [step for _, step in resumed_tracker.metrics] == [2, 3]  # epoch 1 was not trained again
    for (name, a), (_, b) in zip(full.module.state_dict().items(), resumed.module.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in full.history])
    assert resumed.best_val_macro_f1 == pytest.approx(full.best_val_macro_f1)


def test_training_learns_and_reports_every_epoch(goog_slice: Slice, tmp_path: Path) -> None:
    s = goog_slice
    tracker = NullTracker()
    result = fit(s.book, s.labels, s.split, replace(SMALL, epochs=4, max_train_samples=None), tracker=tracker,
                 checkpoint_dir=tmp_path)
    losses = [h.train_loss for h in result.history]
    assert losses[-1] < losses[0]
    assert [step for _, step in tracker.metrics] == [1, 2, 3, 4]
    assert {"train_loss", "val_macro_f1", "val_accuracy"} <= set(tracker.metrics[0][0])
    assert result.best_val_macro_f1 == max(h.val_macro_f1 for h in result.history)
    assert (tmp_path / "last.pt").exists()
    assert not result.module.training


def test_early_stopping_keeps_the_best_epoch(goog_slice: Slice, tmp_path: Path) -> None:
    s = goog_slice
    # lr=0: nothing changes after epoch 1, so validation never improves and patience 1 stops at epoch 2.
    result = fit(s.book, s.labels, s.split, replace(SMALL, lr=0.0, epochs=5, patience=1),
                 checkpoint_dir=tmp_path)
    assert result.stopped_early
    assert len(result.history) == 2 and result.best_epoch == 1


def test_resume_with_other_settings_is_refused(goog_slice: Slice, tmp_path: Path) -> None:
    s = goog_slice
    fit(s.book, s.labels, s.split, replace(SMALL, epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="another configuration.*drop --resume"):
        fit(s.book, s.labels, s.split, replace(SMALL, hidden=16), checkpoint_dir=tmp_path, resume=True)


def test_no_validation_windows_is_a_clear_error(goog_slice: Slice) -> None:
    s = goog_slice
    with pytest.raises(DataFormatError, match="0 validation samples"):
        fit(s.book, s.labels, np.zeros_like(s.split), SMALL)


def test_worker_processes_feed_the_same_batches(goog_slice: Slice, tmp_path: Path) -> None:
    s = goog_slice
    # No dropout: worker start-up draws from the torch RNG, which would shift dropout masks, not batches.
    cfg = replace(SMALL, epochs=1, max_train_samples=256, dropout=0.0)
    inline = fit(s.book, s.labels, s.split, cfg)
    workers = fit(s.book, s.labels, s.split, replace(cfg, num_workers=1))
    assert workers.history[0].train_loss == pytest.approx(inline.history[0].train_loss, rel=1e-6)
