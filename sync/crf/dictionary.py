"""The project's data dictionary and `redcap/` files as one read-only model, `Dictionary`.

Every stage asks the dictionary what a field is (form, type, validation, choices), which forms an
event holds, and which columns REDCap's flat export has, so that no stage re-reads the CSV or
re-derives REDCap's rules. The same model is built from the files or from PyCap's exports.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from sync.errors import DictionaryError
from sync.crf.redcap_spec import (
    DD_HEADERS, FORM_STATUS_CHOICES, LEGACY_FIELD_TYPES, METADATA_KEYS, TRUEFALSE_CHOICES,
    YESNO_CHOICES, canonical_validation, checkbox_export_name, parse_choices,
)

__all__ = [
    "ARM_COLUMNS", "Dictionary", "EVENT_COLUMNS", "MAPPING_COLUMNS", "REPEATING_COLUMNS",
    "load_dictionary", "normalise_metadata", "read_csv_rows", "read_csv_table",
    "read_project_info", "where",
]

EVENT_COLUMNS: tuple[str, ...] = (
    "event_name", "arm_num", "unique_event_name", "custom_event_label", "day_offset",
    "offset_min", "offset_max")
ARM_COLUMNS: tuple[str, ...] = ("arm_num", "name")
MAPPING_COLUMNS: tuple[str, ...] = ("arm_num", "unique_event_name", "form")
REPEATING_COLUMNS: tuple[str, ...] = ("event_name", "form_name", "custom_form_label")

REDCAP_FILES: dict[str, tuple[str, ...]] = {
    "events.csv": EVENT_COLUMNS, "arms.csv": ARM_COLUMNS,
    "instrument_event_mapping.csv": MAPPING_COLUMNS, "repeating_instruments.csv": REPEATING_COLUMNS,
}
"""The `redcap/` files the model reads, each with the columns it needs (REDCap's import formats)."""

_READONLY = re.compile(r"@READONLY(?:-FORM)?(?![-\w])")
_NO_MISSING = re.compile(r"@NOMISSING(?![-\w])")
_NO_DATA_TYPES = frozenset({"descriptive"})


def where(file: str | Path, row: int | None = None, column: str | None = None) -> str:
    """`file:row: column "X"` prefix used by every dictionary message (row 1 = the header)."""
    text = Path(file).name if isinstance(file, Path) else file
    if row is not None:
        text += f":{row}"
    if column is not None:
        text += f': column "{column}"'
    return text


def read_csv_rows(path: Path) -> list[list[str]]:
    """Every CSV record of `path` as cells (UTF-8, BOM allowed); record 0 is the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return list(csv.reader(handle))
    except FileNotFoundError:
        raise DictionaryError(f"{where(path)}: file not found ({path})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DictionaryError(f"{where(path)}: cannot be read as UTF-8 CSV: {exc}") from None


def read_csv_table(path: Path, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read a CSV as strings ("" blank), indexed by row as a spreadsheet shows it (header = 1).

    Blank rows are skipped; short rows are padded. Raises when a required column is missing.
    """
    rows = read_csv_rows(path)
    if not rows:
        raise DictionaryError(f"{where(path)}:1: the file is empty; expected a header row")
    header = [name.strip() for name in rows[0]]
    for name in required:
        if name not in header:
            raise DictionaryError(f'{where(path, 1)}: missing column "{name}"')
    kept = [(number, row) for number, row in enumerate(rows[1:], start=2)
            if any(cell.strip() for cell in row)]
    body = [(row + [""] * len(header))[:len(header)] for _, row in kept]
    return pd.DataFrame(body, columns=header, index=[number for number, _ in kept], dtype=object)


def _text(value: object) -> str:
    """An API value as the CSV files write it: None blank, 3.0 as "3"."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _records(rows: Iterable[Mapping[str, object]], columns: Sequence[str]) -> pd.DataFrame:
    """Frame of `columns` from API rows: every value a string, missing or None as ""."""
    body = [[_text(row.get(c)) for c in columns] for row in rows]
    return pd.DataFrame(body, columns=list(columns), dtype=object)


def normalise_metadata(metadata: pd.DataFrame) -> pd.DataFrame:
    """Metadata as REDCap stores it: legacy field types and validation names folded (§4.1, §4.4)."""
    frame = metadata.loc[:, list(METADATA_KEYS)].fillna("").astype(str).reset_index(drop=True)
    for key in METADATA_KEYS:
        frame[key] = frame[key].str.strip() if key != "field_label" else frame[key]
    types = frame["field_type"].str.lower()
    frame["field_type"] = types.map(lambda t: LEGACY_FIELD_TYPES.get(t, t))
    validation = frame["text_validation_type_or_show_slider_number"]
    frame["text_validation_type_or_show_slider_number"] = validation.map(
        lambda v: canonical_validation(v) if v else "")
    return frame


def read_project_info(path: Path) -> dict[str, str]:
    """`project.csv`: REDCap's project-info CSV (header + one row) or two columns key,value."""
    if not path.exists():
        return {}
    table = read_csv_table(path)
    columns = list(table.columns)
    if len(columns) == 2 and columns[0].lower() in {"key", "name", "attribute", "setting"}:
        return {str(k): str(v) for k, v in zip(table.iloc[:, 0], table.iloc[:, 1])}
    if len(table) != 1:
        raise DictionaryError(
            f"{where(path, 2)}: expected one row of project settings under the header, "
            f"found {len(table)}")
    return {str(k): str(v) for k, v in table.iloc[0].items()}


def load_dictionary(dictionary_path: Path = Path("data_dictionary.csv"),
                    redcap_dir: Path = Path("redcap")) -> Dictionary:
    """Read `data_dictionary.csv` and the `redcap/` files into a `Dictionary`.

    A project without `redcap/events.csv` is classic (not longitudinal). Raises
    `DictionaryError` naming the file, row and column of the first thing that cannot be read;
    `ecrf check` (sync.crf.check) lists every problem instead.

    Examples:
        >>> dictionary = load_dictionary(Path("data_dictionary.csv"), Path("redcap"))
        >>> dictionary.form_of("icdat")
        'informed_consent'
    """
    table = read_csv_table(dictionary_path)
    headers = list(table.columns)
    if tuple(headers) != DD_HEADERS:
        raise DictionaryError(_header_message(dictionary_path, headers))
    metadata = table.set_axis(list(METADATA_KEYS), axis=1)
    frames = {}
    for name, columns in REDCAP_FILES.items():
        path = redcap_dir / name
        frames[name] = (read_csv_table(path, columns).loc[:, list(columns)].reset_index(drop=True)
                        if path.exists()
                        else pd.DataFrame(columns=list(columns), dtype=object))
    return Dictionary(
        metadata=normalise_metadata(metadata), events=frames["events.csv"],
        arms=frames["arms.csv"], mapping=frames["instrument_event_mapping.csv"],
        repeating=frames["repeating_instruments.csv"],
        project=read_project_info(redcap_dir / "project.csv"))


def _header_message(path: Path, headers: list[str]) -> str:
    """Name the first header that differs from REDCap's 18, or the count when that is the fault."""
    for position, (found, wanted) in enumerate(zip(headers, DD_HEADERS), start=1):
        if found != wanted:
            return (f'{where(path, 1)}: column {position} is "{found}", expected "{wanted}" '
                    f"(a data dictionary has REDCap's 18 headers in order)")
    return (f"{where(path, 1)}: {len(headers)} columns, expected REDCap's 18 headers "
            f'("{DD_HEADERS[0]}" ... "{DD_HEADERS[-1]}")')


@dataclass(frozen=True, eq=False)
class Dictionary:
    """The data dictionary and project structure, as REDCap's exports describe them.

    `metadata` has the API's Export Metadata columns (strings, "" blank) in dictionary order;
    `events`, `arms`, `mapping`, `repeating` follow REDCap's import formats for those objects.
    """

    metadata: pd.DataFrame
    events: pd.DataFrame
    arms: pd.DataFrame
    mapping: pd.DataFrame
    repeating: pd.DataFrame
    project: dict[str, str]

    @classmethod
    def from_api(cls, metadata_rows: Iterable[Mapping[str, object]],
                 events_rows: Iterable[Mapping[str, object]] = (),
                 mapping_rows: Iterable[Mapping[str, object]] = (),
                 repeating_rows: Iterable[Mapping[str, object]] = (),
                 project_info: Mapping[str, object] | None = None,
                 arms_rows: Iterable[Mapping[str, object]] = ()) -> Dictionary:
        """Build the model from PyCap's JSON exports (metadata, events, mappings, repeating, project).

        Examples:
            >>> Dictionary.from_api(project.export_metadata(), project.export_events(),
            ...                     project.export_instrument_event_mappings(),
            ...                     project.export_repeating_instruments_events(),
            ...                     project.export_project_info())
        """
        events = _records(events_rows, EVENT_COLUMNS)
        arms = _records(arms_rows, ARM_COLUMNS)
        if arms.empty and not events.empty:
            numbers = list(dict.fromkeys(events["arm_num"]))
            arms = pd.DataFrame({"arm_num": numbers, "name": [f"Arm {n}" for n in numbers]},
                                dtype=object)
        info = {str(k): "" if v is None else str(v) for k, v in (project_info or {}).items()}
        return cls(metadata=normalise_metadata(_records(metadata_rows, METADATA_KEYS)),
                   events=events, arms=arms, mapping=_records(mapping_rows, MAPPING_COLUMNS),
                   repeating=_records(repeating_rows, REPEATING_COLUMNS), project=info)

    # -- fields and forms ---------------------------------------------------------------

    @cached_property
    def _rows(self) -> dict[str, dict[str, str]]:
        return {str(row["field_name"]): row for row in self.metadata.to_dict("records")}

    @cached_property
    def fields(self) -> list[str]:
        """Every field name in dictionary order (descriptive fields included, `_complete` not)."""
        return list(self.metadata["field_name"])

    @cached_property
    def record_id_field(self) -> str:
        """The record ID: the first field of the dictionary (§4.5)."""
        if self.metadata.empty:
            raise DictionaryError("data dictionary: it has no fields, so no record ID field")
        return str(self.fields[0])

    @cached_property
    def forms(self) -> list[str]:
        """Instrument names in dictionary order."""
        return list(dict.fromkeys(self.metadata["form_name"]))

    def fields_of_form(self, form: str) -> list[str]:
        """The fields of `form` in dictionary order (without `<form>_complete`)."""
        if form not in self.forms:
            raise DictionaryError(f'data dictionary: no instrument named "{form}"')
        frame = self.metadata
        return list(frame.loc[frame["form_name"] == form, "field_name"])

    def _row(self, field: str) -> dict[str, str]:
        try:
            return self._rows[field]
        except KeyError:
            raise DictionaryError(f'data dictionary: no field named "{field}"') from None

    def _status_form(self, field: str) -> str | None:
        """The form whose status field `field` is (`<form>_complete`), else None."""
        if field.endswith("_complete") and field not in self._rows:
            form = field.removesuffix("_complete")
            return form if form in self.forms else None
        return None

    def form_of(self, field: str) -> str:
        """The instrument holding `field` (also for `<form>_complete`)."""
        return self._status_form(field) or str(self._row(field)["form_name"])

    def field_type(self, field: str) -> str:
        """REDCap field type; `<form>_complete` is REDCap's implicit `dropdown` (§4.5)."""
        if self._status_form(field):
            return "dropdown"
        return str(self._row(field)["field_type"])

    def validation(self, field: str) -> str:
        """Canonical text validation name ("" when none; slider `number` is not a validation)."""
        if self._status_form(field) or self.field_type(field) != "text":
            return ""
        return str(self._row(field)["text_validation_type_or_show_slider_number"])

    def choices(self, field: str) -> list[tuple[str, str]]:
        """(code, label) pairs in order, for radio, dropdown, checkbox, yesno, truefalse, status."""
        if self._status_form(field):
            return list(FORM_STATUS_CHOICES)
        kind = self.field_type(field)
        if kind == "yesno":
            return list(YESNO_CHOICES)
        if kind == "truefalse":
            return list(TRUEFALSE_CHOICES)
        if kind in {"radio", "dropdown", "checkbox", "sql"}:
            return parse_choices(str(self._row(field)["select_choices_or_calculations"]))
        return []

    def annotation(self, field: str) -> str:
        """Column R (Field Annotation): action tags such as `@READONLY`."""
        return str(self._row(field)["field_annotation"])

    def calculation(self, field: str) -> str:
        """The equation of a calc field (column F)."""
        return str(self._row(field)["select_choices_or_calculations"])

    def _where(self, mask: pd.Series) -> list[str]:
        return list(self.metadata.loc[mask, "field_name"])

    @property
    def identifier_fields(self) -> list[str]:
        """Fields flagged `Identifier? = y` (PHI, removed from de-identified cuts)."""
        return self._where(self.metadata["identifier"].str.lower() == "y")

    @property
    def calc_fields(self) -> list[str]:
        """Calculated fields in dictionary order."""
        return self._where(self.metadata["field_type"] == "calc")

    @property
    def readonly_fields(self) -> list[str]:
        """Fields that site users see read-only (`@READONLY`, `@READONLY-FORM`): sync-written."""
        return self._where(self.metadata["field_annotation"].str.contains(_READONLY))

    # -- events, arms, repeating ----------------------------------------------------------

    @property
    def is_longitudinal(self) -> bool:
        """True when the project has events (REDCap's `is_longitudinal`)."""
        flag = self.project.get("is_longitudinal", "")
        return flag in {"1", "True", "true"} if flag else not self.events.empty

    @cached_property
    def event_names(self) -> list[str]:
        """Unique event names in arm and file order."""
        return list(self.events["unique_event_name"])

    def events_of_form(self, form: str) -> list[str]:
        """Unique event names `form` is designated for, in event order ([] when classic)."""
        return list(self._events_of_forms.get(form, ()))

    @cached_property
    def _events_of_forms(self) -> dict[str, tuple[str, ...]]:
        """Per instrument its events (typing and every rule of every batch ask again)."""
        mapped: dict[str, set[str]] = {}
        for form, event in zip(self.mapping["form"], self.mapping["unique_event_name"]):
            mapped.setdefault(form, set()).add(event)
        return {form: tuple(e for e in self.event_names if e in events)
                for form, events in mapped.items()}

    def forms_of_event(self, event: str) -> list[str]:
        """Instruments designated for `event`, in dictionary order (all forms when classic)."""
        if not self.is_longitudinal:
            return list(self.forms)
        mapped = set(self.mapping.loc[self.mapping["unique_event_name"] == event, "form"])
        return [form for form in self.forms if form in mapped]

    def repeating_forms(self, event: str = "") -> set[str]:
        """Repeating instruments on `event` (any event's when classic)."""
        rows = self.repeating[self.repeating["form_name"] != ""]
        if self.is_longitudinal:
            rows = rows[rows["event_name"] == event]
        return set(rows["form_name"])

    @property
    def repeating_events(self) -> set[str]:
        """Events that repeat as a whole (a repeating row with a blank form name)."""
        return set(self.repeating.loc[self.repeating["form_name"] == "", "event_name"])

    @property
    def has_repeating(self) -> bool:
        """True when any instrument or event repeats: the export then has the repeat columns."""
        return not self.repeating.empty

    def window(self, event: str) -> tuple[float, float, float]:
        """(day_offset, offset_min, offset_max) of `event`, in days (blank offsets count as 0)."""
        rows = self.events[self.events["unique_event_name"] == event]
        if rows.empty:
            raise DictionaryError(f'redcap/events.csv: no event named "{event}"')
        row = rows.iloc[0]
        try:
            day, low, high = (float(row[c] or 0) for c in ("day_offset", "offset_min", "offset_max"))
        except ValueError:
            raise DictionaryError(
                f'redcap/events.csv: event "{event}" has a non-numeric offset '
                f'({row["day_offset"]!r}, {row["offset_min"]!r}, {row["offset_max"]!r})') from None
        return day, low, high

    # -- export shape ---------------------------------------------------------------------

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a flat export row (record, event, repeat instrument/instance)."""
        keys = [self.record_id_field]
        if self.is_longitudinal:
            keys.append("redcap_event_name")
        if self.has_repeating:
            keys += ["redcap_repeat_instrument", "redcap_repeat_instance"]
        return keys

    @cached_property
    def missing_data_codes(self) -> list[str]:
        """The project's missing-data codes (`project.csv` `missing_data_codes`), in order."""
        return list(self.missing_data_labels)

    @cached_property
    def missing_data_labels(self) -> dict[str, str]:
        """Each missing-data code with its label (`UNK` -> `Unknown`)."""
        return dict(parse_choices(self.project.get("missing_data_codes", "")))

    def export_field_names(self, field: str) -> list[str]:
        """The export columns of one field: checkboxes expand per choice (and missing code)."""
        if self.field_type(field) in _NO_DATA_TYPES:
            return []
        if self.field_type(field) != "checkbox":
            return [field]
        return list(self.checkbox_columns(field))

    def checkbox_columns(self, field: str) -> dict[str, str]:
        """Export column -> choice code of a checkbox field, in choice order, missing codes last.

        Missing-data codes get a column unless the field has `@NOMISSING` (§4.5).
        """
        codes = [code for code, _ in self.choices(field)]
        if not _NO_MISSING.search(self.annotation(field)):
            codes += [c for c in self.missing_data_codes if c not in codes]
        return {checkbox_export_name(field, code): code for code in codes}

    def export_columns(self, forms: Iterable[str] | None = None) -> list[str]:
        """Columns of REDCap's flat record export, in REDCap's order (§6.2).

        The key columns come first (always, so rows stay identifiable), then the fields of the
        chosen forms in dictionary order, checkboxes expanded, `<form>_complete` after each form.
        """
        chosen = set(self.forms if forms is None else forms)
        unknown = chosen - set(self.forms)
        if unknown:
            raise DictionaryError(f"data dictionary: no instrument named {', '.join(sorted(unknown))}")
        columns = list(self.key_columns)
        for form in self.forms:
            if form in chosen:
                columns += self._form_export_columns[form]
        return columns

    @cached_property
    def _form_export_columns(self) -> dict[str, list[str]]:
        """Each form's own export columns (every batch of every run asks for them)."""
        return {form: [column for field in self.fields_of_form(form)
                       if field != self.record_id_field
                       for column in self.export_field_names(field)] + [f"{form}_complete"]
                for form in self.forms}

    def column_field(self, column: str) -> str:
        """The dictionary field behind an export column (`cb___1` -> `cb`)."""
        if column in self._rows or self._status_form(column):
            return column
        base = column.split("___", 1)[0]
        if base in self._rows and self.field_type(base) == "checkbox":
            return base
        raise DictionaryError(f'data dictionary: no field behind export column "{column}"')
