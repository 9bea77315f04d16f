"""MLflow edge: experiment tracking, the pyfunc model wrapper, the model registry and its promotion gate.

Only this package imports mlflow. ``from hftpipe.registry import mlflow_run`` gives a run whose tracker
domain code (training, evaluation) logs to through :class:`hftpipe.tracking.Tracker`.
"""

from hftpipe.registry.tracker import MlflowTracker, lineage_tags, mlflow_run

__all__ = ["MlflowTracker", "lineage_tags", "mlflow_run"]
