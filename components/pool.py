"""Pool component: several sources' feature sets -> one collection folder the pooled steps train on."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def pool_features(feature_sets: Input[list[Dataset]], config_json: str, feature_set: Output[Dataset]) -> None:
    """Copy every source's feature set into one collection (a sub-folder per SYMBOL_DATE_Llevels)."""
    from hftpipe.pipeline.steps import pool_features_step

    pool_features_step([s.path for s in feature_sets], config_json, feature_set.path, artifact=feature_set)
