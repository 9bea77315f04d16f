"""Register component: MLflow model version + promotion gate (champion or challenger)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def register(
    model: Input[Model], evaluation: Input[Dataset], feature_set: Input[Dataset], config_json: str
) -> NamedTuple("Registration", decision=str, model_name=str, version=str):
    """Register the model and apply the gate; outputs the decision for the deploy condition."""
    from collections import namedtuple

    from hftpipe.pipeline.steps import register_step

    out = register_step(model.path, evaluation.path, feature_set.path, config_json)
    return namedtuple("Registration", "decision model_name version")(
        out["decision"], out["model_name"], str(out["version"]))
