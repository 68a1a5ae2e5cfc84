"""Stage 5, write back: import a change set into REDCap in batches and verify every count.

Only sync-owned fields are ever sent. Cells that get a value go in with REDCap's `normal`
overwrite behaviour (blanks in the payload are ignored); cells that must become blank go in a
separate `overwrite` import that carries only those cells, so no other value can be erased.
Each batch is written to the ledger before it is sent, and REDCap's returned record count must
equal the number of records in the batch.

REDCap imports all or nothing, so one refused cell (a locked form or record, a value outside a
hard range, a field removed, a form no longer repeating) would fail its whole batch. The cells
REDCap's message names are set aside with that message; when it names none, the batch is halved
until the refused record is alone. The rest is written; the refused cells are returned.
Just before each batch, a caller's `before_batch` may re-plan it (people work while the sync
runs: the job reads those records back and re-plans the ones whose state moved); its
`after_batch` checks what was imported (a person's save after that read: `sync.gap`).
`WriteBehind` runs the writes in a background thread while the caller evaluates the next batch.
"""
from __future__ import annotations

import csv
import io
import queue
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable, Iterator

import pandas as pd

from sync.connection import Connection
from sync.diff import KEY_COLUMNS, empty_cells
from sync.errors import EcrfError, RedcapRefused, WriteCountMismatch
from sync.ledger import Ledger
from sync.queries import QUERY_INSTRUMENT

_UNKNOWN_FIELDS = re.compile(r"fields were not found in the project as real data fields: (.+)$")


@dataclass
class Written:
    """What a write did: records written whole, and the cells REDCap refused, with its message."""

    records: int = 0
    cells: int = 0
    record_ids: set[str] = field(default_factory=set)
    batches: int = 0
    refused: pd.DataFrame = field(default_factory=lambda: empty_cells().assign(message=""))


def payload_rows(cells: pd.DataFrame, record_id_field: str) -> list[dict[str, str]]:
    """One import row per REDCap row key, holding just that row's changed cells, rows and cells
    in the order they first appear (one pass over the cells: a batch holds thousands)."""
    rows: dict[tuple, dict[str, str]] = {}
    for *key, name, value in zip(*(cells[c] for c in (*KEY_COLUMNS, "field", "new_value"))):
        row = rows.get(tuple(key))
        if row is None:
            record, event, instrument, instance = key
            row = rows[tuple(key)] = {record_id_field: record}
            if event:
                row["redcap_event_name"] = event
            if instrument or instance:
                row["redcap_repeat_instrument"] = instrument
                row["redcap_repeat_instance"] = instance
        row[name] = value
    return list(rows.values())


def batches(cells: pd.DataFrame, batch_size: int) -> Iterator[pd.DataFrame]:
    """Split a change set into batches of at most `batch_size` records, whole records only."""
    records = list(dict.fromkeys(cells["record_id"]))
    for start in range(0, len(records), batch_size):
        yield cells[cells["record_id"].isin(records[start:start + batch_size])]


def check_owned(cells: pd.DataFrame, owned_fields: frozenset[str]) -> None:
    """Refuse, before anything is sent, a change set that touches a field the sync does not own."""
    foreign = sorted(set(cells["field"]) - owned_fields)
    if foreign:
        raise EcrfError(f"refusing to write fields the sync does not own: {', '.join(foreign)}; "
                        "nothing was written")


def import_batch(conn: Connection, rows: list[dict[str, str]], overwrite: bool,
                 record_id_field: str, what: str, ledger_hint: str = "") -> None:
    expected = len({row[record_id_field] for row in rows})
    answer = conn.call(what, conn.project.import_records, rows,
                       overwrite="overwrite" if overwrite else "normal", return_content="count")
    count = answer.get("count") if isinstance(answer, dict) else None
    if count is None or int(count) != expected:
        raise WriteCountMismatch(
            f"{what}: sent {expected} records, REDCap reported {count!r} imported. "
            f"What was sent is in {ledger_hint or 'the ledger'}; the next run will redo what "
            "did not land.")


def refused_cells(cells: pd.DataFrame, message: str) -> pd.Series:
    """Per cell, REDCap's message if its error names the cell ("" if not): its
    `"record","field","value","message"` lines, or the fields no longer in the project."""
    named = pd.Series("", index=cells.index, dtype=object)
    unknown = _UNKNOWN_FIELDS.search(message.strip())
    if unknown:
        gone = {name.strip() for name in unknown.group(1).split(",")}
        return named.mask(cells["field"].isin(gone), message.strip())
    records = set(cells["record_id"])
    for line in csv.reader(io.StringIO(message)):
        if len(line) < 4:
            continue
        record, name, value, text = line[:4]
        if record not in records:  # REDCap may add the event: `01-001 (screening_arm_1)`
            record = re.sub(r" \([^)]*\)$", "", record)
        hit = (cells["record_id"] == record) & (cells["field"] == name) & (named == "")
        exact = hit & (cells["new_value"] == value)
        named = named.mask(exact if exact.any() else hit, text)
    return named


def _with_their_query(cells: pd.DataFrame, named: pd.Series) -> pd.Series:
    """`named`, widened to every cell of a data query one of whose cells REDCap refused: a
    query's cells land together, so a refused `dq_status` never leaves its `dq_resolved` set
    on a query still Open."""
    on_query = cells["redcap_repeat_instrument"] == QUERY_INSTRUMENT
    refused = named[(named != "") & on_query]
    if refused.empty:
        return named
    reason = {}
    for key, message in zip(zip(*(cells.loc[refused.index, c] for c in KEY_COLUMNS)), refused):
        reason.setdefault(key, message)
    widened = named.copy()
    for at, key in zip(cells.index[on_query], zip(*(cells.loc[on_query, c] for c in KEY_COLUMNS))):
        if widened[at] == "" and key in reason:
            widened[at] = f"not written: REDCap refused another cell of this query ({reason[key]})"
    return widened


def import_sparing(conn: Connection, cells: pd.DataFrame, overwrite: bool, record_id_field: str,
                   what: str, ledger_hint: str) -> pd.DataFrame:
    """Import the cells; set aside those REDCap refuses and write the rest. Returns the refused."""
    refused = []
    pending = cells
    while not pending.empty:
        try:
            import_batch(conn, payload_rows(pending, record_id_field), overwrite, record_id_field,
                         what, ledger_hint)
            break
        except RedcapRefused as exc:
            named = _with_their_query(pending, refused_cells(pending, exc.redcap_message))
            if (named != "").any():
                refused.append(pending[named != ""].assign(message=named[named != ""]))
                pending = pending[named == ""]
                continue
            records = list(dict.fromkeys(pending["record_id"]))
            if len(records) == 1:
                refused.append(pending.assign(message=exc.redcap_message.strip()))
                break
            for half in (records[:len(records) // 2], records[len(records) // 2:]):
                refused.append(import_sparing(conn, pending[pending["record_id"].isin(half)],
                                              overwrite, record_id_field, what, ledger_hint))
            break
    return pd.concat(refused, ignore_index=True) if refused else Written().refused


def import_cells(conn: Connection, cells: pd.DataFrame, record_id_field: str, what: str,
                 ledger_hint: str) -> list[pd.DataFrame]:
    """The cells with values in a `normal` import, those to blank in an `overwrite` one, each
    sparing what REDCap refuses; the refused cells of each."""
    blank = cells["new_value"] == ""
    return [import_sparing(conn, part, overwrite, record_id_field,
                           f"{what} ({'blanking' if overwrite else 'values'})", ledger_hint)
            for overwrite, part in ((False, cells[~blank]), (True, cells[blank]))
            if not part.empty]


def write_changes(conn: Connection, ledger: Ledger, run_id: str, cells: pd.DataFrame, *,
                  record_id_field: str, owned_fields: frozenset[str], batch_size: int,
                  progress: Callable[[int], None] | None = None,
                  before_batch: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                  after_batch: Callable[[pd.DataFrame], None] | None = None,
                  first_batch: int = 1) -> Written:
    """Import the change set, batch by batch, sparing what REDCap refuses (`first_batch`:
    the number of the first import batch, when earlier calls of the same run wrote some);
    `after_batch` is given each batch's cells REDCap took, just after their import."""
    outcome = Written()
    if cells.empty:
        return outcome
    check_owned(cells, owned_fields)
    refused = []
    for number, batch in enumerate(batches(cells, batch_size), start=first_batch):
        outcome.batches += 1
        n_records = batch["record_id"].nunique()
        if before_batch is not None:
            batch = before_batch(batch)
            check_owned(batch, owned_fields)
        ledger.record_writes(run_id, batch)
        outcome.cells += len(batch)
        spared = import_cells(conn, batch, record_id_field, f"import batch {number}",
                              f"the ledger {ledger.path}, run {run_id}")
        refused += spared
        if after_batch is not None:
            after_batch(_without(batch, spared))
        not_written = {record for frame in spared for record in frame["record_id"]}
        landed = set(batch["record_id"]) - not_written
        outcome.records += len(landed)
        outcome.record_ids |= landed
        if progress is not None:
            progress(n_records)
    outcome.refused = pd.concat(refused, ignore_index=True) if refused else outcome.refused
    if not outcome.refused.empty:
        ledger.record_refused(run_id, outcome.refused)
        outcome.cells -= len(outcome.refused)
    return outcome


def _without(cells: pd.DataFrame, refused: list[pd.DataFrame]) -> pd.DataFrame:
    """`cells` less the refused ones."""
    gone = {key for frame in refused for key in zip(*(frame[c] for c in (*KEY_COLUMNS, "field")))}
    if not gone:
        return cells
    keep = [key not in gone for key in zip(*(cells[c] for c in (*KEY_COLUMNS, "field")))]
    return cells[pd.Series(keep, index=cells.index, dtype=bool)]


class WriteBehind:
    """Writes handed over (`submit`) run in one background thread, in order, while the caller
    evaluates the next batch: REDCap reads back and imports one batch while the next is typed
    and evaluated, so a run costs about the larger of the two, not their sum. One write waits
    at most, so the caller is never more than two batches ahead of what REDCap holds.

    The first write that fails stops the rest: nothing handed after it is written, and its
    error is raised by the next `submit` or at the end of the `with` block. A block left on an
    error of its own first finishes the writes already handed over (each would have landed
    before the next batch was evaluated), then raises; an error of those writes wins, being
    the earlier. Either way no thread is left running.
    """

    def __init__(self, name: str = "write-behind") -> None:
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)
        self._worker.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            if self._error is None:
                try:
                    task()
                except BaseException as exc:  # raised in the caller's thread
                    self._error = exc

    def submit(self, task: Callable[[], None]) -> None:
        """Hand over one batch's write; raises the error of an earlier one instead."""
        self._raise()
        self._tasks.put(task)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._tasks.put(None)
        self._worker.join()
        if self._error is not None and self._error is not error:
            raise self._error
