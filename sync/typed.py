"""Stage 2: the raw flat export (strings, "" blank) -> a frame typed by the data dictionary.

Rules and checks read typed columns (integers, numbers, dates, categories of codes), never
strings. A value that cannot be typed becomes NA and is reported as a `TypingProblem` naming the
record, event, instrument, instance and field, so one bad cell never stops the run.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from sync.crf.dictionary import Dictionary
from sync.errors import DictionaryError
from sync.crf.redcap_spec import VALIDATION_TYPES

__all__ = ["CONVERTERS", "TypingProblem", "column_kind", "parse_dates", "parse_datetimes",
           "type_frame", "type_frame_with_problems", "typing_problems"]

KEY_TEXT_COLUMNS = frozenset({"redcap_event_name", "redcap_repeat_instrument",
                              "redcap_data_access_group", "redcap_survey_identifier"})
CHOICE_TYPES = frozenset({"radio", "dropdown", "yesno", "truefalse"})
NUMBER = VALIDATION_TYPES["number"].pattern
INTEGER = re.compile(r"^[-+]?[0-9]{1,18}$")  # ASCII digits only, as REDCap validates
DATE_FORMATS: dict[str, tuple[str, str, str]] = {
    "date": (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "%Y-%m-%d", "a date (YYYY-MM-DD)"),
    "datetime": (r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{1,2}:[0-9]{2}", "%Y-%m-%d %H:%M",
                 "a date and time (YYYY-MM-DD HH:MM)"),
    "datetime_seconds": (r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{1,2}:[0-9]{2}:[0-9]{2}",
                         "%Y-%m-%d %H:%M:%S", "a date and time (YYYY-MM-DD HH:MM:SS)"),
}
"""Stored formats: REDCap keeps every date Y-M-D whatever the display format (§4.6). Anything
else (a zone suffix, a `T`, digits of another script) is not a value of the type."""
_SHAPES = {kind: re.compile(pattern) for kind, (pattern, _, _) in DATE_FORMATS.items()}
ROW_KEYS: tuple[str, ...] = ("redcap_event_name", "redcap_repeat_instrument",
                             "redcap_repeat_instance")


@dataclass(frozen=True)
class TypingProblem:
    """A stored value that does not fit its field's type; it is typed as NA."""

    record: str
    event: str
    instrument: str
    instance: str
    field: str
    value: str
    message: str


Typed = tuple[pd.Series, pd.Series, str]
"""A converted column, the mask of values that could not be typed, and what was expected."""


def _integer(values: pd.Series) -> Typed:
    valid = values.str.match(INTEGER)
    data = [int(v) if ok else pd.NA for v, ok in zip(values, valid)]
    return pd.Series(pd.array(data, dtype="Int64"), index=values.index), ~valid, "an integer"


def _number(values: pd.Series, comma: bool = False) -> Typed:
    text = values.str.replace(",", ".", regex=False) if comma else values
    codes, distinct = pd.factorize(text.to_numpy(dtype=object))
    parsed = np.array([float(value) if NUMBER.match(value) else np.nan for value in distinct],
                      dtype=float)
    numbers = parsed.take(codes) if len(codes) else np.zeros(0)
    valid = np.isfinite(numbers)
    typed = pd.arrays.FloatingArray(np.where(valid, numbers, 0.0), ~valid)
    return (pd.Series(typed, index=values.index), pd.Series(~valid, index=values.index),
            "a number")


def _moment(values: pd.Series, kind: str) -> Typed:
    pattern, fmt, expected = DATE_FORMATS[kind]
    shape = _SHAPES[kind]
    text = values.to_numpy(dtype=object)
    shaped = np.array([shape.fullmatch(value) is not None for value in text], dtype=bool)
    moments = pd.to_datetime(pd.Series(np.where(shaped, text, None), index=values.index,
                                       name=values.name),
                             format=fmt, errors="coerce").astype("datetime64[ns]")
    return moments, moments.isna(), expected


HELD_YEARS = "in the years 1678 to 2261"
"""The dates a check can hold (pandas' datetime64[ns]: 1677-09-21 to 2262-04-11)."""


def _not_fitting(value: str, kind: str, expected: str) -> str:
    """Why `value` is a problem: not `expected`; or, for a value REDCap validates and stores
    (`3026-01-15` in a `date_ymd` field, `1e400` in a `number` one) that no check can hold,
    the range that can be read, so the site is told the year or size, not the format."""
    text = value.strip()
    moment = "datetime_seconds" if kind == "timestamp" else kind
    if moment in DATE_FORMATS and _SHAPES[moment].fullmatch(text):
        try:
            datetime.strptime(text, DATE_FORMATS[moment][1])
        except ValueError:
            return f'"{value}" is not {expected}'
        return f'"{value}" is not {expected.split(" (")[0]} {HELD_YEARS}'
    number = text.replace(",", ".") if kind == "number_comma" else text
    if kind in ("number", "number_comma") and NUMBER.match(number) and math.isinf(float(number)):
        return f'"{value}" is not a number between -1e308 and 1e308'
    return f'"{value}" is not {expected}'


def _each_distinct(values: pd.Series, parse: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`parse` of the stripped text of `values`, run once per distinct value."""
    codes, distinct = pd.factorize(values.fillna("").astype(str).to_numpy(dtype=object))
    parsed = parse(pd.Series(distinct, dtype=object).str.strip()).to_numpy()
    return pd.Series(parsed.take(codes), index=values.index, name=values.name)


def parse_dates(values: pd.Series) -> pd.Series:
    """Stored `date_ymd` values as datetime64; NaT where blank or not exactly YYYY-MM-DD."""
    return _each_distinct(values, lambda text: _moment(text, "date")[0])


def parse_datetimes(values: pd.Series) -> pd.Series:
    """Stored `datetime_ymd` (or with seconds) values as naive datetime64; NaT where blank or
    anything else: a zone suffix (`+02:00`, `Z`) or a `T` is not a REDCap date-time."""
    def parse(text: pd.Series) -> pd.Series:
        minutes = _moment(text, "datetime")[0]
        return minutes.fillna(_moment(text, "datetime_seconds")[0])
    return _each_distinct(values, parse)


def _matching(values: pd.Series, validation: str) -> Typed:
    rule = VALIDATION_TYPES[validation]
    valid = values.map(rule.matches).astype(bool)
    return values.where(valid).astype("string"), ~valid, f"a {rule.label[0].lower()}{rule.label[1:]}"


def _codes(values: pd.Series, codes: list[str], expected: str) -> Typed:
    dtype = pd.CategoricalDtype(codes)
    at = dtype.categories.get_indexer(values.to_numpy(dtype=object))
    valid = pd.Series(at >= 0, index=values.index)
    typed = pd.Categorical.from_codes(at, dtype=dtype)
    return pd.Series(typed, index=values.index), ~valid, expected


def column_kind(dictionary: Dictionary, column: str) -> str:
    """How a column is typed: record, key, instance, status, checkbox, choice, integer, number,
    number_comma, date, datetime, datetime_seconds, time:<validation>, timestamp or text."""
    if column == dictionary.record_id_field:
        return "record"
    if column in KEY_TEXT_COLUMNS:
        return "key"
    if column == "redcap_repeat_instance":
        return "instance"
    if column.endswith("_timestamp") and column.removesuffix("_timestamp") in dictionary.forms:
        return "timestamp"
    field = dictionary.column_field(column)
    kind = dictionary.field_type(field)
    if field != column:
        return "checkbox"
    if column.endswith("_complete") and kind == "dropdown" and column not in dictionary.fields:
        return "status"
    if kind in CHOICE_TYPES:
        return "choice"
    if kind in {"calc", "slider"}:
        return "number"
    validation = dictionary.validation(field)
    data_type = VALIDATION_TYPES[validation].data_type if validation in VALIDATION_TYPES else "text"
    if data_type == "time":
        return f"time:{validation}"
    return {"integer": "integer", "number": "number", "number_comma_decimal": "number_comma",
            "date": "date", "datetime": "datetime",
            "datetime_seconds": "datetime_seconds"}.get(data_type, "text")


def _flags(values: pd.Series, expected: str, highest: str = "1") -> Typed:
    valid = values.isin([str(digit) for digit in range(int(highest) + 1)]).to_numpy()
    digits = np.array([int(value) if ok else 0 for value, ok in zip(values, valid)],
                      dtype=np.int8)
    typed = pd.Series(pd.arrays.IntegerArray(digits, ~valid), index=values.index,
                      name=values.name)
    return typed, pd.Series(~valid, index=values.index), expected


def _instance(values: pd.Series) -> Typed:
    typed, invalid, _ = _integer(values)
    invalid = invalid | typed.lt(1).fillna(False)
    return typed.mask(invalid), invalid, "a repeat instance (1, 2, ...)"


def _text(values: pd.Series) -> Typed:
    return values.astype("string"), pd.Series(False, index=values.index), "text"


CONVERTERS: dict[str, Callable[[pd.Series], Typed]] = {
    "integer": _integer, "number": _number,
    "number_comma": lambda values: _number(values, comma=True),
    "date": lambda values: _moment(values, "date"),
    "datetime": lambda values: _moment(values, "datetime"),
    "datetime_seconds": lambda values: _moment(values, "datetime_seconds"),
    "timestamp": lambda values: _moment(values, "datetime_seconds"),
    "checkbox": lambda values: _flags(values, "0 or 1 (a checkbox)"),
    "status": lambda values: _flags(values, "0, 1 or 2 (a form status)", "2"),
    "instance": _instance, "text": _text,
}
"""Column kind (see `column_kind`) -> converter; choices and times are bound per field."""


def _converter(dictionary: Dictionary, column: str, kind: str) -> Callable[[pd.Series], Typed]:
    if kind.startswith("time:"):
        return lambda values: _matching(values, kind.split(":", 1)[1])
    if kind == "choice":
        codes = [code for code, _ in dictionary.choices(column)]
        return lambda values: _codes(values, codes, "one of the codes " + ", ".join(codes))
    return CONVERTERS[kind]


def form_rows(strings: dict[str, pd.Series], index: pd.Index, dictionary: Dictionary,
              form: str, repeating: dict[str, set[str]]) -> pd.Series:
    """Rows where `form` can hold data: designated for the row's event, and the row is that
    form's instance when it repeats there (else the base row). Elsewhere checkbox and status
    columns are NA, as REDCap exports them blank (§6.2). `repeating`: each event's repeating
    instruments."""
    applicable = pd.Series(True, index=index)
    events = strings.get("redcap_event_name")
    if dictionary.is_longitudinal and events is not None:
        applicable &= events.isin(dictionary.events_of_form(form))
    if dictionary.has_repeating and "redcap_repeat_instrument" in strings:
        if dictionary.is_longitudinal and events is not None:
            repeats = events.isin([e for e, forms in repeating.items() if form in forms])
        else:
            repeats = pd.Series(form in dictionary.repeating_forms(""), index=index)
        instrument = strings["redcap_repeat_instrument"].fillna("")
        applicable &= (instrument == form).where(repeats, instrument == "")
    return applicable


def _strings(values: pd.Series) -> pd.Series:
    """A raw column as REDCap's strings: missing as "", a JSON number 2 (or 2.0) as "2"."""
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) == "string":
        return values
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        return values.astype(object).where(values.notna(), "").astype(str)
    def text(value: object) -> str:
        if pd.isna(value):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return values.map(text).astype(str)


def type_frame(raw: pd.DataFrame, dictionary: Dictionary) -> pd.DataFrame:
    """The typed frame of `raw` (see `type_frame_with_problems`), problems dropped."""
    return type_frame_with_problems(raw, dictionary)[0]


def type_frame_with_problems(raw: pd.DataFrame, dictionary: Dictionary,
                             ) -> tuple[pd.DataFrame, list[TypingProblem]]:
    """Type every column of a flat export by the dictionary, and list what could not be typed.

    Record ID: string, never NA; event and repeat instrument: string, "" kept (they key rows);
    repeat instance: Int64; text and notes: string (NA blank); integer: Int64; number, calc,
    slider: Float64; date and datetime: datetime64[ns]; time: string; radio, dropdown, yesno,
    truefalse: categorical of codes in choice order; checkbox and form status: Int8, NA where
    the form cannot hold data on that row. Missing-data codes are NA without a problem.

    Examples:
        >>> typed, problems = type_frame_with_problems(raw, dictionary)
        >>> typed["age"].dtype
        Int64Dtype()
    """
    strings = {column: _strings(raw[column]) for column in raw.columns}
    blank = ["", *dictionary.missing_data_codes]
    applicable: dict[str, pd.Series] = {}
    repeating: dict[str, set[str]] | None = None
    typed: dict[str, pd.Series] = {}
    problems: list[TypingProblem] = []
    for column, values in strings.items():
        kind = _kind(dictionary, column)
        if kind in {"record", "key"}:
            typed[column] = values.astype("string")
            continue
        entered = ~values.isin(blank).to_numpy()
        converted, invalid, expected = _converter(dictionary, column, kind)(values[entered])
        if len(converted) < len(values):
            at = np.full(len(values), -1)
            at[entered] = np.arange(len(converted))
            converted = pd.Series(converted.array.take(at, allow_fill=True), index=values.index,
                                  name=converted.name)
        if kind in {"checkbox", "status"} and converted.notna().any():
            form = dictionary.form_of(dictionary.column_field(column))
            if form not in applicable:
                if repeating is None:
                    repeating = {e: dictionary.repeating_forms(e) for e in dictionary.event_names}
                applicable[form] = form_rows(strings, raw.index, dictionary, form, repeating)
            converted = converted.where(applicable[form])
        typed[column] = converted
        problems += _problems(strings, dictionary, column, invalid, expected, kind)
    return pd.DataFrame(typed, index=raw.index, copy=False), problems


def typing_problems(raw: pd.DataFrame, dictionary: Dictionary) -> list[TypingProblem]:
    """The problems `type_frame_with_problems` lists, without building the typed frame (all
    the sync and the cut need). Every converter reads each value alone, so the distinct
    entered texts of all columns of a kind are checked together, each once."""
    blank = {"", *dictionary.missing_data_codes}
    cells = raw.to_numpy(dtype=object)
    entries: list[tuple[str, tuple[str, ...], np.ndarray, set[str]]] = []
    texts: dict[tuple[str, ...], set[str]] = {}
    first: dict[tuple[str, ...], str] = {}
    for at_column, column in enumerate(raw.columns):
        kind = _kind(dictionary, column)
        if kind in {"record", "key", "text"}:
            continue
        values = cells[:, at_column]
        distinct = set(values)
        if not all(isinstance(value, str) for value in distinct):
            values = _strings(raw[column]).to_numpy(dtype=object)
            distinct = set(values)
        entered = distinct - blank
        if entered:
            converter = (kind, *(code for code, _ in dictionary.choices(column))) \
                if kind == "choice" else (kind,)
            entries.append((column, converter, values, entered))
            texts.setdefault(converter, set()).update(entered)
            first.setdefault(converter, column)
    wrong: dict[tuple[str, ...], tuple[set[str], str]] = {}
    for converter, distinct_texts in texts.items():
        unseen = list(distinct_texts)
        _, invalid, expected = _converter(dictionary, first[converter], converter[0])(
            pd.Series(unseen, dtype=object))
        wrong[converter] = ({value for value, bad in zip(unseen, np.asarray(invalid, dtype=bool))
                             if bad}, expected)
    keys: dict[str, np.ndarray] = {}
    problems: list[TypingProblem] = []
    for column, converter, values, entered in entries:
        invalid_texts, expected = wrong[converter]
        bad = entered & invalid_texts
        if not bad:
            continue
        at = np.flatnonzero([value in bad for value in values])
        for name in (dictionary.record_id_field, *ROW_KEYS):
            if name not in keys:
                keys[name] = (_strings(raw[name]).to_numpy(dtype=object) if name in raw.columns
                              else np.full(len(raw), "", dtype=object))
        record, event, instrument, instance = (
            keys[name][at].tolist() for name in (dictionary.record_id_field, *ROW_KEYS))
        problems += [TypingProblem(r, e, i, n, column, v, _not_fitting(v, converter[0], expected))
                     for r, e, i, n, v in zip(record, event, instrument, instance,
                                              values[at].tolist())]
    return problems


def _kind(dictionary: Dictionary, column: str) -> str:
    try:
        return column_kind(dictionary, column)
    except DictionaryError:
        raise DictionaryError(f'export column "{column}" is not in the data dictionary; '
                              "the dictionary and the REDCap project differ") from None


def _problems(strings: dict[str, pd.Series], dictionary: Dictionary, column: str,
              invalid: pd.Series, expected: str, kind: str) -> list[TypingProblem]:
    """One TypingProblem per value that could not be typed, placed by the row's key columns."""
    if not invalid.any():
        return []
    values = strings[column]
    at = values.index.get_indexer(invalid[invalid].index)

    def key(name: str) -> list[str]:
        return strings[name].to_numpy()[at].tolist() if name in strings else [""] * len(at)

    record = key(dictionary.record_id_field)
    return [TypingProblem(r, e, i, n, column, v, _not_fitting(v, kind, expected))
            for r, e, i, n, v in zip(record, key("redcap_event_name"),
                                     key("redcap_repeat_instrument"),
                                     key("redcap_repeat_instance"), key(column))]
