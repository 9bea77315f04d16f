"""Features component: canonical events -> features, labels and time splits."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def features(events: Input[Dataset], config_json: str, feature_set: Output[Dataset]) -> None:
    """Compute features, labels and splits into a folder artifact."""
    from hftpipe.pipeline.steps import features_step

    features_step(events.path, config_json, feature_set.path, artifact=feature_set)
