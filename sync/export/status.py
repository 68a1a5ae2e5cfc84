"""Where the data stand at the cut: query listing, subject status, and a data status per row.

All three read the `dq_query` instances of the raw export, so the sponsor sees the same query
states the sites see in REDCap.
"""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from sync.export.meta import QUERY_FORM, STATUS_LABELS, CutField, CutSchema
from sync.export.tables import CutTable, text_codes, typed_values

QUERY_FIELDS: tuple[str, ...] = (
    "dq_key", "dq_rule", "dq_event", "dq_instrument", "dq_instance", "dq_field", "dq_text",
    "dq_status", "dq_response", "dq_opened", "dq_resolved", "dq_updated")
UNRESOLVED: frozenset[str] = frozenset({"1", "2"})
"""Open and Answered queries keep a row from being clean."""


def naive_utc(moment: datetime) -> pd.Timestamp:
    """`moment` as a naive UTC timestamp (naive input is taken to be UTC already)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return pd.Timestamp(moment)


def query_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """The raw `dq_query` instances, with every query column present."""
    rows = raw[raw["redcap_repeat_instrument"] == QUERY_FORM].copy()
    for name in QUERY_FIELDS:
        if name not in rows:
            rows[name] = ""
    return rows


def _query_field(schema: CutSchema, name: str) -> CutField:
    found = schema.field(name)
    if found is not None:
        return found
    validation = "datetime_ymd" if name in ("dq_opened", "dq_resolved", "dq_updated") else ""
    return CutField(name=name, form=QUERY_FORM, field_type="text", validation=validation,
                    label=name, note="", choices=(), identifier=False, branching="",
                    annotation="", calculation="")


def query_listing(raw: pd.DataFrame, schema: CutSchema, cut_time: datetime) -> CutTable:
    """Every query at the cut, with its lifecycle state, its form, and its age in days."""
    rows = query_rows(raw)
    record_id = schema.record_id
    table = CutTable(name="queries", frame=pd.DataFrame(index=rows.index))
    table.add(record_id, rows[record_id].astype("string"), "string", "Record ID")
    instance = pd.to_numeric(rows["redcap_repeat_instance"], errors="coerce").astype("Int64")
    table.add("query_instance", instance, "integer", "Instance of dq_query")
    typed = {name: typed_values(rows, record_id, _query_field(schema, name))
             for name in QUERY_FIELDS}
    for name in ("dq_key", "dq_rule", "dq_event", "dq_instrument", "dq_instance", "dq_field"):
        table.add(name, typed[name].astype("string"), "string", _query_field(schema, name).label)
    table.add("dq_form", rows["dq_field"].map(schema.form_of).replace("", pd.NA).astype("string"),
              "string", "Instrument of the queried field", source="form of dq_field")
    status = rows["dq_status"].astype("string")
    table.add("dq_status", pd.to_numeric(status, errors="coerce").astype("Int64"), "integer",
              _query_field(schema, "dq_status").label)
    table.add("dq_status_label", status.map(STATUS_LABELS).astype("string"), "string",
              "Query status (label)", source="choice label of dq_status")
    for name in ("dq_text", "dq_response"):
        if name not in raw:  # dropped from a de-identified cut
            continue
        table.add(name, typed[name].astype("string"), "string", _query_field(schema, name).label)
    _add_lifecycle(table, typed["dq_opened"], typed["dq_resolved"], cut_time)
    table.add("dq_updated", typed["dq_updated"], "datetime",
              "When the sync last rewrote the query text (the values behind it changed)")
    table.frame = table.frame.reset_index(drop=True)
    return table


def _add_lifecycle(table: CutTable, opened: pd.Series, resolved: pd.Series,
                   cut_time: datetime) -> None:
    table.add("dq_opened", opened, "datetime", "When the sync opened the query")
    table.add("dq_resolved", resolved, "datetime", "When the sync resolved the query")
    cut = naive_utc(cut_time)
    table.add("age_days", (cut - opened).dt.days.astype("Int64"), "integer",
              "Days from dq_opened to the cut", source="cut_time - dq_opened, whole days")
    table.add("days_to_resolution", (resolved - opened).dt.days.astype("Int64"), "integer",
              "Days from dq_opened to dq_resolved", source="dq_resolved - dq_opened, whole days")


def add_data_status(table: CutTable, raw: pd.DataFrame, schema: CutSchema,
                    repeating: set[str], queries: pd.DataFrame | None = None) -> None:
    """Append `open_queries` and `data_status` (clean / open queries) to an instrument table.

    A query belongs to a row when record, event and, for repeating instruments, instrument and
    instance match (`dq_event`, `dq_instrument`, `dq_instance`), and its field is on this form.
    `queries` are `query_rows(raw)` when the caller has them already.
    """
    queries = query_rows(raw) if queries is None else queries
    places, fields = text_codes(queries["dq_field"])  # each distinct field's form looked up once
    field_forms = np.array([schema.form_of(name) == table.name for name in fields], dtype=bool)
    on_form = field_forms[places] | (queries["dq_instrument"] == table.name).to_numpy()
    queries = queries[queries["dq_status"].isin(UNRESOLVED) & on_form]
    record_id = schema.record_id
    is_repeating = table.name in repeating
    if is_repeating:
        queries = queries[queries["dq_instrument"] == table.name]
    keys = zip(queries[record_id], queries["dq_event"],
               queries["dq_instance"] if is_repeating else [""] * len(queries))
    counts: dict[tuple[str, str, str], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    frame = table.frame
    instance = (frame["redcap_repeat_instance"].astype("string").fillna("") if is_repeating
                else pd.Series("", index=frame.index))
    row_keys = zip(frame[record_id].astype(str), frame["redcap_event_name"].fillna(""), instance)
    found = np.fromiter((counts.get(k, 0) for k in row_keys), np.int64, len(frame))
    open_counts = pd.Series(found, index=frame.index, dtype="Int64")
    table.add("open_queries", open_counts, "integer", "Open or answered queries on this row",
              source="count of dq_query with dq_status 1/2 matching record, event, instance, form")
    status = np.where(found == 0, "clean", "open queries").astype(object)
    table.add("data_status", pd.Series(status, index=frame.index, dtype="string"), "string",
              "Data status at the cut",
              source="clean when open_queries = 0, else open queries")


def _count_by_record(raw: pd.DataFrame, record_id: str, mask: pd.Series) -> pd.Series:
    return raw.loc[mask, record_id].value_counts()


def _subject_value(raw: pd.DataFrame, record_id: str, name: str) -> pd.Series:
    """The first non-blank value of a one-per-subject field, indexed by record."""
    if name not in raw:
        return pd.Series(dtype="string")
    filled = raw[raw[name] != ""]
    return filled.drop_duplicates(record_id).set_index(record_id)[name].astype("string")


def subject_status(raw: pd.DataFrame, schema: CutSchema) -> CutTable:
    """One row per record: eligibility, failing criteria, doses received, query counts."""
    record_id = schema.record_id
    records = list(dict.fromkeys(raw[record_id]))
    table = CutTable(name="subjects", frame=pd.DataFrame(index=pd.Index(records)))
    table.add(record_id, pd.Series(records, index=records, dtype="string"), "string", "Record ID")
    elig = _subject_value(raw, record_id, "elig_calc").reindex(records)
    table.add("elig_calc", pd.to_numeric(elig, errors="coerce").astype("Int64"), "integer",
              "Eligibility (1 eligible, 0 not eligible)", source="sync: eligibility")
    table.add("elig_calc_label", elig.map({"1": "Eligible", "0": "Not eligible"})
              .astype("string"), "string", "Eligibility (label)", source="choice label of elig_calc")
    for name, label in (("elig_fail", "Failing criteria"), ("elig_missing", "Undetermined criteria")):
        table.add(name, _subject_value(raw, record_id, name).reindex(records), "string", label,
                  source="sync: eligibility")
    given = raw.get("inf_given", pd.Series("", index=raw.index)) == "1"
    table.add("doses_received", _count_by_record(raw, record_id, given).reindex(records)
              .fillna(0).astype("Int64"), "integer", "Infusions given",
              source="count of events with inf_given = 1")
    queries = query_rows(raw)
    for code, label in STATUS_LABELS.items():
        counts = _count_by_record(queries, record_id, queries["dq_status"] == code)
        table.add(f"queries_{label.lower()}", counts.reindex(records).fillna(0).astype("Int64"),
                  "integer", f"{label} queries", source=f"count of dq_query with dq_status {code}")
    table.frame = table.frame.reset_index(drop=True)
    return table
