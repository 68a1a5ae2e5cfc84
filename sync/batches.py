"""What a batch of records cannot see by itself: the cheap first pass of a batch-by-batch sync.

The sync pulls, types, evaluates, diffs and writes a batch of whole records before it pulls the
next, so its memory follows `batch_size`, not the project. Nearly every rule reads only the
record it fires on. The few that compare records with each other (`ACROSS_RECORDS`: a kit
infused in two subjects) read a compact summary instead: just their fields, of every record,
pulled in one export with `fields=` and held as categories. When the dictionary is known before
the record ids are, that export is the record ids' own (`record_ids_with_across`).
"""
from __future__ import annotations

import json

import pandas as pd

from sync.connection import Connection
from sync.crf.dictionary import Dictionary
from sync.pull import records_frame
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
                           ) -> tuple[list[str], list[dict]]:
    """Every record id in the project, in REDCap's order, and the rows `across_records` reads
    for any rule comparing records, from one export. A narrow export has a row wherever a
    record holds data, its record id included, so the few fields those rules compare ride along
    with the record ids instead of costing REDCap a second pass over every record. Only the
    rows of the events those rules read are kept, as their own export would have asked."""
    pk = dictionary.record_id_field
    wanted = across_fields(set(ACROSS_RECORDS), dictionary)
    fields = [pk, *dict.fromkeys(f for names in wanted.values() for f in names
                                 if f in dictionary.fields)]
    rows = conn.call("export record ids", conn.project.export_records, format_type="json",
                     fields=fields)
    record_ids = list(dict.fromkeys(str(row[pk]) for row in rows))
    events = _events(wanted, dictionary)
    if events is not None:
        keep = set(events)
        rows = [row for row in rows if row.get("redcap_event_name") in keep]
    # The ids and rows kept are made anew once the export's parse is freed: kept as they are,
    # a few strings of every part of a large parse keep all its small-object memory from being
    # reused or handed back (30,000 subjects: 90 MiB held through the run for the ids and a
    # 5 MiB kit summary).
    kept = json.dumps([record_ids, rows])
    del record_ids, rows
    record_ids, rows = json.loads(kept)
    return record_ids, rows


def across_records(conn: Connection, dictionary: Dictionary, rule_ids: set[str],
                   rows: list[dict] | None = None) -> pd.DataFrame | None:
    """The rows of every record that hold the instruments of `across_fields`, with just those
    fields (one export call, none when `rows` of `record_ids_with_across` are given; None when
    no rule of the run compares records)."""
    wanted = across_fields(rule_ids, dictionary)
    if not wanted:
        return None
    pk = dictionary.record_id_field
    fields = [pk, *dict.fromkeys(f for names in wanted.values() for f in names)]
    if rows is None or not set(fields) <= set(dictionary.fields):
        rows = conn.call("export the fields rules compare across records",
                         conn.project.export_records, format_type="json", fields=fields,
                         events=_events(wanted, dictionary))
    frame = records_frame(rows, [*KEY, *fields[1:]]).rename(columns={pk: "record_id"})
    for column in KEY[1:]:
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
