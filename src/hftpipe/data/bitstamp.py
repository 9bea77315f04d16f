"""Bitstamp order-by-order (L3) data: an order book builder and the batch loader of a recorded capture.

Bitstamp's ``live_orders_<pair>`` channel sends every limit order's life: ``order_created``,
``order_changed`` (the order's new *remaining* amount, possibly at a new price: a taker's changes carry
the price of each fill) and ``order_deleted`` (filled or cancelled). :class:`L3Book` turns that stream,
plus trades, into the canonical book of the top L levels after each event (the layout of
``hftpipe.data.schema``: ask_price_k, ask_size_k, bid_price_k, bid_size_k; NaN price / 0 size for an
empty level). The same object serves the batch loader (:func:`load_bitstamp`, one compiled call over the
whole capture) and the live client (``hftpipe.feeds.bitstamp``, one call per message), so both produce
the same book from the same events.

A capture starts mid-session, and the builder says so rather than hiding it (:class:`BuildReport`):

- orders created before the capture are unknown: their deletions are counted and ignored
  (``unknown_deletes``); a change of an unknown order tells its price and remaining amount, so the
  order is adopted (``unknown_changes``);
- outlier prices (<= 0, or >= ``outlier_price``, e.g. Bitstamp's 0.0 and 999999999.0) are counted and
  ignored (``outliers``);
- events before the book is trustworthy (the snapshot burst, or ``warmup_s`` seconds) build the book
  but emit no row (``warmup_rows``);
- the book can be crossed (best bid >= best ask). While a taker sweeps the book the feed shows it
  crossed for a few messages (the taker's ``created`` at its limit, then one change per fill); those
  rows are held back (``crossed_rows``) and trades that arrive meanwhile are emitted once the book is
  uncrossed again (``deferred_trades``). When the book stays crossed for more than ``cross_grace``
  events, the crossing orders on the side that did *not* move are stale (their deletion was lost, e.g.
  before the capture began): they are removed (``repairs`` orders in ``repair_events`` repairs).

Units: prices in the quote currency (USD), sizes in satoshis (1e-8 BTC) as integers, so the canonical
``size`` column stays an integer and the book suite's checks hold unchanged.

Speed: the per-event work runs in numba-compiled code over flat arrays: an open-addressing hash table of
resting orders and, per side, a sorted array of price levels with the best level at the end (most
events touch the top, so inserts and removals there shift few entries); the top L levels are copied
from the array's end after each event. ``bench/l3.py`` measures it against a naive per-event rebuild.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from hftpipe.data.schema import EVENT_COLUMNS, EVENT_DTYPES, EventMeta, EventTable, book_columns
from hftpipe.errors import DataFormatError

log = logging.getLogger(__name__)

VENUE = "bitstamp"
DEFAULT_LEVELS = 10
SATOSHI = 1e-8  # BTC per size unit
SIZE_SCALE = 100_000_000  # size units per BTC
OUTLIER_PRICE = 999_999_999.0
CLOSING_BURST_MIN = 1000  # trailing deletions at one millisecond taken for a collector's closing burst
CROSS_GRACE = 200  # events a crossed book may last before stale crossing orders are removed

# Actions of the builder's event stream (trades are folded in as a fourth kind).
CREATED, CHANGED, DELETED, TRADE = 0, 1, 2, 3
ACTION_CODES = {"created": CREATED, "changed": CHANGED, "deleted": DELETED}
BID, ASK = 0, 1
# emit flags per event: 1 emit a row, 0 warm-up (book only, counted), 2 silent (snapshot load)
EMIT, WARMUP, SILENT = 1, 0, 2

# LOBSTER event codes in the canonical table.
T_SUBMIT, T_CANCEL, T_DELETE, T_EXEC = 1, 2, 3, 4

_EMPTY, _TOMB = -1, -2
# Indices of the builder's integer state vector.
S_USED, S_TOMB, S_CROSS_RUN, S_FRESH_SIDE, S_PENDING = 0, 1, 2, 3, 4
C_EVENTS, C_ROWS, C_UNKNOWN_DEL, C_UNKNOWN_CHG, C_OUTLIER, C_ZERO, C_DUP, C_CROSSED, C_REPAIRS, \
    C_REPAIR_EVENTS, C_WARMUP, C_DEFERRED, C_DROPPED_TRADES, C_TRANSIENT = range(5, 19)
_STATE_SIZE = 19
_MAX_PENDING = 4096

# Status codes of the compiled loop.
_DONE, _GROW_ORDERS, _GROW_LEVELS, _OUT_FULL = 0, 1, 2, 3


@dataclass
class BuildReport:
    """What the builder counted: the evidence that a mid-session capture was handled, not hidden."""

    events: int = 0  # order and trade events fed to the builder
    rows: int = 0  # rows (book states) emitted
    unknown_deletes: int = 0  # deletions of orders created before the capture: ignored
    unknown_changes: int = 0  # changes of unknown orders: adopted as resting orders
    outliers: int = 0  # events with a price <= 0 or >= outlier_price: ignored
    zero_volume: int = 0  # created events with no amount: ignored
    duplicate_creates: int = 0  # a create of a known order: treated as a change
    crossed_rows: int = 0  # order events whose book was crossed or locked: no row
    transient: int = 0  # crossed runs that ended with the book as before (a rejected taker, e.g. IOC): no row
    repairs: int = 0  # stale crossing orders removed
    repair_events: int = 0  # times the book was uncrossed by removing stale orders
    warmup_rows: int = 0  # events inside the warm-up: book built, no row
    deferred_trades: int = 0  # trades that arrived while crossed, emitted after it uncrossed
    dropped_trades: int = 0  # trades lost because too many were waiting (should stay 0)
    closing_rows_dropped: int = 0  # a capture's synthetic end-of-capture deletions (batch loader only)
    snapshot_orders: int = 0  # resting orders loaded from a snapshot

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------------
# Compiled core. Everything below works on flat numpy arrays so a batch call and a live call share it.


@njit(cache=True, inline="always")
def _hash(oid: int, mask: int) -> int:
    # Bitstamp ids are large and their low bits are not uniform: fold the high bits in.
    return (oid ^ (oid >> 15) ^ (oid >> 31)) & mask


@njit(cache=True)
def _find(hk: np.ndarray, oid: int) -> int:
    mask = hk.shape[0] - 1
    i = _hash(oid, mask)
    while True:
        k = hk[i]
        if k == oid:
            return i
        if k == _EMPTY:
            return -1
        i = (i + 1) & mask


@njit(cache=True)
def _insert_slot(hk: np.ndarray, oid: int, st: np.ndarray) -> int:
    """Slot for a new order id (the caller checked it is absent and the table has room)."""
    mask = hk.shape[0] - 1
    i = _hash(oid, mask)
    while True:
        k = hk[i]
        if k == _EMPTY:
            st[S_USED] += 1
            hk[i] = oid
            return i
        if k == _TOMB:
            st[S_TOMB] -= 1
            st[S_USED] += 1
            hk[i] = oid
            return i
        i = (i + 1) & mask


@njit(cache=True)
def _remove_slot(hk: np.ndarray, slot: int, st: np.ndarray) -> None:
    hk[slot] = _TOMB
    st[S_USED] -= 1
    st[S_TOMB] += 1


@njit(cache=True)
def _level_add(keys: np.ndarray, qty: np.ndarray, n: np.ndarray, s: int, key: float, q: int) -> None:
    """Add q at a level (key = price for bids, -price for asks; ascending, best at the end)."""
    m = n[s]
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[s, mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < m and keys[s, lo] == key:
        qty[s, lo] += q
        if qty[s, lo] == 0:  # only reached by a negative q that empties the level
            for j in range(lo, m - 1):
                keys[s, j] = keys[s, j + 1]
                qty[s, j] = qty[s, j + 1]
            n[s] = m - 1
        return
    if q <= 0:
        return  # removing from a level we do not hold: nothing to do (kept consistent by callers)
    for j in range(m, lo, -1):
        keys[s, j] = keys[s, j - 1]
        qty[s, j] = qty[s, j - 1]
    keys[s, lo] = key
    qty[s, lo] = q
    n[s] = m + 1


@njit(cache=True, inline="always")
def _key(s: int, price: float) -> float:
    return price if s == BID else -price


@njit(cache=True)
def _is_crossed(keys: np.ndarray, n: np.ndarray) -> bool:
    if n[BID] == 0 or n[ASK] == 0:
        return False
    return keys[BID, n[BID] - 1] >= -keys[ASK, n[ASK] - 1]


@njit(cache=True)
def _repair(hk: np.ndarray, o_side: np.ndarray, o_price: np.ndarray, keys: np.ndarray, qty: np.ndarray,
            n: np.ndarray, st: np.ndarray, fresh: int) -> None:
    """Remove the stale side's orders priced through the fresh side's best price."""
    stale = 1 - fresh
    best_bid = keys[BID, n[BID] - 1]
    best_ask = -keys[ASK, n[ASK] - 1]
    removed = 0
    for i in range(hk.shape[0]):
        if hk[i] >= 0 and o_side[i] == stale:
            p = o_price[i]
            if (stale == ASK and p <= best_bid) or (stale == BID and p >= best_ask):
                _remove_slot(hk, i, st)
                removed += 1
    if stale == ASK:
        while n[ASK] > 0 and -keys[ASK, n[ASK] - 1] <= best_bid:
            n[ASK] -= 1
    else:
        while n[BID] > 0 and keys[BID, n[BID] - 1] >= best_ask:
            n[BID] -= 1
    st[C_REPAIRS] += removed
    st[C_REPAIR_EVENTS] += 1


@njit(cache=True)
def _write_row(keys: np.ndarray, qty: np.ndarray, n: np.ndarray, levels: int, out_book: np.ndarray, r: int) -> None:
    nb, na = n[BID], n[ASK]
    for k in range(levels):
        c = 4 * k
        if k < na:
            out_book[r, c] = -keys[ASK, na - 1 - k]
            out_book[r, c + 1] = qty[ASK, na - 1 - k]
        else:
            out_book[r, c] = np.nan
            out_book[r, c + 1] = 0.0
        if k < nb:
            out_book[r, c + 2] = keys[BID, nb - 1 - k]
            out_book[r, c + 3] = qty[BID, nb - 1 - k]
        else:
            out_book[r, c + 2] = np.nan
            out_book[r, c + 3] = 0.0


@njit(cache=True)
def _same_row(out_book: np.ndarray, r: int, last: np.ndarray) -> bool:
    for j in range(last.shape[0]):
        a = out_book[r, j]
        b = last[j]
        if a != b and not (np.isnan(a) and np.isnan(b)):
            return False
    return True


@njit(cache=True)
def _run(hk, o_side, o_price, o_qty, keys, qty, n, st, pending, last,
         action, side, oid, price, size, emit, start, end, levels, outlier_price, cross_grace,
         out_src, out_type, out_size, out_price, out_dir, out_book, r0):
    """Apply events [start, end); write emitted rows from r0. Returns (next event, next row, status)."""
    r = r0
    cap_rows = out_src.shape[0]
    lcap = keys.shape[1]
    hcap = hk.shape[0]
    for i in range(start, end):
        # Room checks before touching anything, so a grow-and-resume never half-applies an event.
        if 2 * (st[S_USED] + st[S_TOMB] + 1) > hcap:
            return i, r, _GROW_ORDERS
        if n[BID] + 2 > lcap or n[ASK] + 2 > lcap:
            return i, r, _GROW_LEVELS
        if cap_rows - r < st[S_PENDING] + 1:
            return i, r, _OUT_FULL
        st[C_EVENTS] += 1
        a = action[i]
        s = side[i]
        p = price[i]
        q = size[i]
        code = 0  # LOBSTER code of the row this event would emit (0: none)
        ev_size = 0
        ev_price = p
        ev_side = s
        if not (p > 0.0 and p < outlier_price):
            st[C_OUTLIER] += 1
            if a == CHANGED:  # a known order moved to a nonsense price: it is no longer usable
                slot = _find(hk, oid[i])
                if slot >= 0:
                    _level_add(keys, qty, n, o_side[slot], _key(o_side[slot], o_price[slot]), -o_qty[slot])
                    _remove_slot(hk, slot, st)
            continue
        if a == TRADE:
            code = T_EXEC
            ev_size = q
        else:
            slot = _find(hk, oid[i])
            if a == CREATED and slot >= 0:
                st[C_DUP] += 1
                a = CHANGED
            if a == CREATED:
                if q <= 0:
                    st[C_ZERO] += 1
                    continue
                slot = _insert_slot(hk, oid[i], st)
                o_side[slot] = s
                o_price[slot] = p
                o_qty[slot] = q
                _level_add(keys, qty, n, s, _key(s, p), q)
                code = T_SUBMIT
                ev_size = q
            elif a == CHANGED:
                if slot < 0:
                    if q <= 0:
                        st[C_UNKNOWN_DEL] += 1
                        continue
                    st[C_UNKNOWN_CHG] += 1
                    slot = _insert_slot(hk, oid[i], st)
                    o_side[slot] = s
                    o_price[slot] = p
                    o_qty[slot] = q
                    _level_add(keys, qty, n, s, _key(s, p), q)
                    code = T_SUBMIT
                    ev_size = q
                else:
                    s0 = o_side[slot]
                    p0 = o_price[slot]
                    q0 = o_qty[slot]
                    _level_add(keys, qty, n, s0, _key(s0, p0), -q0)
                    if q <= 0:
                        _remove_slot(hk, slot, st)
                        code = T_DELETE
                        ev_size = q0
                        ev_price = p0
                        ev_side = s0
                    else:
                        o_side[slot] = s
                        o_price[slot] = p
                        o_qty[slot] = q
                        _level_add(keys, qty, n, s, _key(s, p), q)
                        if p == p0 and s == s0 and q < q0:
                            code = T_CANCEL
                            ev_size = q0 - q
                        else:  # re-priced or grown: LOBSTER has no modify, so it is a new submission
                            code = T_SUBMIT
                            ev_size = q
            else:  # DELETED
                if slot < 0:
                    st[C_UNKNOWN_DEL] += 1
                    continue
                s0 = o_side[slot]
                p0 = o_price[slot]
                q0 = o_qty[slot]
                _level_add(keys, qty, n, s0, _key(s0, p0), -q0)
                _remove_slot(hk, slot, st)
                code = T_DELETE
                ev_size = q0
                ev_price = p0
                ev_side = s0
        crossed = _is_crossed(keys, n)
        if crossed:
            if st[S_CROSS_RUN] == 0:
                st[S_FRESH_SIDE] = ev_side
            st[S_CROSS_RUN] += 1
            if st[S_CROSS_RUN] > cross_grace:
                _repair(hk, o_side, o_price, keys, qty, n, st, st[S_FRESH_SIDE])
                st[S_CROSS_RUN] = -1  # the next check must not take the repaired book for a no-op
                crossed = False
        if crossed:
            if emit[i] == EMIT:
                if code == T_EXEC:
                    if st[S_PENDING] < pending.shape[0]:
                        pending[st[S_PENDING]] = i
                        st[S_PENDING] += 1
                        st[C_DEFERRED] += 1
                    else:
                        st[C_DROPPED_TRADES] += 1
                else:
                    st[C_CROSSED] += 1
            elif emit[i] == WARMUP:
                st[C_WARMUP] += 1
            continue
        ended_run = st[S_CROSS_RUN] > 0
        st[S_CROSS_RUN] = 0
        if emit[i] != EMIT:
            if emit[i] == WARMUP:
                st[C_WARMUP] += 1
            continue
        if ended_run and st[S_PENDING] == 0:
            # A crossed run that leaves the top L as they were (a taker that was rejected or cancelled
            # without a fill) changed nothing a reader of the book could see: no row.
            _write_row(keys, qty, n, levels, out_book, r)
            if _same_row(out_book, r, last):
                st[C_TRANSIENT] += 1
                continue
        for j in range(st[S_PENDING]):  # trades that waited for an uncrossed book come first
            t = pending[j]
            out_src[r] = t
            out_type[r] = T_EXEC
            out_size[r] = size[t]
            out_price[r] = price[t]
            out_dir[r] = 1 if side[t] == BID else -1
            _write_row(keys, qty, n, levels, out_book, r)
            r += 1
        st[S_PENDING] = 0
        out_src[r] = i
        out_type[r] = code
        out_size[r] = ev_size
        out_price[r] = ev_price
        out_dir[r] = 1 if ev_side == BID else -1
        _write_row(keys, qty, n, levels, out_book, r)
        last[:] = out_book[r]
        r += 1
    return end, r, _DONE


@njit(cache=True)
def _rehash(hk, o_side, o_price, o_qty, nk, ns, np_, nq, st):
    st[S_USED] = 0
    st[S_TOMB] = 0
    for i in range(hk.shape[0]):
        if hk[i] >= 0:
            j = _insert_slot(nk, hk[i], st)
            ns[j] = o_side[i]
            np_[j] = o_price[i]
            nq[j] = o_qty[i]


# --------------------------------------------------------------------------------------------------


@dataclass
class BookRows:
    """Rows emitted by one :meth:`L3Book.apply` call: the book after each emitted event."""

    source: np.ndarray  # index of the input event (within the call) each row belongs to
    event_type: np.ndarray  # LOBSTER codes 1-4
    size: np.ndarray  # size units (satoshis)
    price: np.ndarray
    direction: np.ndarray  # +1 bid side, -1 ask side (for a trade: the passive order's side)
    book: np.ndarray  # (rows, 4L) in LOBSTER order

    def __len__(self) -> int:
        return len(self.source)


class L3Book:
    """An order-by-order book: feed it order events and trades, read the top L levels after each.

    Args:
        levels: L, the book levels written per row.
        cross_grace: events a crossed (or locked) book may last before stale crossing orders go.
        outlier_price: prices at or above it (and <= 0) are ignored.
    """

    def __init__(self, levels: int = DEFAULT_LEVELS, *, cross_grace: int = CROSS_GRACE,
                 outlier_price: float = OUTLIER_PRICE, order_capacity: int = 1 << 14,
                 level_capacity: int = 1 << 12) -> None:
        if levels < 1:
            raise DataFormatError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.cross_grace = int(cross_grace)
        self.outlier_price = float(outlier_price)
        self._order_capacity = _pow2(order_capacity)
        self._level_capacity = int(level_capacity)
        self.snapshot_orders = 0
        self.reset()

    def reset(self) -> None:
        """Forget every order (a reconnect rebuilds from a snapshot); counters are kept."""
        cap = self._order_capacity
        self._hk = np.full(cap, _EMPTY, dtype=np.int64)
        self._o_side = np.zeros(cap, dtype=np.int8)
        self._o_price = np.zeros(cap, dtype=np.float64)
        self._o_qty = np.zeros(cap, dtype=np.int64)
        self._keys = np.zeros((2, self._level_capacity), dtype=np.float64)
        self._qty = np.zeros((2, self._level_capacity), dtype=np.int64)
        self._n = np.zeros(2, dtype=np.int64)
        old = getattr(self, "_st", None)
        self._st = np.zeros(_STATE_SIZE, dtype=np.int64)
        if old is not None:
            self._st[C_EVENTS:] = old[C_EVENTS:]
        self._pending = np.zeros(_MAX_PENDING, dtype=np.int64)
        self._last = np.full(4 * self.levels, -1.0)  # the last emitted row (never equal to a real one yet)

    # -- state ---------------------------------------------------------------------------------

    @property
    def report(self) -> BuildReport:
        st = self._st
        return BuildReport(
            events=int(st[C_EVENTS]), rows=int(st[C_ROWS]), unknown_deletes=int(st[C_UNKNOWN_DEL]),
            unknown_changes=int(st[C_UNKNOWN_CHG]), outliers=int(st[C_OUTLIER]), zero_volume=int(st[C_ZERO]),
            duplicate_creates=int(st[C_DUP]), crossed_rows=int(st[C_CROSSED]), repairs=int(st[C_REPAIRS]),
            repair_events=int(st[C_REPAIR_EVENTS]), warmup_rows=int(st[C_WARMUP]),
            deferred_trades=int(st[C_DEFERRED]), dropped_trades=int(st[C_DROPPED_TRADES]),
            transient=int(st[C_TRANSIENT]),
            snapshot_orders=self.snapshot_orders)

    @property
    def crossed(self) -> bool:
        return bool(_is_crossed(self._keys, self._n))

    @property
    def order_count(self) -> int:
        return int(self._st[S_USED])

    def top(self) -> np.ndarray:
        """The current top-L book as 4L floats (LOBSTER order)."""
        out = np.empty((1, 4 * self.levels), dtype=np.float64)
        _write_row(self._keys, self._qty, self._n, self.levels, out, 0)
        return out[0]

    def orders(self) -> pd.DataFrame:
        """Resting orders: id, side ('bid'/'ask'), price, size (units); a snapshot of the book."""
        live = self._hk >= 0
        return pd.DataFrame({"id": self._hk[live], "side": np.where(self._o_side[live] == BID, "bid", "ask"),
                             "price": self._o_price[live], "size": self._o_qty[live]})

    def depth(self, side: str) -> list[tuple[float, int]]:
        """Every price level of one side, best first: (price, size units)."""
        s = BID if side == "bid" else ASK
        m = int(self._n[s])
        keys = self._keys[s, :m][::-1]
        return [(float(k if s == BID else -k), int(v)) for k, v in zip(keys, self._qty[s, :m][::-1])]

    # -- feeding -------------------------------------------------------------------------------

    def load_snapshot(self, order_id: np.ndarray, side: np.ndarray, price: np.ndarray,
                      size: np.ndarray) -> None:
        """Reset and load resting orders (a REST snapshot): no rows, not counted as events."""
        self.reset()
        events_before = int(self._st[C_EVENTS])
        n = len(order_id)
        self.apply(np.full(n, CREATED, dtype=np.int8), side, order_id, price, size,
                   emit=np.full(n, SILENT, dtype=np.int8))
        self._st[C_EVENTS] = events_before  # a snapshot is state, not events
        self._last[:] = self.top()  # as if the snapshot's book had been the last row emitted
        self.snapshot_orders += self.order_count

    def apply(self, action: np.ndarray, side: np.ndarray, order_id: np.ndarray, price: np.ndarray,
              size: np.ndarray, emit: np.ndarray | None = None) -> BookRows:
        """Apply events (arrays of equal length) and return the book after each emitted one.

        Args:
            action: CREATED / CHANGED / DELETED / TRADE per event (int8).
            side: BID / ASK (for a trade, the passive order's side).
            order_id: Bitstamp order id (for a trade, the passive order's id).
            price: quote currency; size: size units (satoshis), the order's remaining amount.
            emit: per event EMIT (row), WARMUP (book only, counted) or SILENT; default all EMIT.
        """
        n = len(action)
        action = np.ascontiguousarray(action, dtype=np.int8)
        side = np.ascontiguousarray(side, dtype=np.int8)
        order_id = np.ascontiguousarray(order_id, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        size = np.ascontiguousarray(size, dtype=np.int64)
        emit = np.full(n, EMIT, dtype=np.int8) if emit is None else np.ascontiguousarray(emit, dtype=np.int8)
        cap = n + int(self._st[S_PENDING]) + 1  # every event emits at most itself plus the trades waiting
        out = (np.empty(cap, dtype=np.int64), np.empty(cap, dtype=np.int8), np.empty(cap, dtype=np.int64),
               np.empty(cap, dtype=np.float64), np.empty(cap, dtype=np.int8),
               np.empty((cap, 4 * self.levels), dtype=np.float64))
        i, r = 0, 0
        while True:
            i, r, status = _run(self._hk, self._o_side, self._o_price, self._o_qty, self._keys, self._qty,
                                self._n, self._st, self._pending, self._last, action, side, order_id, price, size, emit,
                                i, n, self.levels, self.outlier_price, self.cross_grace, *out, r)
            if status == _DONE:
                break
            if status == _GROW_ORDERS:
                self._grow_orders()
            elif status == _GROW_LEVELS:
                self._grow_levels()
            else:  # pragma: no cover - cap is sized for every event plus every waiting trade
                raise AssertionError("L3Book output buffer too small")
        self._st[C_ROWS] += r
        src, typ, sz, pr, dr, book = out
        return BookRows(src[:r], typ[:r], sz[:r], pr[:r], dr[:r], book[:r])

    def _grow_orders(self) -> None:
        cap = self._hk.shape[0] * 2
        nk = np.full(cap, _EMPTY, dtype=np.int64)
        ns, np_, nq = np.zeros(cap, np.int8), np.zeros(cap, np.float64), np.zeros(cap, np.int64)
        _rehash(self._hk, self._o_side, self._o_price, self._o_qty, nk, ns, np_, nq, self._st)
        self._hk, self._o_side, self._o_price, self._o_qty = nk, ns, np_, nq
        self._order_capacity = cap

    def _grow_levels(self) -> None:
        cap = self._keys.shape[1] * 2
        keys = np.zeros((2, cap), np.float64)
        qty = np.zeros((2, cap), np.int64)
        keys[:, : self._keys.shape[1]] = self._keys
        qty[:, : self._qty.shape[1]] = self._qty
        self._keys, self._qty = keys, qty
        self._level_capacity = cap


def _pow2(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())


# --------------------------------------------------------------------------------------------------
# Batch loader of a recorded capture (the ob-analytics layout: orders.csv.gz, trades.csv, meta.json).

ORDER_COLUMNS = ("id", "timestamp", "exchange_timestamp", "price", "volume", "action", "direction")
TRADE_COLUMNS = ("trade_id", "timestamp", "exchange_timestamp", "price", "amount", "buy_order_id",
                 "sell_order_id", "side")


@dataclass(frozen=True)
class Capture:
    """A capture folder's files and what its meta.json says."""

    orders: Path
    trades: Path | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def pair(self) -> str:
        return str(self.meta.get("pair") or "btcusd")

    @property
    def symbol(self) -> str:
        return self.pair.upper()


def is_bitstamp_capture(path: str | Path) -> bool:
    """True for a capture folder (orders.csv[.gz] inside) or an orders file with the Bitstamp header."""
    path = Path(path)
    if path.is_dir():
        return any((path / name).exists() for name in ("orders.csv.gz", "orders.csv"))
    if not path.is_file() or not path.name.endswith((".csv", ".csv.gz")):
        return False
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError, EOFError):
        return False
    return tuple(header) == ORDER_COLUMNS


def find_capture(path: str | Path) -> Capture:
    """The orders file, trades file (optional) and meta.json (optional) behind a folder or orders file."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(f"{path} does not exist")
    folder = path if path.is_dir() else path.parent
    if path.is_dir():
        orders = next((folder / n for n in ("orders.csv.gz", "orders.csv") if (folder / n).exists()), None)
        if orders is None:
            raise DataFormatError(f"{path}: a Bitstamp capture folder holds orders.csv.gz (or orders.csv)")
    else:
        orders = path
    trades = next((folder / n for n in ("trades.csv", "trades.csv.gz") if (folder / n).exists()), None)
    meta: dict[str, Any] = {}
    if (folder / "meta.json").exists():
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{folder / 'meta.json'} is not valid JSON: {exc}") from exc
    return Capture(orders=orders, trades=trades, meta=meta)


def read_orders(path: Path) -> pd.DataFrame:
    """Read the orders CSV; check its columns and values."""
    try:
        frame = pd.read_csv(path, dtype={"id": np.int64, "timestamp": np.int64, "exchange_timestamp": np.int64,
                                         "price": np.float64, "volume": np.float64, "action": str,
                                         "direction": str})
    except (pd.errors.ParserError, ValueError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read Bitstamp orders: {exc}") from exc
    if tuple(frame.columns) != ORDER_COLUMNS:
        raise DataFormatError(f"{path}: expected columns {','.join(ORDER_COLUMNS)}, got {','.join(frame.columns)}")
    bad = ~frame["action"].isin(ACTION_CODES) | ~frame["direction"].isin(("bid", "ask"))
    if bad.any():
        row = frame.loc[bad].iloc[0]
        raise DataFormatError(f"{path}: row {int(bad.idxmax()) + 2} has action {row['action']!r} / direction "
                              f"{row['direction']!r}; expected created|changed|deleted and bid|ask")
    return frame


def read_trades(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, ValueError, EOFError, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read Bitstamp trades: {exc}") from exc
    if tuple(frame.columns) != TRADE_COLUMNS:
        raise DataFormatError(f"{path}: expected columns {','.join(TRADE_COLUMNS)}, got {','.join(frame.columns)}")
    if not frame["side"].isin(("buy", "sell")).all():
        raise DataFormatError(f"{path}: trade side must be buy or sell")
    return frame


def to_units(amount: np.ndarray | pd.Series) -> np.ndarray:
    """BTC amounts to integer size units (satoshis), rounded (the feed prints 8 decimals)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * SIZE_SCALE).astype(np.int64)


@dataclass
class EventStream:
    """Order events and trades merged into the builder's input, in exchange-time order."""

    action: np.ndarray
    side: np.ndarray
    order_id: np.ndarray
    price: np.ndarray
    size: np.ndarray
    exchange_ms: np.ndarray  # exchange time, ms since the Unix epoch
    emit: np.ndarray
    closing_rows_dropped: int = 0

    def __len__(self) -> int:
        return len(self.action)


def capture_events(capture: Capture, *, warmup_s: float = 0.0, trades: bool = True) -> EventStream:
    """The capture's orders (and trades) as one builder input stream, warm-up and closing rows marked.

    The snapshot burst (meta.json's ``synthetic_created`` first rows, else every row at the first
    timestamp) and the first ``warmup_s`` seconds are warm-up; meta.json's ``synthetic_deleted`` last rows
    (every order closed at the end time; without meta.json, at least ``CLOSING_BURST_MIN`` trailing
    deletions at the final millisecond) are dropped, since a book that empties in one millisecond is an
    artefact of the capture. Trades are merged in by exchange time, then receive time.
    """
    orders = read_orders(capture.orders)
    if orders.empty:
        raise DataFormatError(f"{capture.orders}: no order events")
    closing = int(capture.meta.get("synthetic_deleted", 0) or 0)
    if not capture.meta:
        # No meta.json: a collector's closing burst still shows as every trailing row a deletion at the
        # final millisecond, more of them than any market deletes at once.
        exch_all = orders["exchange_timestamp"].to_numpy(np.int64)
        last = int(np.searchsorted(exch_all, exch_all[-1], side="left"))
        tail_n = len(orders) - last
        if tail_n >= CLOSING_BURST_MIN and (orders["action"].iloc[last:] == "deleted").all():
            closing = tail_n
    if closing:
        tail = orders.iloc[-closing:]
        if not ((tail["action"] == "deleted").all() and tail["exchange_timestamp"].nunique() == 1):
            raise DataFormatError(f"{capture.orders}: meta.json says the last {closing} rows are synthetic "
                                  "deletions at the end time, but they are not")
        orders = orders.iloc[:-closing]
    snapshot = int(capture.meta.get("synthetic_created", 0) or 0)
    exch = orders["exchange_timestamp"].to_numpy(np.int64)
    if not snapshot:
        snapshot = int(np.searchsorted(exch, exch[0], side="right"))
    warm = np.zeros(len(orders), dtype=bool)
    warm[:snapshot] = True
    if warmup_s > 0:
        warm |= exch < exch[0] + round(warmup_s * 1000)
    ev = pd.DataFrame({
        "action": orders["action"].map(ACTION_CODES).to_numpy(np.int8),
        "side": np.where(orders["direction"].to_numpy() == "bid", BID, ASK).astype(np.int8),
        "order_id": orders["id"].to_numpy(np.int64),
        "price": orders["price"].to_numpy(np.float64),
        "size": to_units(orders["volume"]),
        "exchange_ms": exch,
        "recv_ms": orders["timestamp"].to_numpy(np.int64),
        "warm": warm,
        "kind": np.zeros(len(orders), dtype=np.int8),
    })
    if trades and capture.trades is not None:
        tr = read_trades(capture.trades)
        buy = tr["side"].to_numpy() == "buy"
        # The row of an execution carries the passive order: a buyer-initiated trade hits an ask.
        tev = pd.DataFrame({
            "action": np.full(len(tr), TRADE, dtype=np.int8),
            "side": np.where(buy, ASK, BID).astype(np.int8),
            "order_id": np.where(buy, tr["sell_order_id"], tr["buy_order_id"]).astype(np.int64),
            "price": tr["price"].to_numpy(np.float64),
            "size": to_units(tr["amount"]),
            "exchange_ms": tr["exchange_timestamp"].to_numpy(np.int64),
            "recv_ms": tr["timestamp"].to_numpy(np.int64),
            "warm": tr["exchange_timestamp"].to_numpy(np.int64) < (exch[snapshot - 1] if snapshot else exch[0])
            + round(warmup_s * 1000),
            "kind": np.ones(len(tr), dtype=np.int8),
        })
        # Trades inside the snapshot burst or after the capture's end cannot be placed: drop them.
        tev = tev[(tev["exchange_ms"] >= exch[0]) & (tev["exchange_ms"] <= exch[-1])]
        ev = pd.concat([ev, tev], ignore_index=True)
        ev = ev.sort_values(["exchange_ms", "recv_ms", "kind"], kind="stable").reset_index(drop=True)
    emit = np.where(ev["warm"].to_numpy(), WARMUP, EMIT).astype(np.int8)
    return EventStream(action=ev["action"].to_numpy(np.int8), side=ev["side"].to_numpy(np.int8),
                       order_id=ev["order_id"].to_numpy(np.int64), price=ev["price"].to_numpy(np.float64),
                       size=ev["size"].to_numpy(np.int64), exchange_ms=ev["exchange_ms"].to_numpy(np.int64),
                       emit=emit, closing_rows_dropped=closing)


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_bitstamp(
    path: str | Path,
    *,
    levels: int | None = None,
    symbol: str | None = None,
    date: str | None = None,
    warmup_s: float = 0.0,
    cross_grace: int = CROSS_GRACE,
    trades: bool = True,
) -> EventTable:
    """Load a Bitstamp L3 capture (folder or orders file) into the canonical event table.

    Time is seconds after midnight (UTC) of the session date, the date of the first emitted event.
    Event codes: created 1, changed 2 (less remaining at the same price) or 1 (re-priced or grown),
    deleted 3, trade 4 (direction: the passive order's side). The builder's counts are in
    ``meta.source_report``.

    Raises:
        DataFormatError: missing files, wrong columns, unknown actions, or no event left to emit.
    """
    capture = find_capture(path)
    levels = int(levels or DEFAULT_LEVELS)
    stream = capture_events(capture, warmup_s=warmup_s, trades=trades)
    book = L3Book(levels, cross_grace=cross_grace)
    rows = book.apply(stream.action, stream.side, stream.order_id, stream.price, stream.size, stream.emit)
    report = book.report
    report.closing_rows_dropped = stream.closing_rows_dropped
    if len(rows) == 0:
        raise DataFormatError(f"{path}: no event left after the warm-up; lower the warm-up")
    exch_ms = stream.exchange_ms[rows.source]
    day = datetime.fromtimestamp(exch_ms[0] / 1000.0, tz=UTC).date()
    midnight_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    frame = pd.DataFrame({
        "time": (exch_ms - midnight_ms) / 1000.0,
        "type": rows.event_type,
        "order_id": stream.order_id[rows.source],
        "size": rows.size,
        "price": rows.price,
        "direction": rows.direction,
    })
    frame = pd.concat([frame, pd.DataFrame(rows.book, columns=book_columns(levels))], axis=1)
    frame = frame.astype(EVENT_DTYPES)
    start_s = (int(stream.exchange_ms[0]) - midnight_ms) / 1000.0
    end_s = (int(stream.exchange_ms[-1]) - midnight_ms) / 1000.0
    files = [capture.orders] + ([capture.trades] if capture.trades is not None and trades else [])
    counts = report.to_dict()
    log.info("bitstamp %s: %s", capture.orders, ", ".join(f"{k}={v}" for k, v in counts.items()))
    meta = EventMeta(
        symbol=symbol or capture.symbol,
        date=date or day.isoformat(),
        levels=levels,
        rows=len(frame),
        source=str(path),
        source_sha256=_sha256(files),
        session_start=min(start_s, float(frame["time"].iloc[0])),
        session_end=max(end_s, float(frame["time"].iloc[-1])),
        venue=VENUE,
        source_report=counts,
    )
    return EventTable(frame=frame[list(EVENT_COLUMNS) + book_columns(levels)].reset_index(drop=True), meta=meta)
