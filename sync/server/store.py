"""The server's SQLite file: projects, design, EAV data and the log (the only module with SQL).

Data are stored as REDCap stores them (`redcap_data`): one row per (project, event, record, field,
instance) value, checkboxes as one row per checked code under the base field name (§6.3).
"""
from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from sync.errors import ConfigError
from sync.crf.redcap_spec import METADATA_KEYS

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY AUTOINCREMENT, token TEXT UNIQUE NOT NULL,
    info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instruments (
    project_id INTEGER, form_name TEXT, label TEXT, form_order INTEGER,
    PRIMARY KEY (project_id, form_name));
CREATE TABLE IF NOT EXISTS fields (
    project_id INTEGER, field_order INTEGER,
    {", ".join(f"{key} TEXT NOT NULL DEFAULT ''" for key in METADATA_KEYS)},
    PRIMARY KEY (project_id, field_name));
CREATE TABLE IF NOT EXISTS arms (
    project_id INTEGER, arm_num INTEGER, name TEXT, PRIMARY KEY (project_id, arm_num));
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER, arm_num INTEGER,
    event_name TEXT, unique_event_name TEXT, day_offset REAL DEFAULT 0, offset_min REAL DEFAULT 0,
    offset_max REAL DEFAULT 0, custom_event_label TEXT DEFAULT '', event_order INTEGER);
CREATE TABLE IF NOT EXISTS form_events (project_id INTEGER, event_id INTEGER, form_name TEXT);
CREATE TABLE IF NOT EXISTS repeating (
    project_id INTEGER, event_id INTEGER, form_name TEXT, custom_label TEXT DEFAULT '');
CREATE TABLE IF NOT EXISTS data (
    project_id INTEGER NOT NULL, event_id INTEGER NOT NULL, record TEXT NOT NULL,
    field_name TEXT NOT NULL, value TEXT NOT NULL, instance INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS data_record ON data (project_id, record, event_id, instance);
CREATE TABLE IF NOT EXISTS log (
    log_id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER, ts TEXT, username TEXT,
    action TEXT, details TEXT, record TEXT, logtype TEXT);
CREATE INDEX IF NOT EXISTS log_time ON log (project_id, ts);
CREATE TABLE IF NOT EXISTS items (
    project_id INTEGER, kind TEXT, item_key TEXT, body TEXT, item_order INTEGER,
    PRIMARY KEY (project_id, kind, item_key));
CREATE TABLE IF NOT EXISTS documents (
    doc_id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER, folder_id INTEGER,
    name TEXT, content BLOB, is_folder INTEGER DEFAULT 0, parent_id INTEGER);
CREATE TABLE IF NOT EXISTS locks (
    project_id INTEGER NOT NULL, record TEXT NOT NULL, event_id INTEGER NOT NULL DEFAULT 0,
    form_name TEXT NOT NULL DEFAULT '', instance INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (project_id, record, event_id, form_name, instance));
CREATE TABLE IF NOT EXISTS user_tokens (
    token TEXT PRIMARY KEY, project_id INTEGER NOT NULL, username TEXT NOT NULL);
"""

API_USER = "api_user"
"""The one user every project has; the token belongs to it."""
MANAGE = "Manage/Design "
"""The log action of design changes, trailing blank included (PyCap's logging doctest)."""


JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")
"""SQLite's companion files, which hold the same data as the database."""


def open_private(path: str | Path) -> None:
    """Create `path` readable by its owner only, or refuse one that others may read or write.

    Refusing (rather than fixing the mode) tells the owner that someone may already have read it.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"{path} can be read or written by other users of this machine (mode {mode:o}); "
                f"it holds API tokens and trial data. Check who may have read it, then make it "
                f"private with: chmod 600 {path}") from None
        return
    os.close(fd)


def new_token(length: int = 32) -> str:
    """A REDCap-shaped token: upper-case hex (32 chars per project, 64 for a super token)."""
    return secrets.token_hex(length // 2).upper()


def now() -> str:
    """Server time as REDCap logs it."""
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class Event:
    event_id: int
    arm_num: int
    event_name: str
    unique_event_name: str
    day_offset: float = 0
    offset_min: float = 0
    offset_max: float = 0
    custom_event_label: str = ""


@dataclass
class Design:
    """Everything about one project except its data, loaded once per request."""

    project_id: int
    token: str
    info: dict[str, Any]
    fields: list[dict[str, str]]
    instruments: list[tuple[str, str]]
    arms: list[tuple[int, str]]
    events: list[Event]
    form_events: dict[int, list[str]]
    repeating: list[tuple[int, str, str]]
    by_name: dict[str, dict[str, str]] = field(init=False)
    _repeating_forms: frozenset[tuple[int, str]] = field(init=False, repr=False)
    _repeating_events: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {f["field_name"]: f for f in self.fields}
        self._repeating_forms = frozenset((e, f) for e, f, _ in self.repeating if f)
        self._repeating_events = frozenset(e for e, f, _ in self.repeating if f == "")

    @property
    def is_longitudinal(self) -> bool:
        return bool(self.info.get("is_longitudinal"))

    @property
    def record_id_field(self) -> str:
        return self.fields[0]["field_name"] if self.fields else "record_id"

    @property
    def form_names(self) -> list[str]:
        return [name for name, _ in self.instruments]

    def event_by_name(self, unique_name: str) -> Event | None:
        return next((e for e in self.events if e.unique_event_name == unique_name), None)

    def default_event_id(self) -> int:
        return self.events[0].event_id if self.events else 0

    def forms_on_event(self, event_id: int) -> list[str]:
        if not self.is_longitudinal:
            return self.form_names
        return self.form_events.get(event_id, [])

    def repeating_form(self, event_id: int, form: str) -> bool:
        return (event_id, form) in self._repeating_forms

    def repeating_event(self, event_id: int) -> bool:
        return event_id in self._repeating_events

    @property
    def has_repeating(self) -> bool:
        return bool(self.repeating)


class Store:
    """One SQLite file in WAL mode; writes hold one lock and run in one transaction."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = str(db_path)
        for path in (self.db_path, *(self.db_path + s for s in JOURNAL_SUFFIXES)):
            if path == self.db_path or os.path.exists(path):
                open_private(path)
        self.write_lock = threading.RLock()
        self._local = threading.local()
        with self.write_lock:
            self.connection().executescript(SCHEMA)

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all or nothing, one writer at a time."""
        with self.write_lock:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def read(self) -> sqlite3.Connection:
        return self.connection()

    # settings and projects -------------------------------------------------------------
    def setting(self, key: str) -> str | None:
        row = self.read().execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value))

    def project_count(self) -> int:
        return self.read().execute("SELECT count(*) FROM projects").fetchone()[0]

    def first_token(self) -> str | None:
        row = self.read().execute("SELECT token FROM projects ORDER BY project_id").fetchone()
        return row["token"] if row else None

    def set_token(self, project_id: int, token: str) -> None:
        with self.write() as db:
            db.execute("UPDATE projects SET token=? WHERE project_id=?", (token, project_id))

    def project_id_for(self, token: str) -> int | None:
        row = self.read().execute("SELECT project_id FROM projects WHERE token=?",
                                  (token,)).fetchone()
        return row["project_id"] if row else None

    def all_tokens(self) -> list[tuple[int, str]]:
        return [(r["project_id"], r["token"])
                for r in self.read().execute("SELECT project_id, token FROM projects")]

    def create_project(self, db: sqlite3.Connection, info: dict[str, Any],
                       token: str | None = None) -> tuple[int, str]:
        token = token or new_token()
        cur = db.execute("INSERT INTO projects (token, info) VALUES (?, ?)",
                         (token, json.dumps(info)))
        project_id = int(cur.lastrowid or 0)
        info["project_id"] = project_id
        db.execute("UPDATE projects SET info=? WHERE project_id=?", (json.dumps(info), project_id))
        db.execute("INSERT INTO items VALUES (?, 'user', ?, ?, 0)",
                   (project_id, API_USER, json.dumps({"username": API_USER})))
        return project_id, token

    def save_info(self, db: sqlite3.Connection, project_id: int, info: dict[str, Any]) -> None:
        db.execute("UPDATE projects SET info=? WHERE project_id=?", (json.dumps(info), project_id))

    def design(self, project_id: int) -> Design:
        db = self.read()
        project = db.execute("SELECT * FROM projects WHERE project_id=?", (project_id,)).fetchone()
        fields = [{k: r[k] for k in METADATA_KEYS} for r in db.execute(
            "SELECT * FROM fields WHERE project_id=? ORDER BY field_order", (project_id,))]
        instruments = [(r["form_name"], r["label"]) for r in db.execute(
            "SELECT * FROM instruments WHERE project_id=? ORDER BY form_order", (project_id,))]
        arms = [(r["arm_num"], r["name"]) for r in db.execute(
            "SELECT * FROM arms WHERE project_id=? ORDER BY arm_num", (project_id,))]
        events = [Event(r["event_id"], r["arm_num"], r["event_name"], r["unique_event_name"],
                        r["day_offset"], r["offset_min"], r["offset_max"],
                        r["custom_event_label"] or "")
                  for r in db.execute("SELECT * FROM events WHERE project_id=? "
                                      "ORDER BY arm_num, event_order, event_id", (project_id,))]
        order = {name: i for i, name in enumerate(f for f, _ in instruments)}
        form_events: dict[int, list[str]] = {}
        for r in db.execute("SELECT * FROM form_events WHERE project_id=?", (project_id,)):
            form_events.setdefault(r["event_id"], []).append(r["form_name"])
        for forms in form_events.values():
            forms.sort(key=lambda f: order.get(f, 1 << 30))
        repeating = [(r["event_id"], r["form_name"] or "", r["custom_label"] or "")
                     for r in db.execute("SELECT * FROM repeating WHERE project_id=?",
                                         (project_id,))]
        return Design(project_id, project["token"], json.loads(project["info"]), fields,
                      instruments, arms, events, form_events, repeating)

    # design writes ------------------------------------------------------------------------
    def replace_metadata(self, db: sqlite3.Connection, project_id: int,
                         fields: list[dict[str, str]], labels: dict[str, str]) -> None:
        """Replace the dictionary; instrument labels are kept for forms that stay."""
        old = dict(db.execute("SELECT form_name, label FROM instruments WHERE project_id=?",
                              (project_id,)).fetchall())
        db.execute("DELETE FROM fields WHERE project_id=?", (project_id,))
        db.execute("DELETE FROM instruments WHERE project_id=?", (project_id,))
        forms: list[str] = []
        for order, row in enumerate(fields):
            db.execute(f"INSERT INTO fields (project_id, field_order, {', '.join(METADATA_KEYS)}) "
                       f"VALUES (?, ?, {', '.join('?' * len(METADATA_KEYS))})",
                       (project_id, order, *(row.get(k, "") or "" for k in METADATA_KEYS)))
            if row["form_name"] not in forms:
                forms.append(row["form_name"])
        for order, form in enumerate(forms):
            label = labels.get(form) or old.get(form) or form.replace("_", " ").title()
            db.execute("INSERT INTO instruments VALUES (?, ?, ?, ?)",
                       (project_id, form, label, order))
        db.execute("DELETE FROM form_events WHERE project_id=? AND form_name NOT IN (%s)"
                   % ",".join("?" * len(forms)), (project_id, *forms))

    def replace_arms(self, db: sqlite3.Connection, project_id: int,
                     arms: list[tuple[int, str]], override: bool) -> None:
        if override:
            for table in ("arms", "events", "form_events", "repeating"):
                db.execute(f"DELETE FROM {table} WHERE project_id=?", (project_id,))
        for num, name in arms:
            db.execute("INSERT OR REPLACE INTO arms VALUES (?, ?, ?)", (project_id, num, name))

    def delete_arms(self, db: sqlite3.Connection, project_id: int, arms: list[int]) -> None:
        for num in arms:
            ids = [r[0] for r in db.execute(
                "SELECT event_id FROM events WHERE project_id=? AND arm_num=?", (project_id, num))]
            self.delete_events(db, project_id, ids)
            db.execute("DELETE FROM arms WHERE project_id=? AND arm_num=?", (project_id, num))

    def add_event(self, db: sqlite3.Connection, project_id: int, event: Event) -> int:
        order = db.execute("SELECT coalesce(max(event_order), 0) + 1 FROM events "
                           "WHERE project_id=?", (project_id,)).fetchone()[0]
        cur = db.execute(
            "INSERT INTO events (project_id, arm_num, event_name, unique_event_name, day_offset, "
            "offset_min, offset_max, custom_event_label, event_order) VALUES (?,?,?,?,?,?,?,?,?)",
            (project_id, event.arm_num, event.event_name, event.unique_event_name,
             event.day_offset, event.offset_min, event.offset_max, event.custom_event_label,
             order))
        return int(cur.lastrowid or 0)

    def update_event(self, db: sqlite3.Connection, event: Event) -> None:
        db.execute("UPDATE events SET arm_num=?, event_name=?, day_offset=?, offset_min=?, "
                   "offset_max=?, custom_event_label=? WHERE event_id=?",
                   (event.arm_num, event.event_name, event.day_offset, event.offset_min,
                    event.offset_max, event.custom_event_label, event.event_id))

    def drop_events(self, db: sqlite3.Connection, project_id: int) -> None:
        """Every event with its mapping and repeating setup; the data stay, orphaned."""
        for table in ("events", "form_events", "repeating"):
            db.execute(f"DELETE FROM {table} WHERE project_id=?", (project_id,))

    def delete_events(self, db: sqlite3.Connection, project_id: int, ids: list[int]) -> None:
        for event_id in ids:
            for table in ("events", "form_events", "repeating", "data"):
                db.execute(f"DELETE FROM {table} WHERE project_id=? AND event_id=?",
                           (project_id, event_id))

    def replace_form_events(self, db: sqlite3.Connection, project_id: int,
                            pairs: list[tuple[int, str]], arms: list[int] | None) -> None:
        """Replace the mapping of the given arms (all arms when None)."""
        if arms is None:
            db.execute("DELETE FROM form_events WHERE project_id=?", (project_id,))
        else:
            for arm in arms:
                db.execute("DELETE FROM form_events WHERE project_id=? AND event_id IN "
                           "(SELECT event_id FROM events WHERE arm_num=? AND project_id=?)",
                           (project_id, arm, project_id))
        db.executemany("INSERT INTO form_events VALUES (?, ?, ?)",
                       [(project_id, e, f) for e, f in dict.fromkeys(pairs)])

    def replace_repeating(self, db: sqlite3.Connection, project_id: int,
                          rows: list[tuple[int, str, str]]) -> None:
        db.execute("DELETE FROM repeating WHERE project_id=?", (project_id,))
        db.executemany("INSERT INTO repeating VALUES (?, ?, ?, ?)",
                       [(project_id, *row) for row in rows])

    # data --------------------------------------------------------------------------------
    def data_rows(self, project_id: int, records: list[str] | None = None,
                  fields: list[str] | None = None) -> list[sqlite3.Row]:
        """Stored values of events that exist: data of deleted events stay, orphaned (§3).
        `fields`: just those fields' values (a narrow export reads no others)."""
        sql = ("SELECT event_id, record, field_name, value, instance FROM data WHERE project_id=?"
               " AND event_id IN (SELECT event_id FROM events WHERE project_id=?)")
        args: list[Any] = [project_id, project_id]
        if fields is not None:
            sql += f" AND field_name IN ({','.join('?' * len(fields))})"
            args += fields
        if records is not None:
            sql += f" AND record IN ({','.join('?' * len(records))})"
            args += records
        return self.read().execute(sql + " ORDER BY rowid", args).fetchall()

    def value_places(self, project_id: int, records: list[str] | None,
                     forms: dict[str, str], record_id_field: str, skip_field: str
                     ) -> list[tuple[int, str, int, str, int]]:
        """Each (event, record, instance, form, is the record-id field) holding a stored value:
        what decides a narrow export's rows, without reading the values (`forms`: field ->
        form; a field outside it counts as form '')."""
        db = self.read()
        db.execute("CREATE TEMP TABLE IF NOT EXISTS field_form "
                   "(field_name TEXT PRIMARY KEY, form TEXT NOT NULL)")
        db.execute("DELETE FROM temp.field_form")
        db.executemany("INSERT INTO temp.field_form VALUES (?, ?)", list(forms.items()))
        sql = ("SELECT DISTINCT d.event_id, d.record, d.instance, COALESCE(ff.form, ''), "
               "d.field_name = ? FROM data d LEFT JOIN temp.field_form ff "
               "ON ff.field_name = d.field_name WHERE d.project_id=? AND d.field_name != ? "
               "AND d.event_id IN (SELECT event_id FROM events WHERE project_id=?)")
        args: list[Any] = [record_id_field, project_id, skip_field, project_id]
        if records is not None:
            sql += f" AND d.record IN ({','.join('?' * len(records))})"
            args += records
        return [tuple(row) for row in db.execute(sql, args).fetchall()]

    def record_names(self, project_id: int) -> list[str]:
        return [r[0] for r in self.read().execute(
            "SELECT DISTINCT record FROM data WHERE project_id=?", (project_id,))]

    def put_values(self, db: sqlite3.Connection, project_id: int,
                   changes: list[tuple[str, int, int, str, list[str]]]) -> None:
        """Replace each (record, event, instance, field) with its values (none deletes)."""
        for record, event_id, instance, field_name, values in changes:
            db.execute("DELETE FROM data WHERE project_id=? AND record=? AND event_id=? AND "
                       "instance=? AND field_name=?",
                       (project_id, record, event_id, instance, field_name))
            db.executemany("INSERT INTO data VALUES (?, ?, ?, ?, ?, ?)",
                           [(project_id, event_id, record, field_name, v, instance)
                            for v in values])

    def delete_data(self, db: sqlite3.Connection, project_id: int, record: str,
                    event_id: int | None = None, fields: list[str] | None = None,
                    instance: int | None = None) -> int:
        sql = "DELETE FROM data WHERE project_id=? AND record=?"
        args: list[Any] = [project_id, record]
        if event_id is not None:
            sql += " AND event_id=?"
            args.append(event_id)
        if fields is not None:
            sql += f" AND field_name IN ({','.join('?' * len(fields))})"
            args += fields
        if instance is not None:
            sql += " AND instance=?"
            args.append(instance)
        return db.execute(sql, args).rowcount

    def rename_record(self, db: sqlite3.Connection, project_id: int, old: str, new: str,
                      event_ids: list[int] | None = None) -> None:
        """Every stored value of `old` (on the given events, or all) moves to `new`."""
        sql, args = "UPDATE data SET record=? WHERE project_id=? AND record=?", [new, project_id, old]
        if event_ids is not None:
            sql += f" AND event_id IN ({','.join('?' * len(event_ids))})"
            args += event_ids
        db.execute(sql, args)
        db.execute("UPDATE data SET value=? WHERE project_id=? AND record=? AND field_name=("
                   "SELECT field_name FROM fields WHERE project_id=? ORDER BY field_order LIMIT 1)",
                   (new, project_id, new, project_id))

    # log ---------------------------------------------------------------------------------
    def log(self, db: sqlite3.Connection, project_id: int, action: str, details: str,
            record: str = "", logtype: str = "record", username: str = API_USER,
            ts: str | None = None) -> None:
        """One log row, dated `ts` (REDCap dates a row by its request's start) or now."""
        db.execute("INSERT INTO log (project_id, ts, username, action, details, record, logtype) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (project_id, ts or now(), username, action, details, record, logtype))

    def log_rows(self, project_id: int, since: str = "", until: str = "") -> list[sqlite3.Row]:
        """The project's log, newest first; with `since`/`until`, only rows dated in that window
        (read by the time index, as REDCap reads its log by time: a night's read stays as cheap
        however long the log grows)."""
        return self.read().execute(
            "SELECT * FROM log WHERE project_id=? AND ts >= ? AND (? = '' OR ts <= ?) "
            "ORDER BY log_id DESC", (project_id, since, until, until)).fetchall()

    # generic items (users, roles, DAGs, surveys) ------------------------------------------
    def items(self, project_id: int, kind: str) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.read().execute(
            "SELECT body FROM items WHERE project_id=? AND kind=? ORDER BY item_order, rowid",
            (project_id, kind))]

    def put_item(self, db: sqlite3.Connection, project_id: int, kind: str, key: str,
                 body: dict[str, Any]) -> None:
        row = db.execute("SELECT item_order FROM items WHERE project_id=? AND kind=? AND "
                         "item_key=?", (project_id, kind, key)).fetchone()
        order = row[0] if row else db.execute(
            "SELECT coalesce(max(item_order), 0) + 1 FROM items WHERE project_id=? AND kind=?",
            (project_id, kind)).fetchone()[0]
        db.execute("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)",
                   (project_id, kind, key, json.dumps(body), order))

    def delete_item(self, db: sqlite3.Connection, project_id: int, kind: str, key: str) -> int:
        return db.execute("DELETE FROM items WHERE project_id=? AND kind=? AND item_key=?",
                          (project_id, kind, key)).rowcount

    # file repository -----------------------------------------------------------------------
    def documents(self, project_id: int, folder_id: int | None) -> list[sqlite3.Row]:
        """Files and folders of the file repository (uploads to file fields are kind 2)."""
        return self.read().execute(
            "SELECT doc_id, name, is_folder FROM documents WHERE project_id=? AND "
            "coalesce(parent_id, 0)=? AND is_folder < 2 ORDER BY is_folder DESC, doc_id",
            (project_id, folder_id or 0)).fetchall()

    def document_names(self, project_id: int) -> dict[str, str]:
        """doc_id (as stored in a file field's value) -> file name."""
        return {str(r[0]): r[1] for r in self.read().execute(
            "SELECT doc_id, name FROM documents WHERE project_id=? AND is_folder=2",
            (project_id,))}

    def add_upload(self, db: sqlite3.Connection, project_id: int, name: str,
                   content: bytes) -> int:
        """A file uploaded to a file field; its doc_id is the field's stored value."""
        cur = db.execute("INSERT INTO documents (project_id, name, content, is_folder) "
                         "VALUES (?, ?, ?, 2)", (project_id, name, content))
        return int(cur.lastrowid or 0)

    def document(self, project_id: int, doc_id: int) -> sqlite3.Row | None:
        return self.read().execute("SELECT * FROM documents WHERE project_id=? AND doc_id=?",
                                   (project_id, doc_id)).fetchone()

    def add_document(self, db: sqlite3.Connection, project_id: int, name: str,
                     content: bytes | None, parent_id: int | None) -> int:
        cur = db.execute("INSERT INTO documents (project_id, name, content, is_folder, parent_id) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (project_id, name, content, int(content is None), parent_id))
        return int(cur.lastrowid or 0)

    def delete_document(self, db: sqlite3.Connection, project_id: int, doc_id: int,
                        kind: int = 0) -> int:
        return db.execute("DELETE FROM documents WHERE project_id=? AND doc_id=? AND is_folder=?",
                          (project_id, doc_id, kind)).rowcount

    # locks and user tokens (sync/server/access.py) ------------------------------------------
    def locks(self, project_id: int, records: list[str]) -> list[sqlite3.Row]:
        """Lock rows of these records; event 0 and form '' mean the whole record."""
        return self.read().execute(
            f"SELECT * FROM locks WHERE project_id=? AND record IN ({','.join('?' * len(records))})",
            (project_id, *records)).fetchall()

    def set_lock(self, db: sqlite3.Connection, project_id: int, record: str, event_id: int,
                 form: str, instance: int, locked: bool) -> int:
        if locked:
            return db.execute("INSERT OR IGNORE INTO locks VALUES (?, ?, ?, ?, ?)",
                              (project_id, record, event_id, form, instance)).rowcount
        return db.execute("DELETE FROM locks WHERE project_id=? AND record=? AND event_id=? AND "
                          "form_name=? AND instance=?",
                          (project_id, record, event_id, form, instance)).rowcount

    def user_tokens(self) -> list[tuple[int, str, str]]:
        """(project_id, username, token) of every user token besides the projects' own."""
        return [(r["project_id"], r["username"], r["token"])
                for r in self.read().execute("SELECT * FROM user_tokens")]

    def set_user_token(self, db: sqlite3.Connection, project_id: int, username: str,
                       token: str) -> None:
        db.execute("DELETE FROM user_tokens WHERE project_id=? AND username=?",
                   (project_id, username))
        db.execute("INSERT INTO user_tokens VALUES (?, ?, ?)", (token, project_id, username))
