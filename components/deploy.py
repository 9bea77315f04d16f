"""Deploy component: runs only when the gate promoted the model."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def deploy(registration: Input[Artifact], config_json: str) -> str:
    """Put the new champion live (local check, or KServe rollout in a cluster)."""
    from hftpipe.pipeline.steps import deploy_step

    return deploy_step(registration.path, config_json)["status"]
