"""REDCap's special functions (§2.1) on single PHP values: the reference semantics.

`reference.py` calls these row by row; `functions.py` uses them as the fallback for functions
without a column-wise fast path, and the property tests hold the fast paths to them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Callable

from sync.logic import dates, php
from sync.logic.fields import redcap_isnumber

_TRIM = " \t\n\r\0\x0b"
_INTEGER = re.compile(r"[-+]?\b\d+\b", re.ASCII)
_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_LOWER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class Env:
    """What functions need besides their arguments: the clock and the missing-data codes."""

    today: date
    now: datetime
    missing: tuple[str, ...] = ()


def agg_number(value: php.Value) -> float:
    """An argument of sum/mean/...: a number if numeric after trimming, else NaN (ignored)."""
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        text = value.strip(_TRIM)
        return php.numeric_value(text) if php.is_numeric(text) else php.NAN
    return php.NAN


def math_number(value: php.Value) -> float:
    """An argument of PHP's `abs`/`sqrt`: non-numeric strings throw TypeError."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    if php.is_numeric(value):
        return php.numeric_value(value)
    raise php.PhpError(f"must be of type int|float, string given: {value!r}")


def is_integer(value: php.Value) -> bool:
    """REDCap's `isinteger()`: an integer without leading zeros (`+3` yes, `3.0` and `012` no)."""
    text = php.to_str(value).strip(_TRIM)
    if not _INTEGER.fullmatch(text):
        return False
    digits = text.lstrip("+-")
    return digits == "0" or not digits.startswith("0")


def _numbers(values: tuple[php.Value, ...]) -> list[float]:
    return [n for n in map(agg_number, values) if not math.isnan(n)]


def f_sum(env: Env, *values: php.Value) -> float:
    numbers = _numbers(values)
    total = 0.0
    for number in numbers:
        total += number
    return total if numbers else php.NAN


def f_mean(env: Env, *values: php.Value) -> float:
    numbers = _numbers(values)
    return f_sum(env, *numbers) / len(numbers) if numbers else php.NAN


def f_median(env: Env, *values: php.Value) -> float:
    numbers = sorted(_numbers(values))
    if not numbers:
        return php.NAN
    middle = len(numbers) // 2
    return numbers[middle] if len(numbers) % 2 else (numbers[middle - 1] + numbers[middle]) / 2


def f_stdev(env: Env, *values: php.Value) -> float:
    numbers = _numbers(values)
    if len(numbers) < 2:
        return php.NAN
    mean = f_mean(env, *numbers)
    squares = 0.0
    for number in numbers:
        squares += (number - mean) ** 2
    return math.sqrt(squares / (len(numbers) - 1))


def f_min(env: Env, *values: php.Value) -> float:
    numbers = _numbers(values)
    return min(numbers) if numbers else php.NAN


def f_max(env: Env, *values: php.Value) -> float:
    numbers = _numbers(values)
    return max(numbers) if numbers else php.NAN


def _places(value: php.Value | None) -> int | None:
    if value is None:
        return 0
    return int(php.numeric_value(php.to_str(value))) if is_integer(value) else None


def places_or_nan(value: php.Value) -> float:
    """The decimal places of round/roundup/rounddown as a number, NaN when not an integer."""
    places = _places(value)
    return php.NAN if places is None else float(places)


def f_round(env: Env, value: php.Value, places: php.Value | None = None) -> float:
    number, digits = agg_number(value), _places(places)
    return php.NAN if digits is None or math.isnan(number) else php.php_round(number, digits)


def _round_to_step(value: php.Value, places: php.Value | None,
                   direction: Callable[[float], int]) -> float:
    """`roundup`/`rounddown`: `direction` (ceil or floor) applied in steps of 10^-places."""
    number, digits = agg_number(value), _places(places)
    if digits is None or math.isnan(number):
        return php.NAN
    step = php.pow10(-digits)
    if step == 0 or math.isinf(step):
        return php.NAN
    return float(direction(number / step)) * step if math.isfinite(number) else number


def f_roundup(env: Env, value: php.Value, places: php.Value | None = None) -> float:
    return _round_to_step(value, places, math.ceil)


def f_rounddown(env: Env, value: php.Value, places: php.Value | None = None) -> float:
    return _round_to_step(value, places, math.floor)


def f_abs(env: Env, value: php.Value) -> float:
    return abs(math_number(value))


def f_sqrt(env: Env, value: php.Value) -> float:
    number = math_number(value)
    return math.sqrt(number) if number >= 0 else php.NAN


def power(base: php.Value, exponent: php.Value) -> float:
    """REDCap's `powRC`: odd roots of negative numbers allowed, even roots give NaN."""
    x, y = agg_number(base), agg_number(exponent)
    if math.isnan(x) or math.isnan(y):
        return php.NAN
    if x < 0 and y != int(y):
        inverse = 1 / y
        if abs(inverse - round(inverse)) < 1e-9 and round(inverse) % 2:
            return -((-x) ** y)
        return php.NAN
    try:
        return float(x ** y)
    except (OverflowError, ZeroDivisionError):
        return math.inf if x == 0 or abs(x) > 1 else 0.0


def f_pow(env: Env, base: php.Value, exponent: php.Value) -> float:
    return power(base, exponent)


def f_exponential(env: Env, value: php.Value) -> float:
    number = agg_number(value)
    try:
        return math.exp(number)
    except OverflowError:
        return math.inf


def f_log(env: Env, value: php.Value, base: php.Value | None = None) -> float:
    if value == "" or (isinstance(value, float) and value == 0) or value is False:
        return php.NAN
    number = math_number(value)
    base_number = agg_number(base) if base is not None else php.NAN
    if math.isnan(number) or number < 0:
        return php.NAN
    if number == 0:
        return -math.inf
    if math.isnan(base_number):
        return math.log(number)
    if base_number <= 0:
        raise php.PhpError("log(): Argument #2 ($base) must be greater than 0")
    return math.log(number) / math.log(base_number) if base_number != 1 else php.NAN


def f_mod(env: Env, dividend: php.Value, divisor: php.Value) -> float:
    if not (is_integer(dividend) and is_integer(divisor)):
        return php.NAN
    a, b = int(php.to_str(dividend).strip(_TRIM)), int(php.to_str(divisor).strip(_TRIM))
    if b == 0:
        return php.NAN
    remainder = abs(a) % abs(b)
    return float(-remainder if a < 0 else remainder)


def f_isnumber(env: Env, value: php.Value) -> bool:
    return redcap_isnumber(php.to_str(value))


def f_isinteger(env: Env, value: php.Value) -> bool:
    return is_integer(value)


def _date_part(env: Env, value: php.Value, index: int) -> php.Value:
    text = php.to_str(value).strip()
    if text in ("today", "now"):
        text = env.today.isoformat()
    parts = text.split(" ")[0].split("-")
    if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
        return php.NAN
    limits = {1: (1, 12), 2: (1, 31)}.get(index, (0, 9999))
    return parts[index] if limits[0] <= int(parts[index]) <= limits[1] else php.NAN


def f_year(env: Env, value: php.Value) -> php.Value:
    return _date_part(env, value, 0)


def f_month(env: Env, value: php.Value) -> php.Value:
    return _date_part(env, value, 1)


def f_day(env: Env, value: php.Value) -> php.Value:
    return _date_part(env, value, 2)


def ascii_lower(text: str) -> str:
    """PHP 8.2 `strtolower`: ASCII letters only."""
    return text.translate(_ASCII_UPPER)


def f_contains(env: Env, haystack: php.Value, needle: php.Value) -> bool:
    return ascii_lower(php.to_str(needle)) in ascii_lower(php.to_str(haystack))


def f_not_contain(env: Env, haystack: php.Value, needle: php.Value) -> bool:
    return not f_contains(env, haystack, needle)


def f_starts_with(env: Env, haystack: php.Value, needle: php.Value) -> bool:
    return ascii_lower(php.to_str(haystack)).startswith(ascii_lower(php.to_str(needle)))


def f_ends_with(env: Env, haystack: php.Value, needle: php.Value) -> bool:
    return ascii_lower(php.to_str(haystack)).endswith(ascii_lower(php.to_str(needle)))


def _bytes(value: php.Value) -> bytes:
    return php.to_str(value).encode("utf-8", "surrogateescape")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _count(value: php.Value) -> int | None:
    """A length/position argument of left/right/mid: an integer >= 1, else None."""
    return int(php.to_str(value).strip(_TRIM)) if is_integer(value) and int(
        php.to_str(value).strip(_TRIM)) >= 1 else None


def f_left(env: Env, text: php.Value, count: php.Value) -> str:
    n = _count(count)
    return _text(_bytes(text)[:n]) if n else ""


def f_right(env: Env, text: php.Value, count: php.Value) -> str:
    n, data = _count(count), _bytes(text)
    return _text(data[-n:]) if n and n <= len(data) else ""


def f_mid(env: Env, text: php.Value, start: php.Value, count: php.Value) -> str:
    first, n = _count(start), _count(count)
    return _text(_bytes(text)[first - 1:first - 1 + n]) if first and n else ""


def f_length(env: Env, text: php.Value) -> float:
    return float(len(_bytes(text)))


def f_find(env: Env, needle: php.Value, haystack: php.Value) -> float:
    position = ascii_lower(_text(_bytes(haystack))).encode("utf-8", "surrogateescape").find(
        ascii_lower(php.to_str(needle)).encode("utf-8", "surrogateescape"))
    return float(position + 1)


def f_concat(env: Env, *values: php.Value) -> str:
    return "".join(php.to_str(value) for value in values)


def f_concat_ws(env: Env, separator: php.Value, *values: php.Value) -> str:
    kept = [php.to_str(v) for v in values if not _blank(v)]
    return php.to_str(separator).join(kept)


def f_upper(env: Env, text: php.Value) -> str:
    return php.to_str(text).translate(_ASCII_LOWER)


def f_lower(env: Env, text: php.Value) -> str:
    return ascii_lower(php.to_str(text))


def f_trim(env: Env, text: php.Value) -> str:
    return php.to_str(text).strip(_TRIM)


def f_replace_text(env: Env, haystack: php.Value, search: php.Value, replacement: php.Value) -> str:
    needle = php.to_str(search)
    text = php.to_str(haystack)
    return text.replace(needle, php.to_str(replacement)) if needle else text


def _blank(value: php.Value) -> bool:
    return value == "" or (isinstance(value, float) and math.isnan(value))


def f_isblankormissingcode(env: Env, value: php.Value) -> bool:
    return _blank(value) or php.to_str(value) in env.missing


def f_isblanknotmissingcode(env: Env, value: php.Value) -> bool:
    return _blank(value)


def f_ismissingcode(env: Env, value: php.Value) -> bool:
    return not _blank(value) and php.to_str(value) in env.missing


def f_hasmissingcode(env: Env, value: php.Value, codes: php.Value = "") -> bool:
    wanted = php.to_str(codes).replace(" ", "").split(",")
    return f_ismissingcode(env, value) and php.to_str(value) in wanted


def f_calctext(env: Env, value: php.Value) -> php.Value:
    return value


def f_calcdate(env: Env, start: php.Value, offset: php.Value, unit: php.Value) -> php.Value:
    return dates.calcdate(start, offset, unit, today=env.today, now=env.now, missing=env.missing)


def f_datediff(env: Env, *args: php.Value) -> float:
    if len(args) < 3:
        raise php.PhpError("datediff() needs at least 3 arguments")
    return dates.datediff(*args, today=env.today, now=env.now, missing=env.missing)


def f_if(env: Env, condition: php.Value, then: php.Value, otherwise: php.Value) -> php.Value:
    return then if php.truthy(condition) else otherwise


SCALAR_FUNCTIONS: dict[str, Callable[..., php.Value]] = {
    name.removeprefix("f_"): func for name, func in list(globals().items())
    if name.startswith("f_") and callable(func)
}
"""REDCap function name -> scalar implementation taking (env, *args)."""

ARITY: dict[str, tuple[int, int | None]] = {
    "if": (3, 3), "datediff": (3, 5), "calcdate": (3, 3), "calctext": (1, 1), "sum": (0, None),
    "mean": (0, None), "median": (0, None), "min": (0, None), "max": (0, None),
    "stdev": (0, None), "round": (1, 2), "roundup": (1, 2), "rounddown": (1, 2), "abs": (1, 1),
    "sqrt": (1, 1), "pow": (2, 2), "exponential": (1, 1), "log": (1, 2), "mod": (2, 2),
    "isnumber": (1, 1), "isinteger": (1, 1), "year": (1, 1), "month": (1, 1), "day": (1, 1),
    "contains": (2, 2), "not_contain": (2, 2), "starts_with": (2, 2), "ends_with": (2, 2),
    "left": (2, 2), "right": (2, 2), "mid": (3, 3), "length": (1, 1), "find": (2, 2),
    "concat": (0, None), "concat_ws": (1, None), "upper": (1, 1), "lower": (1, 1),
    "trim": (1, 1), "replace_text": (3, 3), "isblankormissingcode": (1, 1),
    "isblanknotmissingcode": (1, 1), "ismissingcode": (1, 1), "hasmissingcode": (2, 2),
}
"""Argument counts outside these bounds are a PHP ArgumentCountError: the logic is false."""

RAW_ARGUMENT_FUNCTIONS = frozenset({
    "isblankormissingcode", "isblanknotmissingcode", "ismissingcode", "hasmissingcode"})
"""Functions REDCap hands a field's stored text, not its `chkNull` number (§1.1 step 4)."""


def arity_ok(name: str, count: int) -> bool:
    """True when `count` arguments are acceptable for function `name`."""
    low, high = ARITY[name]
    return count >= low and (high is None or count <= high)
