"""The sync's own memory: a run lock, the pull cursor, and an append-only ledger of writes.

One SQLite file per REDCap project (URL and project id), by default in the user's state
directory (`$XDG_STATE_HOME/ecrf/`, else `~/.local/state/ecrf/`), so runs started from different
folders share it; the `state_path` setting names another. It holds, for each project (keyed by
URL, project id and creation time, so a re-created project starts over with a full pull), the
cursor of the last successful run, every run with its counts, and every cell the sync wrote with
its old value, its new value and the rule that justified it. Rows are only ever inserted (and a
run's own row completed); nothing is updated in place or deleted. The file is readable by its
owner only. The run lock is per project, in the user's state directory, whatever the state path.
A damaged, unwritable or full state file is a `StateFileError` naming the file and what to do.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import pandas as pd

from sync.errors import LockHeld, StateFileError

T = TypeVar("T")

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
CREATE INDEX IF NOT EXISTS writes_by_record ON writes(record_id);
CREATE TABLE IF NOT EXISTS pull_state (
    project_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, design_hash TEXT NOT NULL,
    record_id_field TEXT NOT NULL, sync_user TEXT NOT NULL, last_full TEXT NOT NULL,
    record_ids TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, record_id TEXT NOT NULL,
    redcap_event_name TEXT NOT NULL, redcap_repeat_instrument TEXT NOT NULL,
    redcap_repeat_instance TEXT NOT NULL, field TEXT NOT NULL, new_value TEXT NOT NULL,
    rule_id TEXT NOT NULL, message TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS writes_append_only_update BEFORE UPDATE ON writes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS writes_append_only_delete BEFORE DELETE ON writes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

REFUSED_COLUMNS = ["run_id", "record_id", "redcap_event_name", "redcap_repeat_instrument",
                   "redcap_repeat_instance", "field", "new_value", "rule_id", "message"]

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


@dataclass(frozen=True)
class PullState:
    """What the next incremental pull compares against: the design's hash, the records the
    project held, the sync's REDCap user, and when (REDCap log time) the last full pull ran."""

    run_id: str
    design_hash: str
    record_id_field: str
    sync_user: str
    last_full: str
    record_ids: frozenset[str]


def user_state_dir() -> Path:
    """`$XDG_STATE_HOME/ecrf` (when set to an absolute path), else `~/.local/state/ecrf`."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "ecrf"


def project_slug(url: str, project_id: str) -> str:
    """A file name for one project: readable host and id, and a digest of the exact URL.

    Examples:
        >>> project_slug("https://REDCap.example.org/api/", "42")
        'redcap.example.org-pid42-7080842bdf'
    """
    parts = urlsplit(url.strip())
    where = f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/') or ''}/"
    digest = hashlib.sha256(f"{where}#{project_id}".encode()).hexdigest()[:10]
    host = re.sub(r"[^A-Za-z0-9.-]+", "_", parts.hostname or "redcap")
    pid = re.sub(r"[^A-Za-z0-9]+", "_", str(project_id))
    return f"{host}-pid{pid}-{digest}"


def state_path_for(configured: Path | None, url: str, project_id: str) -> Path:
    """The state file: the `state_path` setting when given, else one per project."""
    if configured is not None:
        return Path(configured)
    return user_state_dir() / f"{project_slug(url, project_id)}.sqlite"


def _state_error(path: Path, exc: BaseException) -> StateFileError:
    """One line naming the state file, what is wrong and what to do."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = detail.lower()
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "disk is full" in text:
        return StateFileError(f"state file {path}: the disk is full ({detail}); free space on it "
                              "and run again (nothing was lost: the next run finishes the job)")
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return StateFileError(f"state file {path}: cannot be created, a part of its folder is "
                              "a file, not a folder; set state_path to a file in a folder you "
                              "can write")
    if isinstance(exc, PermissionError) or any(
            words in text for words in ("readonly", "read-only", "unable to open",
                                        "permission denied")):
        return StateFileError(f"state file {path}: cannot be written ({detail}); give your user "
                              "write access to it and its folder, or set state_path to a "
                              "writable file")
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StateFileError(f"state file {path}: in use by another program ({detail}); close "
                              "what holds it open (a database browser, a copy or backup in "
                              "progress) and run again: nothing was lost")
    if isinstance(exc, sqlite3.DatabaseError):
        return StateFileError(f"state file {path}: damaged or not an ecrf state file ({detail}); "
                              "move it aside (or restore it from a backup) and run again: the "
                              "next run starts over with a full pull")
    return StateFileError(f"state file {path}: {detail}; check the file and its folder, or set "
                          "state_path to another file")


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Run a ledger method, turning SQLite and file-system failures into a StateFileError."""
    @functools.wraps(method)
    def wrapper(self: "Ledger", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError, pd.errors.DatabaseError) as exc:
            raise _state_error(self.path, exc) from None
    return wrapper


@contextmanager
def project_lock(project: ProjectKey) -> Iterator[Path]:
    """Hold the project's run lock; a second run on the same project fails at once.

    The lock lives in the user's state directory, keyed by URL and project id, so two runs on
    one project exclude each other whatever state files they were told to use.
    """
    lock_path = user_state_dir() / "locks" / f"{project_slug(project.url, project.project_id)}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise StateFileError(f"run lock {lock_path}: cannot be created ({exc.strerror or exc}); "
                             "give your user write access to that folder or set "
                             "XDG_STATE_HOME") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(f"another ecrf sync is running on this project (lock {lock_path} is "
                           "held); this run did nothing") from None
        yield lock_path
    finally:
        os.close(fd)


def _refuse_other_databases(db: sqlite3.Connection) -> None:
    """A database holding tables but not the ledger's is another program's: the sync would
    add its tables to it (a copy of REDCap's own database, say) and lose its history."""
    tables = sorted(row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    if tables and "runs" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise sqlite3.DatabaseError(f"it holds another program's tables: {shown}")


class Ledger:
    """The state file: runs, the last successful cursor per project, and the writes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._open()

    @_guarded
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        emptied = self.path.is_file() and self.path.stat().st_size == 0
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(self.path, 0o600)
        # the sync's write-behind thread records the writes it imports (never two at once)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            if emptied:  # a state file is never empty once a run has opened it: truncated
                raise sqlite3.DatabaseError("the file is empty, 0 bytes")
            _refuse_other_databases(self._db)
            self._db.executescript(SCHEMA)
            verdict = self._db.execute("PRAGMA quick_check(1)").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict[0] if verdict else '?'}")
            present = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            for name, kind in RUN_COLUMNS_ADDED.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    @contextmanager
    def lock(self, project: ProjectKey) -> Iterator[None]:
        """Hold the project's run lock (`project_lock`) for one run."""
        with project_lock(project):
            yield

    def last_cursor(self, project: ProjectKey) -> str | None:
        """REDCap log time the last successful run read up to, or None for a full pull."""
        return self.last_state(project)[0]

    @_guarded
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

    @_guarded
    def last_run_id(self, project: ProjectKey) -> str | None:
        """The run ID of the last successful writing run of `project`, if any."""
        row = self._db.execute(
            "SELECT run_id FROM runs WHERE project_key = ? AND status = 'succeeded' "
            "AND mode = 'write' ORDER BY started_utc DESC, rowid DESC LIMIT 1",
            (str(project),)).fetchone()
        return row[0] if row else None

    @_guarded
    def recreated(self, project: ProjectKey) -> dict[str, str]:
        """Records an import re-created after a person deleted or renamed them, as the last
        finished writing run left them waiting for a person: record -> what happened."""
        row = self._db.execute(
            "SELECT details FROM runs WHERE project_key = ? AND status IN ('succeeded', 'held') "
            "AND mode = 'write' ORDER BY started_utc DESC, rowid DESC LIMIT 1",
            (str(project),)).fetchone()
        return dict(json.loads(row[0] or "{}").get("recreated", {})) if row else {}

    @_guarded
    def start_run(self, project: ProjectKey, mode: str, cursor_from: str | None,
                  fingerprint: str = "", started_utc: str | None = None) -> str:
        """Record a run as it starts (at `started_utc` when it started before the file opened)."""
        run_id = uuid.uuid4().hex[:12]
        self._db.execute(
            "INSERT INTO runs (run_id, project_key, started_utc, status, mode, cursor_from, "
            "fingerprint) VALUES (?, ?, ?, 'running', ?, ?, ?)",
            (run_id, str(project), started_utc or utc_now_ms(), mode, cursor_from, fingerprint))
        return run_id

    @_guarded
    def begin_run(self, run_id: str, cursor_from: str | None, fingerprint: str) -> None:
        """Complete a started run's row once it holds the lock and has read its cursor."""
        self._db.execute("UPDATE runs SET cursor_from = ?, fingerprint = ? WHERE run_id = ?",
                         (cursor_from, fingerprint, run_id))

    @_guarded
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

    @_guarded
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

    @_guarded
    def pull_state(self, project: ProjectKey) -> PullState | None:
        row = self._db.execute(
            "SELECT run_id, design_hash, record_id_field, sync_user, last_full, record_ids "
            "FROM pull_state WHERE project_key = ?", (str(project),)).fetchone()
        if not row:
            return None
        return PullState(*row[:5], frozenset(json.loads(row[5])))

    @_guarded
    def save_pull_state(self, project: ProjectKey, state: PullState) -> None:
        """Replace the project's pull state (only a finished write run saves it)."""
        self._db.execute(
            "INSERT OR REPLACE INTO pull_state VALUES (?, ?, ?, ?, ?, ?, ?)",
            (str(project), state.run_id, state.design_hash, state.record_id_field,
             state.sync_user, state.last_full, json.dumps(sorted(state.record_ids))))

    @_guarded
    def runs_since(self, project: ProjectKey, run_id: str) -> tuple[str, ...]:
        """Run `run_id` and every later run of the project."""
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE project_key = ? AND rowid >= "
            "(SELECT rowid FROM runs WHERE run_id = ?) ORDER BY rowid",
            (str(project), run_id)).fetchall()
        return tuple(row[0] for row in rows)

    @_guarded
    def wrote_any(self, run_ids: tuple[str, ...]) -> bool:
        """Whether any of the runs wrote a cell."""
        marks = ", ".join("?" * len(run_ids))
        return bool(run_ids) and self._db.execute(
            f"SELECT EXISTS (SELECT 1 FROM writes WHERE run_id IN ({marks}))",
            run_ids).fetchone()[0] == 1

    @_guarded
    def cells_of_record(self, run_ids: tuple[str, ...], record_id: str
                        ) -> list[tuple[str, str, str]]:
        """(instance, field, new value) of every cell the runs wrote to one record, oldest
        first: one record's share, so a night never loads every cell a full sync wrote."""
        marks = ", ".join("?" * len(run_ids))
        return self._db.execute(
            "SELECT redcap_repeat_instance, field, new_value FROM writes WHERE record_id = ? "
            f"AND run_id IN ({marks}) ORDER BY seq", (record_id, *run_ids)).fetchall()

    @_guarded
    def writes(self, run_id: str | None = None) -> pd.DataFrame:
        """The ledger's write rows, oldest first (all runs, or one)."""
        query = "SELECT run_id, written_utc, " + ", ".join(LEDGER_COLUMNS) + " FROM writes"
        params: tuple[str, ...] = ()
        if run_id is not None:
            query, params = query + " WHERE run_id = ?", (run_id,)
        return pd.read_sql_query(query + " ORDER BY seq", self._db, params=params)

    @_guarded
    def runs(self) -> pd.DataFrame:
        """Every run, oldest first (`ecrf runs` reads this)."""
        return pd.read_sql_query("SELECT * FROM runs ORDER BY rowid", self._db)

    @_guarded
    def record_refused(self, run_id: str, cells: pd.DataFrame) -> None:
        """Cells REDCap refused this run (locked form, value out of range, ...), with its message."""
        if cells.empty:
            return
        columns = [c for c in REFUSED_COLUMNS if c != "run_id"]
        rows = cells[columns].astype(str).itertuples(index=False, name=None)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT INTO refused (run_id, {', '.join(columns)}) "
                f"VALUES (?, {', '.join('?' * len(columns))})", [(run_id, *row) for row in rows])

    @_guarded
    def refused(self, run_id: str | None = None) -> pd.DataFrame:
        """Refused cells, oldest first (all runs, or one)."""
        query = f"SELECT {', '.join(REFUSED_COLUMNS)} FROM refused"
        params: tuple[str, ...] = ()
        if run_id is not None:
            query, params = query + " WHERE run_id = ?", (run_id,)
        return pd.read_sql_query(query + " ORDER BY seq", self._db, params=params)

    @_guarded
    def records_to_retry(self, project: ProjectKey) -> frozenset[str]:
        """Records with cells refused since the last run that moved the cursor (that run
        included): the cursor has gone past their log entries, so the next run pulls them."""
        rows = self._db.execute(
            "SELECT DISTINCT record_id FROM refused WHERE run_id IN (SELECT run_id FROM runs "
            "WHERE project_key = ? AND mode = 'write' AND rowid >= coalesce((SELECT max(rowid) "
            "FROM runs WHERE project_key = ? AND status = 'succeeded' AND mode = 'write' "
            "AND cursor_to IS NOT NULL), 0))", (str(project), str(project)))
        return frozenset(row[0] for row in rows)
