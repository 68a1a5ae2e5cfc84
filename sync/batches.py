"""What a batch of records cannot see by itself: the cheap first pass of a batch-by-batch sync.

The sync pulls, types, evaluates, diffs and writes a batch of whole records before it pulls the
next, so its memory follows `batch_size`, not the project. Nearly every rule reads only the
record it fires on. The few that compare records with each other (`ACROSS_RECORDS`: a kit
infused in two subjects) read a compact summary instead: just their fields, of every record,
pulled in one export with `fields=` and held as categories. When the dictionary is known before
the record ids are, that export is the record ids' own (`record_ids_with_across`).
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sync.connection import Connection
from sync.crf.dictionary import Dictionary
from sync.pull import export_table, record_ids_of
from sync.rule_checks import ACROSS_RECORDS

KEY = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]


def across_fields(rule_ids: set[str], dictionary: Dictionary) -> dict[str, tuple[str, ...]]:
    """Per instrument, the fields the run's rules comparing records read of every record."""
    wanted: dict[str, tuple[str, ...]] = {}
    for rule_id, (instrument, fields) in ACROSS_RECORDS.items():
        if rule_id in rule_ids and instrument in dictionary.forms:
            wanted[instrument] = tuple(dict.fromkeys((*wanted.get(instrument, ()), *fields)))
    return wanted


def _events(wanted: dict[str, tuple[str, ...]], dictionary: Dictionary) -> list[str] | None:
    return (sorted({e for form in wanted for e in dictionary.events_of_form(form)})
            if dictionary.is_longitudinal else None)


def record_ids_with_across(conn: Connection, dictionary: Dictionary
                           ) -> tuple[list[str], pd.DataFrame]:
    """Every record id in the project, in REDCap's order, and the rows `across_records` reads
    for any rule comparing records, from one export. A narrow export has a row wherever a
    record holds data, its record id included, so the few fields those rules compare ride along
    with the record ids instead of costing REDCap a second pass over every record. Only the
    rows of the events those rules read are kept, as their own export would have asked."""
    pk = dictionary.record_id_field
    wanted = across_fields(set(ACROSS_RECORDS), dictionary)
    fields = [pk, *dict.fromkeys(f for names in wanted.values() for f in names
                                 if f in dictionary.fields)]
    table = export_table(conn, "export record ids", fields)
    record_ids = record_ids_of(table, pk)
    events = _events(wanted, dictionary)
    if events is not None:
        table = (table.filter(pc.is_in(table.column("redcap_event_name"),
                                       value_set=pa.array(events, pa.string())))
                 if "redcap_event_name" in table.column_names else table.slice(0, 0))
    return record_ids, table.to_pandas()


def across_records(conn: Connection, dictionary: Dictionary, rule_ids: set[str],
                   rows: pd.DataFrame | None = None) -> pd.DataFrame | None:
    """The rows of every record that hold the instruments of `across_fields`, with just those
    fields (one export call, none when `rows` of `record_ids_with_across` are given; None when
    no rule of the run compares records)."""
    wanted = across_fields(rule_ids, dictionary)
    if not wanted:
        return None
    pk = dictionary.record_id_field
    fields = [pk, *dict.fromkeys(f for names in wanted.values() for f in names)]
    if rows is None or not set(fields) <= set(dictionary.fields):
        rows = export_table(conn, "export the fields rules compare across records", fields,
                            _events(wanted, dictionary)).to_pandas()
    frame = rows.rename(columns={pk: "record_id"})
    for column in [*KEY, *fields[1:]]:  # an empty project's export names no column
        if column not in frame.columns:
            frame[column] = ""
    repeating = set(dictionary.repeating["form_name"])
    keep = pd.Series(False, index=frame.index)
    for instrument in wanted:
        on = (frame["redcap_repeat_instrument"] == instrument) if instrument in repeating \
            else (frame["redcap_repeat_instrument"] == "")
        if dictionary.is_longitudinal:
            on &= frame["redcap_event_name"].isin(dictionary.events_of_form(instrument))
        keep |= on
    frame = frame.loc[keep.to_numpy(), [*KEY, *fields[1:]]].reset_index(drop=True)
    return frame.astype("category")  # each distinct string once, the rows as integer codes
