"""PHP 8 value semantics over whole columns: the vectorised twin of `php.py`.

A `Vec` is one PHP value per row: all numbers (`num`, float64, NaN = blank numeric), all
strings (`str`), all booleans (`bool`), or a mix (`obj`, handled row by row through `php.py`).
`error` marks rows where PHP would have thrown; the whole logic is false there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from sync.logic import php


@dataclass
class Vec:
    """One PHP value per row, with the rows where evaluation threw."""

    kind: str
    values: np.ndarray
    error: np.ndarray
    _parsed: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    const: tuple[php.Value] | None = field(default=None, repr=False)

    def parsed(self) -> tuple[np.ndarray, np.ndarray]:
        """For a `str` Vec: (number or NaN, is-numeric) per row, computed once."""
        if self._parsed is None:
            self._parsed = parse_numbers(self.values)
        return self._parsed


def constant(value: php.Value, n: int, error: np.ndarray) -> Vec:
    """A literal broadcast to every row."""
    if isinstance(value, bool):
        return Vec("bool", np.full(n, value, dtype=bool), error, const=(value,))
    if isinstance(value, float):
        return Vec("num", np.full(n, value, dtype=float), error, const=(value,))
    numeric = php.is_numeric(value)
    parsed = (np.full(n, php.numeric_value(value) if numeric else np.nan),
              np.full(n, numeric, dtype=bool))
    return Vec("str", np.full(n, value, dtype=object), error, parsed, const=(value,))


def parse_numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PHP numeric-string parsing of an object array of str: (value or NaN, is-numeric).

    Parses each distinct text once: export columns repeat few distinct values.
    """
    codes, uniques = pd.factorize(values)
    numbers = np.append(_parse_distinct(np.asarray(uniques, dtype=object)), np.nan)
    out = numbers.take(codes)  # code -1 (a missing value) takes the trailing NaN
    return out, ~np.isnan(out)


def _parse_distinct(texts: np.ndarray) -> np.ndarray:
    try:
        numbers = pd.to_numeric(pd.Series(texts, dtype=object), errors="coerce").to_numpy(float)
    except (TypeError, ValueError):
        numbers = np.full(len(texts), np.nan)
        doubtful = np.ones(len(texts), dtype=bool)
    else:
        doubtful = (~np.isfinite(numbers) & (texts != "")) | ~np.array(
            [text.isascii() for text in texts], dtype=bool)
    for i in np.flatnonzero(doubtful):  # pandas reads 'inf'/'nan', PHP reads '1e500' as INF
        text = texts[i]
        numbers[i] = php.numeric_value(text) if php.is_numeric(text) else np.nan
    return numbers


def chk_null(raw: np.ndarray, comma_decimal: bool) -> np.ndarray:
    """REDCap's `chkNull` over a column of stored text (§1.5)."""
    if comma_decimal:
        raw = np.array([text.replace(",", ".") for text in raw], dtype=object)
    return parse_numbers(raw)[0]


def as_objects(vec: Vec) -> np.ndarray:
    """The values as Python `str`/`float`/`bool` objects, for row-by-row PHP semantics."""
    if vec.kind == "num":
        return vec.values.astype(object)
    if vec.kind == "bool":
        return np.array([bool(v) for v in vec.values], dtype=object)
    return vec.values


def from_objects(values: list | np.ndarray, error: np.ndarray) -> Vec:
    """A Vec from Python values, choosing the narrowest kind that holds them all."""
    items = list(values)
    kinds = {type(v) for v in items}
    if kinds <= {float}:
        return Vec("num", np.array(items, dtype=float).reshape(len(items)), error)
    if kinds == {str}:
        return Vec("str", np.array(items, dtype=object), error)
    if kinds == {bool}:
        return Vec("bool", np.array(items, dtype=bool), error)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return Vec("obj", out, error)


def elementwise(func: Callable[..., php.Value], args: list[Vec], n: int) -> Vec:
    """Apply a scalar PHP function once per distinct combination of argument values.

    A `PhpError` marks the rows of that combination as failed. Mixed (`obj`) arguments are
    taken row by row, because `True`, `1.0` and `'1'` must not be merged.
    """
    columns = [as_objects(arg) for arg in args]
    if any(arg.kind == "obj" for arg in args) or n == 0:
        rows = np.arange(n)
        inverse = rows
    else:
        rows, inverse = _distinct_rows(
            [arg.values.view(np.int64) if arg.kind == "num" else column
             for arg, column in zip(args, columns)], n)
    error = np.zeros(len(rows), dtype=bool)
    results: list[php.Value] = []
    for j, i in enumerate(rows):
        try:
            results.append(func(*(column[i] for column in columns)))
        except php.PhpError:
            error[j] = True
            results.append("")
    picked = from_objects(results, error)
    inverse = np.asarray(inverse).reshape(-1)
    return Vec(picked.kind, picked.values[inverse], picked.error[inverse])


def _distinct_rows(columns: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """One representative row per distinct combination of values, and each row's combination."""
    key = np.zeros(n, dtype=np.int64)
    span = 1
    for column in columns:
        codes, uniques = pd.factorize(column, use_na_sentinel=False)
        span *= len(uniques) + 1
        if span > 2 ** 62:
            return np.arange(n), np.arange(n)
        key = key * (len(uniques) + 1) + codes
    _, rows, inverse = np.unique(key, return_index=True, return_inverse=True)
    return rows, inverse


def as_strings(vec: Vec) -> np.ndarray:
    """PHP string conversion of every row."""
    if vec.kind == "str":
        return vec.values
    if vec.kind == "num":
        unique, inverse = np.unique(vec.values.view(np.int64), return_inverse=True)
        texts = np.array([php.float_to_str(v) for v in unique.view(np.float64)], dtype=object)
        return texts[inverse.reshape(-1)] if len(unique) else np.array([], dtype=object)
    return np.array([php.to_str(v) for v in as_objects(vec)], dtype=object)


def truthy(vec: Vec) -> np.ndarray:
    """PHP truthiness per row (NaN is true, `'0'` and `''` are false)."""
    if vec.kind == "bool":
        return vec.values
    if vec.kind == "num":
        return vec.values != 0
    if vec.kind == "str":
        return (vec.values != "") & (vec.values != "0")
    return np.array([php.truthy(v) for v in vec.values], dtype=bool)


def numbers_or_nan(vec: Vec) -> np.ndarray:
    """Numbers where PHP `is_numeric` holds (after trimming), NaN elsewhere (for sum, round...)."""
    if vec.kind == "num":
        return vec.values
    if vec.kind == "str":
        return vec.parsed()[0]
    if vec.kind == "bool":
        return np.full(len(vec.values), np.nan)
    return np.array([v if isinstance(v, float) else
                     (php.numeric_value(v) if isinstance(v, str) and php.is_numeric(v) else np.nan)
                     for v in vec.values], dtype=float)


def arith_operand(vec: Vec) -> tuple[np.ndarray, np.ndarray]:
    """An operand of `+ - * /` as numbers, and the rows where PHP throws TypeError."""
    if vec.kind == "num":
        return vec.values, vec.error
    if vec.kind == "bool":
        return vec.values.astype(float), vec.error
    objects = as_objects(vec)
    numbers = vec.parsed()[0].copy() if vec.kind == "str" else np.full(len(objects), np.nan)
    todo = np.isnan(numbers) if vec.kind == "str" else np.ones(len(objects), dtype=bool)
    error = vec.error.copy()
    for i in np.flatnonzero(todo):
        try:
            numbers[i] = php.to_arith(objects[i])
        except php.PhpError:
            error[i] = True
    return numbers, error


def arith(op: str, left: Vec, right: Vec) -> Vec:
    """PHP `+ - * /`; division by zero is an error for the row, as PHP 8 throws."""
    a, a_error = arith_operand(left)
    b, b_error = arith_operand(right)
    error = a_error | b_error
    with np.errstate(all="ignore"):
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        else:
            zero = b == 0
            error = error | zero
            result = np.where(zero, np.nan, a / np.where(zero, 1.0, b))
    return Vec("num", result, error)


def _ordered(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "=":
            out = a == b
        elif op == "<>":
            out = ~np.asarray(a == b, dtype=bool)
        elif op == "<":
            out = a < b
        elif op == "<=":
            out = a <= b
        elif op == ">":
            out = a > b
        else:
            out = a >= b
    return np.asarray(out, dtype=bool)


def compare(op: str, left: Vec, right: Vec) -> np.ndarray:
    """PHP 8 loose comparison of two columns (§1.5)."""
    kinds = {left.kind, right.kind}
    if "obj" in kinds:
        return np.array([php.compare(op, a, b) for a, b in
                         zip(as_objects(left), as_objects(right))], dtype=bool)
    if "bool" in kinds:
        return _ordered(op, truthy(left).astype(np.int8), truthy(right).astype(np.int8))
    a, a_numeric = _numeric_side(left)
    b, b_numeric = _numeric_side(right)
    out = _ordered(op, a, b)
    textual = ~(a_numeric & b_numeric)
    if textual.any():
        a_text, b_text = as_strings(left)[textual], as_strings(right)[textual]
        out[textual] = _ordered(op, a_text, b_text)
    return out


def _numeric_side(vec: Vec) -> tuple[np.ndarray, np.ndarray]:
    if vec.kind == "num":
        return vec.values, np.ones(len(vec.values), dtype=bool)
    return vec.parsed()


def is_nan_null(vec: Vec) -> np.ndarray:
    """REDCap's blank test behind `= ''` (§1.1 step 4, §3)."""
    if vec.kind == "num":
        return np.isnan(vec.values)
    if vec.kind == "str":
        return (vec.values == "") | (vec.values == "NaN") | (vec.values == "NAN")
    if vec.kind == "bool":
        return np.zeros(len(vec.values), dtype=bool)
    return np.array([php.is_nan_null(v) for v in vec.values], dtype=bool)


def chk_null_compare(op: str, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """REDCap's `chkNullCompare` for two numeric fields compared directly (§1.5)."""
    left_nan, right_nan = np.isnan(left), np.isnan(right)
    out = _ordered(op, left, right)
    both = left_nan & right_nan
    out[both] = op in ("=", "<=", ">=")
    if op in ("=", "<>"):
        one = left_nan ^ right_nan
        out[one] = op == "<>"
    else:
        blank_left = left_nan & ~right_nan
        blank_right = right_nan & ~left_nan
        if op in ("<", "<="):
            out[blank_left] = False
            out[blank_right] = [php.compare(op, v, "") for v in left[blank_right]]
        else:
            out[blank_right] = False
            out[blank_left] = [php.compare(op, "", v) for v in right[blank_left]]
    return out
