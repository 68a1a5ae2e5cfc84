"""Per-instrument tables of the cut: raw flat export in, one typed `CutTable` per instrument out.

One row per record, event and repeat instance where the instrument holds data; values typed from
the dictionary, coded values with their labels beside them, checkbox choices that tell checked,
unchecked and not applicable by branching logic.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sync.export.meta import CutError, CutField, CutSchema, Kind, form_status_field

KEY_COLUMNS: tuple[str, ...] = (
    "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
CHECKBOX_STATES: dict[str, str] = {"1": "checked", "0": "unchecked"}
NOT_APPLICABLE = "not applicable"

Applicability = Callable[[str], pd.Series]
"""Evaluates a branching-logic expression over the raw frame: True on the rows where it shows."""


@dataclass
class CutTable:
    """One table of the cut: the frame plus, per column, its storage kind and label."""

    name: str
    frame: pd.DataFrame
    kinds: dict[str, Kind] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    """Per derived column, how it was made (codebook `derivation`)."""

    def add(self, column: str, values: pd.Series, kind: Kind, label: str,
            source: str = "") -> None:
        """Append a column with its kind and label (and derivation, if derived)."""
        self.frame[column] = values
        self.kinds[column] = kind
        self.labels[column] = label
        if source:
            self.sources[column] = source


def normalise_raw(records: pd.DataFrame, schema: CutSchema) -> pd.DataFrame:
    """The raw export as strings ("" blank), with the REDCap key columns present, in cut order."""
    if schema.record_id not in records.columns and schema.record_id in (records.index.names or []):
        records = records.reset_index()  # PyCap's `format_type="df"` indexes by record and event
    if schema.record_id not in records.columns:
        raise CutError(f'the records frame has no "{schema.record_id}" column (the record ID)')
    raw = records.astype(object).where(records.notna(), "").astype(str)
    for name in raw.columns:
        if name != schema.record_id:
            stripped = _stripped(raw[name])
            if stripped is not None:
                raw[name] = stripped
    for column in KEY_COLUMNS:
        if column not in raw.columns:
            raw[column] = ""
    raw["redcap_repeat_instance"] = raw["redcap_repeat_instance"].str.replace(r"\.0$", "", regex=True)
    return _order_rows(raw, schema).reset_index(drop=True)


def text_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Values as text (blank where missing, `str` of anything else) given as (per value, the
    position of its text in the list; the distinct texts).

    Arrow finds the distinct texts: pandas' factorize reads strings only up to a NUL.
    """
    cells = np.asarray(values, dtype=object)
    if pd.api.types.infer_dtype(cells, skipna=True) not in ("string", "empty"):
        cells = pd.Series(cells, dtype=object).fillna("").astype(str).to_numpy(dtype=object)
    encoded = pc.fill_null(pa.array(cells, pa.string(), from_pandas=True), ""
                           ).dictionary_encode()
    return (encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            encoded.dictionary.to_pylist())


def _stripped(column: pd.Series) -> pd.Series | None:
    """The column's text without surrounding blanks (each distinct value stripped once), or
    None when no value has any."""
    codes, distinct = text_codes(column)
    stripped = [value.strip() for value in distinct]
    if stripped == distinct:
        return None
    return pd.Series(np.array(stripped, dtype=object)[codes], index=column.index,
                     name=column.name, dtype=object)


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """REDCap's case-insensitive natural record order: `1, 2, 10, a, B` (§6.2)."""
    parts = re.split(r"(\d+)", text.lower())
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p)


def natural_ranks(values: pd.Series) -> np.ndarray:
    """Per value, its place in `natural_key` order (the same for values of the same key): a
    stable sort on it orders rows as `natural_key` does, with one key made per distinct value."""
    codes, distinct = text_codes(values)
    keys = [natural_key(v) for v in distinct]
    ranks = np.zeros(len(distinct), dtype=np.int64)
    rank, previous = -1, None
    for position in sorted(range(len(keys)), key=keys.__getitem__):
        if rank < 0 or keys[position] != previous:
            rank, previous = rank + 1, keys[position]
        ranks[position] = rank
    return ranks[codes]


def _order_rows(raw: pd.DataFrame, schema: CutSchema) -> pd.DataFrame:
    events = list(schema.event_labels) + sorted(
        set(raw["redcap_event_name"]) - set(schema.event_labels))
    forms = {form: i for i, form in enumerate([""] + schema.forms)}
    event = raw["redcap_event_name"].map({e: i for i, e in enumerate(events)})
    form = raw["redcap_repeat_instrument"].map(lambda f: forms.get(f, len(forms)))
    instance = pd.to_numeric(raw["redcap_repeat_instance"], errors="coerce").fillna(0)
    order = np.lexsort((instance.to_numpy(dtype=float), form.to_numpy(dtype=np.int64),
                        event.to_numpy(dtype=np.int64), natural_ranks(raw[schema.record_id])))
    return raw.iloc[order]


def rows_of_form(raw: pd.DataFrame, schema: CutSchema, form: str,
                 repeating: set[str]) -> pd.DataFrame:
    """The raw rows where `form` holds data: a value, a checked box, or a saved form status.

    A checkbox reads "0" and a form status "0" on rows REDCap pads, so neither counts (§6.2).
    """
    on_form = raw["redcap_repeat_instrument"] == (form if form in repeating else "")
    rows = raw[on_form]
    values: list[str] = []
    boxes: list[str] = []
    for cut_field in schema.form_fields(form):
        if cut_field.name == schema.record_id:
            continue
        if cut_field.kind == "checkbox":
            boxes += [column for column, _, _ in cut_field.checkbox_columns() if column in rows]
        elif cut_field.name in rows:
            values.append(cut_field.name)
    has_data = np.zeros(len(rows), dtype=bool)
    if values:
        has_data |= (rows[values].to_numpy(dtype=object) != "").any(axis=1)
    if boxes:
        has_data |= (rows[boxes].to_numpy(dtype=object) == "1").any(axis=1)
    status = f"{form}_complete"
    if status in rows:
        has_data |= rows[status].isin(["1", "2"]).to_numpy()
    return rows[has_data]


def _bad_value(rows: pd.DataFrame, record_id: str, cut_field: CutField, bad: pd.Series,
               what: str) -> CutError:
    first = rows[bad].iloc[0]
    return CutError(
        f'record {first[record_id]}, event {first["redcap_event_name"] or "-"}, '
        f'instance {first["redcap_repeat_instance"] or "-"}, field {cut_field.name}: '
        f'"{first[cut_field.name]}" is not {what}; {int(bad.sum())} such value(s)')


def typed_text(cut_field: CutField) -> bool:
    """True when `typed_and_bad` types the field as text, which no value fails."""
    kind = cut_field.kind
    return kind not in ("date", "datetime", "integer", "number") and not (
        kind == "code" and cut_field.integer_codes)


def typed_and_bad(rows: pd.DataFrame, cut_field: CutField) -> tuple[pd.Series, pd.Series, str]:
    """One field's raw strings as the dtype of its kind, the values that are not of it, and
    what they should have been."""
    text = rows[cut_field.name] if cut_field.name in rows else pd.Series("", index=rows.index)
    blank = text == ""
    kind = cut_field.kind
    if kind in ("date", "datetime"):
        fmt = "%Y-%m-%d" if kind == "date" else (
            "%Y-%m-%d %H:%M:%S" if "seconds" in cut_field.validation else "%Y-%m-%d %H:%M")
        values = pd.to_datetime(text.where(~blank), format=fmt, errors="coerce")
        return values, values.isna() & ~blank, f"a {kind} ({fmt})"
    if kind in ("integer", "number") or (kind == "code" and cut_field.integer_codes):
        if "comma_decimal" in cut_field.validation:
            text = text.str.replace(",", ".", regex=False)
        values = pd.to_numeric(text.where(~blank), errors="coerce")
        bad = values.isna() & ~blank
        if kind == "number":
            return values.astype("Float64"), bad, "a number"
        whole = values.isna() | (values == values.round())
        values = values.where(whole).astype("Float64").round().astype("Int64")
        return values, bad | ~whole, "an integer" if bad.sum() == 0 else "a number"
    return text.where(~blank).astype("string"), pd.Series(False, index=rows.index), "text"


def typed_values(rows: pd.DataFrame, record_id: str, cut_field: CutField) -> pd.Series:
    """One field's raw strings as the dtype of its kind; raise naming the first bad value."""
    values, bad, what = typed_and_bad(rows, cut_field)
    if bad.any():
        raise _bad_value(rows, record_id, cut_field, bad, what)
    return values


def _choice_labels(values: pd.Series, cut_field: CutField) -> pd.Series:
    labels = dict(cut_field.choices)
    text = values.astype("string")
    return text.map(lambda code: labels.get(code, pd.NA) if isinstance(code, str) else pd.NA,
                    na_action="ignore").astype("string")


def _add_checkbox(table: CutTable, rows: pd.DataFrame, cut_field: CutField,
                  shown: pd.Series) -> None:
    """Choice columns 1/0, blank where branching logic hides the field, plus their states.

    A hidden field that still holds a checked box keeps its values: the data are there (REDCap's
    data quality rule F lists them), and the cut does not hide them.
    """
    choices = [(rows[c] if c in rows else pd.Series("0", index=rows.index), c, code, label)
               for c, code, label in cut_field.checkbox_columns()]
    for text, _, _, _ in choices:
        shown = shown | (text == "1")
    for text, column, code, label in choices:
        values = pd.to_numeric(text.where(text != ""), errors="coerce").astype("Int64")
        values = values.where(shown, pd.NA)
        state = text.map(CHECKBOX_STATES).where(shown, NOT_APPLICABLE).astype("string")
        table.add(column, values, "checkbox", f"{cut_field.label} (choice={label})"[:200])
        table.add(f"{column}_state", state, "string",
                  f"{cut_field.name} choice {code}: checked, unchecked or not applicable",
                  source=f"state of {column}; not applicable when branching logic hides "
                         f"{cut_field.name}")


def _add_field(table: CutTable, rows: pd.DataFrame, record_id: str, cut_field: CutField,
               shown: pd.Series, codes: dict[str, pd.Series]) -> None:
    if cut_field.kind == "checkbox":
        _add_checkbox(table, rows, cut_field, shown)
        return
    values = typed_values(rows, record_id, cut_field)
    kind: Kind = cut_field.kind
    if kind == "code":
        kind = "integer" if cut_field.integer_codes else "string"
    table.add(cut_field.name, values, kind, cut_field.label)
    if cut_field.kind == "code":
        table.add(f"{cut_field.name}_label", _choice_labels(values, cut_field), "string",
                  f"{cut_field.label} (label)"[:200], source=f"choice label of {cut_field.name}")
    if cut_field.name in codes:
        table.add(f"{cut_field.name}_missing_code",
                  codes[cut_field.name].reindex(rows.index).astype("string"), "string",
                  f"{cut_field.label} (missing-data code)"[:200],
                  source=f"REDCap missing-data code entered in {cut_field.name} (value blank)")


def instrument_table(raw: pd.DataFrame, schema: CutSchema, form: str, repeating: set[str],
                     applicable: Applicability,
                     codes: dict[str, pd.Series] | None = None) -> CutTable:
    """The typed table of one instrument: keys, then each field in dictionary order."""
    rows = rows_of_form(raw, schema, form, repeating)
    record_id = schema.record_id
    table = CutTable(name=form, frame=pd.DataFrame(index=rows.index))
    table.add(record_id, rows[record_id].astype("string"), "string", "Record ID")
    table.add("redcap_event_name", rows["redcap_event_name"].astype("string"), "string",
              "Event (unique name)")
    instance = pd.to_numeric(rows["redcap_repeat_instance"].where(
        rows["redcap_repeat_instance"] != ""), errors="coerce").astype("Int64")
    table.add("redcap_repeat_instance", instance, "integer", "Repeat instance")
    fields = [f for f in schema.form_fields(form) if f.name != record_id]
    for cut_field in fields + [form_status_field(form)]:
        shown = (applicable(cut_field.branching).reindex(rows.index).fillna(True)
                 .astype(bool) if cut_field.kind == "checkbox" and cut_field.branching
                 else pd.Series(True, index=rows.index))
        _add_field(table, rows, record_id, cut_field, shown, codes or {})
    table.frame = table.frame.reset_index(drop=True)
    return table


def repeating_forms(dictionary: object, raw: pd.DataFrame) -> set[str]:
    """Repeating instruments: the dictionary's `repeating` frame and those the export shows."""
    found = set(raw["redcap_repeat_instrument"]) - {""}
    repeating = getattr(dictionary, "repeating", None)
    if isinstance(repeating, pd.DataFrame) and "form_name" in repeating:
        found |= {str(f) for f in repeating["form_name"] if str(f)}
    return found
