"""One imported value: REDCap's normalisation, then its validation message (§5.3 tables)."""
from __future__ import annotations

import re

from sync.redcap_spec import VALIDATION_TYPES, canonical_validation
from sync.server.rows import choices_of

GENERIC = ("The value you provided could not be validated because it does not follow the expected "
           "format. Please try again.")
_DATE = re.compile(r"^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_FORMAT_NOTE = {"date": "Y-M-D", "datetime": "Y-M-D H:M", "datetime_seconds": "Y-M-D H:M:S"}


def _ymd(validation: str) -> str:
    return re.sub(r"_(mdy|dmy)$", "_ymd", validation)


def normalise(meta: dict[str, str], value: str) -> str:
    """Dates padded to Y-M-D and times to REDCap's width; other values unchanged."""
    validation = canonical_validation(meta.get("text_validation_type_or_show_slider_number", ""))
    if meta["field_type"] != "text" or not validation:
        return value
    if validation.startswith(("date", "datetime")):
        match = _DATE.match(value.strip())
        if not match:
            return value
        year, _, month, day, hour, minute, second = match.groups()
        date = f"{year}-{int(month):02d}-{int(day):02d}"
        if validation.startswith("datetime_seconds") and hour is not None:
            return f"{date} {int(hour):02d}:{minute}:{second or '00'}"
        if validation.startswith("datetime") and hour is not None:
            return f"{date} {int(hour):02d}:{minute}"
        return date if validation.startswith("date_") else value
    if validation == "time" and re.match(r"^\d:\d{2}$", value):
        return "0" + value
    return value


def _date_message(validation: str) -> str:
    kind = VALIDATION_TYPES[_ymd(validation)].data_type
    return (f"Invalid date format. (NOTE: Dates must be imported here only in "
            f"{_FORMAT_NOTE.get(kind, 'Y-M-D')} format, regardless of the specific date format "
            "designated for this field.)")


def _text_error(meta: dict[str, str], value: str) -> str:
    name = meta["field_name"]
    validation = canonical_validation(meta["text_validation_type_or_show_slider_number"])
    vtype = VALIDATION_TYPES.get(_ymd(validation))
    if vtype is None or vtype.matches(value):
        return _range_error(meta, value, hard="@FORCE-MINMAX" in meta.get("field_annotation", ""))
    if vtype.data_type in ("date", "datetime", "datetime_seconds"):
        return _date_message(validation)
    return {"time": "Time is not properly formatted as HH:MM (military format).",
            "email": "Email address is not properly formatted.",
            "phone": f"{name} must be a 10-digit phone number.",
            "zipcode": f"{name} must be a 5 or 9 digit U.S. ZIP Code"}.get(validation, GENERIC)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _range_error(meta: dict[str, str], value: str, hard: bool) -> str:
    """Hard range errors only; soft ranges are warnings REDCap discards (§5.3)."""
    if not hard:
        return ""
    name, number = meta["field_name"], _number(value)
    low, high = _number(meta["text_validation_min"] or "x"), _number(meta["text_validation_max"]
                                                                    or "x")
    if number is None:
        return ""
    if low is not None and number < low:
        return f"{name} should not be less than the field minimum ({meta['text_validation_min']})"
    if high is not None and number > high:
        return f"{name} should not be greater than the field maximum ({meta['text_validation_max']})"
    return ""


def validation_error(meta: dict[str, str], value: str) -> str:
    """REDCap's message for a value that cannot be saved, or '' when it can."""
    kind = meta["field_type"]
    if kind in ("radio", "dropdown", "yesno", "truefalse", "sql", "checkbox"):
        codes = [code for code, _ in choices_of(meta)]
        return "" if value in codes else f"The value is not a valid category for {meta['field_name']}"
    if kind == "slider":
        if not re.match(r"^-?\d+$", value):
            return f"{meta['field_name']} must be an integer"
        bounded = dict(meta, text_validation_min=meta["text_validation_min"] or "0",
                       text_validation_max=meta["text_validation_max"] or "100")
        return _range_error(bounded, value, hard=True)
    if kind == "text" and meta["text_validation_type_or_show_slider_number"]:
        return _text_error(meta, value)
    return ""
