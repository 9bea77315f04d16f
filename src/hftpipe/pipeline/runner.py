"""Run, submit, schedule and compile the KFP pipelines.

Without a host the pipeline runs on this machine with ``kfp.local`` (SubprocessRunner, no venv per task,
so each step imports the installed hftpipe); with a host it is submitted to Kubeflow Pipelines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hftpipe import paths
from hftpipe.config import Config
from hftpipe.errors import ConfigError, PipelineError, PipelineInterrupted
from hftpipe.pipeline.ledger import LEDGER_ENV, read_ledger
from hftpipe.proctree import stop_tree_on_signal

log = logging.getLogger(__name__)

STEP_ORDER = ("validate", "ingest", "features", "pool", "train", "evaluate", "register", "deploy")
# name -> (module, function); compiled to pipelines/compiled/<name>_pipeline.yaml
PIPELINES = {"training": ("pipelines.training_pipeline", "training_pipeline"),
             "pooled_training": ("pipelines.training_pipeline", "pooled_training_pipeline"),
             "lake": ("pipelines.lake_pipeline", "lake_pipeline")}


def _pipelines_root() -> Path:
    """The checkout holding ``components/`` and ``pipelines/`` (``HFTPIPE_REPO`` overrides)."""
    root = Path(os.environ.get("HFTPIPE_REPO") or paths.repo_root())
    if not (root / "pipelines" / "training_pipeline.py").exists():
        raise PipelineError(
            f"cannot find pipelines/ under {root}; run from an hftpipe checkout or set HFTPIPE_REPO"
        )
    return root


def load_pipeline(name: str = "training") -> Any:
    """Import a pipeline function from the checkout's ``pipelines/`` package."""
    import importlib

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    root = str(_pipelines_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    module, attr = PIPELINES[name]
    return getattr(importlib.import_module(module), attr)


def compile_pipelines(out_dir: str | Path | None = None) -> list[Path]:
    """Compile every pipeline to IR YAML (default: the checkout's pipelines/compiled/)."""
    from kfp import compiler

    out = Path(out_dir) if out_dir else _pipelines_root() / "pipelines" / "compiled"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PIPELINES:
        target = out / f"{name}_pipeline.yaml"
        compiler.Compiler().compile(load_pipeline(name), str(target))
        written.append(target)
    return written


@dataclass
class RunSummary:
    """What a pipeline run did: per-step status and time, registration, metrics beside baselines."""

    status: str
    source: str
    seconds: float
    steps: list[dict[str, Any]] = field(default_factory=list)
    failed_step: str | None = None
    error: str | None = None
    model_name: str | None = None
    version: str | None = None
    decision: str | None = None
    aliases: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Any] = field(default_factory=dict)
    backtest: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    run_dir: str | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # events_path, features_dir, model_dir, report_dir
    sources: list[str] = field(default_factory=list)  # several: one pooled model (pooled_training pipeline)
    instruments: list[dict[str, Any]] = field(default_factory=list)  # several: each instrument's evaluation row
    pooled: dict[str, Any] = field(default_factory=dict)  # several: the union of the scored rows (not gated on)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def lines(self) -> list[str]:
        """Human-readable summary for the CLI."""
        out = [f"pipeline {self.status} in {self.seconds:.1f} s on {self.source}"]
        for s in self.steps:
            out.append(f"  {s['step']:<9} {s['status']:<10} {s['seconds']:>7.1f} s")
        if self.failed_step:
            out.append(f"failed at step '{self.failed_step}': {self.error}")
        if self.version:
            out.append(f"registered {self.model_name} version {self.version}: {self.decision} "
                       f"(aliases: {', '.join(self.aliases) or 'none'})")
            for reason in self.reasons:
                out.append(f"  gate: {reason}")
        if self.instruments:
            from hftpipe.evaluation.pooled import table_lines

            out.append("evaluation per instrument (macro-F1 and margins in %):")
            out += ["  " + line for line in table_lines(self.instruments, self.pooled or None, "pooled (union)")]
        elif self.metrics:
            out.append(f"model macro-F1 {self.metrics.get('macro_f1', float('nan')):.4f}")
            margin = self.metrics.get("margin") or {}
            if margin:
                out.append(f"  margin over {margin.get('over')}: {margin['point']:+.4f} "
                           f"(95% interval {margin['low']:+.4f} to {margin['high']:+.4f})")
            for name, m in self.baselines.items():
                out.append(f"  baseline {name:<12} macro-F1 {m.get('macro_f1', float('nan')):.4f}")
        for name, bt in self.backtest.items():
            if isinstance(bt, dict) and "net_pnl_bps" in bt and bt.get("n_trades"):
                out.append(f"backtest {name:<12} net {bt['net_pnl_bps']:+9.1f} bps in {bt['n_trades']:>5} trades "
                           f"({bt['net_pnl_bps'] / bt['n_trades']:+.2f} bps/trade, after spread and fees)")
        if self.report:
            out.append(f"evaluation report: {self.report}")
        return out


def _summarise(ledger: list[dict[str, Any]], source: str, seconds: float, run_dir: Path,
               sources: Sequence[str] = ()) -> RunSummary:
    ledger = [r for r in ledger if r["status"] != "started"]
    steps = [{k: r[k] for k in ("step", "status", "seconds")} for r in ledger]
    failed = next((r for r in ledger if r["status"] == "failed"), None)
    summary = RunSummary(status="failed" if failed else "succeeded", source=source, seconds=seconds,
                         steps=steps, run_dir=str(run_dir), sources=list(sources))
    if failed:
        summary.failed_step, summary.error = failed["step"], failed["error"]
    outputs = {r["step"]: r.get("outputs", {}) for r in ledger if r["status"] == "succeeded"}
    for step_outputs in outputs.values():
        for key in ("events_path", "features_dir", "model_dir", "report_dir"):
            if key in step_outputs:
                summary.artifacts[key] = str(step_outputs[key])
    ev = outputs.get("evaluate", {})
    if ev.get("report_dir"):
        from hftpipe.evaluation.pooled import POOLED_JSON, POOLED_MD
        from hftpipe.evaluation.report import REPORT_FILE, REPORT_MD, EvaluationReport

        pooled_json = Path(ev["report_dir"]) / POOLED_JSON
        if pooled_json.exists():  # several instruments: their rows, their mean, and the union beside it
            pooled = json.loads(pooled_json.read_text())
            mean = pooled["instrument_mean"]
            summary.instruments, summary.pooled = pooled["instruments"], pooled["pooled"]
            summary.metrics = {"macro_f1": mean["model_macro_f1"], "mean_margin": mean["margin"],
                               "pooled_macro_f1": pooled["pooled"]["model"]["macro_f1"]}
            summary.report = str(pooled_json.with_name(POOLED_MD))
        elif (Path(ev["report_dir"]) / REPORT_FILE).exists():
            report = EvaluationReport.load(ev["report_dir"])
            summary.metrics = dict(report.model_numbers)
            summary.baselines = report.baseline_numbers
            summary.metrics["margin"] = report.raw.get("margin", {})
            summary.backtest = report.backtest
            summary.report = str(Path(ev["report_dir"]) / REPORT_MD)
    reg = outputs.get("register", {})
    if reg:
        summary.model_name = reg.get("model_name")
        summary.version = str(reg.get("version"))
        summary.decision = reg.get("decision")
        summary.aliases = list(reg.get("aliases") or [reg.get("decision")])
        summary.reasons = list(reg.get("reasons", []))
    return summary


class _LedgerWatcher(threading.Thread):
    """Reports each ledger record as it appears, so a user sees steps start and finish live."""

    def __init__(self, path: Path, callback: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(daemon=True)
        self.path, self.callback, self.seen = path, callback, 0
        self.done = threading.Event()

    def poll(self) -> None:
        records = read_ledger(self.path)
        for record in records[self.seen:]:
            self.callback(record)
        self.seen = len(records)

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.poll()

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.poll()


def latest_artifacts() -> dict[str, str]:
    """Output paths (events_path, features_dir, model_dir, report_dir) of the newest local run that has them."""
    runs = sorted(paths.sub("runs").glob("*/steps.jsonl"), reverse=True)
    for ledger in runs:
        records = [r for r in read_ledger(ledger) if r["status"] == "succeeded"]
        found = {k: str(v) for r in records for k, v in r.get("outputs", {}).items()
                 if k in ("events_path", "features_dir", "model_dir", "report_dir") and Path(str(v)).exists()}
        if "events_path" in found:
            return found
    return {}


def pipeline_call(cfg: Config, source: str | Path | Sequence[str | Path] | None = None,
                  must_exist: bool = True) -> tuple[str, dict[str, Any], list[str]]:
    """(pipeline name, its source argument(s), the resolved files) for ``source`` (default ``data.source``).

    One file runs the training pipeline exactly as it always did; several (a list, or a glob matching more
    than one) run ``pooled_training``.

    Raises:
        ConfigError: see :func:`hftpipe.prepare.resolve_sources`. PipelineError: a file does not exist.
    """
    from hftpipe.prepare import resolve_sources

    raw = None if source is None else ([str(s) for s in source] if isinstance(source, (list, tuple)) else str(source))
    files = resolve_sources(cfg.data, raw)
    if must_exist:
        missing = [f for f in files if not Path(f).exists()]
        if missing:
            raise PipelineError(f"data file {missing[0]} does not exist")
        files = [str(Path(f).resolve()) for f in files]
    if len(files) == 1:
        return "training", {"source": files[0]}, files
    return "pooled_training", {"sources": files}, files


def describe_sources(files: Sequence[str]) -> str:
    """One line naming the file(s) of a run."""
    return files[0] if len(files) == 1 else f"{len(files)} sources ({', '.join(Path(f).name for f in files)})"


@contextlib.contextmanager
def keep_builtin_print() -> Iterator[None]:
    """Restore ``builtins.print`` afterwards: kfp.local runs a ParallelFor's tasks in threads, each swapping
    ``print`` for an indenting one and back; interleaved, they can leave theirs in place for the whole process
    (every later ``click.echo``-free print, and numba's, came out indented)."""
    import builtins

    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


def run_local(cfg: Config, source: str | Path | Sequence[str | Path] | None, nproc: int = 1,
              on_step: Callable[[dict[str, Any]], None] | None = None, stop_timeout: float = 10.0) -> RunSummary:
    """Run the training pipeline on this machine with kfp.local; never raises for a failed step.

    kfp.local's own chatter (every task's inputs, outputs and executor logs) goes to ``kfp.log`` in the
    run folder; ``on_step`` receives each step's start and end as they happen.

    Args:
        source: one file, or several (a list; globs allowed) pooled into one model; None: ``data.source``.
    Raises:
        PipelineInterrupted: SIGINT / SIGTERM arrived; every process the run started has been stopped
            (SIGTERM, then SIGKILL after ``stop_timeout`` seconds) and its RUNNING MLflow runs marked KILLED.
        ConfigError / PipelineError: a glob matching nothing, mixed depths, a missing file.
    """
    from kfp import local

    name, arguments, files = pipeline_call(cfg, source)
    src = describe_sources(files)
    home = paths.home()
    os.environ["HFTPIPE_HOME"] = str(home)  # step subprocesses must share this state folder
    run_dir = paths.sub("runs") / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger = run_dir / "steps.jsonl"
    os.environ[LEDGER_ENV] = str(ledger)
    from hftpipe.registry.tracker import PIPELINE_RUN_ENV

    os.environ[PIPELINE_RUN_ENV] = run_dir.name  # tags every step's MLflow run (found again on interrupt)
    pipeline = load_pipeline(name)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(paths.pipeline_root()),
               raise_on_error=True)
    start = time.perf_counter()
    watcher = _LedgerWatcher(ledger, on_step) if on_step else None
    if watcher:
        watcher.start()
    kfp_log = run_dir / "kfp.log"
    interrupt = None
    try:
        with stop_tree_on_signal(stop_timeout) as interrupt, open(kfp_log, "w") as fh, \
                contextlib.redirect_stdout(fh), warnings.catch_warnings(), keep_builtin_print():
            # Locally the project image is not used (the installed package is): kfp's warning says so.
            warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
            pipeline(**arguments, config_json=json.dumps(cfg.to_dict()), nproc=nproc)
    except KeyboardInterrupt:
        if interrupt is None:  # before the guard was in place: nothing was started yet
            raise
        raise _interrupted(cfg, interrupt, ledger, run_dir) from None
    except Exception as exc:  # noqa: BLE001 - the ledger names the failed step; we report it below
        log.debug("pipeline raised %s (details in %s)", exc, kfp_log)
        records = [r for r in read_ledger(ledger) if r["status"] != "started"]
        if not any(r["status"] == "failed" for r in records):
            summary = _summarise(records, src, time.perf_counter() - start, run_dir, files)
            summary.status, summary.error = "failed", f"{type(exc).__name__}: {exc} (see {kfp_log})"
            done = {r["step"] for r in records}
            summary.failed_step = next((s for s in STEP_ORDER if s not in done), "unknown")
            return summary
    finally:
        if watcher:
            watcher.stop()
        os.environ.pop(LEDGER_ENV, None)
        os.environ.pop(PIPELINE_RUN_ENV, None)
    return _summarise(read_ledger(ledger), src, time.perf_counter() - start, run_dir, files)


def _interrupted(cfg: Config, interrupt: Any, ledger: Path, run_dir: Path) -> PipelineInterrupted:
    """Record an interrupted run (ledger, MLflow runs KILLED) once its processes are gone; the error to raise."""
    from hftpipe.registry.tracker import kill_pipeline_runs

    records = read_ledger(ledger)
    finished = {r["step"] for r in records if r["status"] != "started"}
    running = [r["step"] for r in records if r["status"] == "started" and r["step"] not in finished]
    step_name = running[-1] if running else "unknown"
    with open(ledger, "a") as fh:
        fh.write(json.dumps({"step": step_name, "status": "failed", "seconds": 0.0,
                             "error": f"interrupted by {interrupt.name}"}) + "\n")
    try:
        killed = kill_pipeline_runs(run_dir.name, cfg.register.experiment)
    except Exception as exc:  # noqa: BLE001 - the store being unreachable must not hide the interrupt
        log.warning("could not mark the MLflow runs of %s as KILLED: %s", run_dir.name, exc)
        killed = []
    log.warning("pipeline run %s interrupted by %s during %s: %d process(es) stopped, %d MLflow run(s) KILLED",
                run_dir.name, interrupt.name, step_name, interrupt.stopped, len(killed))
    return PipelineInterrupted(
        f"pipeline interrupted by {interrupt.name} during step '{step_name}': stopped {interrupt.stopped} "
        f"process(es), marked {len(killed)} MLflow run(s) KILLED (run folder {run_dir})",
        signum=interrupt.signum or 2)


def _short_reason(exc: BaseException) -> str:
    """The innermost, human part of a connection error (urllib3 nests three levels of repr)."""
    reason: Any = exc
    while getattr(reason, "reason", None) is not None and reason.reason is not reason:
        reason = reason.reason
    text = str(reason)
    match = re.search(r"(\[Errno -?\d+\][^\"')]*|Failed to resolve[^\"(]*|timed out|Connection refused)", text)
    return (match.group(1) if match else text.splitlines()[0] if text else type(exc).__name__).strip(" :")


@contextlib.contextmanager
def kfp_endpoint(host: str) -> Any:
    """Turn an unreachable or failing Kubeflow Pipelines endpoint into one PipelineError line.

    urllib3 also logs a warning per retry: quiet while connecting, the error says it all.
    """
    import urllib3

    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2: noise, not news.
            warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
            yield
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise PipelineError(f"cannot reach Kubeflow Pipelines at {host}: {_short_reason(exc)}; check --host "
                            "(e.g. http://127.0.0.1:8080 after `kubectl port-forward svc/ml-pipeline-ui`)") from None
    except Exception as exc:
        # kfp_server_api.ApiException (4xx/5xx from the API server) and friends: say status and reason only.
        status = getattr(exc, "status", None)
        if status is None or not type(exc).__module__.startswith("kfp"):
            raise
        raise PipelineError(f"Kubeflow Pipelines at {host} answered {status} {getattr(exc, 'reason', '')}".rstrip()
                            + "; check --host and your access to it") from None
    finally:
        pool_log.setLevel(level)


def submit(cfg: Config, source: str | Sequence[str], host: str, nproc: int = 1, accelerator_type: str = "",
           accelerator_count: int = 0, experiment: str | None = None) -> dict[str, Any]:
    """Submit one run of the training pipeline (several sources: the pooled one) to Kubeflow Pipelines.

    The paths are the cluster's: they are passed on as given (globs expanded here), not checked here.
    """
    import kfp

    name, arguments, _ = pipeline_call(cfg, source, must_exist=False)
    with kfp_endpoint(host):
        client = kfp.Client(host=host)
        result = client.create_run_from_pipeline_func(
            load_pipeline(name),
            arguments={**arguments, "config_json": json.dumps(cfg.to_dict()), "nproc": nproc,
                       "accelerator_type": accelerator_type, "accelerator_count": accelerator_count},
            experiment_name=experiment or cfg.pipeline.experiment,
            enable_caching=False,
        )
    return {"run_id": result.run_id, "host": host}


_CRON_FIELDS = (
    ("second", 0, 59, None),
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"),
    ("day of week", 0, 6, "SUN MON TUE WED THU FRI SAT"),
)


def validate_cron(expr: str) -> str:
    """Check a KFP cron expression (6 fields, seconds first); raise ConfigError saying what is wrong."""
    fields = expr.split()
    if len(fields) == 5:
        raise ConfigError(f"cron {expr!r} has 5 fields; KFP cron has 6 with seconds first, e.g. '0 {expr}'")
    if len(fields) != 6:
        raise ConfigError(f"cron {expr!r} has {len(fields)} fields; KFP cron needs 6: "
                          "second minute hour day-of-month month day-of-week, e.g. '0 0 2 * * 1-5'")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        if text == "?" and name in ("day of month", "day of week"):
            continue
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                raise ConfigError(f"cron {expr!r}: bad step '/{step}' in the {name} field")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                value = names.split().index(bound.upper()) + low if names and bound.upper() in names.split() \
                    else (int(bound) if re.fullmatch(r"\d+", bound) else None)
                if value is None or not low <= value <= high:
                    raise ConfigError(f"cron {expr!r}: '{bound}' is not a valid {name} ({low}-{high})")
    return expr


def schedule(cfg: Config, source: str | Sequence[str], host: str, cron: str,
             job_name: str = "hftpipe-nightly-retrain", nproc: int = 1) -> dict[str, Any]:
    """Create a KFP recurring run (max concurrency 1, no catch-up) of the training pipeline (several: pooled)."""
    import tempfile

    import kfp

    validate_cron(cron)
    name, arguments, _ = pipeline_call(cfg, source, must_exist=False)
    with kfp_endpoint(host), tempfile.TemporaryDirectory() as tmp:
        client = kfp.Client(host=host)
        experiment = client.create_experiment(cfg.pipeline.experiment)
        package = Path(tmp) / f"{name}_pipeline.yaml"
        from kfp import compiler

        compiler.Compiler().compile(load_pipeline(name), str(package))
        job = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=job_name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            pipeline_package_path=str(package),
            params={**arguments, "config_json": json.dumps(cfg.to_dict()), "nproc": nproc},
            # Scheduled runs read tonight's data at the same path: never serve yesterday's cache.
            enable_caching=False,
        )
    return {"recurring_run_id": job.recurring_run_id, "cron": cron, "host": host}
