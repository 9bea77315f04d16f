"""The MLflow model registry: register a bundle, gate its promotion, list, roll back, resolve.

Aliases (never the deprecated stages) carry the state:

- ``champion``: the version that serves. Only a version that passes the gate
  (:mod:`hftpipe.registry.gate`) gets it;
- ``previous``: the champion it replaced (what ``rollback`` restores);
- ``challenger``: the latest version that failed the gate.

Every version carries tags: ``gate.decision`` (pass / fail), ``gate.reasons`` (one line per check),
key test metrics, the data's sha256 and the git commit, so ``hftpipe registry list`` and the MLflow UI
say why a version is or is not serving.

The code lives in modules of its own (this one re-exports them for importers of ``hftpipe.registry.registry``):
:mod:`~hftpipe.registry.registration` (register + gate), :mod:`~hftpipe.registry.report_checks` (the report
the gate reads), :mod:`~hftpipe.registry.rescore` (the champion re-scored through ``hftpipe.evaluation``),
:mod:`~hftpipe.registry.cards` (model cards), :mod:`~hftpipe.registry.listing` (list, rollback, promote,
alias moves) and :mod:`~hftpipe.registry.download` (resolve and download).
"""

from hftpipe.registry.cards import MODEL_CARD_DIR, model_card_path, read_model_card
from hftpipe.registry.common import CHALLENGER, CHAMPION, PREVIOUS
from hftpipe.registry.download import current_version, resolve_model
from hftpipe.registry.listing import (
    PromotionResult,
    RollbackResult,
    VersionInfo,
    list_versions,
    move_alias,
    promote,
    rollback,
)
from hftpipe.registry.registration import RegistrationResult, register, register_pooled
from hftpipe.registry.report_checks import eval_data_id, read_report
from hftpipe.registry.rescore import champion_score, score_on_test_split

__all__ = ["CHALLENGER", "CHAMPION", "MODEL_CARD_DIR", "PREVIOUS", "PromotionResult", "RegistrationResult",
           "RollbackResult", "VersionInfo", "champion_score", "current_version", "eval_data_id", "list_versions",
           "model_card_path", "move_alias", "promote", "read_model_card", "read_report", "register",
           "register_pooled", "resolve_model", "rollback", "score_on_test_split"]
