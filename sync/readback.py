"""Just before a batch is written: has anyone touched its records since the pull?

Monitors close queries, sites answer them and add instances while the sync runs. Reading the
batch's sync-owned cells and dq_query rows back (one export call) and comparing them with what
was pulled tells which records moved; the job re-plans those from a fresh pull, so a person's
change is never overwritten and new query instances are numbered after what exists now.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from sync.connection import Connection
from sync.crf.dictionary import Dictionary
from sync.errors import RedcapRefused
from sync.pull import records_frame
from sync.queries import QUERY_INSTRUMENT

KEY = ["redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]


def state_of(records: pd.DataFrame, record_id_field: str, fields: list[str]
             ) -> dict[str, frozenset[tuple[str, ...]]]:
    """Per record, its non-blank values of `fields`, each with its row key."""
    if records.empty:
        return {}
    frame = records.reindex(columns=[record_id_field, *KEY, *fields]).fillna("").astype(str)
    keys, values = frame.iloc[:, :4].to_numpy(), frame.iloc[:, 4:].to_numpy()
    state: dict[str, set[tuple[str, ...]]] = {}
    for row, column in zip(*np.nonzero(values != "")):  # the few filled cells, not a melt
        record, *key = keys[row]
        state.setdefault(record, set()).add((*key, fields[column], values[row, column]))
    return {record: frozenset(cells) for record, cells in state.items()}


def queries_touched(pulled: pd.DataFrame, fresh: pd.DataFrame, record_id_field: str,
                    fields: list[str]) -> set[tuple[str, str]]:
    """(record, instance) of the dq_query instances whose cells someone changed between the pull
    and `fresh`: the run leaves them as that person left them (the contract: a change made while
    the sync runs is never overwritten by that run); the log brings the record to the next run."""
    before = state_of(pulled[pulled[record_id_field].isin(set(fresh[record_id_field]))],
                      record_id_field, fields)
    now = state_of(fresh, record_id_field, fields)
    return {(record, instance) for record in now.keys() | before.keys()
            for _, instrument, instance, *_ in now.get(record, frozenset())
            ^ before.get(record, frozenset()) if instrument == QUERY_INSTRUMENT}


def readback_fields(dictionary: Dictionary, owned: frozenset[str]) -> list[str]:
    """The sync-owned fields and every field of the dq_query instrument, in dictionary order."""
    meta = dictionary.metadata
    fields = meta[(meta["field_name"].isin(owned)) | (meta["form_name"] == QUERY_INSTRUMENT)]
    return [name for name in fields["field_name"] if name != dictionary.record_id_field]


def moved_records(conn: Connection, dictionary: Dictionary, pulled: pd.DataFrame,
                  records: list[str], fields: list[str]) -> list[str]:
    """The records whose sync-owned cells or queries differ now from the pulled ones."""
    pk = dictionary.record_id_field
    while True:
        try:
            rows = conn.call(f"read back {len(records)} records before writing",
                             conn.project.export_records, format_type="json", records=records,
                             fields=[pk, *fields])
            break
        except RedcapRefused as exc:  # a field removed since the pull: the write will say so
            gone = set(re.findall(r"'([^']+)'", exc.redcap_message.split(":", 1)[-1]))
            if "parameter \"fields\"" not in exc.redcap_message or not gone & set(fields):
                raise
            fields = [name for name in fields if name not in gone]
    now = state_of(records_frame(rows), pk, fields)
    before = state_of(pulled[pulled[pk].isin(records)], pk, fields)
    return [record for record in records
            if now.get(record, frozenset()) != before.get(record, frozenset())]


def query_rows(conn: Connection, dictionary: Dictionary, records: list[str]) -> pd.DataFrame:
    """The dq_query rows of `records` as REDCap holds them now (one export call), keyed by
    `record_id`: new queries are numbered after these, whatever happened since the pull."""
    pk = dictionary.record_id_field
    fields = [name for name in dictionary.metadata.loc[
        dictionary.metadata["form_name"] == QUERY_INSTRUMENT, "field_name"] if name != pk]
    rows = conn.call(f"read back the queries of {len(records)} records before opening new ones",
                     conn.project.export_records, format_type="json", records=records,
                     fields=[pk, *fields])
    frame = records_frame(rows).rename(columns={pk: "record_id"})
    if frame.empty or "redcap_repeat_instrument" not in frame:
        return frame.reindex(columns=["record_id", *KEY, *fields], fill_value="")
    return frame[frame["redcap_repeat_instrument"] == QUERY_INSTRUMENT].reset_index(drop=True)
