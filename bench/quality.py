"""Model-quality table: every model beside the naive baselines, in sample (GOOG test split) and out of sample.

Each model (logreg, mlp, lstm, deeplob; lgbm, logreg_tab, mlp_tab on engineered features) is trained with :func:`hftpipe.training.train` on the GOOG sample
at each horizon k, then scored by :func:`hftpipe.evaluation.evaluate` on

- the GOOG test split (the model's own file: the last 15% of the day, never trained on), and
- the AAPL sample day (another ticker: the whole day, with labels thresholded by GOOG's training alpha).

Every macro-F1 is printed beside the best naive baseline on the same rows, with the 95% block-bootstrap
interval of the margin. The default budget (4 epochs of at most 20000 training windows per model, the
whole AAPL day) took 4.4 minutes for all 12 models on a shared 2-core machine (train.threads=1); ``--deeplob-epochs`` /
``--deeplob-max-train-samples`` cap DeepLOB alone (the slowest per window on a CPU), ``--oos-max-rows``
the AAPL events scored.

The AAPL sample has one book level, so the default trains on GOOG's 1-level file; ``--levels 10`` trains
10-level models and skips the out-of-sample column (no 10-level AAPL file ships).

    python bench/quality.py                      # full table, markdown on stdout and in --output
    python bench/quality.py --models logreg lstm --horizons 10 --epochs 1
"""

from __future__ import annotations

import argparse
import dataclasses
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
from hftpipe.paths import repo_root
from hftpipe.prepare import ingest
from hftpipe.training import train

log = logging.getLogger("bench.quality")

MODELS = ("logreg", "mlp", "lstm", "deeplob", "lgbm", "logreg_tab", "mlp_tab")  # *_tab, lgbm: engineered features
HORIZONS = (10, 50, 100)


def _raw(symbol: str, levels: int) -> Path:
    return repo_root() / "data" / "raw" / f"LOBSTER_SampleFile_{symbol}_2012-06-21_{levels}.zip"


def _events(cfg: Config, source: Path, out: Path, max_rows: int | None) -> Path:
    """Ingest (with validation) once; optionally keep only the first ``max_rows`` events of the day."""
    if not out.exists():
        ingest(cfg.data, source=str(source), output=str(out), validate_cfg=cfg.validate)
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


def _cell(report: dict[str, Any]) -> tuple[str, str, str]:
    best = report["best_baseline"]
    m = report["margin"]
    return (_pct(report["model"]["macro_f1"]), f"{best} {_pct(report['baselines'][best]['macro_f1'])}",
            f"{100 * m['point']:+.1f} [{100 * m['low']:+.1f}, {100 * m['high']:+.1f}]")


def _trades(report: dict[str, Any]) -> str:
    bt = report["backtest"]["model"]
    return f"{bt['pnl_per_trade_bps']:+.2f} ({bt['n_trades']})"


def render(results: list[dict[str, Any]], baselines: dict[tuple[str, int], dict[str, Any]], settings: str,
           has_oos: bool) -> str:
    """The markdown tables: models with margins, then the baselines themselves."""
    head = "| k | model | GOOG test macro-F1 | best baseline | margin [95%] | net bps/trade (trades) |"
    rule = "|---:|---|---:|---|---:|---:|"
    if has_oos:
        head += " AAPL macro-F1 | best baseline | margin [95%] | net bps/trade (trades) |"
        rule += "---:|---|---:|---:|"
    lines = [(f"Model quality (macro-F1 in %, margins in points over the best naive baseline on the same rows; "
             f"{settings})"), "", head, rule]
    for r in results:
        row = [str(r["k"]), r["model"], *_cell(r["goog"]), _trades(r["goog"])]
        if has_oos:
            row += [*_cell(r["aapl"]), _trades(r["aapl"])]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Naive baselines (macro-F1 in %, same rows as the models):", "",
              "| data | k | rows | majority | persistence | momentum |", "|---|---:|---:|---:|---:|---:|"]
    for (data, k), report in sorted(baselines.items(), key=lambda item: (item[0][0] != "GOOG", item[0][1])):
        b = report["baselines"]
        lines.append(f"| {data} | {k} | {report['data']['scored_rows']} | {_pct(b['majority']['macro_f1'])} | "
                     f"{_pct(b['persistence']['macro_f1'])} | {_pct(b['momentum']['macro_f1'])} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> str:
    base = load_config(args.params)
    work = Path(args.workdir) if args.workdir else paths.sub("bench-quality")
    work.mkdir(parents=True, exist_ok=True)
    features_cfg = dataclasses.replace(base.features, horizons=tuple(args.horizons), alpha=None)
    cfg = base.replace(features=features_cfg)

    started = time.perf_counter()
    goog_events = _events(cfg, _raw("GOOG", args.levels), work / f"goog{args.levels}.parquet", None)
    goog = work / f"goog{args.levels}_features"
    build_features(features_cfg, goog_events, goog)
    goog_fs = load_feature_set(goog)
    has_oos = args.levels == 1 and not args.no_oos
    aapl_by_k: dict[int, Path] = {}
    if has_oos:
        aapl_events = _events(cfg, _raw("AAPL", 1), work / "aapl1.parquet", args.oos_max_rows or None)
        for k in args.horizons:
            # GOOG's training alpha: the classes mean on AAPL what the models learned them to mean on GOOG.
            fcfg = dataclasses.replace(features_cfg, horizons=(k,), alpha=goog_fs.alpha(k))
            aapl_by_k[k] = work / f"aapl1_features_k{k}"
            build_features(fcfg, aapl_events, aapl_by_k[k])
    log.info("data ready in %.0f s", time.perf_counter() - started)

    results: list[dict[str, Any]] = []
    baselines: dict[tuple[str, int], dict[str, Any]] = {}
    for k in args.horizons:
        for model in args.models:
            epochs, samples = args.epochs, args.max_train_samples
            if model == "deeplob":
                epochs = args.deeplob_epochs or epochs
                samples = args.deeplob_max_train_samples or samples
            tcfg = dataclasses.replace(cfg.train, model=model, horizon=k, epochs=epochs, window=args.window,
                                       max_train_samples=samples, patience=epochs, nproc=1, device="cpu",
                                       seed=args.seed, threads=args.threads or cfg.train.threads)
            run_cfg = cfg.replace(train=tcfg)
            t0 = time.perf_counter()
            name = f"{model}_k{k}"
            trained = train(run_cfg, goog, work / "bundles" / name, checkpoint_dir=work / "checkpoints" / name,
                            progress=False)
            t1 = time.perf_counter()
            entry: dict[str, Any] = {"model": model, "k": k, "train_s": t1 - t0, "train_metrics": trained.metrics}
            entry["goog"] = evaluate(run_cfg, trained.bundle_dir, goog, work / "reports" / f"{name}_goog").report
            baselines.setdefault(("GOOG", k), entry["goog"])
            if has_oos:
                entry["aapl"] = evaluate(run_cfg, trained.bundle_dir, aapl_by_k[k],
                                         work / "reports" / f"{name}_aapl").report
                baselines.setdefault(("AAPL", k), entry["aapl"])
            results.append(entry)
            log.info("%s k=%d: trained in %.0f s, evaluated in %.0f s; GOOG macro-F1 %.3f (margin %+.3f)%s", model, k,
                     t1 - t0, time.perf_counter() - t1, entry["goog"]["model"]["macro_f1"],
                     entry["goog"]["margin"]["point"],
                     f", AAPL {entry['aapl']['model']['macro_f1']:.3f} (margin {entry['aapl']['margin']['point']:+.3f})"
                     if has_oos else "")
    elapsed = time.perf_counter() - started
    deeplob = (f" (deeplob: {args.deeplob_epochs or args.epochs} x "
               f"{args.deeplob_max_train_samples or args.max_train_samples})"
               if "deeplob" in args.models and (args.deeplob_epochs or args.deeplob_max_train_samples) else "")
    settings = (f"trained on GOOG 2012-06-21 ({args.levels} level{'s' if args.levels > 1 else ''}), window "
                f"T={args.window}, {args.epochs} epoch(s) of at most {args.max_train_samples} windows{deeplob}, seed "
                f"{args.seed}; AAPL: {f'first {args.oos_max_rows} events' if args.oos_max_rows else 'whole day'}"
                f" of 2012-06-21 with GOOG's alpha; {elapsed / 60:.1f} min on {torch.get_num_threads()} thread(s)")
    return render(results, baselines, settings, has_oos)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--horizons", nargs="+", type=int, default=list(HORIZONS))
    p.add_argument("--levels", type=int, default=1, choices=(1, 5, 10), help="GOOG file to train on")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--max-train-samples", type=int, default=20_000, help="training windows per epoch")
    p.add_argument("--deeplob-epochs", type=int, default=None, help="DeepLOB's epochs (default: --epochs)")
    p.add_argument("--deeplob-max-train-samples", type=int, default=None,
                   help="DeepLOB's windows per epoch (default: --max-train-samples)")
    p.add_argument("--window", type=int, default=50, help="T, book states per input window")
    p.add_argument("--oos-max-rows", type=int, default=0,
                   help="score only the first N events of the AAPL day; 0: the whole day")
    p.add_argument("--no-oos", action="store_true", help="skip the AAPL out-of-sample column")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: train.threads)")
    p.add_argument("--params", default=str(repo_root() / "params.yaml"))
    p.add_argument("--workdir", help="where data, bundles and reports go (default HFTPIPE_HOME/bench-quality)")
    p.add_argument("--output", help="markdown file for the table (default HFTPIPE_HOME/reports/quality.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(argv)
    table = run(args)
    out = Path(args.output) if args.output else paths.reports_dir() / "quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
