"""Register component: MLflow model version + promotion gate (champion or challenger)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def register(
    model: Input[Model],
    evaluation: Input[Dataset],
    feature_set: Input[Dataset],
    config_json: str,
    registration: Output[Artifact],
) -> str:
    """Register the model and apply the gate; return the alias it got (the deploy condition)."""
    from hftpipe.pipeline.steps import register_step

    return register_step(model.path, evaluation.path, feature_set.path, config_json,
                         registration_path=registration.path, artifact=registration)["decision"]
