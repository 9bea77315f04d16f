"""Request parsing and response shaping for the model server (no kserve import: testable in-process).

Two input modes, each on V1 (``{"instances": ...}`` / ``{"symbol", "book"}``) and V2 (Open Inference
Protocol tensors), both described in ``docs/architecture.md``:

- window mode: B raw windows of T book states, (B, T, 4L), LOBSTER column order, prices in dollars;
- streaming mode: one raw book state (4L,) for a named symbol; the server keeps the rolling window.

An empty book level travels as a ``null`` price (JSON has no NaN) with size 0, like the canonical event
table's NaN. Everything a caller can get wrong raises :class:`BadRequest` with a message that says what
was expected; the server turns it into HTTP 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from hftpipe.data.book_checks import check_book_states
from hftpipe.errors import InvalidBookState

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:^=/-]{0,31}$")
WINDOW_INPUT = "windows"  # V2 input name in window mode
BOOK_INPUT = "book"  # V2 input name in streaming mode
FLOAT_DATATYPES = ("FP32", "FP64")


class BadRequest(ValueError):
    """The caller's fault: the message says what was wrong and what is expected (HTTP 400)."""


@dataclass(frozen=True)
class WindowRequest:
    """Window mode: raw windows (B, T, 4L) float64."""

    windows: np.ndarray


@dataclass(frozen=True)
class StreamRequest:
    """Streaming mode: one raw book state (4L,) float64 for ``symbol`` (``book`` None: reset only)."""

    symbol: str
    book: np.ndarray | None
    reset: bool = False


@dataclass(frozen=True)
class Layout:
    """What the served model takes: T states of L levels (4L columns)."""

    window: int
    levels: int

    @property
    def columns(self) -> int:
        return 4 * self.levels

    def describe(self) -> str:
        return (f"{self.window} book states x {self.columns} columns "
                f"({self.levels} level(s) x ask price, ask size, bid price, bid size)")


def _numbers(data: Any, what: str) -> np.ndarray:
    """Nested lists of numbers (``null`` allowed, it becomes NaN) to a float64 array; strict on types.

    Raises:
        BadRequest: ragged nesting, strings, booleans, objects, or NaN/Infinity literals.
    """
    if not isinstance(data, (list, tuple)):
        raise BadRequest(f"{what} must be a JSON array of numbers, got {type(data).__name__}")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what} is ragged: every row must have the same length ({exc})") from None
    kind = arr.dtype.kind
    if kind in "iuf":
        arr = arr.astype(np.float64, copy=False)
        if kind == "f" and not np.isfinite(arr).all():
            # Only a NaN/Infinity literal (non-standard JSON) or an overflowing number gets here.
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise BadRequest(f"{what} has a non-finite value {float(arr[where])} at index {list(where)}; "
                             "send null for an empty level's price")
        return arr
    if kind == "O":
        flat = arr.ravel()
        for i, v in enumerate(flat):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if isinstance(v, (list, tuple)):
                    raise BadRequest(f"{what} is ragged or nested too deeply: every row must have the same "
                                     "length")
                raise BadRequest(f"{what} must hold numbers, got {type(v).__name__} {v!r:.40}")
            if isinstance(v, float) and not math.isfinite(v):
                raise BadRequest(f"{what} has a non-finite value {v!r}; send null for an empty level's price")
        return np.array([np.nan if v is None else v for v in flat], dtype=np.float64).reshape(arr.shape)
    if kind == "b":
        raise BadRequest(f"{what} must hold numbers, got booleans")
    if kind in "US":
        raise BadRequest(f"{what} must hold numbers, got strings (e.g. {str(arr.ravel()[0])!r:.40})")
    raise BadRequest(f"{what} must hold numbers, got {arr.dtype}")


def check_books(books: np.ndarray, layout: Layout, what: str) -> None:
    """Check raw book states (..., 4L): shape, then the training data's book rules (check_book_states).

    Raises:
        BadRequest: naming the first offending column.
    """
    if books.shape[-1] != layout.columns:
        raise BadRequest(f"{what}: each book state must have {layout.columns} values "
                         f"({layout.levels} level(s) x 4), got {books.shape[-1]}")
    # Fast path: one comparison per half (NaN fails both); the messages are worked out only on failure.
    sizes = books[..., 1::2]
    if not (sizes >= 0).all():
        if np.isnan(sizes).any():
            raise BadRequest(f"{what}: sizes (columns 2, 4, ...) must be numbers; only prices may be null")
        raise BadRequest(f"{what}: sizes must be >= 0")
    prices = books[..., 0::2]
    if not (prices > 0).all():
        missing = np.isnan(prices)
        if missing[..., :2].any():
            raise BadRequest(f"{what}: the best ask and best bid prices (columns 1 and 3) must be present; "
                             "the mid price is taken from them")
        if (prices[~missing] <= 0).any():
            raise BadRequest(f"{what}: prices must be > 0 (dollars); send null for an empty level")
    try:
        check_book_states(books)  # the training data's book rules: crossed/locked, absurd prices, NaN levels
    except InvalidBookState as exc:
        raise BadRequest(f"{what}: {exc}") from None


def _check_windows(windows: np.ndarray, layout: Layout, what: str) -> np.ndarray:
    expected = f"(B, {layout.window}, {layout.columns})"
    if windows.ndim != 3 or windows.shape[1:] != (layout.window, layout.columns) or windows.shape[0] == 0:
        raise BadRequest(f"{what} must have shape {expected}: B windows of {layout.describe()}; "
                         f"got shape {list(windows.shape)}")
    check_books(windows, layout, what)
    return windows


def _check_symbol(symbol: Any, allowed: frozenset[str]) -> str:
    if not isinstance(symbol, str):
        raise BadRequest(f"'symbol' must be a string such as \"GOOG\", got {type(symbol).__name__}")
    if not SYMBOL_PATTERN.match(symbol):
        raise BadRequest(f"'symbol' {symbol!r:.40} is not a ticker: 1-32 letters, digits or . _ : ^ = / -, "
                         "starting with a letter or digit")
    if allowed and symbol not in allowed:
        raise BadRequest(f"unknown symbol {symbol!r}: this server streams {', '.join(sorted(allowed))} "
                         "(serve.symbols)")
    return symbol


def _stream_request(symbol: Any, book: Any, reset: Any, layout: Layout,
                    allowed: frozenset[str], book_what: str) -> StreamRequest:
    symbol = _check_symbol(symbol, allowed)
    if not isinstance(reset, bool):
        raise BadRequest(f"'reset' must be true or false, got {reset!r:.40}")
    if book is None:
        if not reset:
            raise BadRequest(f"streaming mode needs {book_what}: one book state of {layout.columns} values")
        return StreamRequest(symbol=symbol, book=None, reset=True)
    arr = _numbers(book, book_what) if not isinstance(book, np.ndarray) else book.astype(np.float64)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise BadRequest(f"{book_what} must be ONE book state of {layout.columns} values, "
                         f"got shape {list(arr.shape)}")
    if arr.size > layout.columns and arr.size % 4 == 0:
        # A deeper book than the model reads (a 10-level feed, a top-of-book model): its top levels, as
        # evaluation cuts deeper data. A shallower one stays an error: the model needs every level it reads.
        arr = arr[: layout.columns]
    check_books(arr, layout, book_what)
    return StreamRequest(symbol=symbol, book=arr, reset=reset)


def parse_v1(body: Any, layout: Layout, allowed: frozenset[str] = frozenset()) -> WindowRequest | StreamRequest:
    """Parse a V1 body: ``{"instances": (B,T,4L)}`` or ``{"symbol": str, "book": (4L,), "reset"?: bool}``."""
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    has_window = "instances" in body
    has_stream = "symbol" in body or "book" in body
    if has_window and has_stream:
        raise BadRequest("send either 'instances' (window mode) or 'symbol' + 'book' (streaming mode), "
                         "not both")
    if has_window:
        windows = _numbers(body["instances"], "'instances'")
        return WindowRequest(_check_windows(windows, layout, "'instances'"))
    if has_stream:
        if "symbol" not in body:
            raise BadRequest("streaming mode needs 'symbol' (the ticker whose rolling window 'book' extends)")
        return _stream_request(body["symbol"], body.get("book"), body.get("reset", False), layout, allowed,
                               "'book'")
    raise BadRequest("missing fields: send 'instances' (B windows of "
                     f"{layout.describe()}) or 'symbol' and 'book' (one state of {layout.columns} values); "
                     f"got keys {sorted(body)[:10]}")


@dataclass(frozen=True)
class TensorInput:
    """One V2 input tensor, independent of kserve's classes."""

    name: str
    shape: list[int]
    datatype: str
    data: Any


def _tensor(t: TensorInput) -> np.ndarray:
    what = f"input '{t.name}'"
    if t.datatype not in FLOAT_DATATYPES:
        raise BadRequest(f"{what} has datatype {t.datatype!r}; book values need FP32 or FP64")
    shape = list(t.shape or [])
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"{what} has an invalid shape {shape!r:.80}")
    arr = t.data if isinstance(t.data, np.ndarray) else _numbers(t.data, what)
    if arr.size != math.prod(shape):
        raise BadRequest(f"{what}: shape {shape} needs {math.prod(shape)} values, got {arr.size}")
    return arr.astype(np.float64, copy=False).reshape(shape)


def parse_v2(inputs: list[TensorInput], parameters: dict[str, Any] | None, layout: Layout,
             allowed: frozenset[str] = frozenset()) -> WindowRequest | StreamRequest:
    """Parse a V2 request: input ``windows`` (B,T,4L), or input ``book`` (4L,) + parameter ``symbol``."""
    parameters = parameters or {}
    if len(inputs) != 1:
        raise BadRequest(f"send exactly one input ('{WINDOW_INPUT}' or '{BOOK_INPUT}'), got {len(inputs)}")
    (tensor,) = inputs
    if tensor.name == WINDOW_INPUT:
        if "symbol" in parameters:
            raise BadRequest(f"parameter 'symbol' belongs to streaming mode (input '{BOOK_INPUT}'), "
                             f"not to input '{WINDOW_INPUT}'")
        return WindowRequest(_check_windows(_tensor(tensor), layout, f"input '{WINDOW_INPUT}'"))
    if tensor.name == BOOK_INPUT:
        if "symbol" not in parameters:
            raise BadRequest(f"streaming mode needs the request parameter 'symbol' with input '{BOOK_INPUT}'")
        return _stream_request(parameters["symbol"], _tensor(tensor), parameters.get("reset", False), layout,
                               allowed, f"input '{BOOK_INPUT}'")
    raise BadRequest(f"unknown input {tensor.name!r:.40}: send '{WINDOW_INPUT}' (B, {layout.window}, "
                     f"{layout.columns}) or '{BOOK_INPUT}' ({layout.columns},) with parameter 'symbol'")


def predictions(proba: np.ndarray, class_names: tuple[str, ...]) -> list[dict[str, Any]]:
    """One ``{"class", "label", "probabilities"}`` dict per row of (B, C) probabilities."""
    classes = proba.argmax(axis=1).tolist()
    return [{"class": c, "label": class_names[c], "probabilities": p}
            for c, p in zip(classes, proba.tolist(), strict=True)]


# ------------------------------------------------------------------- V2 binary-tensor extension (REST)

INFERENCE_HEADER = "inference-header-content-length"
# Bytes per element of each fixed-size OIP datatype (little-endian on the wire); BYTES is length-prefixed.
_ITEMSIZE = {"BOOL": 1, "UINT8": 1, "UINT16": 2, "UINT32": 4, "UINT64": 8, "INT8": 1, "INT16": 2, "INT32": 4,
             "INT64": 8, "FP16": 2, "FP32": 4, "FP64": 8}
_NUMPY = {"BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "<i1",
          "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def _bytes_elements(raw: bytes, count: int, what: str) -> np.ndarray:
    """Decode a BYTES tensor: ``count`` elements, each a 4-byte little-endian length then that many bytes."""
    out, pos = [], 0
    for i in range(count):
        if pos + 4 > len(raw):
            raise BadRequest(f"{what}: BYTES element {i} has no 4-byte length prefix ({len(raw) - pos} bytes left)")
        length = int.from_bytes(raw[pos:pos + 4], "little")
        pos += 4
        if pos + length > len(raw):
            raise BadRequest(f"{what}: BYTES element {i} declares {length} bytes but only {len(raw) - pos} remain")
        out.append(raw[pos:pos + length])
        pos += length
    if pos != len(raw):
        raise BadRequest(f"{what}: {len(raw) - pos} bytes left over after {count} BYTES element(s)")
    return np.array(out, dtype=object)


def _shape_of(inp: dict[str, Any], what: str) -> list[int]:
    shape = inp.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BadRequest(f"{what}: 'shape' must be a list of non-negative integers, got {shape!r:.80}")
    if math.prod(shape) > 1 << 31:
        raise BadRequest(f"{what}: shape {shape} is too large")
    return shape


def split_v2_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a V2 REST body into its JSON header and its binary tensors, checking every declared size.

    Args:
        body: the raw request body.
        header_length: the ``Inference-Header-Content-Length`` header; None when absent, in which case the
            whole body must be JSON (clients such as tritonclient send JSON without a content type).
    Returns:
        (the JSON object, {input name: decoded array} for the inputs sent as binary data).
    Raises:
        BadRequest: a non-numeric or out-of-range header length, JSON that is not an inference request, a
            ``binary_data_size`` that is not a non-negative integer, does not match the datatype and shape,
            or runs past the body, a malformed BYTES element, or bytes left over after the last tensor.
    """
    import orjson  # local: keeps this module's import light for the domain-side callers

    if header_length is None:
        json_length = len(body)
    else:
        text = header_length.strip()
        if not text.isdigit() or int(text) > len(body):
            raise BadRequest(f"the {INFERENCE_HEADER} header must be a whole number of bytes between 0 and the "
                             f"body size {len(body)}, got {header_length!r:.40}")
        json_length = int(text)
    try:
        head = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        where = "the request body" if header_length is None else f"the first {json_length} bytes (JSON header)"
        raise BadRequest(f"{where} is not JSON: {exc}") from None
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise BadRequest("the inference request must be a JSON object with an 'inputs' list")
    binary: dict[str, np.ndarray] = {}
    pos = json_length
    for i, inp in enumerate(head["inputs"]):
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str) or not isinstance(inp.get("datatype"), str):
            raise BadRequest(f"input {i} must be an object with a string 'name', 'shape' and 'datatype'")
        what = f"input {inp['name']!r:.40}"
        shape = _shape_of(inp, what)
        params = inp.get("parameters") or {}
        if not isinstance(params, dict):
            raise BadRequest(f"{what}: 'parameters' must be an object")
        if "data" in inp or "binary_data_size" not in params:
            if "data" not in inp:
                raise BadRequest(f"{what} has neither 'data' nor parameters.binary_data_size")
            continue
        size = params["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"{what}: binary_data_size must be a non-negative integer, got {size!r:.40}")
        if pos + size > len(body):
            raise BadRequest(f"{what}: binary_data_size {size} runs past the end of the body "
                             f"({len(body) - pos} bytes left)")
        raw = body[pos:pos + size]
        pos += size
        datatype = inp["datatype"].upper()
        count = math.prod(shape)
        if datatype == "BYTES":
            binary[inp["name"]] = _bytes_elements(raw, count, what).reshape(shape)
        elif datatype in _ITEMSIZE:
            expected = count * _ITEMSIZE[datatype]
            if size != expected:
                raise BadRequest(f"{what}: {datatype} shape {shape} is {expected} bytes, binary_data_size is {size}"
                                 + (" (FP64 data sent as FP32?)" if datatype == "FP32" and size == 2 * expected
                                    else ""))
            binary[inp["name"]] = np.frombuffer(raw, dtype=_NUMPY[datatype]).reshape(shape)
        else:
            raise BadRequest(f"{what}: unknown datatype {datatype!r:.20}")
    if pos != len(body):
        raise BadRequest(f"{len(body) - pos} bytes follow the last binary input: check each binary_data_size "
                         f"and the {INFERENCE_HEADER} header")
    return head, binary
