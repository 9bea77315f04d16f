"""The streaming signal service: md.> in, one model forward pass per batch of windows, sig.<symbol> out."""

from hftpipe.streaming.checks import book_problem
from hftpipe.streaming.service import SignalService, run_signals

__all__ = ["SignalService", "book_problem", "run_signals"]
