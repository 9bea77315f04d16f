"""PyTorch models over book windows: (B, T, 4L) float32 (``model_input`` of raw windows) -> logits (B, 3).

Every model is built from the same five numbers (name, levels, window, hidden, dropout) so that a bundle
can rebuild it from ``bundle.json`` alone.
"""

from __future__ import annotations

import torch
from torch import nn

from hftpipe.errors import ConfigError
from hftpipe.features.labels import N_CLASSES

MODEL_NAMES: tuple[str, ...] = ("deeplob", "lstm", "mlp", "logreg")


class BookChanges(nn.Module):
    """Append the sign of each column's one-step change (0 at the first step): (B, T, C) -> (B, T, 2C).

    Whether the best quote moved or a queue grew or shrank between two events is the core of order flow,
    but after z-scoring such moves are tiny next to the level spread of a column (a half-tick mid move is a
    few hundredths of a std), so small models hardly see them. Their signs are exact (equal raw values give
    equal inputs), scale-free and carry over between tickers. On the GOOG sample this lifted validation
    macro-F1 at k=10 by 1-4 points for the MLP and logistic regression.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        change = torch.sign(x[:, 1:] - x[:, :-1])
        return torch.cat([x, torch.cat([torch.zeros_like(x[:, :1]), change], dim=1)], dim=-1)


class _CausalTimeConv(nn.Module):
    """A (k, 1) convolution over time, left-padded so the time length is kept and no step sees later ones."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 0, kernel - 1, 0))
        self.conv = nn.Conv2d(channels, channels, kernel_size=(kernel, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


def _conv_block(in_ch: int, out_ch: int, kernel: tuple[int, int], stride: tuple[int, int]) -> nn.Sequential:
    """DeepLOB's block: a spatial conv, then two (4, 1) time convs, each LeakyReLU(0.01) + BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=kernel, stride=stride), nn.LeakyReLU(0.01), nn.BatchNorm2d(out_ch),
        _CausalTimeConv(out_ch, 4), nn.LeakyReLU(0.01), nn.BatchNorm2d(out_ch),
        _CausalTimeConv(out_ch, 4), nn.LeakyReLU(0.01), nn.BatchNorm2d(out_ch),
    )


class _Inception(nn.Module):
    """DeepLOB's inception module: 1x1->3x1, 1x1->5x1 and maxpool->1x1 branches over time, concatenated."""

    def __init__(self, in_ch: int, branch: int) -> None:
        super().__init__()

        def seq(*mods: nn.Module) -> nn.Sequential:
            return nn.Sequential(*mods)

        self.b3 = seq(nn.Conv2d(in_ch, branch, 1), nn.LeakyReLU(0.01), nn.BatchNorm2d(branch),
                      nn.Conv2d(branch, branch, (3, 1), padding=(1, 0)), nn.LeakyReLU(0.01), nn.BatchNorm2d(branch))
        self.b5 = seq(nn.Conv2d(in_ch, branch, 1), nn.LeakyReLU(0.01), nn.BatchNorm2d(branch),
                      nn.Conv2d(branch, branch, (5, 1), padding=(2, 0)), nn.LeakyReLU(0.01), nn.BatchNorm2d(branch))
        self.bp = seq(nn.MaxPool2d((3, 1), stride=1, padding=(1, 0)),
                      nn.Conv2d(in_ch, branch, 1), nn.LeakyReLU(0.01), nn.BatchNorm2d(branch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b3(x), self.b5(x), self.bp(x)], dim=1)


class DeepLOB(nn.Module):
    """DeepLOB (Zhang, Zohren & Roberts 2019) for any level count L.

    The 4L book columns collapse 4L -> 2L (price/size pairs) -> L (ask/bid pairs per level) with (1, 2)
    stride-2 convolutions, then a (1, L) convolution mixes the levels. Time convolutions are causal and
    keep T (the paper's unpadded ones would shrink it by 18 and fail on short windows). ``hidden`` is the
    LSTM size and the width of each inception branch; the conv blocks use ``hidden // 2`` channels, so
    hidden=64 gives the paper's 32 conv / 3 x 64 inception / LSTM 64. Unlike the other models it gets no
    :class:`BookChanges` channel: a second input channel did not help its validation macro-F1 on GOOG.
    """

    def __init__(self, levels: int, window: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        conv = max(hidden // 2, 4)
        self.block1 = _conv_block(1, conv, (1, 2), (1, 2))
        self.block2 = _conv_block(conv, conv, (1, 2), (1, 2))
        self.block3 = _conv_block(conv, conv, (1, levels), (1, 1))
        self.inception = _Inception(conv, hidden)
        self.lstm = nn.LSTM(3 * hidden, hidden, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, N_CLASSES)

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 4L) -> (B, C, T, 1): the convolution stack, causal in time."""
        return self.block3(self.block2(self.block1(x.unsqueeze(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inception(self.conv_features(x))  # (B, 3H, T, 1)
        h = h.squeeze(-1).transpose(1, 2)  # (B, T, 3H)
        out, _ = self.lstm(h)
        return self.head(self.dropout(out[:, -1]))


def _step_diff(x: torch.Tensor) -> torch.Tensor:
    """One-step change along time (dim 1), 0 at the first step: (B, T, ...) -> same shape."""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], dim=1)


class OrderFlow(nn.Module):
    """Order-flow channels computed from a model-input window (B, T, 4L), causal and window-only.

    Per step (B, T, 6 + 2L): the level-1 mid (mean of the best ask/bid columns, so relative to the current
    mid), its one-step change and that change's sign, the spread, the level-1 imbalance (bid minus ask log
    size), an order-flow-imbalance sign in the spirit of Cont, Kukanov & Stoikov (2014): +1 when the bid
    moves up or, at an unchanged bid, its queue grows, minus the same for the ask moving down / its queue
    growing; and every size column minus its own window mean.

    Summary of the last state (B, 3S + 2) over look-backs j in ``SCALES`` (those shorter than T): the j-step
    mid move, the move of the j-step mean mid from the mid j steps back (what the forward label measures,
    seen backwards, so the model gets the persistence forecast's signal exactly), the mean order-flow sign
    of the last j steps; then the current imbalance and spread.

    Why: the raw window carries all of this only implicitly, and a small model trained on one day learns
    little of it. The channels are differences and window-relative values, so they depend less on a
    ticker's typical queue sizes than the absolute size columns.
    """

    SCALES: tuple[int, ...] = (1, 2, 5, 10, 20)

    def __init__(self, levels: int, window: int) -> None:
        super().__init__()
        self.levels = levels
        self.scales = tuple(j for j in self.SCALES if j < window)
        self.step_features = 6 + 2 * levels
        self.summary_features = 3 * len(self.scales) + 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ask, ask_size, bid, bid_size = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
        mid = (ask + bid) / 2
        d_mid = _step_diff(mid)
        spread = ask - bid
        imbalance = bid_size - ask_size
        d_bid, d_ask = _step_diff(bid), _step_diff(ask)
        bid_flow = torch.sign(d_bid) + (d_bid == 0) * torch.sign(_step_diff(bid_size))
        ask_flow = -torch.sign(d_ask) + (d_ask == 0) * torch.sign(_step_diff(ask_size))
        flow = bid_flow - ask_flow
        sizes = x[..., 1::2]
        per_step = torch.cat([torch.stack([mid, d_mid, torch.sign(d_mid), spread, imbalance, flow], dim=-1),
                              sizes - sizes.mean(dim=1, keepdim=True)], dim=-1)
        summary = []
        for j in self.scales:
            summary += [mid[:, -1] - mid[:, -1 - j], mid[:, -j:].mean(dim=1) - mid[:, -1 - j],
                        flow[:, -j:].mean(dim=1)]
        summary += [imbalance[:, -1], spread[:, -1]]
        return per_step, torch.stack(summary, dim=-1)


class LSTMClassifier(nn.Module):
    """A one-layer LSTM over prices, :class:`BookChanges` signs and :class:`OrderFlow` channels.

    The absolute size columns are left out (their window-relative values and changes stay in): they are the
    most ticker-specific inputs and did not add validation macro-F1 on GOOG once the order-flow channels
    were in. The last LSTM state and the layer-normalised order-flow summary go to a linear head. On the GOOG
    1-level sample at k=10 (lr 3e-3, hidden 32, 3 seeds each) this lifted validation macro-F1 over the LSTM on
    the raw window and its change signs from 49.3 to 50.9 (8 epochs of 50k windows; spread across seeds
    0.1-0.2) and from 49.2 to 50.4 (4 epochs of 20k). Bundles of the earlier LSTM do not load into it.
    """

    def __init__(self, levels: int, window: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.changes = BookChanges()
        self.flow = OrderFlow(levels, window)
        self.lstm = nn.LSTM(2 * levels + 4 * levels + self.flow.step_features, hidden, batch_first=True)
        self.norm = nn.LayerNorm(self.flow.summary_features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + self.flow.summary_features, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_step, summary = self.flow(x)
        signs = self.changes(x)[..., x.shape[-1]:]
        out, _ = self.lstm(torch.cat([x[..., 0::2], signs, per_step], dim=-1))
        return self.head(self.dropout(torch.cat([out[:, -1], self.norm(summary)], dim=-1)))


class MLPClassifier(nn.Module):
    """Two hidden ReLU layers over the flattened window and its :class:`BookChanges`."""

    def __init__(self, levels: int, window: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            BookChanges(), nn.Flatten(), nn.Linear(window * 8 * levels, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, N_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on the flattened window and its :class:`BookChanges`."""

    def __init__(self, levels: int, window: int, hidden: int = 64, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(BookChanges(), nn.Flatten(), nn.Linear(window * 8 * levels, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_REGISTRY: dict[str, type[nn.Module]] = {
    "deeplob": DeepLOB,
    "lstm": LSTMClassifier,
    "mlp": MLPClassifier,
    "logreg": LogisticRegression,
}


def build_model(name: str, levels: int, window: int, hidden: int = 64, dropout: float = 0.0) -> nn.Module:
    """Build a model by name for windows of ``window`` book states with ``levels`` levels.

    Raises:
        ConfigError: unknown name or non-positive sizes.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"train.model: unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
    if levels < 1 or window < 1 or hidden < 1:
        raise ConfigError(f"levels, window and hidden must be >= 1; got {levels}, {window}, {hidden}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"train.dropout must be in [0, 1); got {dropout}")
    return _REGISTRY[name](levels=levels, window=window, hidden=hidden, dropout=dropout)
