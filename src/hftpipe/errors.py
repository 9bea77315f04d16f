"""Exceptions raised by hftpipe; the CLI turns each into one clear line and an exit status."""

from __future__ import annotations


class HftpipeError(Exception):
    """Base of every error a user can act on."""

    exit_code: int = 2


class ConfigError(HftpipeError):
    """params.yaml (or an override) has an unknown key, a wrong type or an invalid value."""


class DataFormatError(HftpipeError):
    """A market-data file is not in the expected format (wrong columns, truncated, unreadable)."""


class ValidationFailed(HftpipeError):
    """Data failed its Great Expectations suite; nothing downstream may be written."""

    exit_code = 1


class ModelError(HftpipeError):
    """A model bundle is missing, incompatible with the data, or cannot be loaded."""


class RegistryError(HftpipeError):
    """The model registry has no such model, version or alias."""


class PipelineError(HftpipeError):
    """A pipeline step failed; the message names the step."""


class HftpipeWarning(UserWarning):
    """Warnings of our own; the test-suite turns them into errors."""


class PipelineInterrupted(PipelineError):
    """A pipeline run was stopped by SIGINT / SIGTERM; its processes were stopped, its MLflow runs killed."""

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum  # what a shell reports for a process ended by that signal


class InvalidBookState(HftpipeError, ValueError):
    """A book state breaks the rules training data obeys (crossed or locked, absurd prices, NaN on a level)."""


class BusError(HftpipeError):
    """The message bus (NATS JetStream) cannot be started, reached or used as configured."""


class PartitionsFailed(HftpipeError):
    """Some partitions of a dataset run failed (each is named); the others were written."""

    exit_code = 1


class LakeBusy(HftpipeError):
    """Another run holds the dataset's lock; wait for it to finish."""


class MonitoringError(HftpipeError):
    """Monitoring cannot proceed: no drift reference, too little data, or Prometheus will not start."""


class ReportError(DataFormatError):
    """An evaluation report (report.json) is missing, not JSON, or lacks a section the caller needs."""
