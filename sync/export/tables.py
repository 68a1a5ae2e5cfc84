"""Per-instrument tables of the cut: raw flat export in, one typed `CutTable` per instrument out.

One row per record, event and repeat instance where the instrument holds data; values typed from
the dictionary, coded values with their labels beside them, checkbox choices that tell checked,
unchecked and not applicable by branching logic.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
        self.describe(column, kind, label, source)

    def describe(self, column: str, kind: Kind, label: str, source: str = "") -> None:
        """A column's kind and label (and derivation, if derived)."""
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
    raw = records.copy(deep=False)  # columns are replaced below, never written into
    other = [c for c in raw.columns if raw[c].dtype != object
             or pd.api.types.infer_dtype(raw[c], skipna=False) != "string"]
    if other:  # the pull gives text already: only other columns are converted
        converted = raw[other].astype(object)
        raw[other] = converted.where(converted.notna(), "").astype(str)
    for name in raw.columns:
        if name != schema.record_id:
            stripped = _stripped(raw[name])
            if stripped is not None:
                raw[name] = stripped
    for column in KEY_COLUMNS:
        if column not in raw.columns:
            raw[column] = ""
    raw["redcap_repeat_instance"] = raw["redcap_repeat_instance"].str.replace(r"\.0$", "", regex=True)
    return _order_rows(raw, schema)


def text_codes(values: pd.Series | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Values as text (blank where missing, `str` of anything else) given as (per value, the
    position of its text in the list; the distinct texts, in the order first met).

    A dict finds the distinct texts: pandas' factorize reads strings only up to a NUL, and
    Arrow copies every text (its memory pool keeps what it took).
    """
    cells = np.asarray(values, dtype=object)
    if pd.api.types.infer_dtype(cells, skipna=False) != "string":
        cells = pd.Series(cells, dtype=object).fillna("").astype(str).to_numpy(dtype=object)
    texts = cells.tolist()
    places = dict.fromkeys(texts, 0)
    for place, text in enumerate(places):
        places[text] = place
    return np.fromiter(map(places.__getitem__, texts), np.int64, len(texts)), list(places)


def filled_text(size: int, value: str) -> np.ndarray:
    """An object array of `value`, `size` long (one string shared, not one per row as
    `np.full` makes)."""
    filled = np.empty(size, dtype=object)
    filled.fill(value)
    return filled


def _stripped(column: pd.Series) -> pd.Series | None:
    """The column's text without surrounding blanks (each distinct value stripped once), or
    None when no value has any."""
    if all(value == value.strip() for value in dict.fromkeys(column.tolist())):
        return None
    codes, distinct = text_codes(column)
    stripped = [value.strip() for value in distinct]
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
    """`raw` (a frame this module made, so its index may be set) in REDCap's row order,
    indexed 0..n."""
    events = list(schema.event_labels) + sorted(
        set(raw["redcap_event_name"]) - set(schema.event_labels))
    forms = {form: i for i, form in enumerate([""] + schema.forms)}
    event = raw["redcap_event_name"].map({e: i for i, e in enumerate(events)})
    form = raw["redcap_repeat_instrument"].map(lambda f: forms.get(f, len(forms)))
    instance = pd.to_numeric(raw["redcap_repeat_instance"], errors="coerce").fillna(0)
    order = np.lexsort((instance.to_numpy(dtype=float), form.to_numpy(dtype=np.int64),
                        event.to_numpy(dtype=np.int64), natural_ranks(raw[schema.record_id])))
    if not np.array_equal(order, np.arange(len(order))):
        raw = raw.take(order)  # REDCap exports in this order already (§6.2): seldom a copy
    raw.index = pd.RangeIndex(len(raw))
    return raw


def form_columns(raw: pd.DataFrame, schema: CutSchema, form: str) -> list[str]:
    """The columns of `raw` that belong to `form`: the row's place (record, event, repeat
    instrument and instance), then the form's fields (a checkbox's columns) and its status."""
    record_id = schema.record_id
    fields = [f for f in schema.form_fields(form) if f.name != record_id]
    fields.append(form_status_field(form))
    wanted = [record_id, *KEY_COLUMNS] + [
        name for f in fields for name in ([c for c, _, _ in f.checkbox_columns()]
                                          if f.kind == "checkbox" else [f.name])]
    return list(dict.fromkeys(c for c in wanted if c in raw))


def rows_of_form(raw: pd.DataFrame, schema: CutSchema, form: str,
                 repeating: set[str], columns: list[str] | None = None) -> pd.DataFrame:
    """The raw rows where `form` holds data: a value, a checked box, or a saved form status
    (only `columns` of them, when given: a copy of every column costs more than the rest).

    A checkbox reads "0" and a form status "0" on rows REDCap pads, so neither counts (§6.2).
    """
    on_form = np.flatnonzero(
        raw["redcap_repeat_instrument"].to_numpy() == (form if form in repeating else ""))
    has_data = np.zeros(len(on_form), dtype=bool)
    for cut_field in schema.form_fields(form):
        if cut_field.name == schema.record_id:
            continue
        if cut_field.kind == "checkbox":
            for column, _, _ in cut_field.checkbox_columns():
                if column in raw:
                    has_data |= raw[column].to_numpy()[on_form] == "1"
        elif cut_field.name in raw:
            has_data |= raw[cut_field.name].to_numpy()[on_form] != ""
    status = f"{form}_complete"
    if status in raw:
        saved = raw[status].to_numpy()[on_form]
        has_data |= (saved == "1") | (saved == "2")
    chosen = on_form[has_data]
    if columns is None:
        return raw.iloc[chosen]
    return raw.iloc[chosen, [raw.columns.get_loc(c) for c in columns]]


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
    text = (rows[cut_field.name].to_numpy(dtype=object) if cut_field.name in rows
            else np.full(len(rows), "", dtype=object))
    values, bad, what = typed_array(text, cut_field)
    return pd.Series(values, index=rows.index), pd.Series(bad, index=rows.index), what


def typed_array(text: np.ndarray, cut_field: CutField) -> tuple[Any, np.ndarray, str]:
    """`typed_and_bad` of an array of raw strings, as (pandas array, bad mask, what)."""
    blank = text == ""
    missing = np.where(blank, None, text)
    kind = cut_field.kind
    if kind in ("date", "datetime"):
        fmt = "%Y-%m-%d" if kind == "date" else (
            "%Y-%m-%d %H:%M:%S" if "seconds" in cut_field.validation else "%Y-%m-%d %H:%M")
        dates = pd.to_datetime(missing, format=fmt, errors="coerce").array
        return dates, dates.isna() & ~blank, f"a {kind} ({fmt})"
    if kind in ("integer", "number") or (kind == "code" and cut_field.integer_codes):
        if "comma_decimal" in cut_field.validation:
            missing = np.array([None if v is None else v.replace(",", ".") for v in missing],
                               dtype=object)
        numbers = np.asarray(pd.to_numeric(missing, errors="coerce"), dtype=float)
        unknown = np.isnan(numbers)
        bad = unknown & ~blank
        if kind == "number":
            return pd.array(numbers, dtype="Float64"), bad, "a number"
        whole = unknown | (numbers == np.round(numbers))
        integers = pd.arrays.IntegerArray(
            np.where(whole & ~unknown, np.round(numbers), 0).astype(np.int64), ~whole | unknown)
        return integers, bad | ~whole, "an integer" if bad.sum() == 0 else "a number"
    return pd.array(missing, dtype="string"), np.zeros(len(text), dtype=bool), "text"


def typed_values(rows: pd.DataFrame, record_id: str, cut_field: CutField) -> pd.Series:
    """One field's raw strings as the dtype of its kind; raise naming the first bad value."""
    values, bad, what = typed_and_bad(rows, cut_field)
    if bad.any():
        raise _bad_value(rows, record_id, cut_field, bad, what)
    return values


def _typed_distinct(rows: pd.DataFrame, record_id: str,
                    cut_field: CutField) -> tuple[np.ndarray, Any]:
    """`typed_values` worked out once per distinct value: (per row, the place of its value;
    the distinct values typed, as a pandas array)."""
    codes, distinct = text_codes(rows[cut_field.name] if cut_field.name in rows
                                 else np.full(len(rows), "", dtype=object))
    values, bad, what = typed_array(np.array(distinct, dtype=object), cut_field)
    if bad.any():
        raise _bad_value(rows, record_id, cut_field, pd.Series(bad[codes], index=rows.index),
                         what)
    return codes, values


def _choice_labels(values: Any, cut_field: CutField) -> Any:
    """The label of each typed code (a pandas array), as a string array."""
    labels = dict(cut_field.choices)
    codes = values.to_numpy(dtype=object, na_value=None)
    return pd.array([None if code is None else labels.get(str(code)) for code in codes],
                    dtype="string")


def _add_checkbox(table: CutTable, columns: dict[str, object], rows: pd.DataFrame,
                  cut_field: CutField, shown: pd.Series) -> None:
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
        columns[column] = values.where(shown, pd.NA).array
        table.describe(column, "checkbox", f"{cut_field.label} (choice={label})"[:200])
        columns[f"{column}_state"] = (text.map(CHECKBOX_STATES).where(shown, NOT_APPLICABLE)
                                      .astype("string").array)
        table.describe(f"{column}_state", "string",
                       f"{cut_field.name} choice {code}: checked, unchecked or not applicable",
                       source=f"state of {column}; not applicable when branching logic hides "
                              f"{cut_field.name}")


def _add_field(table: CutTable, columns: dict[str, object], rows: pd.DataFrame, record_id: str,
               cut_field: CutField, codes: dict[str, pd.Series]) -> None:
    positions, values = _typed_distinct(rows, record_id, cut_field)
    kind: Kind = cut_field.kind
    if kind == "code":
        kind = "integer" if cut_field.integer_codes else "string"
    columns[cut_field.name] = values.take(positions)
    table.describe(cut_field.name, kind, cut_field.label)
    if cut_field.kind == "code":
        columns[f"{cut_field.name}_label"] = _choice_labels(values, cut_field).take(positions)
        table.describe(f"{cut_field.name}_label", "string", f"{cut_field.label} (label)"[:200],
                       source=f"choice label of {cut_field.name}")
    if cut_field.name in codes:
        columns[f"{cut_field.name}_missing_code"] = (
            codes[cut_field.name].reindex(rows.index).astype("string").array)
        table.describe(f"{cut_field.name}_missing_code", "string",
                       f"{cut_field.label} (missing-data code)"[:200],
                       source=f"REDCap missing-data code entered in {cut_field.name} (value blank)")


def instrument_table(raw: pd.DataFrame, schema: CutSchema, form: str, repeating: set[str],
                     applicable: Applicability,
                     codes: dict[str, pd.Series] | None = None) -> CutTable:
    """The typed table of one instrument: keys, then each field in dictionary order."""
    record_id = schema.record_id
    fields = [f for f in schema.form_fields(form) if f.name != record_id]
    fields.append(form_status_field(form))
    rows = rows_of_form(raw, schema, form, repeating, form_columns(raw, schema, form))
    table = CutTable(name=form, frame=pd.DataFrame())
    columns: dict[str, object] = {record_id: rows[record_id].astype("string").array}
    table.describe(record_id, "string", "Record ID")
    columns["redcap_event_name"] = rows["redcap_event_name"].astype("string").array
    table.describe("redcap_event_name", "string", "Event (unique name)")
    columns["redcap_repeat_instance"] = pd.to_numeric(rows["redcap_repeat_instance"].where(
        rows["redcap_repeat_instance"] != ""), errors="coerce").astype("Int64").array
    table.describe("redcap_repeat_instance", "integer", "Repeat instance")
    for cut_field in fields:
        if cut_field.kind == "checkbox":
            shown = (applicable(cut_field.branching).reindex(rows.index).fillna(True)
                     .astype(bool) if cut_field.branching
                     else pd.Series(True, index=rows.index))
            _add_checkbox(table, columns, rows, cut_field, shown)
        else:
            _add_field(table, columns, rows, record_id, cut_field, codes or {})
    table.frame = pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))
    return table


def repeating_forms(dictionary: object, raw: pd.DataFrame) -> set[str]:
    """Repeating instruments: the dictionary's `repeating` frame and those the export shows."""
    found = set(raw["redcap_repeat_instrument"]) - {""}
    repeating = getattr(dictionary, "repeating", None)
    if isinstance(repeating, pd.DataFrame) and "form_name" in repeating:
        found |= {str(f) for f in repeating["form_name"] if str(f)}
    return found
