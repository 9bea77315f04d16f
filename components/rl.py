"""RL components: train the trading policy, then evaluate it against the simple policies (and gate it)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE)
def rl_train(source: str, config_json: str, policy: Output[Model]) -> None:
    """Train the PPO/DQN policy on the day's training split (params.yaml `rl`)."""
    from hftpipe.rl.steps import rl_train_step

    rl_train_step(source, config_json, policy.path)


@dsl.component(base_image=BASE_IMAGE)
def rl_evaluate(policy: Input[Model], config_json: str, register: bool, evaluation: Output[Dataset],
                metrics: Output[Metrics]) -> float:
    """Backtest the policy beside flat / threshold / passive / random; return its net PnL on the test split."""
    from hftpipe.rl.steps import rl_evaluate_step

    report = rl_evaluate_step(policy.path, config_json, evaluation.path, register=register)
    for name, r in report["policies"].items():
        metrics.log_metric(f"{name}_net_pnl", r["net_pnl"])
    return float(report["policies"]["learned"]["net_pnl"])
