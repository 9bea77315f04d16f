"""Every model maps (B, T, 4L) windows to (B, 3) logits at any level count and learns."""

from __future__ import annotations

import pytest
import torch

from hftpipe.errors import ConfigError
from hftpipe.models import MODEL_NAMES, build_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("levels", [1, 5, 10])
def test_shapes_at_any_level_count(name: str, levels: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, levels=levels, window=12, hidden=8, dropout=0.1)
    x = torch.randn(5, 12, 4 * levels)
    out = model(x)
    assert out.shape == (5, 3)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("window", [1, 3])
def test_deeplob_takes_short_windows(window: int) -> None:
    # The paper's unpadded time convolutions would need T >= 19; ours are causal and keep T.
    model = build_model("deeplob", levels=2, window=window, hidden=8)
    assert model(torch.randn(2, window, 8)).shape == (2, 3)


def test_deeplob_time_convolutions_are_causal() -> None:
    # Changing only the last state must leave the convolution features of earlier states unchanged.
    torch.manual_seed(0)
    model = build_model("deeplob", levels=1, window=6, hidden=8).eval()
    x = torch.randn(1, 6, 4)
    y = x.clone()
    y[0, -1] += 100.0
    with torch.no_grad():
        a, b = model.conv_features(x), model.conv_features(y)
    assert torch.equal(a[:, :, :-1], b[:, :, :-1])
    assert not torch.equal(a[:, :, -1], b[:, :, -1])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_model_fits_a_separable_toy_task(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(96, 4, 4)
    y = (x[:, -1, 0] > 0.5).long() + (x[:, -1, 0] > -0.5).long()  # class from one column's last value
    model = build_model(name, levels=1, window=4, hidden=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    first = loss_fn(model(x), y).item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


@pytest.mark.parametrize(("args", "message"), [
    (("cnn", 10, 50, 64, 0.1), "unknown model 'cnn'"),
    (("lstm", 0, 50, 64, 0.1), "levels, window and hidden must be >= 1"),
    (("mlp", 10, 50, 64, 1.0), "train.dropout must be in"),
])
def test_bad_arguments_name_the_problem(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(*args)


def test_book_changes_are_exact_signs_of_one_step_moves() -> None:
    from hftpipe.models.nets import BookChanges

    x = torch.tensor([[[1.0, 5.0], [1.0, 4.0], [1.5, 4.0]]])
    out = BookChanges()(x)
    assert out.shape == (1, 3, 4)
    torch.testing.assert_close(out[0, :, 2:], torch.tensor([[0.0, 0.0], [0.0, -1.0], [1.0, 0.0]]))
    torch.testing.assert_close(out[..., :2], x)


def test_order_flow_summary_matches_a_direct_computation() -> None:
    # Level-1 book in model-input units: mid path 0, 1, 1, 3 (ask = mid + 1, bid = mid - 1), sizes constant
    # except the bid queue growing at the last step.
    from hftpipe.models.nets import OrderFlow

    mid = torch.tensor([0.0, 1.0, 1.0, 3.0])
    x = torch.stack([mid + 1, torch.full((4,), 2.0), mid - 1, torch.tensor([2.0, 2.0, 2.0, 2.5])], dim=-1)[None]
    per_step, summary = OrderFlow(levels=1, window=4)(x)
    assert per_step.shape == (1, 4, 8) and summary.shape == (1, 3 * 2 + 2)  # look-backs 1 and 2 fit in T=4
    # j=1: move 3-1, mean of last 1 mid minus mid 1 back, mean flow sign of last step (bid and ask both up: 1-(-1))
    # j=2: move 3-1, mean(1, 3) - mid 2 back (1), mean flow over (0, 2)
    assert summary[0].tolist() == pytest.approx([2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 0.5, 2.0])
    assert per_step[0, :, 1].tolist() == [0.0, 1.0, 0.0, 2.0]  # one-step mid change, 0 at the first step


def test_lstm_ignores_a_common_shift_of_the_size_columns() -> None:
    # A ticker with k times larger queues shifts every log-size column alike; the LSTM sees sizes only as
    # changes, imbalances and window-relative values, so its output must not move.
    torch.manual_seed(0)
    model = build_model("lstm", levels=3, window=8, hidden=8).eval()
    x = torch.randn(4, 8, 12)
    y = x.clone()
    y[..., 1::2] += 1.7
    with torch.no_grad():
        assert torch.allclose(model(x), model(y), atol=1e-5)
