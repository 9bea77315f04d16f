"""Model-quality table: every family x horizon beside the naive baselines, in sample, out of sample, and a
selection step that reads neither.

Each family (logreg, mlp, lstm, deeplob on the raw window; lgbm, logreg_tab, mlp_tab on engineered features)
is trained with :func:`hftpipe.training.train` on the GOOG sample (the TRAINING instrument) at each horizon:
k = 10, 50, 100 events and h = 1 s, 10 s of clock time (``hftpipe.horizons``). Each model is then scored by
:func:`hftpipe.evaluation.evaluate` on three sets:

- SELECTION: the Bitstamp BTC/USD L3 capture (``data/raw/bitstamp-btcusd-l3-2026-05-02``, 30 minutes, read
  by the same loader as ``hftpipe ingest`` with ``data.levels=1``, the level the models read), whole capture,
  labels with GOOG's training alpha. Neither the training nor a scored instrument.
- GOOG test split: the model's own file, the last 15% of the day, never trained on.
- AAPL: the whole day, a ticker never used in training or selection, labels with GOOG's training alpha.

**Selection** (documented in the README): for each horizon, the family with the largest macro-F1 margin over
the best naive baseline on the SELECTION instrument (point estimate; ties: the higher lower bound). Only the
selection column and GOOG validation scores are read to choose; the GOOG test and AAPL columns are reported
after the choice and never feed back. The selected family at k=10 is the one the issue's target is about
(the default pipeline model); the bench does not change ``params.yaml``, it reports whether the choice
differs from ``train.model``.

Every macro-F1 is printed beside the best naive baseline on the same rows, with the 95% block-bootstrap
interval of the margin. Budgets: ``--epochs`` x ``--max-train-samples`` for the torch families (default
4 x 20000), ``--deeplob-*`` for DeepLOB alone (the slowest per window on a CPU), ``--oos-max-rows`` for the
AAPL events scored. The bench prints its timing (per model and in total) and writes the numbers as JSON
beside the markdown.

The AAPL sample has one book level, so the default trains on GOOG's 1-level file; ``--levels 10`` trains
10-level models and skips the out-of-sample and selection columns.

    python bench/quality.py                      # full table, markdown on stdout and in --output
    python bench/quality.py --models logreg lgbm --horizons 10 1s --epochs 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hftpipe import paths
from hftpipe.config import Config, load_config
from hftpipe.data import read_events, write_events
from hftpipe.data.schema import EventTable
from hftpipe.evaluation import evaluate
from hftpipe.features import build_features, load_feature_set
from hftpipe.horizons import horizon_from_key, horizon_value, parse_horizon
from hftpipe.paths import repo_root
from hftpipe.prepare import ingest
from hftpipe.training import train

log = logging.getLogger("bench.quality")

MODELS = ("logreg", "mlp", "lstm", "deeplob", "lgbm", "logreg_tab", "mlp_tab")  # *_tab, lgbm: engineered features
HORIZONS: tuple[int | str, ...] = (10, 50, 100, "1s", "10s")
SELECTION = repo_root() / "data" / "raw" / "bitstamp-btcusd-l3-2026-05-02"
SETS = ("sel", "goog", "aapl")  # report keys: selection instrument, GOOG test split, AAPL


def _raw(symbol: str, levels: int) -> Path:
    return repo_root() / "data" / "raw" / f"LOBSTER_SampleFile_{symbol}_2012-06-21_{levels}.zip"


def _events(cfg: Config, source: Path, out: Path, max_rows: int | None, levels: int | None = None) -> Path:
    """Ingest (with validation) once; optionally keep only the first ``max_rows`` events of the day."""
    if not out.exists():
        data_cfg = dataclasses.replace(cfg.data, levels=levels)  # the ingest loaders read data.levels
        ingest(data_cfg, source=str(source), output=str(out), validate_cfg=cfg.validate)
    if max_rows is None:
        return out
    table = read_events(out)
    if table.meta.rows <= max_rows:
        return out
    head = EventTable(frame=table.frame.iloc[:max_rows].reset_index(drop=True),
                      meta=dataclasses.replace(table.meta, rows=max_rows))
    return write_events(head, out.with_name(f"{out.stem}_head{max_rows}.parquet"))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _margin(report: dict[str, Any]) -> str:
    m = report["margin"]
    return f"{100 * m['point']:+.1f} [{100 * m['low']:+.1f}, {100 * m['high']:+.1f}]"


def _cell(report: dict[str, Any]) -> list[str]:
    best = report["best_baseline"]
    return [_pct(report["model"]["macro_f1"]), f"{best} {_pct(report['baselines'][best]['macro_f1'])}",
            _margin(report)]


def select(results: list[dict[str, Any]], horizons: list[int | str]) -> dict[str, dict[str, Any]]:
    """Per horizon, the family with the largest margin on the SELECTION instrument (ties: higher lower bound).

    Reads only the ``sel`` reports (and nothing of GOOG test or AAPL).
    """
    chosen: dict[str, dict[str, Any]] = {}
    for k in horizons:
        key = parse_horizon(k).key
        rows = [r for r in results if parse_horizon(r["k"]).key == key and "sel" in r]
        if not rows:
            continue
        best = max(rows, key=lambda r: (r["sel"]["margin"]["point"], r["sel"]["margin"]["low"]))
        chosen[key] = {"model": best["model"], "selection_margin": best["sel"]["margin"],
                       "val_macro_f1": best["train_metrics"].get("best_val_macro_f1")}
    return chosen


def _target(results: list[dict[str, Any]], model: str) -> list[str]:
    """The issue's target on AAPL for ``model``: k=10 margin >= +5 with lower bound > 0; k=50 lower bound > 0."""
    lines = []
    for k, need in ((10, "margin >= +5.0 points and lower bound > 0"), (50, "lower bound > 0")):
        hit = [r for r in results if r["model"] == model and r["k"] == k and "aapl" in r]
        if not hit:
            lines.append(f"- {model} at k={k}: not run.")
            continue
        m = hit[0]["aapl"]["margin"]
        ok = (m["point"] >= 0.05 and m["low"] > 0) if k == 10 else m["low"] > 0
        lines.append(f"- {model} at k={k} on AAPL: {_margin(hit[0]['aapl'])} ({need}): "
                     f"**{'met' if ok else 'not met'}**.")
    return lines


def render(results: list[dict[str, Any]], baselines: dict[tuple[str, str], dict[str, Any]], settings: str,
           has_oos: bool, chosen: dict[str, dict[str, Any]], default_model: str) -> str:
    """The markdown: selection, models with margins on every set, the target check, then the baselines."""
    head = "| horizon | model | GOOG val F1 |"
    rule = "|---|---|---:|"
    if has_oos:
        head += " BTC (selection) margin [95%] |"
        rule += "---:|"
    head += " GOOG test F1 | best baseline | margin [95%] |"
    rule += "---:|---|---:|"
    if has_oos:
        head += " AAPL (never seen) F1 | best baseline | margin [95%] |"
        rule += "---:|---|---:|"
    lines = [(f"Model quality (macro-F1 in %, margins in points over the best naive baseline on the same rows "
              f"with 95% block-bootstrap intervals; {settings})"), "", head, rule]
    for r in results:
        key = parse_horizon(r["k"]).key
        name = r["model"] + (" (selected)" if chosen.get(key, {}).get("model") == r["model"] else "")
        row = [parse_horizon(r["k"]).describe(), name, _pct(r["train_metrics"].get("best_val_macro_f1", float("nan")))]
        if has_oos:
            row.append(_margin(r["sel"]))
        row += _cell(r["goog"])
        if has_oos:
            row += _cell(r["aapl"])
        lines.append("| " + " | ".join(row) + " |")
    if chosen:
        lines += ["", "Selection (largest margin on the BTC/USD selection instrument; GOOG test and AAPL not read):", ""]
        for key, c in chosen.items():
            m = c["selection_margin"]
            lines.append(f"- {horizon_from_key(key).describe()}: **{c['model']}** (BTC margin {100 * m['point']:+.1f} "
                         f"[{100 * m['low']:+.1f}, {100 * m['high']:+.1f}])")
    if has_oos:
        lines += ["", "Target of issue #16 (AAPL, never used in training or selection):", ""]
        lines += _target(results, default_model)
        pick = chosen.get("10", {}).get("model")
        if pick and pick != default_model:
            lines += _target(results, pick)
    lines += ["", "Naive baselines (macro-F1 in %, same rows as the models):", "",
              "| data | horizon | rows | majority | persistence | momentum |", "|---|---|---:|---:|---:|---:|"]
    order = {"BTC": 0, "GOOG": 1, "AAPL": 2}
    def place(key: str) -> int:
        value = horizon_from_key(key).value
        return HORIZONS.index(value) if value in HORIZONS else len(HORIZONS)

    for (data, key), report in sorted(baselines.items(), key=lambda item: (order[item[0][0]], place(item[0][1]))):
        b = report["baselines"]
        lines.append(f"| {data} | {horizon_from_key(key).describe()} | {report['data']['scored_rows']} | "
                     f"{_pct(b['majority']['macro_f1'])} | {_pct(b['persistence']['macro_f1'])} | "
                     f"{_pct(b['momentum']['macro_f1'])} |")
    return "\n".join(lines) + "\n"


def _budget(args: argparse.Namespace, model: str) -> tuple[int, int, int, float | None]:
    """(epochs, windows per epoch, patience, lr) for a family; DeepLOB has its own."""
    if model == "deeplob":
        epochs = args.deeplob_epochs or args.epochs
        return (epochs, args.deeplob_max_train_samples or args.max_train_samples,
                args.deeplob_patience or epochs, args.deeplob_lr)
    return args.epochs, args.max_train_samples, args.epochs, None


def run(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    base = load_config(args.params)
    work = Path(args.workdir) if args.workdir else paths.sub("bench-quality")
    work.mkdir(parents=True, exist_ok=True)
    horizons = [horizon_value(h) for h in args.horizons]
    features_cfg = dataclasses.replace(base.features, horizons=tuple(horizons), alpha=None)
    cfg = base.replace(features=features_cfg)

    started = time.perf_counter()
    goog_events = _events(cfg, _raw("GOOG", args.levels), work / f"goog{args.levels}.parquet", None)
    goog = work / f"goog{args.levels}_features"
    build_features(features_cfg, goog_events, goog)
    goog_fs = load_feature_set(goog)
    has_oos = args.levels == 1 and not args.no_oos
    other: dict[str, dict[str, Path]] = {"sel": {}, "aapl": {}}
    if has_oos:
        sources = {"aapl": _events(cfg, _raw("AAPL", 1), work / "aapl1.parquet", args.oos_max_rows or None),
                   "sel": _events(cfg, Path(args.selection), work / "selection1.parquet", None, levels=1)}
        for name, events in sources.items():
            for k in horizons:
                # GOOG's training alpha: the classes mean here what the models learned them to mean on GOOG.
                fcfg = dataclasses.replace(features_cfg, horizons=(k,), alpha=goog_fs.alpha(k))
                other[name][str(k)] = work / f"{name}1_features_{parse_horizon(k).key}"
                build_features(fcfg, events, other[name][str(k)])
    log.info("data ready in %.0f s", time.perf_counter() - started)

    results: list[dict[str, Any]] = []
    baselines: dict[tuple[str, str], dict[str, Any]] = {}
    for k in horizons:
        for model in args.models:
            epochs, samples, patience, lr = _budget(args, model)
            tcfg = dataclasses.replace(cfg.train, model=model, horizon=k, epochs=epochs, window=args.window,
                                       max_train_samples=samples, patience=patience, nproc=1, device="cpu",
                                       seed=args.seed, threads=args.threads or cfg.train.threads,
                                       lr=lr or cfg.train.lr)
            run_cfg = cfg.replace(train=tcfg)
            t0 = time.perf_counter()
            name = f"{model}_{parse_horizon(k).key}"
            trained = train(run_cfg, goog, work / "bundles" / name, checkpoint_dir=work / "checkpoints" / name,
                            progress=False)
            t1 = time.perf_counter()
            entry: dict[str, Any] = {"model": model, "k": k, "train_s": t1 - t0, "train_metrics": trained.metrics,
                                     "history": trained.history}
            entry["goog"] = evaluate(run_cfg, trained.bundle_dir, goog, work / "reports" / f"{name}_goog").report
            baselines.setdefault(("GOOG", parse_horizon(k).key), entry["goog"])
            if has_oos:
                for key, label in (("sel", "BTC"), ("aapl", "AAPL")):
                    entry[key] = evaluate(run_cfg, trained.bundle_dir, other[key][str(k)],
                                          work / "reports" / f"{name}_{key}").report
                    baselines.setdefault((label, parse_horizon(k).key), entry[key])
            entry["eval_s"] = time.perf_counter() - t1
            results.append(entry)
            log.info("%s %s: trained in %.0f s, evaluated in %.0f s; GOOG macro-F1 %.3f (margin %+.3f)%s", model,
                     parse_horizon(k).describe(), t1 - t0, entry["eval_s"], entry["goog"]["model"]["macro_f1"],
                     entry["goog"]["margin"]["point"],
                     f", BTC margin {entry['sel']['margin']['point']:+.3f}, AAPL {entry['aapl']['model']['macro_f1']:.3f}"
                     f" (margin {entry['aapl']['margin']['point']:+.3f})" if has_oos else "")
    elapsed = time.perf_counter() - started
    deeplob = ""
    if "deeplob" in args.models:
        e, n, p, lr = _budget(args, "deeplob")
        deeplob = f" (deeplob: {e} epochs of {n}, patience {p}, lr {lr or cfg.train.lr})"
    settings = (f"trained on GOOG 2012-06-21 ({args.levels} level{'s' if args.levels > 1 else ''}), window "
                f"T={args.window}, {args.epochs} epoch(s) of at most {args.max_train_samples} windows{deeplob}, seed "
                f"{args.seed}; BTC/USD selection capture and AAPL "
                f"({f'first {args.oos_max_rows} events' if args.oos_max_rows else 'whole day'}) with GOOG's alpha; "
                f"{elapsed / 60:.1f} min on {torch.get_num_threads()} thread(s)")
    summary = {"settings": [settings], "elapsed_s": elapsed, "has_oos": has_oos, "default_model": cfg.train.model,
               "results": results}
    return tables(summary), summary


def tables(summary: dict[str, Any]) -> str:
    """Selection, the table and the baselines from a run's (or several merged runs') results."""
    order = {m: i for i, m in enumerate(MODELS)}
    results = sorted(summary["results"], key=lambda r: (HORIZONS.index(r["k"]) if r["k"] in HORIZONS else 99,
                                                        order[r["model"]]))
    baselines: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        for key, label in (("sel", "BTC"), ("goog", "GOOG"), ("aapl", "AAPL")):
            if key in r:
                baselines.setdefault((label, parse_horizon(r["k"]).key), r[key])
    horizons = list(dict.fromkeys(r["k"] for r in results))
    has_oos = summary["has_oos"]
    chosen = select(results, horizons) if has_oos else {}
    summary["selected"] = chosen
    return render(results, baselines, "; ".join(summary["settings"]), has_oos, chosen, summary["default_model"])


def _horizon_arg(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else str(horizon_value(text))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--horizons", nargs="+", type=_horizon_arg, default=list(HORIZONS),
                   help="events (10) or clock time (1s, 500ms)")
    p.add_argument("--levels", type=int, default=1, choices=(1, 5, 10), help="GOOG file to train on")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-train-samples", type=int, default=20_000, help="training windows per epoch")
    p.add_argument("--deeplob-epochs", type=int, default=None, help="DeepLOB's epochs (default: --epochs)")
    p.add_argument("--deeplob-max-train-samples", type=int, default=None,
                   help="DeepLOB's windows per epoch (default: --max-train-samples)")
    p.add_argument("--deeplob-patience", type=int, default=None,
                   help="DeepLOB's early-stopping patience on validation macro-F1 (default: its epochs)")
    p.add_argument("--deeplob-lr", type=float, default=None, help="DeepLOB's peak learning rate (default: train.lr)")
    p.add_argument("--window", type=int, default=50, help="T, book states per input window")
    p.add_argument("--oos-max-rows", type=int, default=0,
                   help="score only the first N events of the AAPL day; 0: the whole day")
    p.add_argument("--no-oos", action="store_true", help="skip the AAPL and selection columns")
    p.add_argument("--selection", default=str(SELECTION), help="the selection instrument (any ingestible source)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: train.threads)")
    p.add_argument("--params", default=str(repo_root() / "params.yaml"))
    p.add_argument("--workdir", help="where data, bundles and reports go (default HFTPIPE_HOME/bench-quality)")
    p.add_argument("--output", help="markdown file for the table (default HFTPIPE_HOME/reports/quality.md)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="render one table from the JSON of several runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    if args.merge:  # runs split across processes (e.g. DeepLOB alone): one table, one selection
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        summary = {"settings": [s for r in runs for s in r["settings"]], "elapsed_s": sum(r["elapsed_s"] for r in runs),
                   "has_oos": all(r["has_oos"] for r in runs), "default_model": runs[0]["default_model"],
                   "results": [x for r in runs for x in r["results"]]}
        table = tables(summary)
    else:
        table, summary = run(args)
    out = Path(args.output) if args.output else paths.reports_dir() / "quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(table)
    print(f"written to {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
