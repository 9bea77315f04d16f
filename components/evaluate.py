"""Evaluate component: model vs naive baselines, intervals, cost-aware backtest."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def evaluate(
    model: Input[Model],
    feature_set: Input[Dataset],
    config_json: str,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[Markdown],
) -> float:
    """Score the model and the baselines on the test split; return the model's macro-F1."""
    from hftpipe.pipeline.steps import evaluate_step

    return evaluate_step(model.path, feature_set.path, config_json, evaluation.path,
                         metrics=metrics, confusion=confusion, markdown_path=report.path)["macro_f1"]
