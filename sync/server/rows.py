"""EAV values into REDCap's flat rows and back: row keys, column order, cell values (§6.2).

A row key is (record, event_id, repeat instrument, instance); base rows have instrument "" and
instance None, repeating-event rows instrument "" and a number.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from sync.crf.redcap_spec import (
    FORM_STATUS_CHOICES, TRUEFALSE_CHOICES, YESNO_CHOICES, checkbox_export_name, parse_choices,
)
from sync.server.store import Design

RowKey = tuple[str, int, str, "int | None"]
DAG_FIELD = "__GROUPID__"


def is_number(text: str) -> bool:
    """ASCII digits only: `str.isdigit` also accepts `²` and `⑴`, which `int` refuses."""
    return text.isascii() and text.isdigit()


def natural_key(record: str) -> list[Any]:
    """REDCap's `natcaseksort`: numbers by value, text case-insensitively (`1, 2, 10, a, B`)."""
    return [(0, int(p), "") if is_number(p) else (1, 0, p.lower())
            for p in re.split(r"(\d+)", record) if p != ""]


def form_of(design: Design, field_name: str) -> str:
    if field_name.endswith("_complete") and field_name[:-9] in design.form_names:
        return field_name[:-9]
    meta = design.by_name.get(field_name)
    return meta["form_name"] if meta else ""


def row_key(design: Design, record: str, event_id: int, field_name: str, instance: int) -> RowKey:
    """Where one stored value appears in a flat export."""
    form = form_of(design, field_name)
    if field_name != design.record_id_field and design.repeating_form(event_id, form):
        return (record, event_id, form, instance)
    if design.repeating_event(event_id):
        return (record, event_id, "", instance)
    return (record, event_id, "", None)


def choices_of(meta: dict[str, str]) -> list[tuple[str, str]]:
    kind = meta["field_type"]
    if kind == "yesno":
        return list(YESNO_CHOICES)
    if kind == "truefalse":
        return list(TRUEFALSE_CHOICES)
    if kind in ("radio", "dropdown", "checkbox", "sql"):
        return parse_choices(meta["select_choices_or_calculations"])
    return []


@dataclass(frozen=True)
class Column:
    """One export column: its name, the field behind it, and the checkbox code if any."""

    name: str
    field_name: str
    kind: str
    form: str
    code: str = ""


def data_columns(design: Design, wanted: set[str] | None) -> list[Column]:
    """Field columns in dictionary order, checkboxes expanded, `<form>_complete` after each form."""
    columns: list[Column] = []
    for i, meta in enumerate(design.fields):
        name, form, kind = meta["field_name"], meta["form_name"], meta["field_type"]
        if kind != "descriptive" and (wanted is None or name in wanted):
            if kind == "checkbox":
                columns += [Column(checkbox_export_name(name, code), name, kind, form, code)
                            for code, _ in choices_of(meta)]
            else:
                columns.append(Column(name, name, kind, form))
        last = i + 1 == len(design.fields) or design.fields[i + 1]["form_name"] != form
        status = f"{form}_complete"
        if last and (wanted is None or status in wanted):
            columns.append(Column(status, status, "form_status", form))
    return columns


def form_applies(design: Design, key: RowKey, form: str) -> bool:
    """Whether a form's checkbox and status cells are "0" (applies) or "" on this row."""
    _, event_id, instrument, _ = key
    if design.is_longitudinal and form not in design.forms_on_event(event_id):
        return False
    if instrument:
        return form == instrument
    return not design.repeating_form(event_id, form)


def gather(design: Design, data: Iterable[Any]) -> dict[RowKey, dict[str, list[str]]]:
    """Stored values grouped by flat row (where a field's values go on an event is worked out
    once per event and field, not per value: an export of every record reads millions)."""
    rows: dict[RowKey, dict[str, list[str]]] = {}
    places: dict[tuple[int, str], RowKey] = {}
    for d in data:
        event_id, field_name, instance = d["event_id"], d["field_name"], d["instance"]
        place = places.get((event_id, field_name))
        if place is None:
            place = places[(event_id, field_name)] = row_key(design, "", event_id, field_name, 0)
        key = (d["record"], event_id, place[2], None if place[3] is None else instance)
        rows.setdefault(key, {}).setdefault(field_name, []).append(d["value"])
    return rows


def gather_places(design: Design, places: Iterable[tuple[int, str, int, str, int]],
                  values: Iterable[Any]) -> dict[RowKey, dict[str, list[str]]]:
    """Flat rows from where values are stored (`Store.value_places`) and the values of just
    the wanted fields: the rows `gather` would give, holding only those fields."""
    rows: dict[RowKey, dict[str, list[str]]] = {}
    for event_id, record, instance, form, is_record_id in places:
        if is_record_id and instance > 1 and not design.repeating_event(event_id):
            continue  # `_stub_above_first`
        if not is_record_id and design.repeating_form(event_id, form):
            key: RowKey = (record, event_id, form, instance)
        elif design.repeating_event(event_id):
            key = (record, event_id, "", instance)
        else:
            key = (record, event_id, "", None)
        rows.setdefault(key, {})
    for key, cells in gather(design, [d for d in values if d["field_name"] != DAG_FIELD
                                      and not _stub_above_first(design, d)]).items():
        rows.setdefault(key, {}).update(cells)
    return rows


def ordered_keys(design: Design, keys: Iterable[RowKey]) -> list[RowKey]:
    event_order = {e.event_id: i for i, e in enumerate(design.events)}
    form_order = {f: i for i, f in enumerate(design.form_names)}
    return sorted(keys, key=lambda k: (natural_key(k[0]), event_order.get(k[1], 0),
                                       form_order.get(k[2], -1) if k[2] else -1, k[3] or 0))


def label_of(meta: dict[str, str], value: str) -> str:
    return dict(choices_of(meta)).get(value, value)


@dataclass(frozen=True)
class CellOptions:
    """How cells are written: Export Records' rawOrLabel, exportCheckboxLabel,
    exportBlankForGrayFormStatus, and the file names behind file fields' document ids."""

    labels: bool = False
    checkbox_labels: bool = False
    blank_gray_status: bool = False
    doc_names: dict[str, str] = field(default_factory=dict)


def _checkbox_cell(design: Design, key: RowKey, stored: list[str], column: Column,
                   options: CellOptions) -> str:
    if not form_applies(design, key, column.form):
        return ""
    checked = column.code in stored
    if options.labels and options.checkbox_labels:
        return label_of(design.by_name[column.field_name], column.code) if checked else ""
    if options.labels:
        return "Checked" if checked else "Unchecked"
    return "1" if checked else "0"


def cell(design: Design, key: RowKey, values: dict[str, list[str]], column: Column,
         options: CellOptions = CellOptions()) -> str:
    """The string in one cell of a flat export (§6.2 blank/"0" rules; file fields by name)."""
    stored = values.get(column.field_name, [])
    if column.kind == "file":
        return options.doc_names.get(stored[0], stored[0]) if stored else ""
    if column.kind == "checkbox":
        return _checkbox_cell(design, key, stored, column, options)
    if column.kind == "form_status":
        if not form_applies(design, key, column.form):
            return ""
        value = stored[0] if stored else ("" if options.blank_gray_status else "0")
        return dict(FORM_STATUS_CHOICES).get(value, value) if options.labels else value
    value = stored[0] if stored else ""
    if options.labels and value:
        return label_of(design.by_name[column.field_name], value)
    return value


def event_label(design: Design, event_id: int) -> str:
    event = next((e for e in design.events if e.event_id == event_id), None)
    if event is None:
        return ""
    if len({e.arm_num for e in design.events}) < 2:  # one arm: plain "Event 1" (PyCap doctest)
        return event.event_name
    arm = dict(design.arms).get(event.arm_num, "")
    return f"{event.event_name} (Arm {event.arm_num}: {arm})"


def unique_event(design: Design, event_id: int) -> str:
    return next((e.unique_event_name for e in design.events if e.event_id == event_id), "")


def all_forms_repeat(design: Design, event_id: int) -> bool:
    """An event whose every form repeats has no base row in a flat export (§2, getData)."""
    forms = design.forms_on_event(event_id)
    return design.is_longitudinal and bool(forms) and all(
        design.repeating_form(event_id, form) for form in forms)


def _stub_above_first(design: Design, d: Any) -> bool:
    """A record-id value stored at an instance above 1 outside a repeating event, which a flat
    export drops (§2)."""
    return (d["field_name"] == design.record_id_field and d["instance"] > 1
            and not design.repeating_event(d["event_id"]))


def flat_header(design: Design, columns: list[Column], with_dag: bool) -> list[str]:
    """Record ID, event, repeat and DAG columns, then the field columns (§6.2 column order)."""
    head = [design.record_id_field]
    if design.is_longitudinal:
        head.append("redcap_event_name")
    if design.has_repeating:
        head += ["redcap_repeat_instrument", "redcap_repeat_instance"]
    if with_dag:
        head.append("redcap_data_access_group")
    return head + [c.name for c in columns if c.name != design.record_id_field]


def flat_table(design: Design, data: list[Any], columns: list[Column], header: list[str],
               options: CellOptions = CellOptions(),
               grouped: dict[RowKey, dict[str, list[str]]] | None = None
               ) -> list[tuple[RowKey, dict[str, Any]]]:
    """Stored values as flat rows in REDCap's row order, each with its row key (`grouped`: the
    rows already gathered, `gather_places`)."""
    if grouped is None:
        grouped = gather(design, [d for d in data if d["field_name"] != DAG_FIELD
                                  and not _stub_above_first(design, d)])
    dags = {d["record"]: d["value"] for d in data if d["field_name"] == DAG_FIELD}
    forms = dict(design.instruments)
    out = []
    for key in ordered_keys(design, grouped):
        if not key[2] and key[3] is None and all_forms_repeat(design, key[1]):
            continue
        row: dict[str, Any] = {design.record_id_field: key[0],
                               "redcap_data_access_group": dags.get(key[0], "")}
        row["redcap_event_name"] = (event_label(design, key[1]) if options.labels
                                    else unique_event(design, key[1]))
        row["redcap_repeat_instrument"] = (forms.get(key[2], key[2]) if options.labels
                                           else key[2])
        row["redcap_repeat_instance"] = key[3] if key[3] is not None else ""
        for column in columns:
            if column.name != design.record_id_field:
                row[column.name] = cell(design, key, grouped[key], column, options)
        out.append((key, {h: row.get(h, "") for h in header}))
    return out
