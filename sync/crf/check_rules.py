"""The per-row rules of `ecrf check`: what REDCap's upload checks in each dictionary row.

Each rule takes the rows of the dictionary (raw strings, indexed by spreadsheet row) and yields
(place, message, severity). Sources: redcap-semantics.md §4 (REDCap 15.7.6
`MetaData::error_checking`), §1.2 for the logic lexer's names.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import pandas as pd

from sync.crf.dictionary import Dictionary
from sync.errors import DictionaryError, LogicSyntaxError
from sync.logic import parse, referenced_fields
from sync.crf.redcap_spec import (
    CHOICE_CODE, CHOICE_FIELD_TYPES, DD_HEADERS, FIELD_TYPES, LEGACY_FIELD_TYPES,
    LEGACY_VALIDATION_TYPES, METADATA_KEYS, RESERVED_FIELD_NAMES, VALIDATION_TYPES,
    canonical_validation, is_php_numeric, parse_choices,
)

__all__ = ["ROW_RULES", "Found", "RowContext", "Where", "logic_problems", "matrix_problems",
           "reference_problems", "written"]

Severity = Literal["error", "warning"]
HEADER_OF = dict(zip(METADATA_KEYS, DD_HEADERS))
NAME = re.compile(r"^[a-z0-9_]+$")
CHOICES_CLEARED = frozenset({"notes", "file", "yesno", "truefalse", "descriptive"})
ALIGNMENTS = frozenset({"LV", "LH", "RV", "RH"})
SMART_EVENTS = frozenset({"event-name", "previous-event-name", "next-event-name",
                          "first-event-name", "last-event-name"})
VALIDATION_BEYOND_TEXT = frozenset({("slider", "number"), ("file", "signature"),
                                    ("dropdown", "autocomplete"), ("sql", "autocomplete")})
"""(field type, validation) pairs REDCap allows besides text fields (§4.2, §4.4)."""
ORDERED_DATA_TYPES = {"integer", "number", "number_comma_decimal", "date", "datetime",
                      "datetime_seconds", "time"}


@dataclass(frozen=True)
class Where:
    """A place in a project file: row 1 is the header; None when the whole file is meant."""

    file: str
    row: int | None = None
    column: str | None = None


Found = tuple[Where, str, Severity]


@dataclass(frozen=True)
class RowContext:
    """The dictionary as read (raw strings by spreadsheet row) and as REDCap would store it."""

    dictionary: Dictionary
    frame: pd.DataFrame
    file: str

    @cached_property
    def rows(self) -> list[int]:
        return list(self.frame.index)

    @cached_property
    def _position(self) -> dict[int, int]:
        return {row: i for i, row in enumerate(self.rows)}

    def raw(self, row: int, key: str) -> str:
        return str(self.frame.at[row, key])

    def stored(self, row: int, key: str) -> str:
        """The value after REDCap's folding (legacy types and validation names)."""
        return str(self.dictionary.metadata.at[self._position[row], key])

    def found(self, row: int, key: str, message: str, severity: Severity = "error") -> Found:
        name = self.raw(row, "field_name")
        prefix = f'field "{name}": ' if name else ""
        return Where(self.file, row, HEADER_OF[key]), prefix + message, severity


def _name_rules(name: str, noun: str, limit: int, warn_at: int) -> Iterator[tuple[str, Severity]]:
    """Character and length rules shared by field and form names (§4.5)."""
    if not NAME.match(name):
        fixed = re.sub(r"[^a-z0-9_]", "", name.lower().replace(" ", "_"))
        yield (f'{noun} name "{name}" may hold only lower-case letters, digits and _ '
               f'(REDCap would rename it "{fixed}")'), "error"
    if name[:1].isdigit() or name.startswith("_"):
        yield f'{noun} name "{name}" must start with a letter', "error"
    if name.endswith("_"):
        yield f'{noun} name "{name}" must not end with _', "error"
    if len(name) > limit:
        yield f"{noun} name is {len(name)} characters long; REDCap allows {limit}", "error"
    elif len(name) > warn_at:
        yield f"{noun} name is {len(name)} characters long; REDCap advises at most {warn_at}", "warning"


def _field_name(ctx: RowContext, row: int) -> Iterator[Found]:
    name = ctx.raw(row, "field_name")
    if not name:
        yield ctx.found(row, "field_name", "the variable name is blank")
        return
    for message, severity in _name_rules(name, "variable", 100, 26):
        yield ctx.found(row, "field_name", message, severity)
    if "___" in name:
        yield ctx.found(row, "field_name", "a variable name must not contain ___ "
                                           "(REDCap keeps it for checkbox export columns)")
    if name in RESERVED_FIELD_NAMES:
        yield ctx.found(row, "field_name", f'"{name}" is a name REDCap reserves')
    for suffix in ("_complete", "_timestamp", "_return_code"):
        form = name.removesuffix(suffix)
        if name.endswith(suffix) and form in ctx.dictionary.forms:
            yield ctx.found(row, "field_name", f'"{name}" clashes with the {suffix[1:]} field '
                                               f'REDCap adds to instrument "{form}"')


def _form_name(ctx: RowContext, row: int) -> Iterator[Found]:
    form = ctx.raw(row, "form_name")
    if not form:
        yield ctx.found(row, "form_name", "the form name is blank")
        return
    position = ctx.rows.index(row)
    if position and ctx.raw(ctx.rows[position - 1], "form_name") == form:
        return
    for message, severity in _name_rules(form, "form", 64, 50):
        yield ctx.found(row, "form_name", message, severity)


def _record_id(ctx: RowContext, row: int) -> Iterator[Found]:
    if row != ctx.rows[0]:
        return
    if ctx.stored(row, "field_type") != "text":
        yield ctx.found(row, "field_type", f'the first field is the record ID and must be of type '
                                           f'text, not "{ctx.raw(row, "field_type")}"')
    if ctx.raw(row, "section_header"):
        yield ctx.found(row, "section_header", "REDCap clears the section header of the record ID "
                                               "field", "warning")


def _field_type(ctx: RowContext, row: int) -> Iterator[Found]:
    kind = ctx.raw(row, "field_type")
    if kind.lower() in LEGACY_FIELD_TYPES:
        yield ctx.found(row, "field_type", f'REDCap converts field type "{kind}" to '
                                           f'"{LEGACY_FIELD_TYPES[kind.lower()]}"', "warning")
    elif kind not in FIELD_TYPES:
        yield ctx.found(row, "field_type", f'unknown field type "{kind}"; REDCap knows '
                                           + ", ".join(sorted(FIELD_TYPES)))


def _validation(ctx: RowContext, row: int) -> Iterator[Found]:
    written = ctx.raw(row, "text_validation_type_or_show_slider_number")
    kind = ctx.stored(row, "field_type")
    if not written:
        return
    name = canonical_validation(written)
    if kind != "text":
        if (kind, name) not in VALIDATION_BEYOND_TEXT:
            yield ctx.found(row, "text_validation_type_or_show_slider_number",
                            f'validation "{written}" is allowed only on text fields, not {kind}')
        return
    if name not in VALIDATION_TYPES:
        yield ctx.found(row, "text_validation_type_or_show_slider_number",
                        f'unknown validation type "{written}"')
    elif written.strip().lower() in LEGACY_VALIDATION_TYPES:
        yield ctx.found(row, "text_validation_type_or_show_slider_number",
                        f'REDCap converts the legacy validation "{written}" to "{name}"', "warning")
    elif written != name:
        yield ctx.found(row, "text_validation_type_or_show_slider_number",
                        f'REDCap lower-cases validation "{written}" to "{name}"', "warning")


def _bound(value: str, validation: str) -> object:
    """A min/max parsed as its validation type; dates are checked in Y-M-D (§4.4); else ValueError."""
    data_type = VALIDATION_TYPES[validation].data_type
    if data_type in {"integer", "number", "number_comma_decimal"}:
        text = value.replace(",", ".") if data_type == "number_comma_decimal" else value
        integer = VALIDATION_TYPES["integer"].matches(text)
        if not is_php_numeric(text) or (data_type == "integer" and not integer):
            raise ValueError(f"is not {'an integer' if data_type == 'integer' else 'a number'}")
        return float(text)
    if value in {"today", "now"}:
        return None
    ymd = {"date": "date_ymd", "datetime": "datetime_ymd", "datetime_seconds": "datetime_seconds_ymd"}
    pattern = VALIDATION_TYPES[ymd.get(data_type, validation)]
    if not pattern.matches(value):
        raise ValueError(f"is not a valid {pattern.label.lower()} value")
    return value.zfill(8) if data_type == "time" else value


def _min_max(ctx: RowContext, row: int) -> Iterator[Found]:
    kind = ctx.stored(row, "field_type")
    validation = ctx.stored(row, "text_validation_type_or_show_slider_number")
    bounds = {key: ctx.raw(row, key) for key in ("text_validation_min", "text_validation_max")}
    parsed: dict[str, object] = {}
    for key, value in bounds.items():
        if not value or value.startswith("["):
            continue
        if kind == "slider":
            if not VALIDATION_TYPES["integer"].matches(value):
                yield ctx.found(row, key, f'slider bound "{value}" must be an integer')
            else:
                parsed[key] = int(value)
        elif kind != "text" or not validation:
            yield ctx.found(row, key, f'"{value}" is ignored: only a validated text field or a '
                                      "slider has a minimum or maximum", "warning")
        elif validation not in VALIDATION_TYPES:
            continue
        elif VALIDATION_TYPES[validation].data_type not in ORDERED_DATA_TYPES:
            yield ctx.found(row, key, f'validation "{validation}" has no minimum or maximum')
        else:
            try:
                parsed[key] = _bound(value, validation)
            except ValueError as exc:
                yield ctx.found(row, key, f'"{value}" {exc} (validation "{validation}")')
    low, high = parsed.get("text_validation_min"), parsed.get("text_validation_max")
    if low is not None and high is not None and low > high:  # type: ignore[operator]
        yield ctx.found(row, "text_validation_max", f'maximum "{bounds["text_validation_max"]}" is '
                                                    f'below minimum "{bounds["text_validation_min"]}"')


def _choices(ctx: RowContext, row: int) -> Iterator[Found]:
    kind, text = ctx.stored(row, "field_type"), ctx.raw(row, "select_choices_or_calculations")
    key = "select_choices_or_calculations"
    if kind in CHOICES_CLEARED and text.strip():
        yield ctx.found(row, key, f"a {kind} field has no choices; REDCap clears this cell")
    elif kind == "calc" and not text.strip():
        yield ctx.found(row, key, "a calc field needs its equation here")
    elif kind == "slider" and len(text.split("|")) > 3:
        yield ctx.found(row, key, "a slider has at most 3 labels (left | middle | right)")
    elif kind in CHOICE_FIELD_TYPES - {"sql"}:
        yield from _choice_list(ctx, row, kind, text)


def _choice_list(ctx: RowContext, row: int, kind: str, text: str) -> Iterator[Found]:
    key = "select_choices_or_calculations"
    if not text.strip():
        yield ctx.found(row, key, f"a {kind} field needs choices (code, label | code, label)")
        return
    items = [item.strip() for item in re.split(r"\||\n", text)]
    if not items[0] or not items[-1]:
        yield ctx.found(row, key, "the choices start or end with |", "warning")
    elif "" in items:
        yield ctx.found(row, key, "the choices hold an empty item between two |", "warning")
    seen: set[str] = set()
    pairs = parse_choices(text)
    for code, label in pairs:
        if not code:
            yield ctx.found(row, key, f'choice "{label}" has no code')
        elif not CHOICE_CODE.match(code):
            yield ctx.found(row, key, f'choice code "{code}" may hold only digits, letters, '
                                      ". _ and - (or be a number)")
        elif code in seen:
            yield ctx.found(row, key, f'choice code "{code}" is used twice')
        seen.add(code)
    if len(pairs) == 1 and kind != "checkbox":
        yield ctx.found(row, key, f"a {kind} field with a single choice", "warning")


def _flags(ctx: RowContext, row: int) -> Iterator[Found]:
    for key in ("identifier", "required_field", "matrix_ranking"):
        value = ctx.raw(row, key)
        if value not in {"", "y"}:
            yield ctx.found(row, key, f'"{value}" must be y or blank')
    alignment = ctx.raw(row, "custom_alignment")
    if alignment and alignment not in ALIGNMENTS:
        yield ctx.found(row, "custom_alignment",
                        f'"{alignment}" must be one of LV, LH, RV, RH or blank')


ROW_RULES: tuple[Callable[[RowContext, int], Iterator[Found]], ...] = (
    _field_name, _form_name, _record_id, _field_type, _validation, _min_max, _choices, _flags)
"""The per-row rules, in the order of the columns they read."""


def matrix_problems(ctx: RowContext) -> Iterator[Found]:
    """Matrix groups: name, contiguous rows, radio or checkbox, one type and one choice list."""
    key = "matrix_group_name"
    first: dict[str, int] = {}
    previous = ""
    for row in ctx.rows:
        group, kind = ctx.raw(row, key), ctx.stored(row, "field_type")
        if not group:
            if ctx.raw(row, "matrix_ranking") == "y":
                yield ctx.found(row, "matrix_ranking", "matrix ranking without a matrix group",
                                "warning")
            previous = ""
            continue
        if not NAME.match(group) or len(group) > 60:
            yield ctx.found(row, key, f'matrix group name "{group}" may hold only a-z, 0-9 and _ '
                                      "(at most 60 characters)")
        if kind not in {"radio", "checkbox"}:
            yield ctx.found(row, key, f"a matrix group holds only radio or checkbox fields, not {kind}")
        if group in first and group != previous:
            yield ctx.found(row, key, f'matrix group "{group}" continues here after other rows; '
                                      "its rows must be contiguous")
        elif group in first:
            head = first[group]
            if kind != ctx.stored(head, "field_type"):
                yield ctx.found(row, "field_type", f'matrix group "{group}" mixes {kind} with '
                                                   f'{ctx.stored(head, "field_type")} (row {head})')
            if parse_choices(ctx.raw(row, "select_choices_or_calculations")) != parse_choices(
                    ctx.raw(head, "select_choices_or_calculations")):
                yield ctx.found(row, "select_choices_or_calculations", f'the choices differ from '
                                f'those of matrix group "{group}" at row {head}')
        first.setdefault(group, row)
        previous = group


def logic_problems(ctx: RowContext) -> Iterator[Found]:
    """Branching logic and calc equations: they parse and name what exists."""
    for row in ctx.rows:
        expressions = [("branching_logic", "branching logic")]
        if ctx.stored(row, "field_type") == "calc":
            expressions.append(("select_choices_or_calculations", "calculation"))
        for key, noun in expressions:
            text = ctx.raw(row, key)
            if text.strip():
                yield from _expression(ctx, row, key, noun, text)


def _expression(ctx: RowContext, row: int, key: str, noun: str, text: str) -> Iterator[Found]:
    try:
        node = parse(text)
    except LogicSyntaxError as exc:
        yield ctx.found(row, key, f"the {noun} does not parse: {exc}")
        return
    for ref in referenced_fields(node):
        shown = written(ref.event, ref.field, ref.code)
        for message in reference_problems(ctx.dictionary, ref.event, ref.field, ref.code):
            yield ctx.found(row, key, f"the {noun}'s {shown} (line {ref.line}, column "
                                      f"{ref.column}) {message}")


def written(event: str | None, field: str, code: str | None) -> str:
    return f"[{event}]" * bool(event) + f"[{field}" + f"({code})" * (code is not None) + "]"


def reference_problems(dictionary: Dictionary, event: str | None, field: str,
               code: str | None) -> Iterator[str]:
    """What is wrong with one `[event][field(code)]` reference, if anything."""
    if event and event not in SMART_EVENTS and event not in dictionary.event_names:
        yield f'names event "{event}", which is not in events.csv'
    try:
        kind, form = dictionary.field_type(field), dictionary.form_of(field)
    except DictionaryError:
        yield f'names field "{field}", which is not in the dictionary'
        return
    codes = [c for c, _ in dictionary.choices(field)]
    if code is not None and kind != "checkbox":
        yield f'gives a choice code, but "{field}" is a {kind} field, not a checkbox'
    elif code is not None and code not in codes:
        yield f'names choice "{code}", which checkbox "{field}" does not have'
    elif code is None and kind == "checkbox":
        yield f'must name one choice of checkbox "{field}", as [{field}(code)]'
    if event in dictionary.event_names and event not in dictionary.events_of_form(form):
        yield f'reads instrument "{form}" on event "{event}", where it is not designated'
