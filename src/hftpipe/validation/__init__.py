"""Data validation with Great Expectations 1.x: stored JSON suites, ephemeral context, readable results."""

from hftpipe.validation.events import validate_path, validate_table
from hftpipe.validation.features import validate_features_frame
from hftpipe.validation.result import Failure, ValidationResult
from hftpipe.validation.runner import validate_frame
from hftpipe.validation.suites import Templates

__all__ = [
    "Failure",
    "Templates",
    "ValidationResult",
    "validate_features_frame",
    "validate_frame",
    "validate_path",
    "validate_table",
]
