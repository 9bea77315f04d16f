"""Champion re-scoring: the current champion measured on the candidate's test rows, through ``hftpipe.evaluation``."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import DataFormatError, ModelError
from hftpipe.registry.download import resolve_model
from hftpipe.registry.gate import ChampionScore, candidate_from_report
from hftpipe.registry.report_checks import read_report


def score_on_test_split(cfg: Config, bundle_dir: str | Path, features_dir: str | Path, label: str,
                        scope: str | None = None) -> tuple[float, float | None, str]:
    """(macro-F1, net PnL or None, how) of a bundle on the same rows of ``features_dir`` as the candidate.

    Always ``hftpipe.evaluation.evaluate``: the same code that wrote the candidate's report, with the
    candidate's scope (its test split, or the whole file when it never trained on it), so the two numbers
    the gate compares are measured alike. Imported here, not at module level: resolving a model for
    serving must not load the evaluation stack.
    """
    from hftpipe.evaluation import REPORT_FILE, evaluate

    output = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=paths.reports_dir()))
    if scope is not None:
        evaluate(cfg, bundle_dir, features_dir, output, scope=scope, model_ref=label)
    else:
        evaluate(cfg, bundle_dir, features_dir, output)
    report = read_report(output / REPORT_FILE)
    score = candidate_from_report(report, horizon=0)
    return score.macro_f1, score.net_pnl, f"re-scored by hftpipe evaluate, report {output}"



def champion_score(cfg: Config, mc: MlflowClient, champion: ModelVersion, features_dir: str | Path | None,
                   data_id: str | None, scope: str | None = None) -> ChampionScore:
    """Score the current champion on the candidate's test data.

    With ``features_dir`` the champion's bundle is scored afresh. Without it, the champion's own tagged
    macro-F1 is used only when it was measured on the same feature table (same sha256).
    """
    tags = champion.tags or {}
    horizon = int(tags["model.horizon"]) if tags.get("model.horizon", "").isdigit() else None
    version = str(champion.version)
    if features_dir is None:
        if data_id and tags.get("data.test_id") == data_id and tags.get("metrics.macro_f1"):
            net = tags.get("metrics.net_pnl")
            return ChampionScore(version, horizon, float(tags["metrics.macro_f1"]),
                                 float(net) if net else None, "its recorded score on the same feature table")
        return ChampionScore(version, horizon, None, None,
                             "it was evaluated on other (or unknown) data; pass the feature set (--features DIR) "
                             "so it can be re-scored")
    try:
        champion_dir, _, _ = resolve_model(f"models:/{champion.name}/{version}")
    except (ModelError, MlflowException, OSError) as exc:
        # A champion whose files are gone cannot be compared; the gate fails and says so.
        return ChampionScore(version, horizon, None, None, f"its model could not be downloaded: {exc}")
    try:
        macro_f1, net_pnl, how = score_on_test_split(cfg, champion_dir, features_dir,
                                                     f"champion-v{version}", scope)
    except (ModelError, DataFormatError) as exc:  # e.g. another level count: not comparable, not a crash
        return ChampionScore(version, horizon, None, None, str(exc))
    return ChampionScore(version, horizon, macro_f1, net_pnl, how)
