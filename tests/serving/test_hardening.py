"""Issue 10, in-process: book rules on served inputs, strict V2 binary decoding, flood-resistant streaming
windows, refused versions retried, escaped and bounded client-error logging, corrupt model cache."""

from __future__ import annotations

import logging
import shutil
import struct

import numpy as np
import orjson
import pytest

from hftpipe.data.book_checks import check_book_states
from hftpipe.errors import InvalidBookState, ModelError
from hftpipe.serving.protocol import BadRequest, Layout, parse_v1, split_v2_body
from hftpipe.serving.runtime import LocalSource, ModelHolder, Reloader, load_served
from hftpipe.serving.stream import RollingWindows, SymbolLimit
from tests.serving.conftest import LEVELS, WINDOW, make_bundle

LAYOUT = Layout(window=WINDOW, levels=LEVELS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------- book rules (17)

def _changed(book: np.ndarray, **values: float) -> np.ndarray:
    state = book[5].copy()
    for key, value in values.items():
        state[int(key[1:])] = value
    return state


@pytest.mark.parametrize("changes, message", [
    ({"c0": 579.40}, "locked (best ask == best bid)"),  # row 5: best bid 579.40
    ({"c0": 579.30}, "crossed (best ask < best bid)"),
    ({"c4": 1e308}, "ask prices must be between 1e-08 and 1e+12"),
    ({"c6": 1e-300}, "bid prices must be between 1e-08 and 1e+12"),
    ({"c8": float("nan")}, "ask price is missing on a level with size > 0"),
    ({"c9": 0.0}, "ask level has a price but size 0"),
    ({"c4": 600.0}, "ask prices must strictly increase with depth"),
    ({"c1": 1e13}, "sizes must be between 0 and 1e+12"),
])
def test_check_book_states_refuses_what_training_data_refuses(goog_book, changes, message):
    assert goog_book[5, 2] == 579.40
    check_book_states(goog_book)  # the real sample passes every rule
    with pytest.raises(InvalidBookState, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        check_book_states(_changed(goog_book, **changes))


def test_check_book_states_accepts_empty_deep_levels_and_refuses_gaps(goog_book):
    state = goog_book[5].copy()
    state[36], state[37] = np.nan, 0.0  # level 10 ask empty: fine
    check_book_states(state)
    state = goog_book[5].copy()
    state[8], state[9] = np.nan, 0.0  # level 3 ask empty with level 4 occupied: a hole
    with pytest.raises(InvalidBookState, match="contiguous"):
        check_book_states(state)


@pytest.mark.parametrize("changes, message", [
    ({"c0": 579.30}, "crossed"), ({"c4": 1e308}, "between 1e-08"), ({"c6": 1e-300}, "between 1e-08"),
])
def test_served_inputs_get_the_book_rules_in_both_modes(goog_book, changes, message):
    state = _changed(goog_book, **changes)
    with pytest.raises(BadRequest, match=message):
        parse_v1({"symbol": "GOOG", "book": state.tolist()}, LAYOUT)
    window = goog_book[:WINDOW].copy()
    window[7] = state
    with pytest.raises(BadRequest, match=rf"'instances': .*{message}"):
        parse_v1({"instances": [window.tolist()]}, LAYOUT)


# ---------------------------------------------------------------------------------- V2 binary tensors (4)

def _binary(header: dict, payload: bytes) -> tuple[bytes, str]:
    head = orjson.dumps(header)
    return head + payload, str(len(head))


def _windows_header(size: int, datatype: str = "FP32", shape: list | None = None) -> dict:
    return {"inputs": [{"name": "windows", "shape": shape or [1, WINDOW, 40], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


def test_split_v2_body_decodes_a_well_formed_binary_tensor(goog_book):
    window = goog_book[:WINDOW].astype(np.float32)
    body, length = _binary(_windows_header(window.nbytes), window.tobytes())
    head, binary = split_v2_body(body, length)
    np.testing.assert_array_equal(binary["windows"], window.reshape(1, WINDOW, 40))
    assert head["inputs"][0]["name"] == "windows"
    labels = struct.pack("<I", 4) + b"GOOG" + struct.pack("<I", 0)
    body, length = _binary({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES",
                                        "parameters": {"binary_data_size": len(labels)}}]}, labels)
    assert split_v2_body(body, length)[1]["s"].tolist() == [b"GOOG", b""]
    plain = orjson.dumps({"inputs": [{"name": "book", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]})
    assert split_v2_body(plain, None) == (orjson.loads(plain), {})  # JSON without the header (tritonclient)


FP64_BYTES = np.zeros((1, WINDOW, 40)).tobytes()  # 6400 bytes


@pytest.mark.parametrize("header, payload, length, message", [
    (_windows_header(100), FP64_BYTES, None, "FP32 shape [1, 20, 40] is 3200 bytes, binary_data_size is 100"),
    (_windows_header(6400), FP64_BYTES, None, "binary_data_size is 6400 (FP64 data sent as FP32?)"),
    (_windows_header(-8), FP64_BYTES, None, "binary_data_size must be a non-negative integer, got -8"),
    (_windows_header("3200"), FP64_BYTES, None, "binary_data_size must be a non-negative integer"),
    (_windows_header(99999), FP64_BYTES, None, "runs past the end of the body"),
    (_windows_header(3200), FP64_BYTES, None, "3200 bytes follow the last binary input"),
    (_windows_header(6400), FP64_BYTES, "12abc", "must be a whole number of bytes"),
    (_windows_header(6400), FP64_BYTES, "-5", "must be a whole number of bytes"),
    (_windows_header(6400), FP64_BYTES, "99999999", "must be a whole number of bytes"),
    (_windows_header(6400), FP64_BYTES, "3", "is not JSON"),
    ({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
     struct.pack("<I", 4000) + b"GOOG", None, "BYTES element 0 declares 4000 bytes but only 4 remain"),
    ({"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
     struct.pack("<I", 4) + b"GOOG", None, "BYTES element 1 has no 4-byte length prefix"),
    ({"inputs": [{"name": "w", "shape": [-1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
     b"\0" * 4, None, "'shape' must be a list of non-negative integers"),
    ({"inputs": [{"name": "w", "shape": [1], "datatype": "FP32"}]}, b"", None,
     "has neither 'data' nor parameters.binary_data_size"),
    ({"inputs": "x"}, b"", None, "with an 'inputs' list"),
])
def test_split_v2_body_refuses_malformed_binary_requests(header, payload, length, message):
    body, default_length = _binary(header, payload)
    with pytest.raises(BadRequest) as err:
        split_v2_body(body, length or default_length)
    assert message in str(err.value)


# ------------------------------------------------------------------------------- streaming state (13)

def test_a_flood_of_new_symbols_is_limited_per_client_and_evicts_no_real_symbol(goog_book, caplog):
    clock = Clock()
    rolling = RollingWindows(max_symbols=10, max_new_per_client=50, log_interval_s=60.0, clock=clock)
    for i in range(WINDOW):  # two real feeds fill their windows
        rolling.push("GOOG", goog_book[i], WINDOW, client="10.0.0.1")
        rolling.push("MSFT", goog_book[i], WINDOW, client="10.0.0.1")
    caplog.set_level(logging.WARNING, logger="hftpipe.serving.stream")
    refused = 0
    for i in range(1000):
        clock.now += 0.01
        try:
            rolling.push(f"X{i}", goog_book[0], WINDOW, client="10.0.0.66")
        except SymbolLimit as exc:
            refused += 1
            assert "at most 50 a minute (serve.max_new_symbols_per_client)" in str(exc)
    assert refused == 950  # 50 new symbols a minute for that client
    assert "GOOG" in rolling and "MSFT" in rolling  # the flood only evicted other one-off names
    full, _ = rolling.push("GOOG", goog_book[WINDOW], WINDOW, client="10.0.0.1")
    np.testing.assert_array_equal(full, goog_book[1:WINDOW + 1])
    assert rolling.evicted_total == 42  # 50 new names, 8 free slots
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1  # one summary line per interval, not one per eviction
    assert "dropped 1 symbol(s)" in drops[0].getMessage()
    clock.now += 61
    for i in range(50):  # a minute later the client has a new budget; the next report sums up
        rolling.push(f"Y{i}", goog_book[0], WINDOW, client="10.0.0.66")
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 2 and "dropped 42 symbol(s)" in drops[1].getMessage()
    # Another client is not limited by the first one's budget.
    rolling.push("AAPL", goog_book[0], WINDOW, client="10.0.0.2")


def test_when_every_window_is_an_active_real_feed_a_new_symbol_is_refused(goog_book):
    clock = Clock()
    rolling = RollingWindows(max_symbols=2, clock=clock)
    for i in range(3):
        rolling.push("A", goog_book[i], 3)
        rolling.push("B", goog_book[i], 3)
    with pytest.raises(SymbolLimit, match="all 2 streaming windows"):
        rolling.push("C", goog_book[0], 3)
    clock.now += 61  # A and B idle for a minute: their windows can go
    rolling.push("C", goog_book[0], 3)
    assert "C" in rolling and len(rolling) == 2


# ----------------------------------------------------------------------------- reload (7, 16)

def test_a_refused_version_is_retried_later_and_a_swap_is_logged_at_warning(tmp_path, goog_book, caplog):
    folder = make_bundle(tmp_path / "bundle", goog_book, seed=0)
    source = LocalSource(folder, "tiny")
    holder = ModelHolder(load_served(source))
    clock = Clock()
    reloader = Reloader(holder, source, 0, retry_refused_s=30.0, clock=clock)
    make_bundle(folder, goog_book, seed=1)
    good = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(b"corrupt")  # e.g. a bad artifact, later restored
    assert reloader.check_once() == "refused"
    (folder / "model.pt").write_bytes(good)
    assert reloader.check_once() == "unchanged"  # not retried on every poll...
    clock.now += 31
    caplog.set_level(logging.WARNING, logger="hftpipe.serving.runtime")
    assert reloader.check_once() == "swapped"  # ...but once the retry interval has passed
    assert reloader.refused == {}
    swaps = [r for r in caplog.records if "hot reload: now serving" in r.getMessage()]
    assert len(swaps) == 1 and swaps[0].levelno == logging.WARNING


# ---------------------------------------------------------------------------------- logging (9)

def test_client_errors_are_one_escaped_line_each_and_bounded_per_interval(caplog):
    from hftpipe.serving.http_guard import ClientErrorLog, printable

    assert printable("nope\nINFO forged line") == "nope\\nINFO forged line"
    assert "\n" not in printable("a\r\nb\x1b[31m" + "x" * 1000) and printable("x" * 1000).endswith("...")
    clock = Clock()
    errors = ClientErrorLog(interval_s=10.0, burst=5, clock=clock)
    caplog.set_level(logging.WARNING, logger="hftpipe.serving.http_guard")
    for _ in range(100):
        errors(404, "POST", "/v1/models/x\nERROR forged:predict", "Model with name x\nERROR forged does not exist.")
    clock.now += 11
    errors(400, "POST", "/v1/models/m:predict", "bad")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 7  # 5 lines, 1 summary of the 95 others, then the next interval's first line
    assert all("\n" not in line for line in lines)
    assert lines[0] == "404 POST /v1/models/x\\nERROR forged:predict: Model with name x\\nERROR forged does not exist."
    assert "95 more client errors" in lines[5]
    assert not any(r.exc_info for r in caplog.records)


# ------------------------------------------------------------------------------ model cache (7)

@pytest.mark.slow
def test_a_corrupt_cached_download_is_discarded_and_a_corrupt_artifact_is_not_cached(tmp_path, goog_book,
                                                                                       hftpipe_home):
    from hftpipe.registry import resolve_model
    from tests.serving.conftest import register_version

    version = register_version(make_bundle(tmp_path / "b", goog_book), "cache-lob")
    uri = f"models:/cache-lob/{version}"
    bundle_dir, _, _ = resolve_model(uri)
    assert "model_cache" in str(bundle_dir)
    good = (bundle_dir / "model.pt").read_bytes()
    (bundle_dir / "model.pt").write_bytes(b"bit rot")
    again, _, _ = resolve_model(uri)  # before the fix: the corrupt copy was returned forever
    assert (again / "model.pt").read_bytes() == good
    # Now the registry's own copy is corrupt: refused with advice, nothing cached; restored: served.
    stored = [p for p in hftpipe_home.rglob("model.pt") if "model_cache" not in str(p) and p.read_bytes() == good]
    assert stored, "the registry's artifact was not found under HFTPIPE_HOME"
    for p in stored:
        p.write_bytes(b"truncated upload")
    cached = hftpipe_home / "model_cache" / "cache-lob"
    for entry in cached.iterdir():
        shutil.rmtree(entry)
    with pytest.raises(ModelError) as err:
        resolve_model(uri)
    assert "the artifact in the registry is corrupt" in str(err.value)
    assert "`hftpipe registry rollback`" in str(err.value)
    assert list(cached.iterdir()) == []  # nothing cached: restoring the artifact is enough
    for p in stored:
        p.write_bytes(good)
    restored, _, _ = resolve_model(uri)
    assert (restored / "model.pt").read_bytes() == good
