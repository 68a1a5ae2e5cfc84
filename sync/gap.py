"""Just after a batch is imported: did a person save a query between the read-back and the import?

The read-back (`sync.readback`) sees every change made before it; what a person saves between
the read-back and the import it cannot see, and REDCap's API has no conditional write, so the
import may overwrite it: a status a monitor set, a response, a query instance a person added
under the number the sync took. REDCap's log can tell: it lists every save in the order REDCap
made them (redcap-behaviour.md §1: newest first by insertion, one entry per record, event and
instance, with its `field = 'value'` items). So after each import the log since the last read
is read, and every dq_query instance a person saved after that read and before the import is
put back as the person left it: each cell the import wrote there gets the person's value, or
the value read before the import where the person set none. The next run takes the record up
(the log names it), so a finding whose query was given back opens its own instance then.

A record deleted or renamed in that gap was re-created by the import, holding only the sync's
cells; the sync's user may not delete records, so the run names it for a person to delete.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from sync.changes import ANCHOR, INSTANCE, RENAME
from sync.connection import Connection
from sync.diff import KEY_COLUMNS
from sync.queries import QUERY_INSTRUMENT
from sync.readback import state_of

_ITEM = re.compile(r"(?:^|, )([a-z][a-z0-9_]*)(\([^)]*\))? = ")

Place = tuple[str, str, str]
"""(record, event label, instance) as a log entry names it."""


def logged_items(details: str, names: frozenset[str]) -> tuple[str, dict[str, str]]:
    """The instance and the `field = 'value'` items of a record entry's details, for the
    project's fields `names`. Values are not escaped (§1), so an item starts only where a field
    of the project or a form's `_complete` status follows a closed value; an entry that still
    names a field twice (a value spelling out an item) cannot be read, and gives no items."""
    match = INSTANCE.match(details)
    instance = match.group(1) if match else "1"
    rest = details[match.end():] if match else details
    starts = [m for m in _ITEM.finditer(rest) if m.start() == 0 or (
        (m.group(1) in names or m.group(1).endswith("_complete"))
        and rest[:m.start()].endswith(("'", "checked")))]
    items: dict[str, str] = {}
    for this, after in zip(starts, starts[1:] + [None]):
        value = rest[this.end():after.start() if after else len(rest)]
        if this.group(1) in items:
            return instance, {}
        if this.group(1) in names and not this.group(2):
            items[this.group(1)] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    return instance, items


def event_label(action: str, record: str) -> str:
    """The event label REDCap adds after the record in a longitudinal project's action
    (`Update record (API) 01-001 (Day 0)`), or ''."""
    _, found, rest = action.partition(f" {record} (")
    return rest[:-1] if found and rest.endswith(")") else ""


def log_labels(events: pd.DataFrame, arms: pd.DataFrame) -> dict[str, str]:
    """Each unique event name's label as REDCap's log writes it: the event's name, with its arm
    when the project has more than one (`Day 0 (Arm 1: MSC)`)."""
    if events.empty:
        return {}
    names = dict(zip(arms["arm_num"].astype(str), arms["name"].astype(str))) \
        if not arms.empty else {}
    several = events["arm_num"].astype(str).nunique() > 1
    return {unique: f"{name} (Arm {arm}: {names.get(arm, '')})" if several else name
            for unique, name, arm in zip(events["unique_event_name"].astype(str),
                                         events["event_name"].astype(str),
                                         events["arm_num"].astype(str))}


@dataclass
class Overwritten:
    """What the import overwrote in the gap: the cells to put back (`sync.diff` cells, the
    person's or the read value in `new_value`), and records it re-created, with why."""

    cells: pd.DataFrame
    recreated: dict[str, str] = field(default_factory=dict)

    @property
    def queries(self) -> list[tuple[str, str]]:
        return sorted(set(zip(self.cells["record_id"], self.cells["redcap_repeat_instance"])))


def read_log(conn: Connection, begin: str, records: set[str], what: str) -> list[dict]:
    """The entries of `records` logged since `begin` (REDCap's `YYYY-MM-DD HH:MM`), renames,
    and runs' first calls (`ANCHOR`), newest first."""
    def take(rows: Iterator[dict]) -> list[dict]:
        return [row for row in rows if str(row.get("record", "")) in records
                or RENAME.match(str(row.get("details", "")))
                or str(row.get("details", "")) == ANCHOR]
    return conn.export_items(what, take, content="log", beginTime=f"{begin}:00")


def overwritten(entries: list[dict], written: pd.DataFrame, read: pd.DataFrame, *,
                user: str, record_id_field: str, query_fields: frozenset[str],
                field_names: frozenset[str], labels: dict[str, str]) -> Overwritten:
    """The query cells of `written` (the import's cells) that a person's save made between
    the read (`read`: the rows as last read, keyed by `record_id_field`) and the import.

    `entries` is the log since before the read, newest first; `user` the sync's own REDCap
    user; `field_names` every field of the project (where an entry's items start);
    `labels` each unique event name's label as the log shows it. A query counts as
    saved in the gap when the log's last value of one of its fields before the import was
    set by a person and differs from the read: a save the read saw, or one a later write
    replaced before the read, is not in the gap.
    """
    queries = written[written["redcap_repeat_instrument"] == QUERY_INSTRUMENT]
    places = {(record, labels.get(event, ""), str(instance)) for record, event, instance
              in zip(queries["record_id"], queries["redcap_event_name"],
                     queries["redcap_repeat_instance"])}
    records = set(written["record_id"])
    ours: dict[Place, int] = {}
    """Each place the import wrote a query on: where its entry is (the newest of the sync's)."""
    last_own: dict[str, int] = {}
    for at, entry in enumerate(entries):
        record = str(entry.get("record", ""))
        if str(entry.get("username", "")) != user or record not in records:
            continue
        last_own.setdefault(record, at)
        instance, _ = logged_items(str(entry.get("details", "")), field_names)
        place = (record, event_label(str(entry.get("action", "")), record), instance)
        if place in places:
            ours.setdefault(place, at)
    start = next((at for at, entry in enumerate(entries) if entry.get("username") == user
                  and entry.get("details") == ANCHOR), len(entries))
    """This run's first call: what is older was saved before the run, never in a gap."""
    last: dict[Place, dict[str, tuple[bool, str]]] = {}
    """Per place, each query field's value just before the import, and whether a person set it."""
    theirs_after: dict[Place, set[str]] = {}
    recreated: dict[str, str] = {}
    for at in reversed(range(start)):
        entry = entries[at]
        record, details = str(entry.get("record", "")), str(entry.get("details", ""))
        by_person = str(entry.get("username", "")) != user
        renamed = RENAME.match(details) if by_person else None
        gone = renamed.group(1) if renamed else record if by_person and str(
            entry.get("action", "")).startswith("Delete record") else ""
        if gone and at > last_own.get(gone, -1) >= 0:
            recreated[gone] = (f"renamed to {record}" if renamed else "deleted")
            continue
        if by_person and record in recreated and at > last_own.get(record, -1):
            recreated.pop(record)  # re-created by a person before the import: theirs
        instance, items = logged_items(details, field_names)
        items = {name: value for name, value in items.items() if name in query_fields}
        place = (record, event_label(str(entry.get("action", "")), record), instance)
        if not items or place not in ours or at == ours[place]:
            continue
        if at > ours[place]:
            last.setdefault(place, {}).update(
                (name, (by_person, value)) for name, value in items.items())
        elif by_person:
            theirs_after.setdefault(place, set()).update(items)
    before = _read_values(read, record_id_field)
    back = []
    for cell in queries.itertuples(index=False):
        place = (cell.record_id, labels.get(cell.redcap_event_name, ""),
                 str(cell.redcap_repeat_instance))
        key = (cell.record_id, cell.redcap_event_name, str(cell.redcap_repeat_instance))
        gap = {name: value for name, (by_person, value) in last.get(place, {}).items()
               if by_person}
        if not gap or all(_as_logged(before.get((*key, name), "")) == _as_logged(value)
                          for name, value in gap.items()):
            continue
        if cell.field in theirs_after.get(place, set()):
            continue
        value = gap.get(cell.field, before.get((*key, cell.field), ""))
        if value != cell.new_value:
            back.append((*key[:2], QUERY_INSTRUMENT, key[2], cell.field, cell.new_value, value))
    cells = pd.DataFrame(back, columns=[*KEY_COLUMNS, "field", "old_value", "new_value"],
                         dtype=object).assign(rule_id="")
    return Overwritten(cells.astype(str), recreated)


def _as_logged(value: str) -> str:
    """A value as the log shows it (§1: newlines as spaces)."""
    return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _read_values(read: pd.DataFrame, record_id_field: str) -> dict[tuple[str, ...], str]:
    """(record, event, instance, field) -> value of the dq_query cells as last read."""
    fields = [c for c in read.columns if c not in (record_id_field, *KEY_COLUMNS[1:])]
    return {(record, event, instance, name): value
            for record, cells in state_of(read, record_id_field, fields).items()
            for event, instrument, instance, name, value in cells
            if instrument == QUERY_INSTRUMENT}
