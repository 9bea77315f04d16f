"""Features, labels, event sampling and time splits (pure, vectorised, causal), and the feature-set step."""

from hftpipe.features.book import (
    cumulative_depth_imbalance,
    depth_imbalance,
    microprice,
    mid_price,
    spread,
)
from hftpipe.features.build import (
    FeatureSet,
    build_features,
    build_frame,
    compute_features,
    feature_names,
    load_feature_set,
)
from hftpipe.features.flow import (
    log_return,
    order_flow_imbalance,
    order_flow_imbalance_increments,
    realised_volatility,
    rolling_sum,
    signed_trade_volume,
    trade_intensity,
)
from hftpipe.features.labels import balanced_alpha, classify, deeplob_return, forward_return, label_return
from hftpipe.features.sampling import sample_indices, top_of_book_changes
from hftpipe.features.splits import time_splits
from hftpipe.features.window import (
    WindowStats,
    fit_window_stats,
    model_input,
    relative_book,
    window_indices,
)

__all__ = [
    "FeatureSet",
    "WindowStats",
    "balanced_alpha",
    "build_features",
    "build_frame",
    "classify",
    "compute_features",
    "cumulative_depth_imbalance",
    "deeplob_return",
    "depth_imbalance",
    "feature_names",
    "fit_window_stats",
    "forward_return",
    "label_return",
    "load_feature_set",
    "log_return",
    "microprice",
    "mid_price",
    "model_input",
    "order_flow_imbalance",
    "order_flow_imbalance_increments",
    "realised_volatility",
    "relative_book",
    "rolling_sum",
    "sample_indices",
    "signed_trade_volume",
    "spread",
    "time_splits",
    "top_of_book_changes",
    "trade_intensity",
    "window_indices",
]
