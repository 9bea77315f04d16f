"""The partitioned market-data dataset (``source=/symbol=/date=``) and its per-partition runs on Dask.

``ingest_dataset`` (files, folders, globs -> partitions + manifest), ``validate_dataset`` and
``features_dataset`` run one task per file or partition; :mod:`hftpipe.lake.runner` is the Dask edge.
"""

from hftpipe.lake.dataset import (
    RunReport,
    default_root,
    expand_inputs,
    ingest_dataset,
    manifest_table,
    read_manifest,
    validate_dataset,
)
from hftpipe.lake.features import assign_splits, features_dataset, features_dir

__all__ = [
    "RunReport",
    "assign_splits",
    "default_root",
    "expand_inputs",
    "features_dataset",
    "features_dir",
    "ingest_dataset",
    "manifest_table",
    "read_manifest",
    "validate_dataset",
]
