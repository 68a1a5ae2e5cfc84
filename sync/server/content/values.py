"""One imported value: REDCap's normalisation, then its validation message (§5.3 tables)."""
from __future__ import annotations

import re
from datetime import date

from sync.crf.redcap_spec import VALIDATION_TYPES, canonical_validation
from sync.server.rows import choices_of

GENERIC = ("The value you provided could not be validated because it does not follow the expected "
           "format. Please try again.")
_DATE = re.compile(r"^(\d{4})([-/])(\d{1,2})\2(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2}|\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_TIME_NOTE = {"date": "", "datetime": " H:M", "datetime_seconds": " H:M:S"}


def _ymd(validation: str) -> str:
    return re.sub(r"_(mdy|dmy)$", "_ymd", validation)


def _year(text: str) -> str:
    """Two-digit years: 20yy when below this year's yy + 10, else 19yy (§5.3)."""
    if len(text) == 4:
        return text
    return ("20" if int(text) < date.today().year % 100 + 10 else "19") + text


def _date_parts(value: str, date_format: str) -> tuple[str, str, str, str | None, str, str]:
    """(year, month, day, hour, minute, second) of a Y-M-D value, or of M/D/Y and D/M/Y
    values when `dateFormat` says so; empty year when the value is neither."""
    match = _DATE.match(value.strip())
    if match:
        year, _, month, day, hour, minute, second = match.groups()
        return year, month, day, hour, minute or "", second or ""
    match = _SLASHED.match(value.strip()) if date_format in ("MDY", "DMY") else None
    if match:
        first, second_part, year, hour, minute, second = match.groups()
        month, day = (first, second_part) if date_format == "MDY" else (second_part, first)
        return _year(year), month, day, hour, minute or "", second or ""
    return "", "", "", None, "", ""


def _date_value(validation: str, value: str, date_format: str) -> str:
    year, month, day, hour, minute, second = _date_parts(value, date_format)
    if not year:
        return value
    stamp = f"{year}-{int(month):02d}-{int(day):02d}"
    if validation.startswith("datetime_seconds") and hour is not None:
        return f"{stamp} {int(hour):02d}:{minute}:{second or '00'}"
    if validation.startswith("datetime") and hour is not None:
        return f"{stamp} {int(hour):02d}:{minute}"
    return stamp if validation.startswith("date_") and hour is None else value


def normalise(meta: dict[str, str], value: str, date_format: str = "YMD") -> str:
    """REDCap's clean-up before validation: dates to Y-M-D, `9:05` to `09:05`, phone numbers
    to `(ddd) ddd-dddd`, VMRNs zero-padded to 9 digits; other values unchanged (§5.3)."""
    validation = canonical_validation(meta.get("text_validation_type_or_show_slider_number", ""))
    if meta["field_type"] != "text" or not validation:
        return value
    if validation.startswith(("date", "datetime")):
        return _date_value(validation, value, date_format)
    if validation == "time" and re.match(r"^\d:\d{2}$", value):
        return "0" + value
    digits = re.sub(r"[.() \-]", "", value)
    if validation == "phone" and len(digits) == 10 and digits.isascii() and digits.isdigit():
        return f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"
    if validation == "vmrn" and value.isascii() and value.isdigit():
        return value.zfill(9)
    return value


def _date_message(validation: str, date_format: str) -> str:
    kind = VALIDATION_TYPES[_ymd(validation)].data_type
    time = _TIME_NOTE.get(kind, "")
    note = f"Y-M-D{time}"
    if date_format in ("MDY", "DMY"):
        slashed = "M/D/Y" if date_format == "MDY" else "D/M/Y"
        note = f"{slashed}{time} format or Y-M-D{time}"
    return (f"Invalid date format. (NOTE: Dates must be imported here only in {note} format, "
            "regardless of the specific date format designated for this field.)")


def _text_error(meta: dict[str, str], value: str, date_format: str) -> str:
    name = meta["field_name"]
    validation = canonical_validation(meta["text_validation_type_or_show_slider_number"])
    vtype = VALIDATION_TYPES.get(_ymd(validation))
    if vtype is None or vtype.matches(value):
        return _range_error(meta, value, hard="@FORCE-MINMAX" in meta.get("field_annotation", ""))
    if vtype.data_type in ("date", "datetime", "datetime_seconds"):
        return _date_message(validation, date_format)
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
        return (f"{name} should not be greater than the field maximum "
                f"({meta['text_validation_max']})")
    return ""


def validation_error(meta: dict[str, str], value: str, date_format: str = "YMD") -> str:
    """REDCap's message for a value that cannot be saved, or '' when it can."""
    kind = meta["field_type"]
    if kind in ("radio", "dropdown", "yesno", "truefalse", "sql", "checkbox"):
        codes = [code for code, _ in choices_of(meta)]
        if value in codes:
            return ""
        return f"The value is not a valid category for {meta['field_name']}"
    if kind == "slider":
        if not re.match(r"^-?\d+$", value):
            return f"{meta['field_name']} must be an integer"
        bounded = dict(meta, text_validation_min=meta["text_validation_min"] or "0",
                       text_validation_max=meta["text_validation_max"] or "100")
        return _range_error(bounded, value, hard=True)
    if kind == "text" and meta["text_validation_type_or_show_slider_number"]:
        return _text_error(meta, value, date_format)
    return ""
