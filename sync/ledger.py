"""The sync's own memory: a run lock, the pull cursor, and an append-only ledger of writes.

One SQLite file per installation holds, for each REDCap project (keyed by URL, project id and
creation time, so a re-created project starts over with a full pull), the cursor of the last
successful run, every run with its counts, and every cell the sync wrote with its old value,
its new value and the rule that justified it. Rows are only ever inserted (and a run's own row
completed); nothing is updated in place or deleted. The file is readable by its owner only.
"""
from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pandas as pd

from sync.errors import LockHeld

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, project_key TEXT NOT NULL, started_utc TEXT NOT NULL,
    finished_utc TEXT, status TEXT NOT NULL, mode TEXT NOT NULL,
    cursor_from TEXT, cursor_to TEXT, counts TEXT, message TEXT, seen_log TEXT,
    fingerprint TEXT, exit_code INTEGER, pull TEXT, details TEXT
);
CREATE TABLE IF NOT EXISTS writes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, written_utc TEXT NOT NULL,
    record_id TEXT NOT NULL, redcap_event_name TEXT NOT NULL,
    redcap_repeat_instrument TEXT NOT NULL, redcap_repeat_instance TEXT NOT NULL,
    field TEXT NOT NULL, old_value TEXT NOT NULL, new_value TEXT NOT NULL, rule_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS writes_by_run ON writes(run_id);
CREATE TRIGGER IF NOT EXISTS writes_append_only_update BEFORE UPDATE ON writes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS writes_append_only_delete BEFORE DELETE ON writes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

RUN_COLUMNS_ADDED = {"exit_code": "INTEGER", "pull": "TEXT", "details": "TEXT"}
"""Columns of `runs` that older state files lack; added on open."""

LEDGER_COLUMNS = ["record_id", "redcap_event_name", "redcap_repeat_instrument",
                  "redcap_repeat_instance", "field", "old_value", "new_value", "rule_id"]


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now_ms() -> str:
    """A run's start or end, to the millisecond, so that short runs have a duration."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class ProjectKey:
    """Which REDCap project a cursor belongs to."""

    url: str
    project_id: str
    creation_time: str

    def __str__(self) -> str:
        return f"{self.url}#{self.project_id}@{self.creation_time}"


class Ledger:
    """The state file: runs, the last successful cursor per project, and the writes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.executescript(SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        for name, kind in RUN_COLUMNS_ADDED.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock for one run; a second run fails at once instead of waiting."""
        lock_path = self.path.with_suffix(self.path.suffix + ".lock")
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(f"another ecrf sync is running (lock {lock_path} is held); "
                               "this run did nothing") from None
            yield
        finally:
            os.close(fd)

    def last_cursor(self, project: ProjectKey) -> str | None:
        """REDCap log time the last successful run read up to, or None for a full pull."""
        return self.last_state(project)[0]

    def last_state(self, project: ProjectKey) -> tuple[str | None, tuple[str, ...], str]:
        """The cursor, the log entries already seen inside its overlap window, and the
        fingerprint (rules, settings, tool version) the last successful run worked with."""
        row = self._db.execute(
            "SELECT cursor_to, seen_log, fingerprint FROM runs WHERE project_key = ? "
            "AND status = 'succeeded' AND mode = 'write' AND cursor_to IS NOT NULL "
            "ORDER BY started_utc DESC, rowid DESC LIMIT 1", (str(project),)).fetchone()
        if not row:
            return None, (), ""
        return row[0], tuple(json.loads(row[1] or "[]")), row[2] or ""

    def start_run(self, project: ProjectKey | None, mode: str, cursor_from: str | None,
                  fingerprint: str = "") -> str:
        """Record a run as it starts; `project` is None until REDCap has said which it is."""
        run_id = uuid.uuid4().hex[:12]
        self._db.execute(
            "INSERT INTO runs (run_id, project_key, started_utc, status, mode, cursor_from, "
            "fingerprint) VALUES (?, ?, ?, 'running', ?, ?, ?)",
            (run_id, str(project or ""), utc_now_ms(), mode, cursor_from, fingerprint))
        return run_id

    def begin_run(self, run_id: str, project: ProjectKey, cursor_from: str | None,
                  fingerprint: str) -> None:
        """Complete a started run's row once the lock is held and the project is known."""
        self._db.execute(
            "UPDATE runs SET project_key = ?, cursor_from = ?, fingerprint = ? WHERE run_id = ?",
            (str(project), cursor_from, fingerprint, run_id))

    def record_writes(self, run_id: str, cells: pd.DataFrame) -> None:
        """Append one ledger row per written cell (old value, new value, rule), before import."""
        if cells.empty:
            return
        now = utc_now()
        rows = cells[LEDGER_COLUMNS].astype(str).itertuples(index=False, name=None)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO writes (run_id, written_utc, record_id, redcap_event_name, "
                "redcap_repeat_instrument, redcap_repeat_instance, field, old_value, new_value, "
                "rule_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, now, *row) for row in rows])

    def finish_run(self, run_id: str, status: str, cursor_to: str | None,
                   counts: dict[str, int], message: str = "",
                   seen: tuple[str, ...] = (), *, exit_code: int | None = None,
                   pull: str = "", details: dict | None = None) -> None:
        """Complete a run's row: outcome, exit code, counts, and what it held back or accepted."""
        if exit_code is None:
            exit_code = 0 if status == "succeeded" else 1
        self._db.execute(
            "UPDATE runs SET finished_utc = ?, status = ?, cursor_to = ?, counts = ?, message = ?, "
            "seen_log = ?, exit_code = ?, pull = ?, details = ? WHERE run_id = ?",
            (utc_now_ms(), status, cursor_to, json.dumps(counts, sort_keys=True), message,
             json.dumps(sorted(seen)), exit_code, pull, json.dumps(details or {}, sort_keys=True),
             run_id))

    def written_fields(self) -> frozenset[str]:
        """Every field the sync has ever written, to tell its own log entries from the sites'."""
        return frozenset(row[0] for row in self._db.execute("SELECT DISTINCT field FROM writes"))

    def writes(self, run_id: str | None = None) -> pd.DataFrame:
        """The ledger's write rows, oldest first (all runs, or one)."""
        query = "SELECT run_id, written_utc, " + ", ".join(LEDGER_COLUMNS) + " FROM writes"
        params: tuple[str, ...] = ()
        if run_id is not None:
            query, params = query + " WHERE run_id = ?", (run_id,)
        return pd.read_sql_query(query + " ORDER BY seq", self._db, params=params)

    def runs(self) -> pd.DataFrame:
        """Every run, oldest first (`ecrf runs` reads this)."""
        return pd.read_sql_query("SELECT * FROM runs ORDER BY rowid", self._db)
