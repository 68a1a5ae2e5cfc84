"""PHP 8 value semantics that REDCap logic inherits, one value at a time (§1.1, §1.5).

REDCap turns logic into PHP and `eval`s it, so strings, numbers and booleans behave as in
PHP 8.2: numeric strings compare as numbers, other strings byte-wise, arithmetic on a
non-numeric string throws, division by zero throws. Values here are `str`, `float` (NaN is
PHP's NAN, REDCap's blank numeric field) and `bool`. `PhpError` stands for any PHP runtime
error; it makes the whole logic false for that row.
"""
from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sync.logic import ast

Value = str | float | bool

WHITESPACE = " \t\n\r\v\f"
_NUMERIC = re.compile(
    r"[ \t\n\r\v\f]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[ \t\n\r\v\f]*", re.ASCII)
_LEADING_NUMERIC = re.compile(
    r"[ \t\n\r\v\f]*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
NAN = float("nan")


class PhpError(Exception):
    """A PHP runtime error (TypeError, DivisionByZeroError, ArgumentCountError, ...)."""


def number_literal(text: str) -> float:
    """A number as PHP reads it in code: a leading zero makes an octal integer (`010` is 8).

    REDCap copies number literals into the PHP it evaluates, so `08` is a PHP parse error,
    which makes the whole logic false.
    """
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits.startswith("0") and digits.isascii() and digits.isdigit():
        if set(digits) - set("01234567"):
            raise PhpError(f"Invalid numeric literal {text}")
        value = float(int(digits, 8))
        return -value if text.startswith("-") else value
    return float(text)


def is_numeric(value: Value) -> bool:
    """PHP 8 `is_numeric`: numbers (NaN included) yes, booleans no, strings by PHP's grammar."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return True
    return _NUMERIC.fullmatch(value) is not None


def numeric_value(text: str) -> float:
    """The number a numeric string stands for (`' 1e3'` -> 1000.0); call after `is_numeric`.

    An integer string becomes a PHP int, which has no negative zero: `'-0'` is 0, not -0.0.
    """
    text = text.strip(WHITESPACE)
    value = float(text)
    return 0.0 if value == 0 and text.lstrip("+-").isdigit() else value


def chk_null(text: str, comma_decimal: bool = False) -> float:
    """REDCap's `chkNull`: a numeric field's value as a number, NaN when blank or not numeric."""
    if comma_decimal:
        text = text.replace(",", ".")
    return numeric_value(text) if _NUMERIC.fullmatch(text) else NAN


def float_to_str(number: float) -> str:
    """PHP's float-to-string with `precision=14`: `5.0` -> `5`, `1e15` -> `1.0E+15`."""
    if math.isnan(number):
        return "NAN"
    if math.isinf(number):
        return "INF" if number > 0 else "-INF"
    if number == 0:
        return "-0" if math.copysign(1, number) < 0 else "0"
    text = "%.14G" % number
    if "E" not in text:
        return text
    mantissa, exponent = text.split("E")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{exponent[0]}{int(exponent[1:])}"


def to_str(value: Value) -> str:
    """PHP string conversion: `true` -> `'1'`, `false` -> `''`, NaN -> `'NAN'`."""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float):
        return float_to_str(value)
    return value


def truthy(value: Value) -> bool:
    """PHP truthiness: `false`, `0`, `''` and `'0'` are false; NaN and `'0.0'` are true."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def to_arith(value: Value) -> float:
    """An operand of `+ - * /`: numbers as they are, a non-numeric string throws TypeError."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, float):
        return value
    if _NUMERIC.fullmatch(value):
        return numeric_value(value)
    leading = _LEADING_NUMERIC.match(value)
    if leading:  # PHP 8 warns "A non-numeric value encountered" and uses the prefix
        return numeric_value(leading.group())
    raise PhpError(f"Unsupported operand types: string {value!r}")


def arith(op: str, left: Value, right: Value) -> float:
    """PHP `+ - * /` on two values."""
    a, b = to_arith(left), to_arith(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise PhpError("Division by zero")
    return a / b


def compare(op: str, left: Value, right: Value) -> bool:
    """PHP 8 loose comparison; `op` is one of `= <> < <= > >=`."""
    if isinstance(left, bool) or isinstance(right, bool):
        a, b = truthy(left), truthy(right)
        return _ordered(op, a, b)
    a_num, b_num = _as_number(left), _as_number(right)
    if a_num is not None and b_num is not None:
        return _ordered(op, a_num, b_num)
    return _ordered(op, to_str(left), to_str(right))


def _as_number(value: Value) -> float | None:
    if isinstance(value, float):
        return value
    return numeric_value(value) if _NUMERIC.fullmatch(value) else None


def _ordered(op: str, a: object, b: object) -> bool:
    """IEEE-style relations, so NaN is never =, <, <=, >, >= to anything and always <>."""
    if op == "=":
        return a == b
    if op == "<>":
        return not a == b
    if op == "<":
        return a < b  # type: ignore[operator]
    if op == "<=":
        return a <= b  # type: ignore[operator]
    if op == ">":
        return a > b  # type: ignore[operator]
    return a >= b  # type: ignore[operator]


def is_nan_null(value: Value) -> bool:
    """REDCap's blank test behind `[x] = ''`: `''`, NaN and the texts `NaN`/`NAN` (§1.1, §3)."""
    if isinstance(value, float):
        return math.isnan(value)
    return value in ("", "NaN", "NAN")


def chk_null_compare(op: str, left: float, right: float) -> bool:
    """REDCap's `chkNullCompare` for two numeric fields compared directly (§1.5).

    A blank on the left never satisfies `<`/`<=` against a value, a blank on the right never
    satisfies `>`/`>=`; otherwise blanks become `''` and PHP compares.
    """
    left_nan, right_nan = math.isnan(left), math.isnan(right)
    if left_nan and not right_nan and op in ("<", "<="):
        return False
    if right_nan and not left_nan and op in (">", ">="):
        return False
    return compare(op, "" if left_nan else left, "" if right_nan else right)


def round_half_up(value: float) -> float:
    """PHP's `php_round_helper` for PHP_ROUND_HALF_UP: halves away from zero."""
    return float(math.floor(value + 0.5) if value >= 0 else math.ceil(value - 0.5))


def pow10(power: int) -> float:
    """`10.0 ** power`, infinite instead of raising when it overflows (C `pow`)."""
    try:
        return 10.0 ** power
    except OverflowError:
        return math.inf


def php_round(value: float, places: int = 0) -> float:
    """PHP 8.2 `round()`, pre-rounding included, so `round(1.005, 2)` is 1.01."""
    if not math.isfinite(value) or value == 0:
        return float(value)
    precision_places = 14 - math.floor(math.log10(abs(value)))
    f1 = pow10(abs(places))
    if places < precision_places and precision_places - 15 < places:
        f2 = pow10(abs(precision_places))
        scaled = value * f2 if precision_places >= 0 else value / f2
        scaled = round_half_up(scaled)
        use_precision = max(-4 * 15, places - precision_places)
        scaled = scaled / pow10(abs(use_precision))
    else:
        scaled = value * f1 if places >= 0 else value / f1
        if abs(scaled) >= 1e15:
            return value
    scaled = round_half_up(scaled)
    if abs(places) >= 23:  # PHP goes through "%15fe%d" text to avoid pow() error
        result = float("%15fe%d" % (scaled, -places))
        return result if math.isfinite(result) else value
    return scaled / f1 if places > 0 else scaled * f1


def uncompilable_literal(node: ast.Node) -> bool:
    """True when a number literal is not valid PHP (`08`): REDCap's eval fails as a whole."""
    from sync.logic.ast import Number, walk
    for item in walk(node):
        if isinstance(item, Number):
            try:
                number_literal(item.text)
            except PhpError:
                return True
    return False
