"""Stage 5, write back: import a change set into REDCap in batches and verify every count.

Only sync-owned fields are ever sent. Cells that get a value go in with REDCap's `normal`
overwrite behaviour (blanks in the payload are ignored); cells that must become blank go in a
separate `overwrite` import that carries only those cells, so no other value can be erased.
Each batch is written to the ledger before it is sent, and REDCap's returned record count must
equal the number of records in the batch.
"""
from __future__ import annotations

from typing import Callable, Iterator

import pandas as pd

from sync.connection import Connection
from sync.diff import KEY_COLUMNS
from sync.errors import EcrfError, WriteCountMismatch
from sync.ledger import Ledger


def payload_rows(cells: pd.DataFrame, record_id_field: str) -> list[dict[str, str]]:
    """One import row per REDCap row key, holding just that row's changed cells."""
    rows: list[dict[str, str]] = []
    for key, group in cells.groupby(KEY_COLUMNS, sort=False):
        record, event, instrument, instance = key
        row = {record_id_field: record}
        if event:
            row["redcap_event_name"] = event
        if instrument or instance:
            row["redcap_repeat_instrument"] = instrument
            row["redcap_repeat_instance"] = instance
        row.update(zip(group["field"], group["new_value"]))
        rows.append(row)
    return rows


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


def write_changes(conn: Connection, ledger: Ledger, run_id: str, cells: pd.DataFrame, *,
                  record_id_field: str, owned_fields: frozenset[str], batch_size: int,
                  progress: Callable[[int], None] | None = None) -> int:
    """Import the change set; returns the number of records written."""
    if cells.empty:
        return 0
    check_owned(cells, owned_fields)
    written = 0
    for number, batch in enumerate(batches(cells, batch_size), start=1):
        ledger.record_writes(run_id, batch)
        blank = batch["new_value"] == ""
        for overwrite, part in ((False, batch[~blank]), (True, batch[blank])):
            if not part.empty:
                import_batch(conn, payload_rows(part, record_id_field), overwrite,
                             record_id_field,
                             f"import batch {number} ({'blanking' if overwrite else 'values'})",
                             f"the ledger {ledger.path}, run {run_id}")
        n_records = batch["record_id"].nunique()
        written += n_records
        if progress is not None:
            progress(n_records)
    return written
