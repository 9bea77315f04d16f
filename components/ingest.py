"""Ingest component: raw LOBSTER file -> canonical event table (Parquet)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def ingest(source: str, config_json: str, events: Output[Dataset]) -> None:
    """Load, validate and write the canonical event table."""
    from hftpipe.pipeline.steps import ingest_step

    ingest_step(source, config_json, events.path, artifact=events)
