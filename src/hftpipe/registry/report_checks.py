"""Gate glue: read the candidate's evaluation report and refuse one written for another bundle or other data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hftpipe.errors import RegistryError, ReportError
from hftpipe.registry.tracker import file_sha256

log = logging.getLogger(__name__)


def read_report(report_path: str | Path) -> dict[str, Any]:
    """The evaluation ``report.json``.

    Raises:
        RegistryError: missing or not JSON.
    """
    from hftpipe.evaluation.report import EvaluationReport

    path = Path(report_path)
    if not path.is_file():  # a folder is not a report here: --report names the file
        raise RegistryError(f"evaluation report {path} does not exist; run `hftpipe evaluate` first")
    try:
        return EvaluationReport.load(path).raw
    except ReportError as exc:
        raise RegistryError(str(exc)) from exc


def eval_data_id(features_dir: str | Path | None, report: dict[str, Any]) -> str | None:
    """Identity of the test data: the feature table's sha256 (from the folder, else from the report)."""
    if features_dir is not None:
        parquet = Path(features_dir) / "features.parquet"
        if not parquet.is_file():
            raise RegistryError(f"{features_dir} is not a feature set (features.parquet is missing); "
                                "pass the folder written by `hftpipe features`")
        return file_sha256(parquet)
    data = report.get("data")
    if isinstance(data, dict):
        for key in ("features_sha256", "data_id"):
            if data.get(key):
                return str(data[key])
    return None


def _check_report_matches(report: dict[str, Any], bundle_info: dict[str, Any], report_path: str | Path,
                          model_dir: str | Path | None = None) -> None:
    """Refuse a report written for another model: a wrong --report would gate the wrong numbers.

    The report must name the bundle it scored (``model_info.bundle_sha256``, written by ``hftpipe evaluate``)
    and that fingerprint must be this bundle's; a report without one is refused too, or stripping the hash
    would bypass the check. The lineage the report recorded must be this bundle's training data.
    """
    from hftpipe.evaluation.evaluate import bundle_sha256

    info = report.get("model_info")
    if not isinstance(info, dict):
        raise RegistryError(f"{report_path} does not say which model it scored (no model_info); evaluate this "
                            "model with `hftpipe evaluate` and register it with that report")
    for key in ("horizon", "window", "levels"):
        if info.get(key) is not None and str(info[key]) != str(bundle_info[key]):  # horizon may be '1s
            raise RegistryError(f"{report_path} was computed for a model with {key}={info[key]}, but this bundle has "
                                f"{key}={bundle_info[key]}; evaluate this model first (`hftpipe evaluate`)")
    if info.get("model") is not None and info["model"] != bundle_info.get("model"):
        raise RegistryError(f"{report_path} was computed for a {info['model']!r} model, but this bundle is "
                            f"{bundle_info.get('model')!r}; evaluate this model first (`hftpipe evaluate`)")
    reported = info.get("bundle_sha256")
    if not isinstance(reported, str) or not reported:
        raise RegistryError(f"{report_path} does not name the bundle it scored (no model_info.bundle_sha256); "
                            "evaluate this model with `hftpipe evaluate` and register it with that report")
    if model_dir is not None:
        actual = bundle_sha256(model_dir)
        if reported != actual:
            raise RegistryError(f"{report_path} scored another model (bundle sha256 {reported[:12]}..., this bundle "
                                f"is {actual[:12]}...); evaluate this model first (`hftpipe evaluate`)")
    trained_on = info.get("trained_on")
    lineage = bundle_info.get("feature_meta") or {}
    if isinstance(trained_on, dict) and trained_on.get("source_sha256") and lineage.get("source_sha256") \
            and trained_on["source_sha256"] != lineage["source_sha256"]:
        raise RegistryError(f"{report_path} scored a model trained on other data (source sha256 "
                            f"{str(trained_on['source_sha256'])[:12]}..., this bundle's is "
                            f"{str(lineage['source_sha256'])[:12]}...); evaluate this model first")


def _check_report_data(report: dict[str, Any], features_dir: Path, report_path: str | Path) -> None:
    """Refuse a report computed on other rows than ``features_dir`` holds (the champion is re-scored there)."""
    data = report.get("data") if isinstance(report.get("data"), dict) else {}
    reported = data.get("features_sha256")
    actual = file_sha256(features_dir / "features.parquet")
    if not reported:
        raise RegistryError(f"{report_path} does not record the data it scored (no data.features_sha256); "
                            f"evaluate the model on {features_dir} with `hftpipe evaluate` first")
    if reported != actual:
        raise RegistryError(f"{report_path} was computed on other data than {features_dir} (features sha256 "
                            f"{str(reported)[:12]}..., the folder holds {actual[:12]}...); evaluate the model on "
                            "this feature set, or pass the one the report used")


def _report_features_dir(report: dict[str, Any]) -> Path | None:
    """The feature folder the report was computed on, if the report names one that still exists."""
    named = (report.get("data") or {}).get("features_dir") if isinstance(report.get("data"), dict) else None
    if named and (Path(named) / "features.parquet").is_file():
        log.info("re-scoring the champion on the report's feature set %s", named)
        return Path(named)
    return None
