"""Leave-one-instrument-out: for each instrument, train on the others and score on it.

With the current config, each held-out file gets a model that never saw it (trained on all the other
files, pooled when there are several) and is scored on its whole day beside its own naive baselines.
The table this writes is what settings should be chosen on: a default picked by it was never scored on
the instrument it was chosen with. The pooled line scores the union of the held-out rows (each row by the
model that did not see its instrument).

Raw files are ingested, validated and featurised with the current config first (under ``output_dir``);
feature-set folders are used as they are.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hftpipe.config import Config
from hftpipe.errors import ConfigError
from hftpipe.tracking import Tracker

log = logging.getLogger(__name__)

LOO_JSON = "leave_one_out.json"
LOO_MD = "leave_one_out.md"


def feature_sets_for(cfg: Config, data: Sequence[str | Path], workdir: str | Path) -> list[Path]:
    """Feature-set folders for ``data``: folders as given, raw files built with ``cfg`` under ``workdir``."""
    from hftpipe.evaluation.evaluate import is_feature_set
    from hftpipe.evaluation.pooled import data_name, unique_folders
    from hftpipe.prepare import build_feature_set, ingest

    names = unique_folders([data_name(d) for d in data])
    out = []
    for source, name in zip(data, names):
        if is_feature_set(source):
            out.append(Path(source))
            continue
        target = Path(workdir) / name
        events = target / "events.parquet"
        # data.levels stays: pooled sets need one depth, and an order-by-order capture (Bitstamp) is
        # rebuilt to data.levels levels (e.g. -S data.levels=1 beside the 1-level LOBSTER files).
        data_cfg = dataclasses.replace(cfg.data, source=str(source), symbol=None, date=None, output=str(events))
        ingest(data_cfg, source=str(source), output=str(events), validate_cfg=cfg.validate)
        build_feature_set(dataclasses.replace(cfg.features, output=str(target / "features")), events,
                          target / "features", cfg.validate)
        out.append(target / "features")
    return out


@dataclass
class LeaveOneOutResult:
    """One row per held-out instrument, the pooled held-out line, and where everything went."""

    rows: list[dict[str, Any]]
    pooled: dict[str, Any]
    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        from hftpipe.evaluation.pooled import table_lines

        return table_lines(self.rows, self.pooled, "held-out pooled", trained_on=True) + \
            [f"table: {self.files.get(LOO_MD, self.output_dir / LOO_MD)}"]

    def headline(self) -> dict[str, float]:
        from hftpipe.evaluation.pooled import slug

        p = self.pooled
        out = {"macro_f1": p["model"]["macro_f1"], "margin": p["margin"]["point"], "margin_low": p["margin"]["low"],
               "margin_high": p["margin"]["high"]}
        for row in self.rows:
            out[f"{slug(row['symbol'], row['date'])}_macro_f1"] = row["model_macro_f1"]
            out[f"{slug(row['symbol'], row['date'])}_margin"] = row["margin"]["point"]
        return {k: float(v) for k, v in out.items()}


def leave_one_out(cfg: Config, data: Sequence[str | Path], output_dir: str | Path,
                  tracker: Tracker | None = None, progress: bool | None = None) -> LeaveOneOutResult:
    """Train ``cfg.train.model`` on all files but one and score it on that one, for every file.

    Writes ``without_<name>/model`` (bundle) and ``without_<name>/report`` (the usual report) per file, and
    ``leave_one_out.json`` / ``leave_one_out.md`` with the table. Runs in this process (one rank).

    Raises:
        ConfigError: fewer than two files.
        DataFormatError / ModelError / ValidationFailed: as training and evaluation of any file.
    """
    from hftpipe.evaluation.evaluate import evaluate
    from hftpipe.evaluation.pooled import (
        data_name,
        instrument_mean,
        instrument_row,
        markdown_table,
        pooled_block,
        unique_folders,
    )
    from hftpipe.training.trainer import train

    if len(data) < 2:
        raise ConfigError("--leave-one-out needs at least two files (pass --data two or more times)")
    output_dir = Path(output_dir)
    dirs = feature_sets_for(cfg, data, output_dir / "features")
    names = unique_folders([data_name(d) for d in dirs])
    metas = [json.loads((d / "features_meta.json").read_text()) for d in dirs]
    rows, reports = [], []
    for i, (held, name) in enumerate(zip(dirs, names)):
        others = [d for j, d in enumerate(dirs) if j != i]
        trained_on = "+".join(f"{metas[j].get('symbol')}" for j in range(len(dirs)) if j != i)
        where = output_dir / f"without_{name}"
        log.info("leave-one-out %d/%d: training on %s, scoring %s %s", i + 1, len(dirs), trained_on,
                 metas[i].get("symbol"), metas[i].get("date"))
        train(cfg, others[0] if len(others) == 1 else others, where / "model", checkpoint_dir=where / "checkpoint",
              progress=progress)
        rep = evaluate(cfg, where / "model", held, where / "report", scope="auto")
        reports.append(rep)
        rows.append({**instrument_row(rep), "trained_on": trained_on})
    pooled = pooled_block(cfg, reports, cfg.train.horizon)
    summary = {"model": cfg.train.model, "horizon": cfg.train.horizon, "window": cfg.train.window,
               "config": cfg.to_dict(), "held_out": rows, "pooled": pooled, "instrument_mean": instrument_mean(rows)}
    md = [f"# Leave-one-instrument-out: {cfg.train.model} (k={cfg.train.horizon}, T={cfg.train.window})", "",
          ("Each row: a model trained on the other files (pooled), scored on the held-out file's whole day "
           "beside that file's naive baselines. Macro-F1 in %, 95% moving-block bootstrap intervals; the "
           "pooled line scores the union of the held-out rows (stratified bootstrap); choose settings on the "
           "per-instrument rows and their mean, since the union's macro-F1 mixes different class balances."), "",
          *markdown_table(rows, pooled, "held-out pooled", trained_on=True), ""]
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {LOO_MD: output_dir / LOO_MD, LOO_JSON: output_dir / LOO_JSON}
    files[LOO_MD].write_text("\n".join(md) + "\n")
    files[LOO_JSON].write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    result = LeaveOneOutResult(rows=rows, pooled=pooled, output_dir=output_dir, files=files)
    if tracker is not None:
        tracker.log_metrics(result.headline())
        tracker.log_dict(summary, f"evaluation/{LOO_JSON}")
        tracker.log_artifact(files[LOO_MD], "evaluation")
    return result
