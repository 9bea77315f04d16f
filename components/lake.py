"""Lake components: list the partitions, run one partition, collect (the lake pipeline's ParallelFor)."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def lake_list(inputs: list[str], root: str, config_json: str) -> list[str]:
    """Files behind the input paths and globs, or (no inputs) every partition of the manifest."""
    from hftpipe.pipeline.lake_steps import lake_list_step

    return lake_list_step(inputs, root, config_json)


@dsl.component(base_image=BASE_IMAGE)
def lake_partition(item: str, root: str, config_json: str, run_id: str) -> str:
    """Ingest (a file) or re-validate (a partition key) one partition, then its features; JSON result."""
    from hftpipe.pipeline.lake_steps import lake_partition_step

    return lake_partition_step(item, root, config_json, run_id)


@dsl.component(base_image=BASE_IMAGE)
def lake_collect(results: list[str], root: str, config_json: str, report: Output[Artifact]) -> None:
    """Splits across partitions; fail listing every failed partition."""
    from hftpipe.pipeline.lake_steps import lake_collect_step

    lake_collect_step(results, root, config_json, report.path)
