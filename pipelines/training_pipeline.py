"""The training pipeline: validate -> ingest -> features -> train -> evaluate -> register -> [deploy].

Deploy runs only when the promotion gate made the new version champion (``dsl.If``). Steps that read
data which can change under the same path (validate, ingest) never use KFP's cache: a nightly run must
see tonight's file, not last night's cached artifact (kubeflow/pipelines#4857).

``pooled_training_pipeline`` takes several sources (symbols and days): validate, ingest and features run
per source in a ``ParallelFor``; ``pool_features`` gathers the feature sets into one collection folder, and
the same train -> evaluate -> register -> [deploy] steps then train one pooled model, report per instrument
plus the pooled summary, and gate it with the several-instrument rule (docs/pooled.md).
"""


from kfp import dsl

from components.deploy import deploy
from components.evaluate import evaluate
from components.features import features
from components.ingest import ingest
from components.pool import pool_features
from components.register import register
from components.train import train
from components.validate import validate

PIPELINE_NAME = "hftpipe-training"
POOLED_PIPELINE_NAME = "hftpipe-pooled-training"


def _evaluate_register_deploy(trained: dsl.PipelineTask, feats: dsl.PipelineTask, config_json) -> None:
    """Evaluate, gate and (only when promoted) deploy one trained model."""
    scored = evaluate(model=trained.outputs["model"], feature_set=feats.outputs["feature_set"],
                      config_json=config_json)
    gated = register(model=trained.outputs["model"], evaluation=scored.outputs["evaluation"],
                     feature_set=feats.outputs["feature_set"], config_json=config_json)
    # The decision is register's single return value: kfp.local cannot resolve a NamedTuple output
    # in a nested condition; the version travels in the registration artifact instead.
    with dsl.If(gated.outputs["Output"] == "champion", name="promoted"):
        deploy(registration=gated.outputs["registration"], config_json=config_json)


def _train_evaluate_register_deploy(feats: dsl.PipelineTask, config_json, nproc, accelerator_type,
                                    accelerator_count) -> None:
    """Train on the GPU or the CPU, then evaluate, gate and (when promoted) deploy."""
    with dsl.If(accelerator_count > 0, name="on-gpu"):
        trained_gpu = (
            train(feature_set=feats.outputs["feature_set"], config_json=config_json, nproc=nproc)
            .set_accelerator_type(accelerator_type)
            .set_accelerator_limit(accelerator_count)
        )
        _evaluate_register_deploy(trained_gpu, feats, config_json)
    # Two plain conditions rather than If/Else: kfp.local cannot resolve a nested condition's inputs
    # inside an Else branch (the deploy gate would silently never fire locally).
    with dsl.If(accelerator_count == 0, name="on-cpu"):
        trained_cpu = train(feature_set=feats.outputs["feature_set"], config_json=config_json, nproc=nproc)
        _evaluate_register_deploy(trained_cpu, feats, config_json)


@dsl.pipeline(name=PIPELINE_NAME, description="LOB data to a gated, registered and deployed model.")
def training_pipeline(
    source: str,
    config_json: str = "",
    nproc: int = 1,
    accelerator_type: str = "",
    accelerator_count: int = 0,
) -> None:
    """Run the whole pipeline on one LOBSTER file.

    Args:
        source: a LOBSTER zip or message CSV path readable by the step containers.
        config_json: the resolved config as JSON (empty: params.yaml of the working directory).
        nproc: training processes (torchrun) inside the train step.
        accelerator_type: e.g. "nvidia.com/gpu" on a cluster; empty trains on CPU.
        accelerator_count: GPUs for the train step when accelerator_type is set.
    """
    checked = validate(source=source, config_json=config_json).set_caching_options(False)
    events = ingest(source=source, config_json=config_json).after(checked).set_caching_options(False)
    feats = features(events=events.outputs["events"], config_json=config_json)
    _train_evaluate_register_deploy(feats, config_json, nproc, accelerator_type, accelerator_count)


@dsl.pipeline(name=POOLED_PIPELINE_NAME,
              description="Several LOB sources to one pooled, gated, registered and deployed model.")
def pooled_training_pipeline(
    sources: list,
    config_json: str = "",
    nproc: int = 1,
    accelerator_type: str = "",
    accelerator_count: int = 0,
) -> None:
    """Run the whole pipeline on several files (symbols and days) and train one model on all of them.

    Args:
        sources: LOBSTER zips / message CSVs (or Bitstamp captures) readable by the step containers.
        config_json, nproc, accelerator_type, accelerator_count: as ``training_pipeline``.
    """
    with dsl.ParallelFor(sources, name="each-source") as source:
        checked = validate(source=source, config_json=config_json).set_caching_options(False)
        events = ingest(source=source, config_json=config_json).after(checked).set_caching_options(False)
        feats = features(events=events.outputs["events"], config_json=config_json)
    # Collected outputs cannot enter a dsl.If group (the compiler refuses): gather them first, outside it.
    pooled = pool_features(feature_sets=dsl.Collected(feats.outputs["feature_set"]), config_json=config_json)
    _train_evaluate_register_deploy(pooled, config_json, nproc, accelerator_type, accelerator_count)
