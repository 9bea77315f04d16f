"""Deploy component: runs only when the gate promoted the model."""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def deploy(model_name: str, version: str, config_json: str) -> str:
    """Put the new champion live (local check, or KServe rollout in a cluster)."""
    from hftpipe.pipeline.steps import deploy_step

    return deploy_step(model_name, version, config_json)["status"]
