"""Audit trail on SQLite and on a real PostgreSQL: chaining, append-only, every tamper kind, export, CLI."""

from __future__ import annotations

import csv
import io
import itertools
import json
import sqlite3
from typing import Any

import pytest
from click.testing import CliRunner

from hftpipe import audit
from hftpipe.audit.trail import GENESIS, record_hash
from hftpipe.cli import main


def _raw(url: str) -> Any:
    """A raw connection with the append-only triggers dropped: the tampering insider's view."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
        return conn
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    conn.execute("DROP TRIGGER audit_log_no_change ON audit_log")
    return conn


def _exec(conn: Any, sql: str, params: tuple = ()) -> None:
    if not isinstance(conn, sqlite3.Connection):
        sql = sql.replace("?", "%s")
    conn.execute(sql, params)


def _fill(url: str, n: int = 5) -> list[audit.AuditRecord]:
    with audit.open_trail(url) as trail:
        return [trail.record(audit.PROMOTE, f"hftpipe-lob/{i}", reason=f"reason {i}", details={"version": i, "ü": [1]},
                             actor="alice", at=f"2026-12-0{i}T10:00:00.000000+00:00") for i in range(1, n + 1)]


def test_records_are_chained_and_verify(store_url: str) -> None:
    recs = _fill(store_url)
    assert [r.id for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev_hash == GENESIS and all(b.prev_hash == a.hash for a, b in itertools.pairwise(recs))
    assert recs[2].hash == record_hash({**recs[2].to_dict(), "details": recs[2].details})
    with audit.open_trail(store_url) as trail:
        assert trail.records() == recs  # read back identically (details round-trip)
        v = trail.verify()
    assert v.ok and v.records == 5 and "5 record(s)" in v.message()


def test_the_database_refuses_update_and_delete(store_url: str) -> None:
    _fill(store_url, 2)
    with audit.open_trail(store_url) as trail:
        conn = trail.store.conn
        with pytest.raises(Exception, match="append-only"):
            trail.store.conn.execute("DELETE FROM audit_log WHERE id = 1")
        if not isinstance(conn, sqlite3.Connection):
            conn.rollback()
        assert trail.verify().ok


@pytest.mark.parametrize("tamper, bad, words", [
    ("edit", 3, "edited"),
    ("delete", 3, "missing"),
    ("reorder", 2, "prev_hash"),
    ("truncate", 5, "newest record"),
])
def test_each_tamper_kind_is_detected_and_named(store_url: str, tamper: str, bad: int, words: str) -> None:
    recs = _fill(store_url)
    conn = _raw(store_url)
    try:
        if tamper == "edit":
            _exec(conn, "UPDATE audit_log SET reason = ? WHERE id = 3", ("nothing to see",))
        elif tamper == "delete":
            _exec(conn, "DELETE FROM audit_log WHERE id = 3")
        elif tamper == "reorder":  # records 2 and 3 swap places (each keeps its own hash)
            two, three = recs[1].to_dict(), recs[2].to_dict()
            for target, src in ((2, three), (3, two)):
                _exec(conn, "UPDATE audit_log SET time = ?, subject = ?, reason = ?, details = ?, prev_hash = ?, "
                            "hash = ? WHERE id = ?",
                      (src["time"], src["subject"], src["reason"], json.dumps(src["details"]), src["prev_hash"],
                       src["hash"], target))
        else:
            _exec(conn, "DELETE FROM audit_log WHERE id = 5")
    finally:
        conn.close()
    with audit.open_trail(store_url) as trail:
        v = trail.verify()
    assert not v.ok and v.first_bad == bad and words in v.problem
    result = CliRunner().invoke(main, ["-S", f"audit.url={store_url}", "audit", "verify"])
    assert result.exit_code == 1 and f"TAMPERED at record {bad}" in result.output


def test_export_filters_by_time_as_csv_and_json(store_url: str) -> None:
    _fill(store_url)
    runner = CliRunner()
    out = runner.invoke(main, ["-S", f"audit.url={store_url}", "audit", "export", "--since", "2026-12-02",
                               "--until", "2026-12-04", "--format", "csv"])
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.output)))
    assert [r["id"] for r in rows] == ["2", "3"] and json.loads(rows[0]["details"]) == {"version": 2, "ü": [1]}
    out = runner.invoke(main, ["-S", f"audit.url={store_url}", "audit", "export", "--format", "json"])
    assert [r["subject"] for r in json.loads(out.output)] == [f"hftpipe-lob/{i}" for i in range(1, 6)]
    ok = runner.invoke(main, ["-S", f"audit.url={store_url}", "audit", "verify"])
    assert ok.exit_code == 0 and "intact: 5 record(s)" in ok.output


def test_record_helper_uses_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HFTPIPE_HOME", str(tmp_path))
    monkeypatch.delenv("HFTPIPE_AUDIT_URL", raising=False)
    monkeypatch.setenv("HFTPIPE_ACTOR", "lead")
    rec = audit.record(audit.KILL_SWITCH, "GOOG", reason="test", details={"state": "HALTED"})
    assert rec.actor == "lead" and (tmp_path / "audit.db").is_file()
    with pytest.raises(audit.AuditError, match="non-empty subject"):
        audit.record(audit.KILL_SWITCH, " ")
    with pytest.raises(audit.AuditError, match="plain JSON"):
        audit.record(audit.KILL_SWITCH, "GOOG", details={"x": object()})
    with pytest.raises(audit.AuditError, match="unsupported audit store URL"):
        audit.open_trail("mysql://x")


def test_bad_export_time_is_one_clear_line(tmp_path: Any) -> None:
    out = CliRunner().invoke(main, ["-S", f"audit.url=sqlite:///{tmp_path}/a.db", "audit", "export", "--since", "yesterday"])
    assert out.exit_code == 2 and "'yesterday' is not an ISO date" in out.output
