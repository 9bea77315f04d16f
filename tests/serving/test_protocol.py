"""Request parsing, rolling windows and the reload logic, in-process on real GOOG book rows."""

from __future__ import annotations

import numpy as np
import pytest

from hftpipe.serving.protocol import (
    BadRequest,
    Layout,
    StreamRequest,
    TensorInput,
    WindowRequest,
    parse_v1,
    parse_v2,
    predictions,
)
from hftpipe.serving.runtime import LocalSource, ModelHolder, Reloader, load_served, smoke_input
from hftpipe.serving.stream import RollingWindows
from tests.serving.conftest import LEVELS, WINDOW, make_bundle

LAYOUT = Layout(window=WINDOW, levels=LEVELS)


def test_window_mode_v1_and_v2_parse_to_the_same_array(goog_book):
    windows = np.stack([goog_book[100:120], goog_book[200:220]])
    v1 = parse_v1({"instances": windows.tolist()}, LAYOUT)
    v2 = parse_v2([TensorInput("windows", [2, WINDOW, 40], "FP64", windows.ravel().tolist())], None, LAYOUT)
    assert isinstance(v1, WindowRequest) and isinstance(v2, WindowRequest)
    np.testing.assert_array_equal(v1.windows, windows)
    np.testing.assert_array_equal(v2.windows, windows)


def test_streaming_parse_and_empty_levels_as_null(goog_book):
    state = goog_book[5].tolist()
    state[36] = None  # level 10 ask price empty
    state[37] = 0
    req = parse_v1({"symbol": "GOOG", "book": state, "time": 34200.1}, LAYOUT)
    assert isinstance(req, StreamRequest) and req.symbol == "GOOG"
    assert np.isnan(req.book[36]) and req.book[0] == goog_book[5, 0]
    req2 = parse_v2([TensorInput("book", [1, 40], "FP32", [goog_book[5].tolist()])], {"symbol": "GOOG"}, LAYOUT)
    np.testing.assert_allclose(req2.book, goog_book[5])


def test_a_deeper_book_is_cut_to_the_models_levels_and_a_shallower_one_refused(goog_book):
    """A 10-level feed and a top-of-book model (a tabular default): the server reads the top levels, as
    evaluation cuts deeper data; a book with fewer levels than the model reads stays a 400."""
    top = Layout(window=WINDOW, levels=1)
    req = parse_v1({"symbol": "GOOG", "book": goog_book[5].tolist()}, top)
    assert isinstance(req, StreamRequest) and req.book.shape == (4,)
    np.testing.assert_array_equal(req.book, goog_book[5, :4])
    with pytest.raises(BadRequest, match="must have 40 values"):
        parse_v1({"symbol": "GOOG", "book": goog_book[5, :8].tolist()}, LAYOUT)
    with pytest.raises(BadRequest, match="must have 4 values"):  # not whole levels: no guessing
        parse_v1({"symbol": "GOOG", "book": goog_book[5].tolist()[:-1]}, top)


def _state(book, **changes):
    s = book[5].tolist()
    for i, v in changes.items():
        s[int(i[1:])] = v
    return s


@pytest.mark.parametrize("body, message", [
    ([1, 2], "must be a JSON object, got list"),
    ({"foo": 1}, "missing fields: send 'instances'"),
    ({"instances": [[1.0, 2.0]]}, "must have shape (B, 20, 40)"),
    ({"instances": [[[1.0] * 40] * 19]}, "got shape [1, 19, 40]"),
    ({"instances": []}, "got shape [0]"),
    ({"instances": [[[1.0] * 40] * 19 + [[1.0] * 39]]}, "ragged"),
    ({"instances": [[["1.0"] * 40] * 20]}, "got strings"),
    ({"instances": [[[True] * 40] * 20]}, "got booleans"),
    ({"instances": [[[{"a": 1}] * 40] * 20]}, "must hold numbers, got dict"),
    ({"instances": "abc"}, "must be a JSON array of numbers, got str"),
    ({"instances": [[[float("inf")] * 40] * 20]}, "non-finite value inf"),
    ({"symbol": "GOOG"}, "streaming mode needs 'book'"),
    ({"book": [1.0] * 40}, "streaming mode needs 'symbol'"),
    ({"symbol": 7, "book": [1.0] * 40}, "'symbol' must be a string"),
    ({"symbol": "GO OG", "book": [1.0] * 40}, "is not a ticker"),
    ({"symbol": "GOOG", "book": [1.0] * 12}, "must have 40 values (10 level(s) x 4), got 12"),
    ({"symbol": "GOOG", "book": [[1.0] * 40] * 2}, "must be ONE book state"),
    ({"symbol": "GOOG", "book": [1.0] * 40, "reset": "yes"}, "'reset' must be true or false"),
    ({"symbol": "GOOG", "instances": []}, "not both"),
    ({"symbol": "GOOG", "book": [None] + [1.0] * 39}, "best ask and best bid prices"),
    ({"symbol": "GOOG", "book": [1.0, None] + [1.0] * 38}, "only prices may be null"),
    ({"symbol": "GOOG", "book": [1.0, -5.0] + [1.0] * 38}, "sizes must be >= 0"),
    ({"symbol": "GOOG", "book": [-1.0] + [1.0] * 39}, "prices must be > 0"),
])
def test_v1_bad_input_names_the_problem(body, message):
    with pytest.raises(BadRequest) as err:
        parse_v1(body, LAYOUT)
    assert message in str(err.value)


def test_unknown_symbol_when_the_server_has_a_symbol_list(goog_book):
    with pytest.raises(BadRequest, match="unknown symbol 'AAPL': this server streams GOOG"):
        parse_v1({"symbol": "AAPL", "book": goog_book[0].tolist()}, LAYOUT, frozenset({"GOOG"}))


@pytest.mark.parametrize("inputs, params, message", [
    ([], None, "exactly one input"),
    ([TensorInput("x", [40], "FP64", [1.0] * 40)], None, "unknown input 'x'"),
    ([TensorInput("windows", [1, 20, 40], "INT32", [1] * 800)], None, "datatype 'INT32'"),
    ([TensorInput("windows", [1, 20, 40], "FP64", [1.0] * 799)], None, "needs 800 values, got 799"),
    ([TensorInput("windows", [1, -20, 40], "FP64", [1.0] * 800)], None, "invalid shape"),
    ([TensorInput("windows", [800], "FP64", [1.0] * 800)], None, "must have shape (B, 20, 40)"),
    ([TensorInput("windows", [1, 20, 40], "FP64", [1.0] * 800)], {"symbol": "GOOG"}, "belongs to streaming"),
    ([TensorInput("book", [40], "FP64", [1.0] * 40)], None, "needs the request parameter 'symbol'"),
    ([TensorInput("book", [40], "FP64", [float("nan")] * 40)], {"symbol": "GOOG"}, "non-finite value nan"),
])
def test_v2_bad_input_names_the_problem(inputs, params, message):
    with pytest.raises(BadRequest) as err:
        parse_v2(inputs, params, LAYOUT)
    assert message in str(err.value)


def test_predictions_shape():
    out = predictions(np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), ("down", "stationary", "up"))
    assert out == [{"class": 2, "label": "up", "probabilities": [0.2, 0.3, 0.5]},
                   {"class": 0, "label": "down", "probabilities": [0.6, 0.3, 0.1]}]


def test_rolling_windows_match_slices_and_adapt_to_a_new_length(goog_book):
    rolling = RollingWindows(max_symbols=2)
    for i in range(WINDOW - 1):
        full, filled = rolling.push("GOOG", goog_book[i], WINDOW)
        assert full is None and filled == i + 1
    for i in range(WINDOW - 1, WINDOW + 5):
        full, filled = rolling.push("GOOG", goog_book[i], WINDOW)
        np.testing.assert_array_equal(full, goog_book[i - WINDOW + 1:i + 1])
        assert filled == WINDOW
    # A model with a shorter window keeps the newest states, a longer one waits for more.
    full, _ = rolling.push("GOOG", goog_book[WINDOW + 5], 10)
    np.testing.assert_array_equal(full, goog_book[WINDOW - 4:WINDOW + 6])
    full, filled = rolling.push("GOOG", goog_book[WINDOW + 6], 30)
    assert full is None and filled == 11
    rolling.reset("GOOG")
    assert rolling.push("GOOG", goog_book[0], WINDOW) == (None, 1)


def test_rolling_windows_drop_the_least_recently_used_symbol(goog_book):
    rolling = RollingWindows(max_symbols=2)
    rolling.push("A", goog_book[0], 3)
    rolling.push("B", goog_book[0], 3)
    rolling.push("A", goog_book[1], 3)
    rolling.push("C", goog_book[0], 3)  # B is the least recently used
    assert len(rolling) == 2
    assert rolling.push("A", goog_book[2], 3)[1] == 3
    assert rolling.push("B", goog_book[1], 3)[1] == 1


def test_reloader_swaps_a_good_version_and_refuses_a_broken_one(tmp_path, goog_book):
    folder = make_bundle(tmp_path / "bundle", goog_book, seed=0)
    source = LocalSource(folder, "tiny")
    holder = ModelHolder(load_served(source))
    holder.recent = goog_book[None, 300:300 + WINDOW]
    swaps, refusals = [], []
    reloader = Reloader(holder, source, 0, on_swap=lambda o, n: swaps.append((o.version, n.version)),
                        on_refuse=lambda v, r: refusals.append(v))
    assert reloader.check_once() == "unchanged"
    first = holder.current
    make_bundle(folder, goog_book, seed=1)  # retrained into the same folder: new weights, new version
    assert reloader.check_once() == "swapped"
    assert swaps == [(first.version, holder.current.version)] and first.version != holder.current.version
    second = holder.current
    make_bundle(folder, goog_book, seed=2, nan_weights=True)
    assert reloader.check_once() == "refused"
    assert holder.current is second and len(refusals) == 1
    assert "non-finite" in reloader.refused[refusals[0]]
    assert reloader.check_once() == "unchanged"  # refused once, not retried every interval
    make_bundle(folder, goog_book, seed=3)
    (folder / "model.pt").write_bytes(b"truncated")  # a new version whose weights file is broken
    assert reloader.check_once() == "refused"
    assert holder.current is second and len(refusals) == 2
    assert "does not match" in reloader.refused[refusals[1]]
    # In-flight requests hold the old model object: it still answers after the swap.
    raw = goog_book[None, 400:400 + WINDOW]
    np.testing.assert_allclose(first.bundle.predict_proba(raw).sum(axis=1), 1.0, rtol=1e-6)


def test_smoke_input_prefers_the_last_served_window(goog_book, tmp_path):
    from hftpipe.models.bundle import load_bundle

    bundle = load_bundle(make_bundle(tmp_path / "b", goog_book, window=10))
    recent = goog_book[None, 50:50 + WINDOW]
    np.testing.assert_array_equal(smoke_input(bundle, recent), goog_book[None, 60:70])
    assert smoke_input(bundle, goog_book[None, :5]).shape == (1, 10, 40)  # too short: synthetic


def test_micro_batcher_answers_each_request_with_its_own_rows(tmp_path, goog_book):
    import asyncio

    from hftpipe.models.bundle import load_bundle
    from hftpipe.serving.batching import MicroBatcher

    old = load_bundle(make_bundle(tmp_path / "a", goog_book, seed=0))
    new = load_bundle(make_bundle(tmp_path / "b", goog_book, seed=1))
    batches = []
    for bundle in (old, new):  # count forward passes per model
        forward = bundle.predict_proba
        bundle.predict_proba = lambda raw, f=forward: batches.append(len(raw)) or f(raw)
    requests = [(old if i % 3 else new, np.stack([goog_book[e - WINDOW + 1:e + 1] for e in range(30 + i, 33 + i)]))
                for i in range(7)]

    async def together():
        batcher = MicroBatcher()
        return await asyncio.gather(*(batcher.predict_proba(b, w) for b, w in requests))

    answers = asyncio.run(together())
    assert sorted(batches) == [9, 12]  # one forward pass per model for 7 concurrent requests
    for (bundle, windows), proba in zip(requests, answers, strict=True):
        expected = (old if bundle is old else new)
        np.testing.assert_allclose(proba, load_bundle(expected.path).predict_proba(windows), rtol=1e-6)


def test_reloader_keeps_serving_when_the_source_is_unreachable(tmp_path, goog_book):
    folder = make_bundle(tmp_path / "bundle", goog_book)
    source = LocalSource(folder, "tiny")
    holder = ModelHolder(load_served(source))
    served = holder.current
    (folder / "bundle.json").unlink()  # e.g. the registry is down or the alias was deleted
    assert Reloader(holder, source, 0).check_once() == "unreachable"
    assert holder.current is served


def test_local_source_finds_the_bundle_inside_an_mlflow_model_folder(tmp_path, goog_book):
    folder = make_bundle(tmp_path / "model" / "artifacts" / "bundle", goog_book)
    (tmp_path / "model" / "MLmodel").write_text("flavors:\n  python_function:\n    artifacts:\n"
                                                "      bundle:\n        path: artifacts/bundle\n")
    served = load_served(LocalSource(tmp_path / "model", "tiny"))
    assert served.bundle.path == folder and served.version.startswith("local-")


def test_micro_batcher_waits_one_more_loop_turn_only_when_clients_are_concurrent(tmp_path, goog_book):
    import asyncio

    from hftpipe.models.bundle import load_bundle
    from hftpipe.serving.batching import MicroBatcher

    bundle = load_bundle(make_bundle(tmp_path / "a", goog_book))
    batches = []
    forward = bundle.predict_proba
    bundle.predict_proba = lambda raw: batches.append(len(raw)) or forward(raw)
    window = goog_book[None, 30 - WINDOW:30]

    async def late(batcher: MicroBatcher) -> np.ndarray:  # posted one event-loop turn after the first
        await asyncio.sleep(0)
        return await batcher.predict_proba(bundle, window)

    async def scenario() -> None:
        batcher = MicroBatcher()
        # A lone client (no batch of more than one yet): the forward pass runs on the next turn, without waiting
        # for a request that comes a turn later.
        await asyncio.gather(batcher.predict_proba(bundle, window), late(batcher))
        assert batches == [1, 1]
        await asyncio.gather(*(batcher.predict_proba(bundle, window) for _ in range(3)))
        assert batches == [1, 1, 3]
        # Concurrent clients seen: the late request joins the batch.
        await asyncio.gather(batcher.predict_proba(bundle, window), late(batcher))
        assert batches == [1, 1, 3, 2]

    asyncio.run(scenario())
