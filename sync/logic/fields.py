"""What a field reference reads: the dictionary's typing of fields, and which export row holds it.

Typing follows REDCap's `addChkNull` (§1.5): numeric-typed fields are read through `chkNull`
(blank -> NaN), everything else as the raw string. Rows follow the flat export (§6.2): one
row per record x event x (repeating instrument, instance). Cross-event refs `[event][field]`
read the other event's row of the same record; on repeating data an unsuffixed ref reads the
current instance (§1.4; best effort, the rules there are REDCap's intricate ones).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from sync.logic import ast
from sync.crf.redcap_spec import (FORM_STATUS_CHOICES, NUMERIC_DATA_TYPES, TRUEFALSE_CHOICES,
                              VALIDATION_TYPES, YESNO_CHOICES, canonical_validation,
                              checkbox_export_name, parse_choices)

EVENT_COLUMN = "redcap_event_name"
INSTRUMENT_COLUMN = "redcap_repeat_instrument"
INSTANCE_COLUMN = "redcap_repeat_instance"
DAG_COLUMN = "redcap_data_access_group"

_ALWAYS_NUMERIC_TYPES = frozenset({"calc", "slider", "yesno", "truefalse", "file"})
_CHOICE_TYPES = frozenset({"radio", "dropdown", "select", "checkbox", "sql", "advcheckbox"})
_REDCAP_NUMBER = re.compile(r"\s*[+-]?(0|[1-9]\d*)?(\.\d+)?([eE][+-]?\d+)?\s*", re.ASCII)


@dataclass(frozen=True)
class FieldInfo:
    """How logic sees one field: its form, type, whether `chkNull` wraps it, its codes."""

    name: str
    form: str
    field_type: str
    validation: str = ""
    numeric: bool = False
    comma_decimal: bool = False
    codes: tuple[str, ...] = ()
    date_format: str = ""


_CODE = re.compile(r"[A-Za-z0-9._-]+")
_CATALOGUE_KEYS = ("field_name", "form_name", "field_type", "select_choices_or_calculations",
                   "text_validation_type_or_show_slider_number")


def missing_codes(setting: str | Iterable[str]) -> tuple[str, ...]:
    """The codes of a project's "Missing Data Codes" setting.

    Accepts the setting as REDCap exports it (`UNK, Unknown | NA, Not applicable`, or one
    `CODE, Label` per line), a bare comma list of codes (`UNK,NA`), or the codes themselves.
    """
    if not isinstance(setting, str):
        return tuple(str(code).strip() for code in setting if str(code).strip())
    text = setting.replace("\r", "")
    pieces = [piece.strip() for piece in text.split(",")]
    if "|" not in text and "\n" not in text and len(pieces) > 1 and all(
            _CODE.fullmatch(piece) for piece in pieces):
        return tuple(pieces)
    return tuple(code for code, _ in parse_choices(text))


def redcap_isnumber(text: str) -> bool:
    """REDCap's `isnumber()`: PHP numeric and no leading zeros (`007`, `-01` are not numbers)."""
    stripped = text.strip(" \t\n\r\v\f\0")
    match = _REDCAP_NUMBER.fullmatch(stripped)
    return bool(match and stripped and (match.group(1) or match.group(2)))


def field_catalogue(metadata: pd.DataFrame, codes: tuple[str, ...] = ()) -> dict[str, FieldInfo]:
    """Every field logic may name, `<form>_complete` included, keyed by field name."""
    columns = [[_cell(value) for value in metadata[key].tolist()] if key in metadata else
               [""] * len(metadata) for key in _CATALOGUE_KEYS]
    return dict(_catalogue(tuple(zip(*columns)), tuple(codes)))


@functools.lru_cache(maxsize=8)
def _catalogue(table: tuple[tuple[str, ...], ...], codes: tuple[str, ...]
               ) -> dict[str, FieldInfo]:
    """The catalogue of a metadata table, built once per dictionary: every rule of a run
    evaluates its logic with the same fields."""
    rows = [dict(zip(_CATALOGUE_KEYS, values)) for values in table]
    catalogue: dict[str, FieldInfo] = {}
    for row in rows:
        info = _field_info(row, codes)
        catalogue[info.name] = info
    for form in dict.fromkeys(row["form_name"] for row in rows):
        status = f"{form}_complete"
        catalogue.setdefault(status, FieldInfo(
            status, form, "dropdown", numeric=_all_numbers(FORM_STATUS_CHOICES, codes),
            codes=tuple(code for code, _ in FORM_STATUS_CHOICES)))
    return catalogue


def _cell(value: object) -> str:
    return "" if value is None or value != value else str(value)


def _field_info(row: dict[str, str], codes: tuple[str, ...]) -> FieldInfo:
    field_type = row["field_type"].strip().lower()
    validation = canonical_validation(row["text_validation_type_or_show_slider_number"])
    data_type = VALIDATION_TYPES[validation].data_type if validation in VALIDATION_TYPES else ""
    choices = {"yesno": YESNO_CHOICES, "truefalse": TRUEFALSE_CHOICES}.get(field_type) or (
        tuple(parse_choices(row["select_choices_or_calculations"]))
        if field_type in _CHOICE_TYPES else ())
    numeric = (field_type in _ALWAYS_NUMERIC_TYPES
               or (field_type == "text" and data_type in NUMERIC_DATA_TYPES)
               or (field_type in _CHOICE_TYPES and _all_numbers(choices, codes)))
    dated = data_type.startswith(("date", "datetime"))
    date_format = validation.rsplit("_", 1)[-1] if dated else ""
    return FieldInfo(row["field_name"].strip(), row["form_name"].strip(), field_type, validation,
                     numeric, data_type == "number_comma_decimal",
                     tuple(code for code, _ in choices), date_format)


def _all_numbers(choices, codes: tuple[str, ...]) -> bool:
    return all(redcap_isnumber(code) for code in (*codes, *(code for code, _ in choices)))


class FrameLayout:
    """Where each row of a raw flat export sits, and the raw text a field reference reads."""

    def __init__(self, frame: pd.DataFrame, record_column: str,
                 events: list[str] | None = None) -> None:
        self.frame = frame
        self.n = len(frame)
        self.record_column = record_column
        self.longitudinal = EVENT_COLUMN in frame
        self.has_repeats = INSTANCE_COLUMN in frame and bool((self.instance != "").any())
        self._events = list(events) if events else None
        self._row_of: dict[tuple[str, str, str, str], int] | None = None
        self._targets: dict[tuple[str | None, str | None, str], np.ndarray] = {}
        self._extent: dict[tuple[str, str, str], tuple[int, int]] | None = None

    @cached_property
    def record(self) -> np.ndarray:
        """The record name of each row."""
        column = self.record_column
        return _text(self.frame[column]) if column in self.frame else _blank(self.n)

    @cached_property
    def event(self) -> np.ndarray:
        """The unique event name of each row ('' in a classic project)."""
        return _text(self.frame[EVENT_COLUMN]) if self.longitudinal else _blank(self.n)

    @cached_property
    def instrument(self) -> np.ndarray:
        """`redcap_repeat_instrument` of each row."""
        present = INSTRUMENT_COLUMN in self.frame
        return _text(self.frame[INSTRUMENT_COLUMN]) if present else _blank(self.n)

    @cached_property
    def instance(self) -> np.ndarray:
        """`redcap_repeat_instance` of each row, as text ('' on base rows)."""
        present = INSTANCE_COLUMN in self.frame
        return _instance_text(self.frame[INSTANCE_COLUMN]) if present else _blank(self.n)

    @cached_property
    def events(self) -> list[str]:
        """Unique event names in order (as given, else as they first appear)."""
        return self._events or list(dict.fromkeys(self.event.tolist()))

    @cached_property
    def repeating_forms(self) -> set[str]:
        """Forms that appear as repeating instruments."""
        return set(self.instrument[self.instrument != ""].tolist())

    @cached_property
    def repeating_events(self) -> set[str]:
        """Events whose rows repeat as a whole (blank instrument, an instance number)."""
        return set(self.event[(self.instrument == "") & (self.instance != "")].tolist())

    @cached_property
    def current(self) -> np.ndarray:
        """The current instance of each row: its instance, 1 on base rows."""
        return np.where(self.instance == "", "1", self.instance).astype(object)

    def known_event(self, event: str) -> bool:
        """True when `event` names an event of the project (as far as the frame tells)."""
        return not self.longitudinal or event in self.events or event.endswith("event-name")

    def raw(self, ref: ast.FieldRef, info: FieldInfo, column: str) -> np.ndarray:
        """The stored text `ref` reads on every row ('' where no such row exists)."""
        source = _text(self.frame[column]) if column in self.frame else _blank(self.n)
        if self._reads_own_row(ref, info):
            return source
        target = self._target_rows(ref, info)
        values = np.where(target >= 0, source[np.maximum(target, 0)], "").astype(object)
        if info.field_type == "checkbox":
            values[values == ""] = "0"
        return values

    def _reads_own_row(self, ref: ast.FieldRef, info: FieldInfo) -> bool:
        same_event = ref.event in (None, "event-name") or not self.longitudinal
        return same_event and ref.instance is None and not self.has_repeats

    def _target_rows(self, ref: ast.FieldRef, info: FieldInfo) -> np.ndarray:
        """The row each row reads `ref` from (-1: none); found once per event, instance and
        form, since every field of a form sits on the same rows."""
        key = (ref.event, ref.instance, info.form)
        if key not in self._targets:
            self._targets[key] = self._find_target_rows(ref, info)
        return self._targets[key]

    def _find_target_rows(self, ref: ast.FieldRef, info: FieldInfo) -> np.ndarray:
        if self._row_of is None:
            keys = zip(self.record, self.event, self.instrument, self.instance)
            self._row_of = {key: i for i, key in enumerate(keys)}
        events = self._target_events(ref.event)
        repeating_form = info.form in self.repeating_forms
        instrument = info.form if repeating_form else ""
        rows = np.full(self.n, -1, dtype=np.int64)
        own = self._own_rows(ref, info)
        rows[own] = np.flatnonzero(own)
        row_of, record, repeating_events = self._row_of, self.record.tolist(), self.repeating_events
        for i in np.flatnonzero(~own).tolist():
            event = events[i]
            if event is None:
                continue
            repeats = repeating_form or event in repeating_events
            instance = self._instance(ref.instance, i, event, instrument) if repeats else ""
            if instance is not None:
                rows[i] = row_of.get((record[i], event, instrument, instance), -1)
        return rows

    def _own_rows(self, ref: ast.FieldRef, info: FieldInfo) -> np.ndarray:
        """Rows where an unsuffixed ref to the current event reads the row itself."""
        elsewhere = self.longitudinal and ref.event not in (None, "event-name")
        if ref.instance is not None or elsewhere:
            return np.zeros(self.n, dtype=bool)
        if info.form in self.repeating_forms:
            return self.instrument == info.form
        repeating_event = np.isin(self.event, list(self.repeating_events))
        base = self.instrument == ""
        return base & np.where(repeating_event, self.instance != "", self.instance == "")

    def _target_events(self, event: str | None) -> list[str | None]:
        if event in (None, "event-name") or not self.longitudinal:
            return list(self.event)
        if not event.endswith("event-name"):
            return [event] * self.n
        if event == "first-event-name":
            return [self.events[0] if self.events else None] * self.n
        if event == "last-event-name":
            return [self.events[-1] if self.events else None] * self.n
        step = -1 if event == "previous-event-name" else 1
        order = {name: i for i, name in enumerate(self.events)}
        return [_at(self.events, order.get(name, -2) + step) for name in self.event]

    def _instance(self, suffix: str | None, row: int, event: str, instrument: str) -> str | None:
        current = int(self.current[row])
        if suffix is None or suffix == "current-instance":
            return str(current)
        if suffix.isascii() and suffix.isdigit():
            return suffix
        if suffix in ("previous-instance", "next-instance"):
            wanted = current - 1 if suffix == "previous-instance" else current + 1
            return str(wanted) if wanted >= 1 else None
        low, high = self.extent(self.record[row], event, instrument)
        return str(low if suffix == "first-instance" else high) if high else None

    def extent(self, record: str, event: str, instrument: str) -> tuple[int, int]:
        """Lowest and highest stored instance of a record's event (and repeating instrument)."""
        if self._extent is None:
            self._extent = {}
            for rec, ev, ins, inst in zip(self.record, self.event, self.instrument, self.instance):
                if inst:
                    low, high = self._extent.get((rec, ev, ins), (int(inst), int(inst)))
                    self._extent[(rec, ev, ins)] = (min(low, int(inst)), max(high, int(inst)))
        return self._extent.get((record, event, instrument), (0, 0))

    def smart(self, name: str, project_id: str = "", user_name: str = "") -> np.ndarray:
        """The per-row text of a smart variable, as REDCap pipes it into logic (§1.4)."""
        if name == "record-name":
            return self.record
        if name.endswith("event-name"):
            ref = ast.FieldRef("x", event=name)
            return np.array([e or "" for e in self._target_events(ref.event)], dtype=object)
        if name in ("event-number", "arm-number"):
            return np.array([_event_number(name, e, self.events) for e in self.event], dtype=object)
        if name.endswith("-instance"):
            return self._smart_instance(name)
        if name == "record-dag-name" and DAG_COLUMN in self.frame:
            return _text(self.frame[DAG_COLUMN])
        fixed = {"project-id": project_id, "user-name": user_name}.get(name, "")
        return np.full(self.n, fixed, dtype=object)

    def _smart_instance(self, name: str) -> np.ndarray:
        out = []
        for i in range(self.n):
            value = self._instance(name, i, self.event[i], self.instrument[i])
            out.append(value or "")
        return np.array(out, dtype=object)


def record_column(frame: pd.DataFrame, metadata: pd.DataFrame) -> str:
    """The record ID column: the dictionary's first field, else the frame's first column."""
    first = str(metadata["field_name"].iloc[0]) if len(metadata) else ""
    if first in frame.columns:
        return first
    return str(frame.columns[0]) if len(frame.columns) else ""


def _event_number(name: str, event: str, events: list[str]) -> str:
    if name == "arm-number":
        match = re.search(r"_arm_(\d+)$", event, re.ASCII)
        return match.group(1) if match else "1"
    return str(events.index(event) + 1) if event in events else ""


def _at(items: list[str], index: int) -> str | None:
    return items[index] if 0 <= index < len(items) else None


def _blank(n: int) -> np.ndarray:
    return np.full(n, "", dtype=object)


def _text(column: pd.Series) -> np.ndarray:
    """A column as an object array of str, blanks (NaN/None) as ''."""
    values = column.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) in ("string", "empty"):
        return values
    codes, uniques = pd.factorize(values)
    texts = np.array([str(value) for value in uniques] + [""], dtype=object)
    return texts.take(codes)


def _instance_text(column: pd.Series) -> np.ndarray:
    """`redcap_repeat_instance` as text: JSON numbers (`1`, `1.0`) and strings alike."""
    codes, uniques = pd.factorize(column.to_numpy(dtype=object))
    texts = [_one_instance(value) for value in uniques] + [""]
    return np.array(texts, dtype=object).take(codes)


def _one_instance(value: object) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return "" if value != value else str(int(value))
    return str(value).strip()


def checkbox_column(info: FieldInfo, code: str) -> str:
    """The export column of `[field(code)]`."""
    return checkbox_export_name(info.name, code)


def reference_problem(ref: ast.FieldRef, catalogue: dict[str, FieldInfo],
                      layout: FrameLayout, codes: tuple[str, ...]) -> str:
    """Why `ref` makes REDCap fail the whole logic (§1.4), or '' when it is readable."""
    info = catalogue.get(ref.field)
    if info is None:
        return f"unknown field [{ref.field}]"
    if ref.code is None and info.field_type == "checkbox":
        return f"checkbox [{ref.field}] used without a choice code"
    if ref.code is not None and (info.field_type != "checkbox"
                                 or ref.code not in (*info.codes, *codes)):
        return f"[{ref.field}({ref.code})] is not a choice of a checkbox"
    if ref.event and not layout.known_event(ref.event):
        return f"unknown event [{ref.event}]"
    return ""


def reference_problems(node: ast.Node, metadata: pd.DataFrame, *,
                       events: list[str] | None = None,
                       missing_data_codes: str | Iterable[str] = ""
                       ) -> list[tuple[ast.FieldRef, str]]:
    """Every reference of `node` that REDCap could not read, with the reason (for checkers).

    Unknown fields, checkboxes without a code, codes that are not choices, and (when `events`
    is given) unknown event names; each of them makes REDCap evaluate the logic as false.
    """
    codes = missing_codes(missing_data_codes)
    catalogue = field_catalogue(metadata, codes)
    layout = FrameLayout(pd.DataFrame({EVENT_COLUMN: list(events or [])}), "", events)
    if events is None:
        layout.longitudinal = False
    found = []
    for ref in ast.referenced_fields(node):
        problem = reference_problem(ref, catalogue, layout, codes)
        if problem:
            found.append((ref, problem))
    return found
