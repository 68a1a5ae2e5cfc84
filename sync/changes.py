"""What changed since the last run, read from REDCap's log as REDCap writes it.

REDCap's log (redcap-behaviour.md §1) is newest first by insertion, dated to the minute by each
request's start, and full of noise: every API export, the sync's own included, leaves a row. So
entries are read in the log's own order (never sorted by time), the sync's own writes are told
apart by matching them to the ledger, a design change is recognised by what the design now is
(its hash), and the run falls back to a full reconciliation whenever the log cannot be trusted:
the log lost entries the last run saw, REDCap's clock went back past the overlap, records
vanished without a delete entry, or the reconciliation interval has passed.
"""
from __future__ import annotations

import hashlib
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sync.connection import Connection
from sync.crf.dictionary import Dictionary

CURSOR_OVERLAP = timedelta(minutes=5)
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M"
ANCHOR = "Export project information (API)"
"""The row the run's first call writes; its time is REDCap's clock at the run's start."""
INSTANCE = re.compile(r"^\[instance = (\d+)\],? ")
_RECORDS_HELD = 256
RENAME = re.compile(r"^old_record = '(.*)', new_record = '(.*)'$", re.DOTALL)


RecordWrites = Callable[[str], Iterable[tuple[str, str, str]]]
"""A record's cells the sync wrote since the cursor: (instance, field, new value)."""


@dataclass(frozen=True)
class OwnWrites:
    """The cells the sync wrote since the cursor, as REDCap logs them, to skip its own entries.

    `record_writes` gives one record's cells at a time (from the ledger), looked up only for
    the records the log names, so memory does not follow the number of cells a full sync
    wrote; `user` is the sync's REDCap user (entries of anyone else are never the sync's).
    """

    record_writes: RecordWrites | None = None
    user: str = ""
    record_id_field: str = "record_id"
    _items: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict, repr=False,
                                                         compare=False)

    def items(self, record: str, instance: str) -> frozenset[str]:
        """The `field = 'value'` strings the sync wrote to one instance of a record."""
        if self.record_writes is None:
            return frozenset()
        if record not in self._items:
            if len(self._items) >= _RECORDS_HELD:  # a record's entries come close together
                self._items.clear()
            found: dict[str, set[str]] = {}
            for written_instance, name, value in self.record_writes(record):
                found.setdefault(str(written_instance or "1"), set()).add(f"{name} = '{value}'")
            self._items[record] = {k: frozenset(v) for k, v in found.items()}
        return self._items[record].get(instance, frozenset())

    def wrote(self, row: dict) -> bool:
        """True when every item of the entry is a cell the sync wrote (or the record-id stub
        and `_complete = '0'` defaults REDCap adds to such an import, §1)."""
        if self.record_writes is None or (self.user and str(row.get("username", ""))
                                          != self.user):
            return False
        record, details = str(row.get("record", "")), str(row.get("details", ""))
        match = INSTANCE.match(details)
        instance = match.group(1) if match else "1"
        rest = details[match.end():] if match else details
        known = self.items(record, instance)
        if not known:
            return False
        side = {f"{self.record_id_field} = '{record}'"}
        matched = False
        while rest:
            item = next((i for i in known | side if rest == i or rest.startswith(i + ", ")), None)
            if item is None:
                status = re.match(r"[a-z][a-z0-9_]*_complete = '0'(, |$)", rest)
                if status is None:
                    return False
                rest = rest[status.end():]
                continue
            matched = matched or item in known
            rest = rest[len(item) + 2:]
        return matched


@dataclass(frozen=True)
class Changes:
    """What REDCap's log says happened to records since the cursor."""

    changed: frozenset[str]
    deleted: frozenset[str]
    cursor_to: str | None
    seen: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    design_touched: bool = False
    """A Manage entry other than an export: the design may have changed (compare its hash)."""
    distrust: str = ""
    """Why the log cannot be trusted for an incremental pull, or ''."""
    user: str = ""


def _parse_log_time(text: str) -> datetime:
    return datetime.strptime(text[:16], LOG_TIME_FORMAT)


def entry_id(row: dict) -> str:
    """A log entry's identity, to skip entries an earlier run already saw inside the overlap."""
    text = "\x1f".join(str(row.get(k, "")) for k in ("timestamp", "username", "action", "details",
                                                        "record"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _is_manage(row: dict) -> bool:
    return str(row.get("action", "")).startswith("Manage/Design")


def _is_read(row: dict) -> bool:
    """A Manage entry that only read something (REDCap logs every export, §1)."""
    details = str(row.get("details", ""))
    return details.startswith(("Export ", "Download "))


_DOES = ("", "delete", "rename", "own", "data")
"""What an entry did to its record: nothing (no record), deleted, renamed, the sync's own
write, or any other data change."""
_KEY_BYTES = 12
_DESIGN = 8
"""Added to an entry's `_DOES` code: a Manage entry that did more than read."""


class _Log:
    """REDCap's log, newest first, as the run needs it: a few bytes per entry in arrays, not
    the entries. A window can hold a whole bulk import (150,000 entries at 30,000 subjects)."""

    def __init__(self) -> None:
        self.keys = bytearray()
        self.does = bytearray()
        self.times, self.records = array("I"), array("I")
        self._texts: dict[str, int] = {"": 0}
        self.texts: list[str] = [""]
        """Every distinct timestamp and record, once; `times`/`records` index it."""
        self.renamed_from: dict[int, str] = {}
        self.anchor_users: dict[int, str] = {}
        """Entries that are a run's project-information export (a candidate anchor): user."""

    def __len__(self) -> int:
        return len(self.does)

    def _text(self, text: str) -> int:
        at = self._texts.get(text)
        if at is None:
            at = self._texts[text] = len(self.texts)
            self.texts.append(text)
        return at

    def add(self, row: dict, own: OwnWrites) -> None:
        manage, details = _is_manage(row), str(row.get("details", ""))
        record = str(row.get("record", "") or "").strip()
        rename = RENAME.match(details) if record else None
        if not record:
            does = ""
        elif str(row.get("action", "")).startswith("Delete record"):
            does = "delete"
        elif rename:
            does = "rename"
            self.renamed_from[len(self)] = rename.group(1)
        else:
            does = "own" if own.wrote(row) else "data"
        if manage and details == ANCHOR:
            self.anchor_users[len(self)] = str(row.get("username", ""))
        self.keys += bytes.fromhex(entry_id(row))
        self.times.append(self._text(str(row.get("timestamp", ""))))
        self.records.append(self._text(record))
        self.does.append(_DOES.index(does) + (_DESIGN if manage and not _is_read(row) else 0))

    def key(self, at: int) -> bytes:
        return bytes(self.keys[at * _KEY_BYTES:(at + 1) * _KEY_BYTES])

    def time(self, at: int) -> str:
        return self.texts[self.times[at]]


def _summaries(own: OwnWrites) -> Callable[[Iterator[dict]], _Log]:
    """Reads an exported log, newest first, into a `_Log`."""

    def take(rows: Iterator[dict]) -> _Log:
        log = _Log()
        for row in rows:
            log.add(row, own)
        return log

    return take


def _fresh(log: _Log, seen: tuple[str, ...]) -> list[bool]:
    """Per entry (newest first), whether an earlier run did not see it. Entries are identical
    when they share a minute, so each seen identity excuses one entry, oldest first."""
    budget = Counter(bytes.fromhex(key) for key in seen)
    fresh = [True] * len(log)
    if budget:
        for at in reversed(range(len(log))):
            key = log.key(at)
            if budget[key]:
                fresh[at] = False
                budget[key] -= 1
    return fresh


def _anchor(log: _Log, fresh: list[bool]) -> int | None:
    """This run's own project-information export: the newest such entry not seen before."""
    return next((at for at in sorted(log.anchor_users) if fresh[at]), None)


def read_log(conn: Connection, cursor: str | None, seen: tuple[str, ...] = (),
             own: OwnWrites = OwnWrites(), since: datetime | None = None) -> Changes:
    """Records created, updated, renamed or deleted at or after `cursor` minus the overlap.

    Entries are taken oldest to newest in the log's own order, so inside one minute the last
    action wins (§1: newest first by `log_event_id`). Entries the previous run saw (`seen`) and
    the sync's own writes (`own`) are skipped. The new cursor is the time of this run's first
    call as REDCap logged it; when that entry is missing from the window REDCap's clock went
    back, so the whole log is read and the run reconciles in full. Without a cursor (a first
    run, which pulls every record anyway) the log is read from `since`, this machine's clock at
    the run's start, less the overlap, so a project's whole history is not read; a REDCap clock
    on another zone leaves the anchor out of that window, and then the whole log is read. The
    log is read as it arrives, one small summary kept per entry: the night after a full sync
    reads every cell that sync wrote.
    """
    begin = _parse_log_time(cursor) - CURSOR_OVERLAP if cursor else (
        since - CURSOR_OVERLAP if since else None)
    window_from = {"beginTime": begin.strftime("%Y-%m-%d %H:%M:%S")} if begin else {}
    log = conn.export_items("export logging", _summaries(own), content="log", **window_from)
    fresh = _fresh(log, seen)
    distrust = ""
    if cursor and seen and all(fresh):
        distrust = "REDCap's log no longer holds the entries the last run saw (project restored?)"
    anchor = _anchor(log, fresh)
    if anchor is None and begin is not None:
        distrust = distrust or "REDCap's clock went back behind the last run's cursor"
        log = conn.export_items("export whole log", _summaries(own), content="log")
        fresh = _fresh(log, seen)
        anchor = _anchor(log, fresh)
    changed: set[str] = set()
    deleted: set[str] = set()
    renamed: dict[str, str] = {}
    design_touched = False
    for at in reversed(range(len(log))):
        if not fresh[at]:
            continue
        code = log.does[at]
        design_touched = design_touched or code >= _DESIGN
        does, record = _DOES[code % _DESIGN], log.texts[log.records[at]]
        if not record or does == "own":
            continue
        if does == "delete":
            deleted.add(record)
            changed.discard(record)
            continue
        if does == "rename":
            renamed[log.renamed_from[at]] = record
            changed.discard(log.renamed_from[at])
        changed.add(record)
        deleted.discard(record)
    cursor_to = log.time(anchor) if anchor is not None else max(
        [log.texts[at] for at in set(log.times)] + [cursor or ""]) or None
    window = (_parse_log_time(cursor_to) - CURSOR_OVERLAP).strftime(LOG_TIME_FORMAT) \
        if cursor_to else ""
    recent = tuple(sorted(log.key(at).hex() for at in range(len(log))
                          if log.time(at) >= window))
    user = log.anchor_users[anchor] if anchor is not None else own.user
    return Changes(frozenset(changed), frozenset(deleted), cursor_to, recent, renamed,
                   design_touched, distrust, user)


def design_hash(dictionary: Dictionary) -> str:
    """The project's design as REDCap holds it: metadata, events, mapping, repeating setup."""
    digest = hashlib.sha256()
    for frame in (dictionary.metadata, dictionary.events, dictionary.mapping,
                  dictionary.repeating):
        digest.update(frame.astype(str).to_csv(index=False).encode("utf-8"))
    for flag in ("is_longitudinal", "has_repeating_instruments_or_events"):
        digest.update(str(dictionary.project.get(flag, "")).encode("utf-8"))
    return digest.hexdigest()[:24]


def reconciliation_due(cursor_to: str | None, last_full: str, days: int) -> bool:
    """Whether `days` have passed on REDCap's own clock (log times) since the last full pull."""
    if not cursor_to or not last_full:
        return True
    return _parse_log_time(cursor_to) - _parse_log_time(last_full) >= timedelta(days=days)
