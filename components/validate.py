"""Validate component: Great Expectations suites on the raw file; a failure stops the run."""

from kfp import dsl
from kfp.dsl import Markdown, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def validate(source: str, config_json: str, report: Output[Markdown]) -> bool:
    """Validate a LOBSTER zip or CSV pair; raise (failing the run) when any expectation fails."""
    from hftpipe.pipeline.steps import validate_step

    return validate_step(source, config_json, report.path)["success"]
