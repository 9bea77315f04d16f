"""``hftpipe rl train | evaluate | register``: the reinforcement-learning trading policy."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click


def register(group: click.Group) -> None:
    group.add_command(rl)


@click.group()
def rl() -> None:
    """Train and evaluate a PPO/DQN trading policy on the order book (params.yaml `rl` section)."""


def _classifier_dir(ref: str | None, workdir: Path) -> str | None:
    if not ref:
        return None
    from hftpipe.cli.backtest import resolve_bundle

    return str(resolve_bundle(ref)[0])


def default_policy(cfg: Any) -> str:
    """The registered champion policy (``models:/<rl.model_name>@champion``) if there is one, else ``rl.output``."""
    from hftpipe.registry.tracker import client

    try:
        client().get_model_version_by_alias(cfg.rl.model_name, "champion")
    except Exception:  # noqa: BLE001 - no registry, no such model or no champion: all mean "none registered"
        return cfg.rl.output
    return f"models:/{cfg.rl.model_name}@champion"


def _policy_dir(ref: str, workdir: Path) -> Path:
    from hftpipe.registry.rl import policy_folder

    return policy_folder(ref, workdir)


@rl.command()
@click.option("--data", metavar="PATH", help="Training day: LOBSTER zip or canonical Parquet (default: rl.data, else data.source).")
@click.option("--output", metavar="DIR", help="Policy folder (default: rl.output).")
@click.option("--track/--no-track", default=True, show_default=True, help="Track the run in MLflow.")
@click.pass_obj
def train(obj: Any, data: str | None, output: str | None, track: bool) -> None:
    """Train the agent on random episodes of the training split; save policy.zip + policy.json."""
    from hftpipe.rl.agent import train as train_policy
    from hftpipe.rl.day import load_day

    cfg = obj.config
    with tempfile.TemporaryDirectory() as tmp:
        day = load_day(cfg, data, _classifier_dir(cfg.rl.classifier, Path(tmp)))
        if track:
            from hftpipe.registry import mlflow_run

            with mlflow_run(cfg, "rl-train", tags={"step": "rl-train"}, data_path=day.meta["source"]) as tracker:
                result = train_policy(cfg, day, output, tracker)
        else:
            result = train_policy(cfg, day, output)
    click.echo(f"policy: {result.policy_dir} ({result.algo}, {result.timesteps} steps in {result.elapsed_s:.0f} s, "
               f"{result.steps_per_s:.0f} steps/s, mean episode PnL {result.mean_episode_pnl:+.2f} $)")


@rl.command()
@click.option("--policy", "policy_ref", metavar="DIR_OR_URI", help="Policy folder or models:/NAME@champion (default: the registered champion policy, else "
              "rl.output, the newest trained).")
@click.option("--data", metavar="PATH", help="Day to evaluate on (default: the training day's test split).")
@click.option("--classifier", metavar="DIR_OR_URI", help="Classifier for the threshold policy (default: rl.classifier).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report as JSON here.")
@click.option("--register", "do_register", is_flag=True, help="Also register the policy with the gate.")
@click.pass_obj
def evaluate(obj: Any, policy_ref: str | None, data: str | None, classifier: str | None, json_path: str | None,
             do_register: bool) -> None:
    """The learned policy vs flat, threshold, passive and random in the same simulator, with intervals."""
    from hftpipe.rl.agent import load_policy
    from hftpipe.rl.day import load_day
    from hftpipe.rl.evaluate import evaluate_policies, render_table

    cfg = obj.config
    with tempfile.TemporaryDirectory() as tmp:
        policy = load_policy(_policy_dir(policy_ref or default_policy(cfg), Path(tmp)))
        trained = policy.meta.get("data", {}).get("source")
        day = load_day(cfg, data or trained, _classifier_dir(classifier or cfg.rl.classifier, Path(tmp)))
        report = evaluate_policies(cfg, day, policy, seed=cfg.rl.seed)
        for line in render_table(report):
            click.echo(line)
        if json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
            click.echo(f"report: {json_path}")
        if do_register:
            from hftpipe.registry.rl import register_policy

            out = register_policy(cfg, policy.directory, report)
            click.echo(f"registered {out['name']} v{out['version']} as {out['alias']}: " + "; ".join(out["reasons"]))
