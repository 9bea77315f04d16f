"""The partitioned market-data dataset: layout, manifest, and ingest of many files.

Layout under the root (default ``HFTPIPE_HOME/lake``)::

    source=<feed>/symbol=<SYM>/date=<YYYY-MM-DD>/part.parquet   one canonical table per partition
    features/source=.../symbol=.../date=.../                     features of that partition
    _manifest.json                                               what every partition holds
    .lock, .tmp/                                                 run lock, staged files

``source`` names the feed and its shape, so that partitions of one symbol-day never collide:
``lobster_l10`` (LOBSTER, 10 levels), ``bars_1min``, ``bars_1h``, ``ticks``. A LOBSTER file is one
symbol-day. A bar or trade file is one partition too; when it spans several exchange days its ``date``
is ``FIRST_LAST`` (windows then restart per exchange day at feature time, see ``lake.features``).

Each file is loaded and validated by the same functions as the single-file commands
(:func:`hftpipe.data.lobster.load_lobster` + :func:`hftpipe.validation.validate_table`, and
:func:`hftpipe.data.market.load_market` + :mod:`hftpipe.validation.bars`), written to ``.tmp`` and
then renamed over its partition file by the driver (``os.replace``: readers see the old file or the
new one, never half of either). A file whose sha256 is already in the manifest is skipped; a failed
file leaves every partition, its own old one included, as it was.
"""

from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from hftpipe import paths
from hftpipe.config import DataConfig, ValidateConfig
from hftpipe.errors import DataFormatError, HftpipeError, LakeBusy, PartitionsFailed

log = logging.getLogger(__name__)

MANIFEST_FILE = "_manifest.json"
PART_FILE = "part.parquet"
LOCK_FILE = ".lock"
MANIFEST_LOCK_FILE = ".manifest.lock"  # short writes of one-partition tasks (manifest_update)
TMP_DIR = ".tmp"
FEATURES_DIR = "features"
MANIFEST_VERSION = 1
EXCHANGE_TZ_LOBSTER = "America/New_York"  # LOBSTER times are seconds after midnight, NASDAQ local time
DATA_SUFFIXES = (".zip", ".csv", ".gz", ".parquet")
_GLOB_CHARS = set("*?[")


def default_root() -> Path:
    """``HFTPIPE_HOME/lake``."""
    return paths.home() / "lake"


def resolve_root(root: str | Path | None) -> Path:
    return Path(root).expanduser().resolve() if root else default_root()


def partition_key(source: str, symbol: str, date: str) -> str:
    """Relative folder of a partition (hive style, so pyarrow.dataset reads the keys as columns)."""
    for name, value in (("source", source), ("symbol", symbol), ("date", date)):
        if not value or "/" in value or value.startswith("."):
            raise DataFormatError(f"partition {name} {value!r} cannot name a folder")
    return f"source={source}/symbol={symbol}/date={date}"


def parse_key(key: str) -> dict[str, str]:
    """``source=a/symbol=b/date=c`` -> {"source": "a", "symbol": "b", "date": "c"}."""
    return dict(part.split("=", 1) for part in key.split("/"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- manifest ---------------------------------------------------------------------------------------

def empty_manifest() -> dict[str, Any]:
    return {"format_version": MANIFEST_VERSION, "partitions": {}, "features": {}, "failures": {}}


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a dataset (an empty one when nothing was ingested yet).

    Raises:
        DataFormatError: the file exists but is not a manifest this version understands.
    """
    path = Path(root) / MANIFEST_FILE
    if not path.exists():
        return empty_manifest()
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} is not valid JSON ({exc}); restore it or delete the dataset") from exc
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise DataFormatError(f"{path}: manifest format {manifest.get('format_version')!r}, "
                              f"this hftpipe reads {MANIFEST_VERSION}")
    for section in ("partitions", "features", "failures"):
        manifest.setdefault(section, {})
    return manifest


def write_manifest(root: str | Path, manifest: dict[str, Any]) -> Path:
    """Replace the manifest atomically (temporary file in the same folder, fsync, rename)."""
    root = Path(root)
    path = root / MANIFEST_FILE
    tmp = root / f".{MANIFEST_FILE}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _flock(fh: Any, mode: int, wait: float) -> bool:
    """Take ``mode`` on an open lock file, retrying for up to ``wait`` seconds; False when still held."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


@contextmanager
def locked(root: Path, *, shared: bool = False, wait: float = 0.0) -> Iterator[None]:
    """Hold the dataset's lock.

    Exclusive (the default): a whole-dataset run (``ingest_dataset``, ``validate_dataset``,
    ``features_dataset``), alone. Shared: a one-partition task (:mod:`hftpipe.lake.fanout`), which runs
    beside other such tasks, in other processes or pods on the same volume, but never beside a
    whole-dataset run; its manifest changes go through :func:`manifest_update`.

    Args:
        wait: seconds to retry before giving up (0: fail at once).
    Raises:
        LakeBusy: the lock is still held after ``wait`` seconds.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as fh:  # read+write: NFS turns flock into POSIX locks, which need both
        if not _flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, wait):
            holder = ("a whole-dataset hftpipe run is" if shared
                      else "another hftpipe run (or a pipeline's partition tasks) is")
            raise LakeBusy(f"{holder} writing {root} (it holds {root / LOCK_FILE}); wait for it to finish")
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def manifest_update(root: Path, wait: float = 120.0) -> Iterator[dict[str, Any]]:
    """Read the manifest, let the caller change it, replace it: one writer at a time, across processes.

    For one-partition tasks, which hold the dataset lock shared: without this second, short lock two
    tasks finishing together would each rewrite the manifest from their own read and one entry would be
    lost. Nothing is written when the body raises.

    Raises:
        LakeBusy: another task kept the manifest for more than ``wait`` seconds.
    """
    with open(root / MANIFEST_LOCK_FILE, "a+") as fh:
        if not _flock(fh, fcntl.LOCK_EX, wait):
            raise LakeBusy(f"{root / MANIFEST_LOCK_FILE} was held for over {wait:.0f} s; "
                           "is a partition task stuck on the volume?")
        try:
            manifest = read_manifest(root)
            yield manifest
            write_manifest(root, manifest)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- inputs -----------------------------------------------------------------------------------------

def _is_lobster(path: Path) -> bool:
    name = path.name.lower()
    if path.suffix.lower() == ".zip":
        return True
    return path.suffix.lower() == ".csv" and ("message" in name or "orderbook" in name)


def _is_l3_capture(path: Path) -> bool:
    from hftpipe.data.bitstamp import is_bitstamp_capture

    return is_bitstamp_capture(path)


def _data_files(folder: Path) -> list[Path]:
    if _is_l3_capture(folder):
        return [folder]  # an order-by-order capture: the orders file is the data, its trades file rides along
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts) \
                and path.name.lower().endswith(DATA_SUFFIXES):
            found.append(path)
    return found


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files behind ``inputs`` (files, folders searched recursively, globs), each once, in order.

    A LOBSTER CSV pair counts once (by its message file). README, licence and checksum files are not
    data and are skipped inside folders.

    Raises:
        DataFormatError: a path that does not exist or a glob that matches nothing.
    """
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        if _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            if not matches:
                raise DataFormatError(f"{text} matches no file")
        else:
            path = Path(text).expanduser()
            if not path.exists():
                raise DataFormatError(f"{path} does not exist")
            matches = [path]
        for match in matches:
            files += _data_files(match) if match.is_dir() else [match]
    out: list[Path] = []
    seen: set[Path] = set()
    resolved = {f.resolve() for f in files}
    for f in files:
        real = f.resolve()
        if real in seen:
            continue
        name = f.name
        # The orderbook CSV of a pair is read through its message CSV.
        if f.suffix.lower() == ".csv" and "orderbook" in name and \
                real.with_name(name.replace("orderbook", "message")) in resolved:
            continue
        seen.add(real)
        out.append(f)
    return out


# -- one file (runs on a worker) --------------------------------------------------------------------

@dataclass(frozen=True)
class IngestOptions:
    """What every ingest task needs besides its file (pickled to the workers)."""

    validate: ValidateConfig = field(default_factory=ValidateConfig)
    halts: str = "drop"  # LOBSTER trading-halt rows, as data.halts
    market: dict[str, Any] = field(default_factory=dict)  # load_market options (zones, stamp, symbol)


def file_sha256(path: Path) -> str:
    """The sha256 the loaders record: of the zip / file, or of a CSV pair's message then orderbook file."""
    if _is_lobster(path):
        from hftpipe.data.lobster import discover

        return discover(path).sha256()
    from hftpipe.data.bars import sha256_of

    if path.is_dir():  # an L3 capture folder: its orders and trades files, in name order
        import hashlib

        digest = hashlib.sha256()
        for name in ("orders.csv.gz", "orders.csv", "trades.csv.gz", "trades.csv"):
            if (path / name).exists():
                digest.update(sha256_of(path / name).encode())
        return digest.hexdigest()
    return sha256_of(path)


def _lobster_span(date: str, times: pd.Series) -> tuple[str, str]:
    day = pd.Timestamp(date, tz=EXCHANGE_TZ_LOBSTER)
    first, last = (day + pd.to_timedelta(float(t), unit="s") for t in (times.min(), times.max()))
    return first.tz_convert("UTC").isoformat(), last.tz_convert("UTC").isoformat()


def _stage_lobster(path: Path, opts: IngestOptions, staged: Path) -> tuple[str, dict[str, Any], Any]:
    from hftpipe.data.lobster import load_lobster
    from hftpipe.data.schema import write_events
    from hftpipe.validation import validate_table

    vcfg = opts.validate
    table = load_lobster(path, halts=opts.halts, session=(vcfg.session_start, vcfg.session_end))
    result = validate_table(table, vcfg)
    meta = table.meta
    key = partition_key(f"lobster_l{meta.levels}", meta.symbol, meta.date)
    if result.success:
        write_events(table, staged)
    start, end = _lobster_span(meta.date, table.frame["time"])
    entry = {"kind": "events", "rows": meta.rows, "levels": meta.levels, "start": start, "end": end,
             "source_sha256": meta.source_sha256}
    return key, entry, result


def _stage_l3(path: Path, opts: IngestOptions, staged: Path) -> tuple[str, dict[str, Any], Any]:
    """An order-by-order capture (Bitstamp L3) through the same book builder as `hftpipe ingest`."""
    from hftpipe.data.bitstamp import load_bitstamp
    from hftpipe.data.schema import write_events
    from hftpipe.validation import validate_table

    table = load_bitstamp(path)
    result = validate_table(table, opts.validate)
    meta = table.meta
    key = partition_key(f"{meta.venue or 'l3'}_l{meta.levels}", meta.symbol, meta.date)
    if result.success:
        write_events(table, staged)
    times = table.frame["time"]
    start, end = _lobster_span(meta.date, times)
    entry = {"kind": "events", "rows": meta.rows, "levels": meta.levels, "start": start, "end": end,
             "source_sha256": file_sha256(path), "loader_report": dict(meta.source_report)}
    return key, entry, result


def _stage_market(path: Path, opts: IngestOptions, staged: Path) -> tuple[str, dict[str, Any], Any]:
    from hftpipe.data.bars import BarTable, exchange_time, write_bars
    from hftpipe.data.market import load_market
    from hftpipe.data.ticks import write_ticks
    from hftpipe.validation.bars import validate_bars, validate_ticks

    table = load_market(path, **opts.market)
    meta = table.meta
    if isinstance(table, BarTable):
        result = validate_bars(table, opts.validate)
        local = exchange_time(table)
        source, kind = f"bars_{meta.bar_size}", "bars"
    else:
        result = validate_ticks(table, opts.validate)
        local = table.frame["ts"].dt.tz_convert(meta.exchange_tz)
        source, kind = "ticks", "ticks"
    first, last = (local.min().strftime("%Y-%m-%d"), local.max().strftime("%Y-%m-%d"))
    key = partition_key(source, meta.symbol, first if first == last else f"{first}_{last}")
    if result.success:
        (write_bars if kind == "bars" else write_ticks)(table, staged)
    entry = {"kind": kind, "rows": meta.rows, "levels": None, "start": meta.start, "end": meta.end,
             "source_sha256": meta.source_sha256}
    return key, entry, result


def stage_file(path: str | Path, tmp_dir: str | Path, known: dict[str, str],
               opts: IngestOptions) -> dict[str, Any]:
    """Load, validate and stage one file (no partition is touched): the ingest task of one worker.

    Returns a small dict (never the data): ``status`` "unchanged" (sha256 already in the manifest),
    "staged" (``tmp`` holds the new partition file, ``key`` and ``entry`` describe it) or "failed"
    (``reason``).
    """
    path = Path(path)
    started = time.perf_counter()
    try:
        sha = file_sha256(path)
        if sha in known:
            return {"status": "unchanged", "source": str(path), "key": known[sha]}
        staged = Path(tmp_dir) / f"{uuid.uuid4().hex}.parquet"
        stage = _stage_lobster if _is_lobster(path) else _stage_l3 if _is_l3_capture(path) else _stage_market
        key, entry, result = stage(path, opts, staged)
    except (HftpipeError, OSError, ValueError, zipfile.BadZipFile) as exc:
        # A corrupt or unreadable file is this file's failure, not the run's.
        return {"status": "failed", "source": str(path), "reason": _one_line(exc)}
    validation = {"success": result.success, "checks": result.checks, "failed": len(result.failures)}
    if not result.success:
        report, _ = result.write_reports()
        return {"status": "failed", "source": str(path), "key": key,
                "reason": f"validation failed ({len(result.failures)} of {result.checks} checks: "
                          f"{', '.join(f.expectation for f in result.failures[:3])}); report {report}"}
    entry.update(source=str(path.resolve()), validation=validation, written_at=now_iso(),
                 ingest_seconds=round(time.perf_counter() - started, 3))
    return {"status": "staged", "source": str(path), "key": key, "tmp": str(staged), "entry": entry}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {text[0] if text else ''}"[:500]


# -- many files (the driver) ------------------------------------------------------------------------

@dataclass
class Failure:
    """One partition or file that did not make it, and why."""

    item: str
    reason: str


@dataclass
class RunReport:
    """What a dataset run did: partitions written, left as they were, failed."""

    root: Path
    action: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return not self.failed

    def summary_lines(self) -> list[str]:
        lines = [(f"{self.action}: {len(self.written)} written, {len(self.unchanged)} unchanged, "
                 f"{len(self.failed)} failed in {self.seconds:.1f} s ({self.root})")]
        lines += [f"  wrote {key}" for key in self.written]
        lines += [f"  FAILED {f.item}: {f.reason}" for f in self.failed]
        return lines

    def raise_if_failed(self) -> None:
        """Raise :class:`PartitionsFailed` naming every failure."""
        if self.failed:
            raise PartitionsFailed(f"{len(self.failed)} of {len(self.failed) + len(self.written) + len(self.unchanged)} "
                                   f"failed ({self.action}): "
                                   + "; ".join(f"{f.item}: {f.reason}" for f in self.failed)
                                   + " (the others were written; --keep-going exits 0)")


def partition_file(root: Path, key: str) -> Path:
    return root / key / PART_FILE


def known_hashes(root: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """sha256 -> partition key, for partitions whose file is still there."""
    return {e["source_sha256"]: key for key, e in manifest["partitions"].items()
            if partition_file(root, key).exists()}


def ingest_dataset(inputs: Sequence[str | Path], root: str | Path | None = None, *,
                   validate_cfg: ValidateConfig | None = None, data_cfg: DataConfig | None = None,
                   market_options: dict[str, Any] | None = None, workers: int | None = None,
                   scheduler: str | None = None, memory_limit: str = "2GiB",
                   keep_going: bool = False, client: Any = None) -> RunReport:
    """Ingest files, folders or globs into the partitioned dataset, one task per file.

    Args:
        inputs: LOBSTER zips / CSV pairs, bar and trade files, folders of them, or globs.
        root: dataset folder (default ``HFTPIPE_HOME/lake``).
        workers: local Dask worker processes (None: one per core; 0: in this process, no Dask).
        scheduler: address of a running Dask scheduler (its workers must see ``root``).
        keep_going: return the report instead of raising when some files failed.
        client: an open ``distributed.Client`` to run on (instead of workers / scheduler).
    Returns:
        The report: partitions written, unchanged (same sha256), and failures with their reasons.
    Raises:
        DataFormatError: an input path that does not exist or a glob that matches nothing.
        PartitionsFailed: some files failed and ``keep_going`` is false (the others are written).
        LakeBusy: another run is writing this dataset.
    """
    from hftpipe.lake.runner import run_tasks

    started = time.perf_counter()
    root = resolve_root(root)
    files = expand_inputs(inputs)
    if not files:
        raise DataFormatError(f"no data files in {', '.join(map(str, inputs))}")
    opts = IngestOptions(validate=validate_cfg or ValidateConfig(),
                         halts=(data_cfg or DataConfig()).halts, market=dict(market_options or {}))
    report = RunReport(root=root, action="ingest")
    with locked(root):
        manifest = read_manifest(root)
        # Files staged by a run that died are garbage: we hold the lock, so no run is using them.
        shutil.rmtree(root / TMP_DIR, ignore_errors=True)
        tmp_dir = root / TMP_DIR / uuid.uuid4().hex
        tmp_dir.mkdir(parents=True)
        try:
            known = known_hashes(root, manifest)
            tasks = [(str(f), (str(f), str(tmp_dir), known, opts)) for f in files]
            results, crashed = run_tasks(stage_file, tasks, workers=workers, scheduler=scheduler,
                                         memory_limit=memory_limit, desc="ingest", client=client)
            # Commit in input order (not completion order), so a duplicate partition always loses to
            # the earlier input of the command line.
            committed: dict[str, str] = {}
            for f in files:
                label = str(f)
                if label in crashed:
                    report.failed.append(Failure(label, crashed[label]))
                    manifest["failures"][label] = {"reason": crashed[label], "at": now_iso()}
                    continue
                res = results[label]
                if res["status"] == "unchanged":
                    report.unchanged.append(res["key"])
                    manifest["failures"].pop(label, None)
                elif res["status"] == "failed":
                    where = f" (partition {res['key']} left as it was)" if res.get("key") else ""
                    report.failed.append(Failure(label, res["reason"] + where))
                    manifest["failures"][label] = {"reason": res["reason"], "at": now_iso()}
                elif res["key"] in committed:
                    reason = f"partition {res['key']} also comes from {committed[res['key']]} in this run"
                    report.failed.append(Failure(label, reason))
                    manifest["failures"][label] = {"reason": reason, "at": now_iso()}
                else:
                    key = res["key"]
                    target = partition_file(root, key)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(res["tmp"], target)  # atomic: readers see the old file or the new one
                    manifest["partitions"][key] = res["entry"]
                    manifest["features"].pop(key, None)  # stale: rebuilt by the next features run
                    manifest["failures"].pop(label, None)
                    write_manifest(root, manifest)  # after each commit: manifest and files agree
                    committed[key] = label
                    report.written.append(key)
            write_manifest(root, manifest)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    for line in report.summary_lines():
        log.info(line)
    if not keep_going:
        report.raise_if_failed()
    return report


def validate_partition(root: str | Path, key: str, validate_cfg: ValidateConfig) -> dict[str, Any]:
    """Re-validate one stored partition with its suite (the validate task of one worker)."""
    from hftpipe.data.bars import read_bars
    from hftpipe.data.schema import read_events
    from hftpipe.data.ticks import read_ticks
    from hftpipe.validation import validate_table
    from hftpipe.validation.bars import validate_bars, validate_ticks

    path = partition_file(Path(root), key)
    kind = parse_key(key)["source"]
    if kind.startswith("lobster"):
        result = validate_table(read_events(path), validate_cfg, source=str(path))
    elif kind.startswith("bars"):
        result = validate_bars(read_bars(path), validate_cfg)
    else:
        result = validate_ticks(read_ticks(path), validate_cfg)
    out = {"success": result.success, "checks": result.checks, "failed": len(result.failures)}
    if not result.success:
        report, _ = result.write_reports()
        out["reason"] = f"validation failed ({len(result.failures)} of {result.checks} checks); report {report}"
    return out


def validate_dataset(root: str | Path | None = None, *, validate_cfg: ValidateConfig | None = None,
                     workers: int | None = None, scheduler: str | None = None,
                     memory_limit: str = "2GiB", keep_going: bool = False, client: Any = None) -> RunReport:
    """Re-validate every partition in parallel and record each result in the manifest."""
    from hftpipe.lake.runner import run_tasks

    started = time.perf_counter()
    root = resolve_root(root)
    vcfg = validate_cfg or ValidateConfig()
    report = RunReport(root=root, action="validate")
    with locked(root):
        manifest = read_manifest(root)
        keys = sorted(manifest["partitions"])
        results, crashed = run_tasks(validate_partition, [(k, (str(root), k, vcfg)) for k in keys],
                                     workers=workers, scheduler=scheduler, memory_limit=memory_limit,
                                     desc="validate", client=client)
        for key in keys:
            if key in crashed:
                report.failed.append(Failure(key, crashed[key]))
                continue
            res = results[key]
            reason = res.pop("reason", None)
            manifest["partitions"][key]["validation"] = res | {"at": now_iso()}
            if reason:
                report.failed.append(Failure(key, reason))
            else:
                report.written.append(key)
        write_manifest(root, manifest)
    report.seconds = time.perf_counter() - started
    if not keep_going:
        report.raise_if_failed()
    return report


def manifest_table(root: str | Path | None = None) -> pd.DataFrame:
    """One row per partition: keys, kind, rows, levels, time range, validation, features, sha256."""
    root = resolve_root(root)
    manifest = read_manifest(root)
    rows = []
    for key, e in sorted(manifest["partitions"].items()):
        feats = manifest["features"].get(key, {})
        rows.append({**parse_key(key), "kind": e["kind"], "rows": e["rows"], "levels": e.get("levels"),
                     "start": e["start"], "end": e["end"],
                     "valid": bool(e.get("validation", {}).get("success")),
                     "features": feats.get("rows"), "split": feats.get("split"),
                     "sha256": e["source_sha256"][:12], "written_at": e["written_at"]})
    return pd.DataFrame(rows)
