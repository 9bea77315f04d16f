"""Train / validation / test splits by event time, with purge gaps so no label window crosses a boundary.

Rows are the sampled stream in time order. Boundaries sit at ``train_frac`` and ``train_frac + val_frac``
of the rows. The ``purge`` rows just before each boundary get split -1: a forward label at row t looks at
rows t+1..t+k, so with purge >= max(k) every kept row's label window ends inside its own split. A purge
at least as long as the model's input window also keeps the first validation/test windows from seeing
training rows. Labels that look back too (``deeplob``) need ``purge_after`` >= max(k) - 1 rows dropped
just after each boundary as well. Clock-time horizons (h seconds) span a number of rows that depends on
the data: ``clock_purge`` counts the rows needed at each boundary, and the feature step purges the
larger of that and the event purge. The first ``warmup`` rows (where window features are not defined yet)
are -1 too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hftpipe.errors import ConfigError, DataFormatError

TRAIN, VAL, TEST, PURGED = 0, 1, 2, -1
SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitPlan:
    """Where the splits start and stop (row indices of the sampled stream, half-open)."""

    rows: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    purge: int
    purge_after: int
    warmup: int

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "train": list(self.train), "val": list(self.val), "test": list(self.test),
                "purge": self.purge, "purge_after": self.purge_after, "warmup": self.warmup}


def segment_ids(rows: int, train_frac: float, val_frac: float) -> np.ndarray:
    """Which split (0, 1, 2) each row's time falls in, before any purge."""
    b1, b2 = _boundaries(rows, train_frac, val_frac)
    seg = np.full(rows, TEST, dtype=np.int8)
    seg[:b1] = TRAIN
    seg[b1:b2] = VAL
    return seg


def boundaries(rows: int, train_frac: float, val_frac: float) -> tuple[int, int]:
    """The first validation row and the first test row (before any purge)."""
    return _boundaries(rows, train_frac, val_frac)


def clock_purge(targets: np.ndarray, bounds: tuple[int, ...]) -> int:
    """Rows to purge before each boundary so no clock-time label (row -> ``targets`` row) crosses it.

    ``targets`` is non-decreasing (``hftpipe.features.labels.clock_targets``; -1 past the end counts as
    crossing), so the rows whose label reads a row at or after boundary b are one run just before b.
    """
    targets = np.where(np.asarray(targets) < 0, np.iinfo(np.int64).max, targets)
    purge = 0
    for b in bounds:
        first = int(np.searchsorted(targets, b, side="left"))  # first row whose label reads row >= b
        purge = max(purge, b - first)
    return purge


def _boundaries(rows: int, train_frac: float, val_frac: float) -> tuple[int, int]:
    if not (0.0 < train_frac < 1.0) or not (0.0 < val_frac < 1.0) or train_frac + val_frac >= 1.0:
        raise ConfigError(
            f"features.train_frac ({train_frac}) and features.val_frac ({val_frac}) must be in (0, 1) with "
            "train_frac + val_frac < 1 (the test split gets the rest)"
        )
    return round(rows * train_frac), round(rows * (train_frac + val_frac))


def time_splits(rows: int, train_frac: float, val_frac: float, purge: int, purge_after: int = 0,
                warmup: int = 0) -> tuple[np.ndarray, SplitPlan]:
    """Split labels per row (int8: 0 train, 1 val, 2 test, -1 purged or warm-up) and the plan.

    Raises:
        ConfigError: fractions out of range or a negative purge.
        DataFormatError: too few rows for every split to keep at least one row.
    """
    if purge < 0 or purge_after < 0 or warmup < 0:
        raise ConfigError(f"purge ({purge}), purge_after ({purge_after}) and warm-up ({warmup}) must be >= 0")
    b1, b2 = _boundaries(rows, train_frac, val_frac)
    split = segment_ids(rows, train_frac, val_frac)
    split[: min(warmup, rows)] = PURGED
    for b in (b1, b2):
        split[max(0, b - purge) : b] = PURGED
        split[b : min(rows, b + purge_after)] = PURGED
    plan = SplitPlan(rows=rows, train=(0, b1), val=(b1, b2), test=(b2, rows), purge=purge,
                     purge_after=purge_after, warmup=warmup)
    for code, name in enumerate(SPLIT_NAMES):
        if not (split == code).any():
            raise DataFormatError(
                f"the {name} split is empty: {rows} sampled events are too few for a warm-up of {warmup} "
                f"and a purge of {purge} (+{purge_after}) events at each boundary; use a longer file, "
                "smaller features.horizons/windows or other split fractions"
            )
    return split, plan
