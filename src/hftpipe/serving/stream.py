"""Per-symbol rolling windows of raw book states for streaming mode.

A live feed sends one book state per event; the server keeps each symbol's last T states and predicts
once T have arrived. States are kept RAW (dollars and shares), so a model swap with the same level count
keeps every window (the new model normalises them its own way); a new window length keeps the last rows.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Rolling:
    states: np.ndarray  # (T, 4L), oldest first; only the last ``filled`` rows are real
    filled: int


class RollingWindows:
    """The last ``window`` raw book states of each symbol, at most ``max_symbols`` symbols (LRU)."""

    def __init__(self, max_symbols: int) -> None:
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
        self.max_symbols = max_symbols
        self._windows: OrderedDict[str, _Rolling] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._windows)

    def reset(self, symbol: str) -> None:
        """Forget a symbol's states (a gap in its feed, a new session)."""
        with self._lock:
            self._windows.pop(symbol, None)

    def push(self, symbol: str, state: np.ndarray, window: int) -> tuple[np.ndarray | None, int]:
        """Append one state; return (a copy of the full (T, 4L) window or None, states held).

        The window length and column count come from the model serving this request, so a swap to a model
        with another T or level count adapts each symbol's buffer on its next state.
        """
        columns = state.shape[-1]
        with self._lock:
            rolling = self._windows.get(symbol)
            if rolling is None or rolling.states.shape[1] != columns:
                if rolling is not None:
                    log.warning("symbol %s: book width changed %d -> %d columns; its window restarts",
                                symbol, rolling.states.shape[1], columns)
                rolling = _Rolling(np.zeros((window, columns), dtype=np.float64), 0)
                self._windows[symbol] = rolling
                if len(self._windows) > self.max_symbols:
                    dropped, _ = self._windows.popitem(last=False)
                    log.warning("streaming windows for more than %d symbols: dropped %s (least recently used)",
                                self.max_symbols, dropped)
            elif rolling.states.shape[0] != window:
                rolling.states = _resize(rolling.states, window)
                rolling.filled = min(rolling.filled, window)
            self._windows.move_to_end(symbol)
            states = rolling.states
            # Shift by one row (a 16 KB memmove for T=50, L=10) and write the newest state last.
            states[:-1] = states[1:]
            states[-1] = state
            rolling.filled = min(rolling.filled + 1, window)
            full = states.copy() if rolling.filled == window else None
            return full, rolling.filled


def _resize(states: np.ndarray, window: int) -> np.ndarray:
    """Keep the newest rows when the window length changes (right-aligned, zeros before)."""
    out = np.zeros((window, states.shape[1]), dtype=states.dtype)
    keep = min(window, states.shape[0])
    out[-keep:] = states[-keep:]
    return out
