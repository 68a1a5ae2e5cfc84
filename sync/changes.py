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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sync.connection import Connection
from sync.crf.dictionary import Dictionary

CURSOR_OVERLAP = timedelta(minutes=5)
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M"
ANCHOR = "Export project information (API)"
"""The row the run's first call writes; its time is REDCap's clock at the run's start."""
_INSTANCE = re.compile(r"^\[instance = (\d+)\],? ")
_RECORDS_HELD = 256
_RENAME = re.compile(r"^old_record = '(.*)', new_record = '(.*)'$", re.DOTALL)


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
        match = _INSTANCE.match(details)
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


class _Entry(NamedTuple):
    """What the run needs of one log entry; the entry itself (its `details` can be long) is
    dropped as soon as it is read."""

    key: str
    timestamp: str
    record: str
    does: str
    """"delete", "rename", "own" (the sync's own write), "data", or "" without a record."""
    renamed_from: str = ""
    design: bool = False
    """A Manage entry that did more than read."""
    anchor_user: str | None = None
    """The user of a run's project-information export (a candidate anchor), else None."""


def _summaries(own: OwnWrites) -> Callable[[Iterator[dict]], list[_Entry]]:
    """Reads an exported log, newest first, into one small `_Entry` per entry."""

    def take(rows: Iterator[dict]) -> list[_Entry]:
        times: dict[str, str] = {}
        entries = []
        for row in rows:
            timestamp = str(row.get("timestamp", ""))
            manage, details = _is_manage(row), str(row.get("details", ""))
            record = str(row.get("record", "") or "").strip()
            rename = _RENAME.match(details) if record else None
            if not record:
                does = ""
            elif str(row.get("action", "")).startswith("Delete record"):
                does = "delete"
            elif rename:
                does = "rename"
            else:
                does = "own" if own.wrote(row) else "data"
            entries.append(_Entry(
                entry_id(row), times.setdefault(timestamp, timestamp), record, does,
                rename.group(1) if rename else "", manage and not _is_read(row),
                str(row.get("username", "")) if manage and details == ANCHOR else None))
        return entries

    return take


def _fresh(entries: list[_Entry], seen: tuple[str, ...]) -> list[bool]:
    """Per entry (newest first), whether an earlier run did not see it. Entries are identical
    when they share a minute, so each seen identity excuses one entry, oldest first."""
    budget = Counter(seen)
    fresh = []
    for entry in reversed(entries):
        fresh.append(budget[entry.key] == 0)
        budget[entry.key] -= 1 if budget[entry.key] else 0
    return fresh[::-1]


def _anchor(entries: list[_Entry], fresh: list[bool]) -> _Entry | None:
    """This run's own project-information export: the newest such entry not seen before."""
    return next((entry for entry, new in zip(entries, fresh)
                 if new and entry.anchor_user is not None), None)


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
    entries = conn.export_items("export logging", _summaries(own), content="log", **window_from)
    fresh = _fresh(entries, seen)
    distrust = ""
    if cursor and seen and all(fresh):
        distrust = "REDCap's log no longer holds the entries the last run saw (project restored?)"
    anchor = _anchor(entries, fresh)
    if anchor is None and begin is not None:
        distrust = distrust or "REDCap's clock went back behind the last run's cursor"
        entries = conn.export_items("export whole log", _summaries(own), content="log")
        fresh = _fresh(entries, seen)
        anchor = _anchor(entries, fresh)
    changed: set[str] = set()
    deleted: set[str] = set()
    renamed: dict[str, str] = {}
    design_touched = False
    for entry, new in zip(reversed(entries), reversed(fresh)):
        if not new:
            continue
        design_touched = design_touched or entry.design
        record = entry.record
        if not record or entry.does == "own":
            continue
        if entry.does == "delete":
            deleted.add(record)
            changed.discard(record)
            continue
        if entry.does == "rename":
            renamed[entry.renamed_from] = record
            changed.discard(entry.renamed_from)
        changed.add(record)
        deleted.discard(record)
    cursor_to = anchor.timestamp if anchor else max(
        [entry.timestamp for entry in entries] + [cursor or ""]) or None
    window = (_parse_log_time(cursor_to) - CURSOR_OVERLAP).strftime(LOG_TIME_FORMAT) \
        if cursor_to else ""
    recent = tuple(sorted(entry.key for entry in entries if entry.timestamp >= window))
    user = (anchor.anchor_user or "") if anchor else own.user
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
