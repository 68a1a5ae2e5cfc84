"""The dictionary as the cut needs it: one `CutField` per field, with its kind, unit and choices.

Reads only the dictionary's `.metadata` frame (REDCap's Export Metadata columns), so the cut
works the same on `sync.crf.dictionary.Dictionary` and on any object carrying such a frame.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import pandas as pd

from sync.errors import EcrfError
from sync.crf.redcap_spec import (
    FORM_STATUS_CHOICES, TRUEFALSE_CHOICES, YESNO_CHOICES, canonical_validation,
    checkbox_export_name, parse_choices,
)

Kind = Literal["string", "integer", "number", "date", "datetime", "time", "code", "checkbox"]

SYNC_ELIGIBILITY_FIELDS: frozenset[str] = frozenset(
    [f"inc{i}" for i in range(1, 5)] + [f"exc{i}" for i in range(1, 10)]
    + ["elig_calc", "elig_fail", "elig_missing", "age"])
"""Fields the sync writes from the contract's eligibility decision table."""

QUERY_FORM = "dq_query"
STATUS_LABELS: dict[str, str] = {"1": "Open", "2": "Answered", "3": "Closed", "4": "Resolved"}
_UNIT_IN_LABEL = re.compile(r"\(([^()\s]{1,15}(?: [^()\s]{1,8})?)\)\s*$")
_UNIT_IN_ANNOTATION = re.compile(r"\b[A-Z]{2}ORRESU=([^;\n@]+)")
_SDTM_NOTE = re.compile(r"SDTM:\s*([^\n@]+)", re.IGNORECASE)


class CutError(EcrfError):
    """The data cut cannot be written: bad input, a value that does not type, or a full folder."""

    exit_code = 2


@dataclass(frozen=True)
class CutField:
    """One dictionary field as the cut types, labels and documents it."""

    name: str
    form: str
    field_type: str
    validation: str
    label: str
    note: str
    choices: tuple[tuple[str, str], ...]
    identifier: bool
    branching: str
    annotation: str
    calculation: str

    @property
    def kind(self) -> Kind:
        """The cut's storage kind, from the field type and its text validation."""
        if self.field_type in ("radio", "dropdown", "yesno", "truefalse", "sql"):
            return "code"
        if self.field_type == "checkbox":
            return "checkbox"
        if self.field_type == "calc":
            return "number"
        if self.field_type == "slider":
            return "integer"
        return _validation_kind(self.validation) if self.field_type == "text" else "string"

    @property
    def integer_codes(self) -> bool:
        """True when every choice code is an integer, so the codes are stored as numbers."""
        return bool(self.choices) and all(re.fullmatch(r"-?\d+", c) for c, _ in self.choices)

    @property
    def unit(self) -> str:
        """The unit: the annotation's `--ORRESU=`, a trailing `(unit)` in the label, or the note.

        A note counts only when its first `;` part is one word (`mmHg; if kPa ...`), since notes
        mostly carry instructions, not units.
        """
        if self.kind in ("date", "datetime", "time", "code", "checkbox", "string"):
            return ""
        match = _UNIT_IN_ANNOTATION.search(self.annotation)
        if match:
            return match.group(1).strip()
        match = _UNIT_IN_LABEL.search(self.label)
        if match:
            return match.group(1).strip()
        first = self.note.split(";")[0].strip()
        return first if first and len(first) <= 12 and " " not in first else ""

    @property
    def sdtm(self) -> str:
        """The `SDTM: ...` target written in the field annotation, blank if none."""
        match = _SDTM_NOTE.search(self.annotation)
        return match.group(1).strip() if match else ""

    def checkbox_columns(self) -> list[tuple[str, str, str]]:
        """(export column, code, label) per choice, in choice order."""
        return [(checkbox_export_name(self.name, c), c, lab) for c, lab in self.choices]


def _validation_kind(validation: str) -> Kind:
    if validation.startswith("datetime"):
        return "datetime"
    if validation.startswith("date"):
        return "date"
    if validation.startswith("time"):
        return "time"
    if validation == "integer":
        return "integer"
    if validation.startswith("number"):
        return "number"
    return "string"


def _cell(row: pd.Series, key: str) -> str:
    value = row.get(key, "")
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _field_from_row(row: pd.Series) -> CutField:
    field_type = _cell(row, "field_type").strip().lower()
    raw_choices = _cell(row, "select_choices_or_calculations")
    if field_type == "yesno":
        choices: tuple[tuple[str, str], ...] = YESNO_CHOICES
    elif field_type == "truefalse":
        choices = TRUEFALSE_CHOICES
    elif field_type in ("radio", "dropdown", "checkbox"):
        choices = tuple(parse_choices(raw_choices))
    else:
        choices = ()
    return CutField(
        name=_cell(row, "field_name").strip(), form=_cell(row, "form_name").strip(),
        field_type=field_type,
        validation=canonical_validation(_cell(row, "text_validation_type_or_show_slider_number")),
        label=_cell(row, "field_label").strip(), note=_cell(row, "field_note").strip(),
        choices=choices, identifier=_cell(row, "identifier").strip().lower() == "y",
        branching=_cell(row, "branching_logic").strip(),
        annotation=_cell(row, "field_annotation"),
        calculation=raw_choices.strip() if field_type == "calc" else "")


@dataclass(frozen=True)
class CutSchema:
    """The fields of the project in dictionary order, with lookups the cut needs."""

    fields: tuple[CutField, ...]
    event_labels: dict[str, str]

    @property
    def record_id(self) -> str:
        """The record-ID field: REDCap's first field."""
        return self.fields[0].name

    @property
    def forms(self) -> list[str]:
        """Instrument names in dictionary order."""
        return list(dict.fromkeys(f.form for f in self.fields))

    def form_fields(self, form: str) -> list[CutField]:
        """The data-bearing fields of one instrument (descriptive fields left out)."""
        return [f for f in self.fields if f.form == form and f.field_type != "descriptive"]

    def field(self, name: str) -> CutField | None:
        """The field called `name`, or None."""
        return self._by_name.get(name)

    def form_of(self, name: str) -> str:
        """The instrument of a field, or of a `<form>_complete` column; blank if unknown."""
        found = self._by_name.get(name)
        if found is not None:
            return found.form
        if name.endswith("_complete") and name[: -len("_complete")] in self.forms:
            return name[: -len("_complete")]
        return ""

    @property
    def identifier_fields(self) -> list[str]:
        """Fields flagged `Identifier? = y`."""
        return [f.name for f in self.fields if f.identifier]

    @cached_property
    def _by_name(self) -> dict[str, CutField]:
        return {f.name: f for f in self.fields}


def form_status_field(form: str) -> CutField:
    """The `<form>_complete` field REDCap adds after each instrument's last field."""
    return CutField(name=f"{form}_complete", form=form, field_type="radio", validation="",
                    label="Form status", note="", choices=FORM_STATUS_CHOICES,
                    identifier=False, branching="", annotation="", calculation="")


def schema_of(dictionary: Any) -> CutSchema:
    """Build the cut's view of a dictionary from its `.metadata` (and `.events`, if present)."""
    metadata = getattr(dictionary, "metadata", None)
    if not isinstance(metadata, pd.DataFrame) or metadata.empty:
        raise CutError("the dictionary has no metadata rows: cannot type or document the cut")
    if "field_name" not in metadata.columns or "form_name" not in metadata.columns:
        raise CutError("the dictionary metadata lacks field_name/form_name columns")
    fields = tuple(_field_from_row(row) for _, row in metadata.iterrows())
    return CutSchema(fields=fields, event_labels=_event_labels(getattr(dictionary, "events", None)))


def _event_labels(events: Any) -> dict[str, str]:
    if not isinstance(events, pd.DataFrame) or events.empty:
        return {}
    name_col = next((c for c in ("unique_event_name", "event_unique_name") if c in events), None)
    if name_col is None or "event_name" not in events:
        return {}
    return dict(zip(events[name_col].astype(str), events["event_name"].astype(str)))
