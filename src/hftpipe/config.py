"""Typed, frozen configuration: one dataclass per ``params.yaml`` section, one strict loader.

Unknown keys and wrong types are errors that name the key. The resolved config (defaults filled in,
overrides applied) is what gets saved with every model and MLflow run.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from hftpipe.errors import ConfigError
from hftpipe.horizons import horizon_value


@dataclass(frozen=True)
class DataConfig:
    """Section ``data``: which raw file to ingest and where the canonical table goes."""

    # LOBSTER zip, or message CSV of a pair; a list (globs allowed) pools several in `hftpipe pipeline run`
    source: str | tuple[str, ...] = "data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip"
    symbol: str | None = None  # None: read from the LOBSTER file name
    date: str | None = None  # YYYY-MM-DD; None: read from the file name
    levels: int | None = None  # None: read from the file name (and checked against the columns)
    halts: Literal["drop", "keep"] = "drop"  # trading-halt (type 7) rows: dropped from events, kept in metadata
    output: str = "data/processed/events.parquet"  # canonical event table (DVC output)


def single_source(data: DataConfig, what: str) -> str:
    """``data.source`` when it names one file; a one-line ConfigError when it lists several.

    Args:
        what: the command or step that reads one file (named in the message).
    """
    if isinstance(data.source, str):
        return data.source
    if len(data.source) == 1:
        return data.source[0]
    raise ConfigError(f"data.source lists {len(data.source)} files but {what} reads one; pass the file explicitly "
                      "(several files run through `hftpipe pipeline run`)")


@dataclass(frozen=True)
class ValidateConfig:
    """Section ``validate``: Great Expectations suites and report settings."""

    suites_dir: str = "expectations"  # JSON suites: messages.json, book.json, features.json
    session_start: float = 34200.0  # seconds after midnight, used when the file name does not say
    session_end: float = 57600.0
    sample_rows: int = 5  # failing rows shown per expectation


@dataclass(frozen=True)
class FeaturesConfig:
    """Section ``features``: hand-made features, labels, event sampling and time splits."""

    windows: tuple[int, ...] = (10, 50, 100)  # event windows for OFI, returns, volatility, trade flow
    horizons: tuple[int | str, ...] = (10, 50, 100)  # label horizons: k events (10) or clock time ('1s'); see hftpipe.horizons
    label: Literal["forward", "deeplob"] = "forward"  # deeplob: (next k mean - past k mean), partly known at t
    alpha: float | None = None  # stationary band; None: chosen so the training split is balanced
    sampling: Literal["all", "top_of_book"] = "all"  # every event, or only events that change the best quotes
    train_frac: float = 0.7  # by event time
    val_frac: float = 0.15  # test gets the rest
    purge: int | None = None  # events dropped before each split boundary; None: max(horizons + windows)
    output: str = "data/features"  # folder: features.parquet + features_meta.json (DVC output)

    def __post_init__(self) -> None:
        # Canonical form ('500ms' -> '0.5s'); a bare '10' is refused so events and seconds never mix.
        object.__setattr__(self, "horizons", tuple(horizon_value(h, f"features.horizons[{i}]")
                                                   for i, h in enumerate(self.horizons)))


@dataclass(frozen=True)
class TrainConfig:
    """Section ``train``: model, data feeding and optimisation."""

    model: Literal["deeplob", "lstm", "mlp", "logreg", "lgbm", "logreg_tab", "mlp_tab"] = "logreg_tab"  # *_tab, lgbm: engineered features
    horizon: int | str = 10  # which label horizon to learn: k events or clock time ('1s'); must be in features.horizons
    window: int = 50  # T, book states per input window
    batch_size: int = 256
    epochs: int = 8
    lr: float = 3e-3  # AdamW; 3e-3 beat 1e-3 on GOOG validation for lstm, logreg and deeplob (4-epoch budget)
    weight_decay: float = 0.0
    patience: int = 3  # early stopping on validation macro-F1
    class_weights: bool = True  # inverse-frequency weights in the loss
    hidden: int = 32  # LSTM size (deeplob: also inception width); 32 matched 64 on GOOG validation
    dropout: float = 0.1
    seed: int = 0
    num_workers: int = 0  # DataLoader workers; windows are gathered in the main process by default
    nproc: int = 1  # >1: launch torchrun with this many processes
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_train_samples: int | None = 50000  # windows drawn afresh each epoch (None: all); bounds epoch time
    grad_clip: float = 1.0  # max gradient norm (0: no clipping); keeps the LSTM stable early on
    threads: int | None = None  # torch CPU threads per process; None: 1 (see training.trainer.cpu_threads)
    output: str = "data/model"  # model bundle folder (DVC output)
    calibrate: bool = True  # fit a temperature on validation logits; served probabilities are calibrated
    tabular_levels: int = 1  # tabular families: book levels the features read (1 reads any LOBSTER file)
    tabular_windows: tuple[int, ...] = (5, 10, 30)  # tabular families: event windows of OFI, return, volatility
    tabular_lags: tuple[int, ...] = (0, 1, 2, 5, 10)  # tabular families: features also at t - lag
    lgbm_rounds: int = 400  # LightGBM: most boosting rounds (early stopping on validation log loss)
    lgbm_early_stopping: int = 30  # LightGBM: rounds without validation gain before stopping (0: never)
    lgbm_learning_rate: float = 0.05
    lgbm_num_leaves: int = 31
    tabular_units: Literal["bps", "spreads"] = "bps"  # tabular: price moves in bps, or in mean spreads

    def __post_init__(self) -> None:
        object.__setattr__(self, "horizon", horizon_value(self.horizon, "train.horizon"))


@dataclass(frozen=True)
class EvaluateConfig:
    """Section ``evaluate``: classification metrics, baselines, backtest and bootstrap."""

    fees_bps: float = 0.0  # per side, on top of crossing the spread
    latency_events: int = 1  # the order reaches the book this many events after the signal
    bootstrap: int = 500  # block-bootstrap resamples
    block: int | None = None  # bootstrap block length in samples; None: 10 * horizon
    sharpe_buckets: int = 50  # time buckets for the Sharpe ratio
    output: str = "data/evaluation"  # folder: report.md, report.json, images (DVC output)


@dataclass(frozen=True)
class RegisterConfig:
    """Section ``register``: model name and promotion gate."""

    model_name: str = "hftpipe-lob"
    min_margin: float = 0.0  # required lower bound of the macro-F1 margin over the best baseline
    use_interval: bool = True  # gate on the 95% interval's lower bound (True) or the point margin
    require_net_pnl: bool = False  # also require net PnL >= the champion's
    experiment: str = "hftpipe"
    backtest_report: str | None = None  # `hftpipe backtest --json` report put into the model card; None: "not run"


@dataclass(frozen=True)
class ServeConfig:
    """Section ``serve``: the KServe model server."""

    host: str = "127.0.0.1"
    port: int = 8080
    grpc: bool = False
    model_uri: str = "models:/hftpipe-lob@champion"  # or a local bundle path
    reload_interval_s: float = 5.0  # how often the champion alias is checked
    max_body_bytes: int = 4_000_000
    workers: int = 1
    grpc_port: int = 8081  # only used when grpc is true
    symbols: tuple[str, ...] = ()  # streaming mode: accepted symbols; empty: any well-formed symbol
    max_symbols: int = 1000  # streaming mode: rolling windows kept (least recently used dropped beyond)
    torch_threads: int = 1  # intra-op threads; 1 keeps small-batch latency steady under concurrency
    repository_api: bool = False  # /v2/repository load/unload; also needs env HFTPIPE_REPOSITORY_TOKEN (Bearer)
    keep_alive_timeout_s: float = 5.0  # an idle keep-alive connection is closed after this
    header_timeout_s: float = 10.0  # a connection must send a complete request head within this
    body_timeout_s: float = 30.0  # ... and its complete body within this after the head
    max_connections: int = 1000  # open connections; beyond it the longest-idle one is closed
    allow_fallback: bool = True  # champion does not load at start: serve the 'previous' alias (loud warning)
    retry_refused_s: float = 60.0  # a refused version is tried again after this (e.g. a restored artifact)
    max_new_symbols_per_client: int = 120  # streaming: symbols new to the server per client IP per minute
    log_interval_s: float = 60.0  # repeated warnings (evictions, client errors) become one summary per interval


@dataclass(frozen=True)
class UIConfig:
    """Section ``ui``: the Flask trader front end."""

    host: str = "127.0.0.1"
    port: int = 5000
    serving_url: str = "http://127.0.0.1:8080"
    replay_source: str = "data/processed/events.parquet"
    replay_speed: float = 20.0  # events per second pushed to the browser
    replay_from: Literal["test", "start"] = "test"  # test: begin where the test split begins (out-of-sample)
    mlflow_ui_url: str = "http://127.0.0.1:5001"
    serving_timeout_s: float = 2.0  # a slower serving answer counts as down (banner + retry)
    mlflow_links: Literal["auto", "show", "hide"] = "auto"  # auto: link to MLflow only while mlflow_ui_url answers
    session_idle_minutes: float = 30.0  # a session unused this long ends (checked on the server)
    session_max_hours: float = 12.0  # a session ends this long after log-in, however active
    min_move_ticks: float = 1.0  # live hit rate: a smoothed mid move under this many ticks counts as stationary
    server_workers: int = 1  # gunicorn worker processes
    server_threads: int = 32  # threads per worker; each open live page holds one for its whole replay
    max_connections: int = 500  # open connections per worker (idle keep-alive included); more wait
    keepalive_s: int = 5  # an idle connection is closed after this (and after a 5 s first-byte wait)
    request_timeout_s: float = 10.0  # time to send a whole request; longest wait for a client to read
    proxy_hops: int = 0  # reverse proxies in front (Kubernetes ingress: 1); client address from X-Forwarded-For
    users_file: str | None = None  # YAML of users with roles (trader/risk/admin); None: HFTPIPE_HOME/ui/users.yaml if present


@dataclass(frozen=True)
class PipelineConfig:
    """Section ``pipeline``: Kubeflow Pipelines settings."""

    base_image: str = "ghcr.io/hftpipe/hftpipe:0.1.0"  # the project image (see Dockerfile)
    cron: str = "0 0 2 * * 1-5"  # KFP cron: 6 fields, seconds first
    experiment: str = "hftpipe"
    deploy_target: Literal["local", "kserve"] = "local"  # kserve: patch the InferenceService in-cluster
    namespace: str = "hftpipe"  # Kubernetes namespace of the InferenceService (deploy_target kserve)
    inference_service: str = "hftpipe-lob"  # InferenceService name
    tracking_uri: str | None = None  # MLflow server the steps use on a cluster (None: MLFLOW_TRACKING_URI / local sqlite)


@dataclass(frozen=True)
class BusConfig:
    """Section ``bus``: the NATS JetStream broker, its streams and the clients' reconnect policy."""

    host: str = "127.0.0.1"  # `hftpipe bus up` binds here; clients connect here
    port: int = 4222
    monitor_port: int = 8222  # nats-server HTTP monitoring (/healthz, /varz); 0: off
    store_dir: str | None = None  # JetStream store; None: HFTPIPE_HOME/nats
    max_age_s: float = 86400.0  # stream retention: messages older than this are dropped
    max_msgs: int = 5_000_000  # per stream; the oldest go first beyond it
    max_bytes: int = 2_000_000_000  # per stream
    duplicate_window_s: float = 120.0  # JetStream publish dedup (Nats-Msg-Id = symbol:seq) window
    reconnect_wait_s: float = 0.5  # between reconnect attempts (clients retry forever)
    connect_timeout_s: float = 2.0


@dataclass(frozen=True)
class FeedConfig:
    """Section ``feed``: market-data feeds publishing book updates to md.<venue>.<symbol>."""

    speed: float = 1.0  # replay: recorded inter-event timing divided by this (0: as fast as possible)
    venue: str | None = None  # None: from the file (NASDAQ for LOBSTER)
    max_pending: int = 4000  # unacknowledged JetStream publishes before the feed waits
    metrics_port: int = 9102  # Prometheus /metrics on 127.0.0.1; 0: off


@dataclass(frozen=True)
class SignalsConfig:
    """Section ``signals``: the streaming signal service (md.> in, sig.<symbol> out)."""

    model_uri: str | None = None  # None: serve.model_uri
    backlog: Literal["latest", "all"] = "latest"  # latest: one signal per symbol per batch (newest book)
    durable: str = "signals"  # JetStream durable consumer name (replica suffix added when replicas > 1)
    replicas: int = 1  # symbols are partitioned over this many processes (crc32 of the symbol)
    batch_max: int = 512  # most book updates handled (and windows predicted) in one step
    pull_batch: int = 2000  # messages asked for in one pull request
    max_ack_pending: int = 20000
    ack_wait_s: float = 30.0  # unacknowledged messages are redelivered after this
    max_symbols: int = 1000  # rolling windows kept (least recently used dropped beyond)
    reload_interval_s: float = 5.0  # champion check; 0: never
    torch_threads: int = 1
    lag_interval_s: float = 1.0  # how often consumer lag is read from the server
    metrics_port: int = 9101  # Prometheus /metrics on 127.0.0.1; 0: off


@dataclass(frozen=True)
class LakeConfig:
    """Section ``lake``: the partitioned dataset (``source=/symbol=/date=``) and its Dask runs."""

    root: str | None = None  # dataset folder; None: HFTPIPE_HOME/lake
    workers: int | None = None  # local Dask worker processes; None: one per core; 0: in-process, no Dask
    scheduler: str | None = None  # address of a running Dask scheduler (tcp://host:8786); overrides workers
    memory_limit: str = "2GiB"  # per local worker; a task past it is killed and listed as failed
    keep_going: bool = False  # exit 0 even when some partitions failed (they are still listed)
    split: Literal["by_date", "within"] = "by_date"  # by_date: whole days per split when a symbol has >= 3
    tick_bars: str = "1min"  # trade partitions are aggregated to bars of this size for features


@dataclass(frozen=True)
class Config:
    """All of ``params.yaml``."""

    data: DataConfig = field(default_factory=DataConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    trading: TradingConfig = field(default_factory=lambda: TradingConfig())
    risk: RiskConfig = field(default_factory=lambda: RiskConfig())
    audit: AuditConfig = field(default_factory=lambda: AuditConfig())
    bus: BusConfig = field(default_factory=BusConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    monitor: MonitorConfig = field(default_factory=lambda: MonitorConfig())
    paper: PaperConfig = field(default_factory=lambda: PaperConfig())
    feedback: FeedbackConfig = field(default_factory=lambda: FeedbackConfig())
    rl: RLConfig = field(default_factory=lambda: RLConfig())

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (tuples as lists) for YAML/JSON and MLflow params."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a type hint, converting lists to tuples and ints to floats."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(hint):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not {_describe(hint)}")
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{key}: {value!r} is not one of {list(get_args(hint))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = get_args(hint)[0]
        return tuple(_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def _describe(hint: Any) -> str:
    return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in get_args(hint))


def build(cls: type, raw: dict[str, Any] | None, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types by name."""
    raw = dict(raw or {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = f"section '{prefix}'" if prefix else "params"
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        key = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, key)
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value`` (value as YAML) from the command line."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def load_config(path: str | Path | None = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``params.yaml`` (missing file: defaults) and apply ``section.key=value`` overrides."""
    raw: dict[str, Any] = {}
    if path is not None and Path(path).exists():
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
    elif path is not None and str(path) != "params.yaml":
        raise ConfigError(f"config file {path} does not exist")
    raw = {k: dict(v or {}) for k, v in raw.items()}
    for item in overrides:
        key, value = parse_override(item)
        if "." not in key:
            raise ConfigError(f"override {item!r} must name a section and a key, e.g. train.model=lstm")
        section, name = key.split(".", 1)
        raw.setdefault(section, {})[name] = value
    return build(Config, raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Rebuild a Config saved with a model or run (strict, like params.yaml)."""
    return build(Config, raw)


@dataclass(frozen=True)
class TradingConfig:
    """Section ``trading``: execution model, costs and policies of ``hftpipe backtest`` (and the paper trader)."""

    policy: Literal["threshold", "passive"] = "threshold"  # default policy of `hftpipe backtest`
    order_size: int = 100  # shares per order (GOOG: one round lot)
    max_inventory: int = 100  # the policy's own target bound in shares (the risk engine has the hard limit)
    threshold: float = 0.5  # threshold: trade when P(up) or P(down) beats this; passive: skew/pull above it
    hold_events: int | None = None  # threshold: events a position is held after a signal; None: the model's k
    passive_skew: Literal["pull", "skew"] = "pull"  # passive: pull the quote against the signal, or quote 1 tick behind
    feed_latency_s: float = 0.0005  # market data reaches the strategy this late (and fills are reported this late)
    order_latency_s: float = 0.0005  # an order or cancel reaches the exchange this late
    maker_fee_per_share: float = -0.002  # dollars; negative = rebate (NASDAQ-like)
    taker_fee_per_share: float = 0.003  # dollars
    fee_bps: float = 0.0  # extra fee per side in bps of the traded notional
    markout_events: int | None = None  # adverse selection: mid move this many events after a fill; None: k
    sharpe_buckets: int = 50  # equal wall-clock buckets for the Sharpe ratio
    bootstrap: int = 500  # block-bootstrap resamples for the net-PnL interval
    block_events: int = 1000  # bootstrap block length in events
    flatten_at_end: bool = True  # close any open inventory at the last event with a market order


@dataclass(frozen=True)
class RiskConfig:
    """Section ``risk``: pre-trade limits applied to every symbol (see hftpipe.trading.risk)."""

    max_position: float = 500.0  # shares, position plus working orders on the same side
    max_order_size: float = 500.0  # shares per order
    max_order_notional: float = 500_000.0  # dollars per order
    max_orders: int = 50  # orders per rate window; 0: off
    rate_window_s: float = 1.0
    price_band_bps: float = 50.0  # limit prices further from the mid are refused
    max_daily_loss: float = 5_000.0  # dollars; breach -> HALTED
    max_daily_drawdown: float = 7_500.0  # dollars below the day's peak; breach -> HALTED
    max_book_age_s: float = 5.0  # stale-data guard on the book
    max_signal_age_s: float = 5.0  # stale-data guard on the model output
    state_db: str | None = None  # risk-state store (sqlite); None: HFTPIPE_HOME/risk.db


@dataclass(frozen=True)
class AuditConfig:
    """Section ``audit``: the hash-chained audit trail."""

    url: str | None = None  # None: sqlite at HFTPIPE_HOME/audit.db; or sqlite:///PATH, postgresql://...


@dataclass(frozen=True)
class MonitorConfig:
    """Section ``monitor``: drift thresholds, Prometheus, and the metrics ports of services without their own."""

    psi_threshold: float = 0.25  # a feature drifts when PSI >= this AND KS >= ks_threshold
    ks_threshold: float = 0.3  # two-sample KS statistic (not a p-value: with 10^5 rows every p-value is tiny)
    natural_margin: float = 1.25  # also above this times the largest PSI/KS of a fifth of training vs all of it
    reference_chunks: int = 5  # contiguous parts of the training split that measure its natural variation
    min_drifted_features: int = 1  # features that must drift for the verdict (drifted predictions count alone)
    prediction_psi_threshold: float = 0.2  # predicted-class shares vs training
    prediction_window: int = 2000  # sliding window of predictions (live monitor; per-window figures offline)
    reference_bins: int = 10  # quantile bins per feature in the reference saved with the bundle
    reference_sketch: int = 200  # quantile points per feature kept for KS
    reference_predictions: int = 4000  # training windows predicted for the prediction reference
    max_predictions: int = 5000  # `monitor drift`: windows predicted (evenly spaced) on a data file
    min_rows: int = 200  # fewer rows than this cannot show drift: refused
    prometheus_port: int = 9090  # `hftpipe monitor prometheus` listens on 127.0.0.1 here
    prometheus_url: str | None = None  # what the UI's monitoring page queries; None: http://127.0.0.1:prometheus_port
    scrape_interval_s: float = 5.0
    retention: str = "7d"  # Prometheus TSDB retention
    metrics_port: int = 9104  # the monitor service's /metrics
    trader_metrics_port: int = 9103  # the paper trader's /metrics (until trading has its own setting)
    signals_metrics_port: int = 9101  # used when the config has no signals section
    feed_metrics_port: int = 9102  # used when the config has no feed section

@dataclass(frozen=True)
class PaperConfig:
    """Section ``paper``: the paper trader (md.> and sig.> in; ord.<symbol>, fill.<symbol>, pos.<symbol> out)."""

    policy: Literal["threshold", "passive", "rl"] | None = None  # None: trading.policy; rl: the learned policy
    horizon: int | str = 10  # the model's horizon (10 or '1s'): threshold's hold if trading.hold_events is None ('1s' needs it)
    durable: str = "paper"  # JetStream durable consumer names: <durable>-md and <durable>-sig
    batch_max: int = 256  # most inputs handled (and committed to the store) in one step
    pull_batch: int = 500  # messages asked for in one fetch, per consumer
    max_ack_pending: int = 20000
    ack_wait_s: float = 30.0  # unacknowledged inputs are redelivered after this
    wall_clock_guard: bool = True  # the stale-data guard also counts wall-clock age since the feed published
    store: str | None = None  # the trader's sqlite store; None: HFTPIPE_HOME/paper/<durable>.sqlite
    lag_interval_s: float = 1.0  # how often consumer lag is read from the server
    metrics_port: int = 9103  # Prometheus /metrics on 127.0.0.1; 0: off
    rl_policy: str | None = None  # rl: policy folder or models:/ URI; None: rl.model_name@champion, else its newest

    def __post_init__(self) -> None:
        object.__setattr__(self, "horizon", horizon_value(self.horizon, "paper.horizon"))


@dataclass(frozen=True)
class FeedbackConfig:
    """Section ``feedback``: the outcome store (``hftpipe monitor run``), live quality and the retrain trigger."""

    model_uri: str | None = None  # whose label definition outcomes use; None: signals.model_uri, else serve.model_uri
    alpha: float | None = None  # stationary band when the model bundle has none
    durable: str = "feedback"  # JetStream durable consumer names: <durable>-md and <durable>-sig
    output: str | None = None  # feedback data set folder; None: HFTPIPE_HOME/feedback
    record_books: bool = True  # also store every book update (the live data a retrain trains on)
    flush_rows: int = 5000  # rows per Parquet file (one row group); smaller tail flushed on the interval
    flush_interval_s: float = 30.0  # a partial buffer is written at least this often
    max_signal_delay_events: int = 20_000  # a signal trailing its book update by more events than this is dropped
    pull_batch: int = 1000  # messages fetched per pull
    quality_window: int = 5000  # outcomes in the rolling quality window
    reliability_bins: int = 10  # bins of the reliability curve
    metrics_port: int = 9104  # Prometheus /metrics on 127.0.0.1; 0: off
    retrain: bool = False  # let the service start retraining when the trigger fires
    retrain_check_s: float = 30.0  # how often the trigger is evaluated
    retrain_min_outcomes: int = 500  # live quality is judged only on at least this many outcomes
    retrain_decay_margin: float = 0.0  # decay: model macro-F1 below the best baseline's by more than this
    retrain_min_macro_f1: float | None = None  # decay also when the model's live macro-F1 falls below this
    retrain_drift: bool = True  # a drift flag (monitoring.drift) also counts as a reason
    retrain_min_hold_s: float = 300.0  # the reason must hold this long without interruption
    retrain_min_new_rows: int = 20_000  # recorded book updates since the last retrain
    retrain_cooldown_s: float = 86_400.0  # no second trigger within this time
    retrain_original: str | None = None  # the model's original training file a retrain pools with the live day; None: data.source
    join_trades: bool = True  # also consume the paper trader's ord.> and fill.>: outcomes carry their signal's trades


@dataclass(frozen=True)
class RLConfig:
    """Section ``rl``: the order-book trading environment, the PPO/DQN agent and its promotion gate."""

    algo: Literal["ppo", "dqn"] = "ppo"  # stable-baselines3 algorithm
    data: str | None = None  # training day: LOBSTER zip or canonical Parquet; None: data.source
    classifier: str | None = None  # bundle folder or models:/ URI whose probabilities join the observation; None: none
    levels: int = 1  # book levels the observation's features read (1: the policy also runs on 1-level files)
    n_envs: int = 16  # environments stepped together in one batched numpy VecEnv
    episode_events: int = 2000  # events per episode (a contiguous slice of the training split)
    total_timesteps: int = 150_000  # environment steps of `rl train` (all envs together)
    order_size: int = 100  # shares per order (market, quote, flatten up to this much)
    max_inventory: int = 200  # the action mapping never trades beyond +/- this position (the risk engine has the hard limit)
    inventory_penalty: float = 0.001  # reward: minus this many dollars per share of |inventory| per event
    reward_scale: float = 0.1  # reward units per dollar (keeps PPO's value targets near 1)
    learning_rate: float = 0.0003
    n_steps: int = 256  # PPO: rollout length per env
    batch_size: int = 1024  # PPO/DQN minibatch
    n_epochs: int = 4  # PPO: passes over each rollout
    gamma: float = 0.99
    ent_coef: float = 0.01  # PPO entropy bonus
    hidden: int = 64  # units of each of the two hidden layers (policy and value nets)
    checkpoint_every: int = 50_000  # environment steps between checkpoints
    seed: int = 0
    threads: int = 1  # torch threads
    output: str = "data/rl"  # folder: policy.zip, policy.json (+ checkpoints/)
    evaluation_output: str = "data/rl_evaluation"  # folder of `rl evaluate`'s report
    model_name: str = "hftpipe-rl-policy"  # registered model of the policy
    min_margin: float = 0.0  # gate: net PnL (dollars) the policy must beat the best simple policy by
