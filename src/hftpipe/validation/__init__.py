"""Data validation with Great Expectations 1.x: stored JSON suites, ephemeral context, readable results."""

from hftpipe.validation.events import structure_failure, validate_table
from hftpipe.validation.features import validate_features_frame
from hftpipe.validation.result import Failure, ValidationResult
from hftpipe.validation.runner import validate_frame
from hftpipe.validation.suites import Templates

__all__ = [
    "Failure",
    "Templates",
    "ValidationResult",
    "structure_failure",
    "validate_features_frame",
    "validate_frame",
    "validate_table",
]
