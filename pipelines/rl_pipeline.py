"""The RL pipeline: rl_train -> rl_evaluate (with the registry gate). Separate from the training pipeline.

Compile with ``python -m pipelines.rl_pipeline`` (writes pipelines/compiled/rl_pipeline.yaml);
tests/rl/test_pipeline.py fails when the committed YAML is stale.
"""

from pathlib import Path

from kfp import compiler, dsl

from components.rl import rl_evaluate, rl_train

PIPELINE_NAME = "hftpipe-rl"
COMPILED = Path(__file__).resolve().parent / "compiled" / "rl_pipeline.yaml"


@dsl.pipeline(name=PIPELINE_NAME, description="Train an RL trading policy on the order book and gate it.")
def rl_pipeline(source: str, config_json: str = "", register: bool = True) -> None:
    """Train on ``source``'s training split, evaluate on its test split, register with the gate."""
    trained = rl_train(source=source, config_json=config_json).set_caching_options(False)
    rl_evaluate(policy=trained.outputs["policy"], config_json=config_json, register=register)


def compile_rl(target: str | Path = COMPILED) -> Path:
    compiler.Compiler().compile(rl_pipeline, str(target))
    return Path(target)


if __name__ == "__main__":
    print(compile_rl())
