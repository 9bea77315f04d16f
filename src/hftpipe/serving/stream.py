"""Per-symbol rolling windows of raw book states for streaming mode.

A live feed sends one book state per event; the server keeps each symbol's last T states and predicts
once T have arrived. States are kept RAW (dollars and shares), so a model swap with the same level count
keeps every window (the new model normalises them its own way); a new window length keeps the last rows.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Rolling:
    states: np.ndarray  # (T, 4L), oldest first; only the last ``filled`` rows are real
    filled: int
    last_used: float = 0.0  # clock() of the last state pushed


class SymbolLimit(ValueError):
    """A client asked for more new symbols than its budget allows (HTTP 429)."""


class RollingWindows:
    """The last ``window`` raw book states of each symbol, at most ``max_symbols`` symbols.

    Flood-resistant: a symbol starts on probation and becomes established once it has filled a window
    (a real feed); when room is needed the least recently used symbol on probation goes first, so a flood
    of one-off names only evicts other one-off names. Each client (IP) may add at most
    ``max_new_per_client`` symbols per minute (0: no limit), and evictions are logged as one summary line
    per ``log_interval_s`` instead of a line each.
    """

    def __init__(self, max_symbols: int, max_new_per_client: int = 0, log_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_symbols < 1:
            raise ValueError(f"max_symbols must be >= 1, got {max_symbols}")
        self.max_symbols = max_symbols
        self.max_new_per_client = max_new_per_client
        self.log_interval_s = log_interval_s
        self.clock = clock
        self.evicted_total = 0
        self._probation: OrderedDict[str, _Rolling] = OrderedDict()
        self._established: OrderedDict[str, _Rolling] = OrderedDict()
        self._new_by_client: dict[str, deque[float]] = {}  # client -> clock() of each new symbol, last minute
        self._evicted_since_log: list[str] = []
        self._evicted_count = 0
        self._last_log = -math.inf
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._probation) + len(self._established)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._probation or symbol in self._established

    def reset(self, symbol: str) -> None:
        """Forget a symbol's states (a gap in its feed, a new session)."""
        with self._lock:
            self._probation.pop(symbol, None)
            self._established.pop(symbol, None)

    def _admit(self, client: str) -> None:
        """Count one new symbol against ``client``'s budget for the last minute, or raise SymbolLimit."""
        if self.max_new_per_client <= 0:
            return
        now = self.clock()
        stamps = self._new_by_client.get(client)
        if stamps is None:
            if len(self._new_by_client) > 10_000:  # many clients: forget those idle for a minute
                self._new_by_client = {c: d for c, d in self._new_by_client.items() if d and d[-1] > now - 60}
            stamps = self._new_by_client[client] = deque()
        while stamps and stamps[0] <= now - 60.0:
            stamps.popleft()
        if len(stamps) >= self.max_new_per_client:
            raise SymbolLimit(f"too many new symbols from this client: at most {self.max_new_per_client} a minute "
                              "(serve.max_new_symbols_per_client); retry later, or list the symbols you stream in "
                              "serve.symbols")
        stamps.append(now)

    def _victim(self) -> tuple[OrderedDict[str, _Rolling], str]:
        """Where room comes from: the LRU symbol on probation, else an established one idle for a minute.

        Raises:
            SymbolLimit: every window belongs to an established symbol updated within the last minute.
        """
        if self._probation:
            return self._probation, next(iter(self._probation))
        oldest = next(iter(self._established))
        if self.clock() - self._established[oldest].last_used >= 60.0:
            return self._established, oldest
        raise SymbolLimit(f"all {self.max_symbols} streaming windows belong to symbols updated within the last "
                          "minute (serve.max_symbols): retry later")

    def _evict(self, segment: OrderedDict[str, _Rolling], dropped: str) -> None:
        del segment[dropped]
        self.evicted_total += 1
        self._evicted_count += 1
        if len(self._evicted_since_log) < 5:
            self._evicted_since_log.append(dropped)
        now = self.clock()
        if now - self._last_log >= self.log_interval_s:
            log.warning("streaming windows: dropped %d symbol(s) since the last report (more than %d symbols, "
                        "serve.max_symbols; least recently used first, new symbols before established ones), "
                        "e.g. %s", self._evicted_count, self.max_symbols, ", ".join(self._evicted_since_log))
            self._last_log = now
            self._evicted_count = 0
            self._evicted_since_log = []

    def push(self, symbol: str, state: np.ndarray, window: int, client: str = "") -> tuple[np.ndarray | None, int]:
        """Append one state; return (a copy of the full (T, 4L) window or None, states held).

        The window length and column count come from the model serving this request, so a swap to a model
        with another T or level count adapts each symbol's buffer on its next state.

        Raises:
            SymbolLimit: ``symbol`` is new and ``client`` has used its budget of new symbols.
        """
        columns = state.shape[-1]
        with self._lock:
            segment = self._established if symbol in self._established else self._probation
            rolling = segment.get(symbol)
            now = self.clock()
            if rolling is None:
                victim = self._victim() if len(self) >= self.max_symbols else None
                self._admit(client)
                if victim is not None:
                    self._evict(*victim)
            if rolling is None or rolling.states.shape[1] != columns:
                if rolling is not None:
                    log.info("symbol %s: book width changed %d -> %d columns; its window restarts",
                             symbol, rolling.states.shape[1], columns)
                    del segment[symbol]
                rolling = _Rolling(np.zeros((window, columns), dtype=np.float64), 0)
                segment = self._probation
                segment[symbol] = rolling
            elif rolling.states.shape[0] != window:
                rolling.states = _resize(rolling.states, window)
                rolling.filled = min(rolling.filled, window)
            segment.move_to_end(symbol)
            rolling.last_used = now
            states = rolling.states
            # Shift by one row (a 16 KB memmove for T=50, L=10) and write the newest state last.
            states[:-1] = states[1:]
            states[-1] = state
            rolling.filled = min(rolling.filled + 1, window)
            if rolling.filled == window and segment is self._probation:
                # A full window: a real feed, no longer the first to go.
                self._established[symbol] = self._probation.pop(symbol)
            full = states.copy() if rolling.filled == window else None
            return full, rolling.filled


def _resize(states: np.ndarray, window: int) -> np.ndarray:
    """Keep the newest rows when the window length changes (right-aligned, zeros before)."""
    out = np.zeros((window, states.shape[1]), dtype=states.dtype)
    keep = min(window, states.shape[0])
    out[-keep:] = states[-keep:]
    return out
