"""MLflow edge: experiment tracking, the pyfunc model wrapper, the model registry and its promotion gate.

Only this package imports mlflow. ``from hftpipe.registry import mlflow_run`` gives a run whose tracker
domain code (training, evaluation) logs to through :class:`hftpipe.tracking.Tracker`;
``register`` / ``list_versions`` / ``rollback`` / ``resolve_model`` manage the registered versions.
"""

from hftpipe.registry.registry import (
    RegistrationResult,
    RollbackResult,
    VersionInfo,
    current_version,
    list_versions,
    move_alias,
    promote,
    read_model_card,
    register,
    register_pooled,
    resolve_model,
    rollback,
)
from hftpipe.registry.tracker import MlflowTracker, lineage_tags, mlflow_run

__all__ = ["MlflowTracker", "RegistrationResult", "RollbackResult", "VersionInfo", "current_version",
           "lineage_tags", "list_versions", "mlflow_run", "move_alias", "promote", "read_model_card", "register", "register_pooled", "resolve_model", "rollback"]
