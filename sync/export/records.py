"""Where a cut reads its records from, and in which batches of whole subjects.

The cut never holds the project: it pulls a batch of whole subjects, builds that batch's share
of every file, and pulls the next. Batches follow the order the cut's files list subjects in
(REDCap's natural record order, or pseudonym order when de-identified), so appending batch after
batch gives the same files as one batch of everything. The few facts a batch cannot see by
itself (which date fields hold one value for every subject) come from a first pass over just
those fields.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from sync.export.meta import CutSchema
from sync.export.tables import normalise_raw, natural_key

Pull = Callable[[list[str]], pd.DataFrame]
"""Whole records (REDCap's raw flat export) of the given record IDs."""
PullFields = Callable[[list[str], list[str]], pd.DataFrame]
"""Just the given fields (with the key columns) of the given record IDs."""
PullGroups = Callable[[Iterable[list[str]]], Iterator[pd.DataFrame]]
"""Whole records of each group of record IDs in turn (a source that can export ahead)."""
Cells = Callable[[pd.DataFrame], "pd.DataFrame | None"]
"""What a sync run would write to these records now (`sync.diff` cells), or None."""


def _no_cells(frame: pd.DataFrame) -> None:
    return None


@dataclass
class CutRecords:
    """The project's records as the cut reads them: every record ID, and how to pull a batch."""

    record_ids: list[str]
    pull: Pull
    pull_fields: PullFields | None = None
    cells: Cells = _no_cells
    columns: list[str] = field(default_factory=list)
    """Columns every pulled batch is given, in order (blank where a batch lacks one)."""
    pull_groups: PullGroups | None = None

    def batches(self, groups: list[list[str]]) -> Iterator[pd.DataFrame]:
        """Each group's batch of whole records with the project's columns, in turn; the next
        is pulled while this one is worked on, when the source can."""
        frames = (self.pull_groups(groups) if self.pull_groups is not None
                  else map(self.pull, groups))
        yield from map(self._with_columns, frames)  # holds no batch between yields

    def _with_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not self.columns:
            return frame
        extra = [c for c in frame.columns if c not in self.columns]
        return frame.reindex(columns=self.columns + extra, fill_value="")

    def fields(self, ids: list[str], names: list[str]) -> pd.DataFrame:
        """Some fields of a batch of records (a whole pull when no narrower one is known)."""
        if self.pull_fields is None:
            return self.pull(ids)
        return self.pull_fields(ids, names)


def records_in_frame(records: pd.DataFrame, record_id: str,
                     cells: pd.DataFrame | None = None) -> CutRecords:
    """A frame already in memory as a `CutRecords` (tests, and callers that hold the export)."""
    if record_id not in records.columns and record_id in (records.index.names or []):
        records = records.reset_index()
    if cells is not None and not cells.empty:
        new = sorted(set(cells["field"]) - set(records.columns))
        records = records.assign(**{name: "" for name in new}) if new else records
    if record_id not in records.columns:
        return CutRecords(record_ids=[], pull=lambda ids: records)
    ids = records[record_id].astype(str)
    by_cell = cells["record_id"].astype(str) if cells is not None and not cells.empty else None

    def pull(wanted: list[str]) -> pd.DataFrame:
        return records[ids.isin(set(wanted)).to_numpy()]

    def pull_fields(wanted: list[str], names: list[str]) -> pd.DataFrame:
        frame = pull(wanted)
        return frame[[c for c in frame.columns if c in set(names)]]

    def batch_cells(frame: pd.DataFrame) -> pd.DataFrame | None:
        if by_cell is None:
            return None
        return cells[by_cell.isin(set(frame[record_id].astype(str))).to_numpy()]

    return CutRecords(record_ids=list(dict.fromkeys(ids)), pull=pull, pull_fields=pull_fields,
                      cells=batch_cells, columns=list(records.columns))


def batches(ordered: list[str], size: int, key: Callable[[str], object]) -> list[list[str]]:
    """`ordered` cut into runs of about `size`; subjects whose sort keys tie stay together, so
    a sort inside a batch orders them as a sort of everything would."""
    found: list[list[str]] = []
    current: list[str] = []
    for record in ordered:
        if len(current) >= size and key(current[-1]) != key(record):
            found.append(current)
            current = []
        current.append(record)
    return found + [current] if current or not found else found


def natural_order(record_ids: list[str]) -> list[str]:
    """REDCap's natural record order (`1, 2, 10`), as the cut lists identified subjects."""
    return sorted(record_ids, key=natural_key)


@dataclass
class DateSummary:
    """Per date field, up to two of its values and of the subjects holding one: enough to tell
    a date that is the same for every subject (`deidentify.study_wide_dates`)."""

    values: dict[str, set[str]] = field(default_factory=dict)
    subjects: dict[str, set[str]] = field(default_factory=dict)

    def add(self, raw: pd.DataFrame, schema: CutSchema) -> None:
        for cut_field in schema.fields:
            if cut_field.kind not in ("date", "datetime") or cut_field.name not in raw:
                continue
            filled = raw[raw[cut_field.name] != ""]
            for store, column in ((self.values, cut_field.name),
                                  (self.subjects, schema.record_id)):
                seen = store.setdefault(cut_field.name, set())
                for value in filled[column].drop_duplicates():
                    if len(seen) >= 2:
                        break
                    seen.add(value)

    def study_wide(self, schema: CutSchema) -> list[str]:
        return [f.name for f in schema.fields if f.name in self.values
                and len(self.subjects[f.name]) >= 2 and len(self.values[f.name]) == 1]


def date_fields(schema: CutSchema) -> list[str]:
    """The fields the date first pass pulls: dates, and what places a query row."""
    return [schema.record_id] + [f.name for f in schema.fields
                                 if f.kind in ("date", "datetime")
                                 or f.name in ("dq_field", "dq_instrument")]


def first_pass(source: CutRecords, groups: list[list[str]], schema: CutSchema,
               prepare: Callable[[pd.DataFrame], tuple[pd.DataFrame, CutSchema]]
               ) -> DateSummary:
    """The date summary of every record, batch by batch, over just the date fields.

    `prepare` blinds and screens a batch as the cut does, so dates it leaves out or blanks are
    not counted.
    """
    summary = DateSummary()
    names = date_fields(schema)
    for ids in groups:
        frame = source.fields(ids, names)
        raw, kept = prepare(normalise_raw(frame, schema))
        summary.add(raw, kept)
    return summary

