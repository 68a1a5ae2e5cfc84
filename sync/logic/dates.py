"""REDCap's date functions `datediff` and `calcdate` (§2.1, §2.2), per value and per column.

Dates are stored Y-M-D; arithmetic is in UTC seconds like PHP's `mktime` (out-of-range months
and days roll over), with REDCap's fixed units: 1 y = 365.2425 d, 1 M = 30.44 d.
"""
from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sync.logic import php

if TYPE_CHECKING:
    from sync.logic import ast

UNIT_SECONDS: dict[str, float] = {
    "y": 31556952.0, "M": 2630016.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
DATE, DATETIME, DATETIME_SECONDS, TIME = 1, 2, 3, 4
FORMATS = ("ymd", "mdy", "dmy")
EPOCH = datetime(1970, 1, 1)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", re.ASCII)
_DATE = re.compile(r"(-?\d+)-(\d+)-(\d+)(?: +(\d{1,2}):(\d{2})(?::(\d{2}))?)?", re.ASCII)


def moment(text: str, today: date, now: datetime) -> tuple[float, int] | None:
    """(UTC seconds, kind) of a stored date, datetime or time, or of `today`/`now`."""
    text = text.strip()
    if text == "today":
        return _seconds(today.year, today.month, today.day), DATE
    if text == "now":
        stamp = _seconds(now.year, now.month, now.day, now.hour, now.minute, now.second)
        return stamp, DATETIME_SECONDS
    if "-" not in text[1:]:
        clock = _TIME.fullmatch(text)
        if not clock:
            return None
        hour, minute, second = (int(part or 0) for part in clock.groups())
        return float(hour * 3600 + minute * 60 + second), TIME
    match = _DATE.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second = match.groups()
    kind = DATE if hour is None else (DATETIME if second is None else DATETIME_SECONDS)
    return _seconds(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                    int(second or 0)), kind


def _seconds(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
             second: int = 0) -> float:
    """`mktime` in UTC, normalising month and day overflow the way PHP does."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    days = _days_from_civil(year, month) + day - 1
    return float(days * 86400 + hour * 3600 + minute * 60 + second)


def _days_from_civil(year: int, month: int) -> int:
    """Days from 1970-01-01 to the first of the month (proleptic Gregorian)."""
    y = year - (month <= 2)
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def convert_literal(text: str, date_format: str) -> str:
    """A literal `MM-DD-YYYY` or `DD-MM-YYYY` (time optional) rewritten to Y-M-D (§2.2)."""
    match = re.fullmatch(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})(.*)", text.strip(), re.ASCII)
    if not match or date_format not in ("mdy", "dmy"):
        return text
    first, second, year, rest = match.groups()
    month, day = (first, second) if date_format == "mdy" else (second, first)
    return f"{year}-{month.zfill(2)}-{day.zfill(2)}{rest}"


def is_signed(value: php.Value) -> bool:
    """`returnSignedValue` is true for `true`, `'true'`, `1` and `'1'`."""
    return value is True or php.to_str(value) in ("true", "1") and not isinstance(value, bool)


def split_datediff_args(args: list) -> tuple[list, object, object]:
    """(dates and unit, date format or None, returnSigned or None) of a datediff call."""
    fourth = args[3] if len(args) > 3 else None
    if fourth is not None and isinstance(fourth, str) and fourth in FORMATS:
        return args[:3], fourth, args[4] if len(args) > 4 else None
    return args[:3], None, fourth


def datediff(first: php.Value, second: php.Value, unit: php.Value, *rest: php.Value,
             today: date, now: datetime, missing: tuple[str, ...] = ()) -> float:
    """REDCap's `datediff(d1, d2, unit [, format] [, returnSigned])` on single values."""
    _, _, signed = split_datediff_args([first, second, unit, *rest])
    unit_text = php.to_str(unit)
    moments = []
    for value in (first, second):
        text = php.to_str(value)
        found = None if text in missing or not text else moment(text, today, now)
        if found is None:
            return php.NAN
        moments.append(found)
    (t1, k1), (t2, k2) = moments
    if unit_text not in UNIT_SECONDS or (k1 == TIME) != (k2 == TIME):
        return php.NAN
    result = (t2 - t1) / UNIT_SECONDS[unit_text]
    if unit_text == "d" and k1 == DATE and k2 == DATE:
        result = php.round_half_up(result)
    return result if signed is not None and is_signed(signed) else abs(result)


def moments(strings: np.ndarray, today: date, now: datetime,
            missing: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(seconds, kind) of a column of stored text; kind 0 where not a date (blank, code, junk).

    Each distinct text is parsed once; plain `YYYY-MM-DD` dates go through numpy together.
    """
    codes, uniques = pd.factorize(strings)
    texts = np.asarray(uniques, dtype=object)
    seconds = np.full(len(texts) + 1, np.nan)
    kinds = np.zeros(len(texts) + 1, dtype=np.int8)
    plain, days = _plain_dates(texts)
    seconds[:-1][plain] = days * 86400.0
    kinds[:-1][plain] = DATE
    for i in np.flatnonzero(~plain):
        text = texts[i]
        found = None if not text or text in missing else moment(text, today, now)
        if found is not None:
            seconds[i], kinds[i] = found
    return seconds.take(codes), kinds.take(codes)


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _plain_dates(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which texts are valid `YYYY-MM-DD` dates, and their day numbers since 1970-01-01."""
    none = np.zeros(len(texts), dtype=bool)
    fixed = texts.astype("U")
    if not len(texts) or fixed.dtype.itemsize // 4 < 10:
        return none, np.zeros(0, dtype=np.int64)
    chars = fixed.view(np.uint32).reshape(len(fixed), -1).astype(np.int64)
    digits = chars[:, [0, 1, 2, 3, 5, 6, 8, 9]] - ord("0")
    plain = ((chars[:, 4] == ord("-")) & (chars[:, 7] == ord("-"))
             & ((digits >= 0) & (digits <= 9)).all(axis=1)
             & ((chars[:, 10] == 0) if chars.shape[1] > 10 else True))
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month = digits[:, 4] * 10 + digits[:, 5]
    day = digits[:, 6] * 10 + digits[:, 7]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + ((month == 2) & leap)
    plain &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return plain, (era * 146097 + doe - 719468)[plain]


def datediff_columns(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
                     unit: str, signed: np.ndarray) -> np.ndarray:
    """Vectorised `datediff` over parsed moments (see `moments`); NaN where REDCap gives NaN."""
    (t1, k1), (t2, k2) = first, second
    if unit not in UNIT_SECONDS:
        return np.full(len(t1), np.nan)
    result = (t2 - t1) / UNIT_SECONDS[unit]
    if unit == "d":
        pure = (k1 == DATE) & (k2 == DATE)
        result = np.where(pure, np.where(result >= 0, np.floor(result + 0.5),
                                         np.ceil(result - 0.5)), result)
    bad = (k1 == 0) | (k2 == 0) | ((k1 == TIME) != (k2 == TIME))
    result = np.where(signed, result, np.abs(result))
    return np.where(bad, np.nan, result)


def calcdate(start: php.Value, offset: php.Value, unit: php.Value, *, today: date,
             now: datetime, missing: tuple[str, ...] = (), out_kind: int = 0) -> php.Value:
    """`calcdate(date, offset, unit)`: the date moved by `offset` units, in UTC; NaN if invalid."""
    text, unit_text = php.to_str(start), php.to_str(unit)
    found = None if not text or text in missing else moment(text, today, now)
    if found is None or found[1] == TIME or unit_text not in UNIT_SECONDS:
        return php.NAN
    if not php.is_numeric(offset if not isinstance(offset, bool) else ""):
        return php.NAN
    amount = offset if isinstance(offset, float) else php.numeric_value(offset)
    seconds = found[0] + amount * UNIT_SECONDS[unit_text]
    if not math.isfinite(seconds):
        return php.NAN
    stamp = EPOCH + timedelta(seconds=seconds)
    layout = {DATE: "%Y-%m-%d", DATETIME: "%Y-%m-%d %H:%M"}.get(out_kind or found[1],
                                                                 "%Y-%m-%d %H:%M:%S")
    return stamp.strftime(layout)


def datediff_literals(call: ast.Call, formats: dict[str, str]) -> ast.Call:
    """`call` with its M-D-Y / D-M-Y date literals rewritten to Y-M-D, as REDCap does (§2.2).

    `formats` maps field names to their date format (`mdy`, `dmy`, `ymd`).
    """
    from sync.logic import ast

    args = list(call.args)
    fourth = args[3] if len(args) > 3 and isinstance(args[3], ast.String) else None
    if fourth is not None and fourth.value in FORMATS:
        wanted = [fourth.value, fourth.value]
    else:
        wanted = [formats.get(other.field, "") if isinstance(other, ast.FieldRef) else ""
                  for other in (args[1], args[0])]
    for i in (0, 1):
        if isinstance(args[i], ast.String) and wanted[i] in ("mdy", "dmy"):
            args[i] = ast.String(convert_literal(args[i].value, wanted[i]),
                                 line=args[i].line, column=args[i].column)
    return ast.Call(call.name, tuple(args), line=call.line, column=call.column)
