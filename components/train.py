"""Train component: DDP training (torchrun when nproc > 1), tracked in MLflow, writes the model bundle."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def train(feature_set: Input[Dataset], config_json: str, nproc: int, model: Output[Model]) -> None:
    """Train the configured model on the feature set."""
    from hftpipe.pipeline.steps import train_step

    train_step(feature_set.path, config_json, model.path, nproc=nproc, artifact=model)
