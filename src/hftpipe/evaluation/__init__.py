"""Honest evaluation: every model number beside naive baselines, with intervals and a cost-aware backtest."""

from hftpipe.evaluation.backtest import BacktestResult, backtest
from hftpipe.evaluation.baselines import BASELINE_NAMES, baseline_predictions
from hftpipe.evaluation.bootstrap import Interval, macro_f1_intervals
from hftpipe.evaluation.evaluate import evaluate, evaluate_source, features_for_model
from hftpipe.evaluation.metrics import classification_metrics
from hftpipe.evaluation.report import REPORT_FILE, EvaluationReport, Margin

__all__ = [
    "BASELINE_NAMES",
    "REPORT_FILE",
    "BacktestResult",
    "EvaluationReport",
    "Interval",
    "Margin",
    "backtest",
    "baseline_predictions",
    "classification_metrics",
    "evaluate",
    "evaluate_source",
    "features_for_model",
    "macro_f1_intervals",
]
