"""The RL pipeline's steps as plain functions (the KFP components and tests call these).

Each takes the resolved config as JSON (empty: params.yaml of the working directory), like
:mod:`hftpipe.pipeline.steps`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hftpipe.config import Config, config_from_dict, load_config


def _config(config_json: str) -> Config:
    return config_from_dict(json.loads(config_json)) if config_json.strip() else load_config("params.yaml")


def rl_train_step(source: str, config_json: str, policy_dir: str, track: bool = True) -> dict[str, Any]:
    """Train the policy on ``source``'s training split into ``policy_dir``; returns the training numbers."""
    from hftpipe.rl.agent import train
    from hftpipe.rl.day import load_day

    cfg = _config(config_json)
    day = load_day(cfg, source)
    if not track:
        return train(cfg, day, policy_dir, progress=False).to_dict()
    from hftpipe.registry import mlflow_run

    with mlflow_run(cfg, "rl-train", tags={"step": "rl-train"}, data_path=source) as tracker:
        return train(cfg, day, policy_dir, tracker, progress=False).to_dict()


def rl_evaluate_step(policy_dir: str, config_json: str, evaluation_dir: str, source: str = "",
                     register: bool = False) -> dict[str, Any]:
    """Evaluate the policy (and the simple policies) into ``evaluation_dir/report.json``; optionally register."""
    from hftpipe.rl.agent import load_policy
    from hftpipe.rl.day import load_day
    from hftpipe.rl.evaluate import evaluate_policies

    cfg = _config(config_json)
    policy = load_policy(policy_dir)
    day = load_day(cfg, source or policy.meta.get("data", {}).get("source"))
    report = evaluate_policies(cfg, day, policy, seed=cfg.rl.seed)
    out = Path(evaluation_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    if register:
        from hftpipe.registry.rl import register_policy

        report["registration"] = register_policy(cfg, policy_dir, report)
    return report
