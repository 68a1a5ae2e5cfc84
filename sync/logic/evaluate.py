"""Logic tree + raw export frame -> one REDCap result per row, a whole column at a time.

Emulates REDCap 15.7.6's server pipeline (§1.1): numeric-typed fields through `chkNull`,
`X = ''` as a blank test, `chkNullCompare` for two numeric fields, PHP 8 comparisons and
arithmetic, any runtime error making the whole logic false for that row, and only PHP `false`
counting as false.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timezone
from typing import Callable

import numpy as np
import pandas as pd

from sync.logic import ast, dates, php, vectors
from sync.logic.fields import (FieldInfo, FrameLayout, checkbox_column, field_catalogue,
                               missing_codes, record_column, reference_problem)
from sync.logic.functions import FUNCTIONS, Context
from sync.logic.parser import parse
from sync.logic.scalar import RAW_ARGUMENT_FUNCTIONS, Env, arity_ok, power
from sync.logic.vectors import Vec

Handler = Callable[["Evaluator", ast.Node], Vec]


class Evaluator:
    """Evaluates many expressions over one frame, reading and typing each field once.

    Args:
        frame: the raw flat export (all values strings, '' blank), record ID column first.
        metadata: Export Metadata as a DataFrame with the `METADATA_KEYS` columns.
        missing_data_codes: the project's setting, e.g. `"UNK, Unknown | NA, Not applicable"`.
        today: the server date for `'today'`/`'now'` (default: the current UTC date).
        events: unique event names in arm/event order (default: order of appearance).
        catalogue: `field_catalogue(metadata, codes)`, when the caller evaluates many frames
            with the same dictionary and already has it.
    """

    def __init__(self, frame: pd.DataFrame, metadata: pd.DataFrame, *,
                 missing_data_codes: str | Iterable[str] = "", today: date | None = None,
                 now: datetime | None = None, events: list[str] | None = None,
                 project_id: str = "", user_name: str = "",
                 catalogue: dict[str, FieldInfo] | None = None) -> None:
        self.index = frame.index
        self.n = len(frame)
        self.codes = missing_codes(missing_data_codes)
        self.catalogue: dict[str, FieldInfo] = (field_catalogue(metadata, self.codes)
                                                if catalogue is None else catalogue)
        self.layout = FrameLayout(frame, record_column(frame, metadata), events)
        clock = datetime.now(timezone.utc).replace(tzinfo=None)
        moment = now or (datetime.combine(today, time()) if today else clock)
        today = today or moment.date()
        self.context = Context(self.n, Env(today, moment, self.codes))
        self.smart_values = {"project_id": project_id, "user_name": user_name}
        self.formats = {name: info.date_format for name, info in self.catalogue.items()}
        self.no_error = np.zeros(self.n, dtype=bool)
        self.all_error = np.ones(self.n, dtype=bool)
        self._fields: dict[tuple, Vec] = {}

    def vector(self, node: ast.Node) -> Vec:
        """The PHP value of `node` on every row."""
        return _HANDLERS[type(node)](self, node)

    def result(self, expr: str | ast.Node) -> Vec:
        """The value of a whole expression, every row failed if a reference is unusable."""
        node = parse(expr) if isinstance(expr, str) else expr
        if any(self.problem(ref) for ref in ast.referenced_fields(node)) or php.uncompilable_literal(node):
            return Vec("str", np.full(self.n, "", dtype=object), self.all_error)
        return self.vector(node)

    def truth(self, expr: str | ast.Node) -> pd.Series:
        """REDCap's boolean outcome: False only where the value is PHP `false` or PHP threw."""
        vec = self.result(expr)
        if vec.kind == "bool":
            values = vec.values & ~vec.error
        elif vec.kind == "obj":
            values = np.array([v is not False for v in vec.values], dtype=bool) & ~vec.error
        else:
            values = ~vec.error
        return pd.Series(values, index=self.index, dtype=bool)

    def value(self, expr: str | ast.Node) -> pd.Series:
        """The PHP value per row as `str`/`float`/`bool` (NaN = blank number; None = threw)."""
        vec = self.result(expr)
        values = vectors.as_objects(vec).copy()
        values[vec.error] = None
        return pd.Series(values, index=self.index, dtype=object)

    def problem(self, ref: ast.FieldRef) -> str:
        """Why `ref` cannot be read (unknown field, event or checkbox code), or ''."""
        return reference_problem(ref, self.catalogue, self.layout, self.codes)

    def field(self, ref: ast.FieldRef, raw: bool = False) -> Vec:
        """The values a field reference stands for: `chkNull` numbers or stored text."""
        key = (ref.event, ref.field, ref.code, ref.instance, raw)
        if key not in self._fields:
            self._fields[key] = self._read_field(ref, raw)
        return self._fields[key]

    def forget_fields(self) -> None:
        """Drop the typed columns read so far (after the frame's values were changed)."""
        self._fields.clear()

    def _read_field(self, ref: ast.FieldRef, raw: bool) -> Vec:
        if self.problem(ref):
            return Vec("str", np.full(self.n, "", dtype=object), self.all_error)
        info = self.catalogue[ref.field]
        column = checkbox_column(info, ref.code) if ref.code is not None else info.name
        text = self.layout.raw(ref, info, column)
        if ref.code is not None:
            text = np.where(text == "", "0", text).astype(object)
        if raw or not (info.numeric or ref.code is not None):
            return Vec("str", text, self.no_error)
        return Vec("num", vectors.chk_null(text, info.comma_decimal), self.no_error)

    def wrapped(self, node: ast.Node) -> bool:
        """True for a field reference REDCap wraps in `chkNull` (§1.5)."""
        if not isinstance(node, ast.FieldRef) or node.field not in self.catalogue:
            return False
        return self.catalogue[node.field].numeric or node.code is not None


def _empty(ev: Evaluator, node: ast.Node) -> Vec:
    return vectors.constant("", ev.n, ev.no_error)


def _number(ev: Evaluator, node: ast.Number) -> Vec:
    try:
        return vectors.constant(php.number_literal(node.text), ev.n, ev.no_error)
    except php.PhpError:
        return vectors.constant(0.0, ev.n, ev.all_error)


def _string(ev: Evaluator, node: ast.String) -> Vec:
    return vectors.constant(node.value, ev.n, ev.no_error)


def _boolean(ev: Evaluator, node: ast.Boolean) -> Vec:
    return vectors.constant(node.value, ev.n, ev.no_error)


def _smart(ev: Evaluator, node: ast.SmartVariable) -> Vec:
    values = ev.layout.smart(node.name, **ev.smart_values)
    return Vec("str", values, ev.no_error)


def _field(ev: Evaluator, node: ast.FieldRef) -> Vec:
    return ev.field(node)


def _not(ev: Evaluator, node: ast.Not) -> Vec:
    operand = ev.vector(node.operand)
    return Vec("bool", ~vectors.truthy(operand), operand.error)


def _arithmetic(ev: Evaluator, node: ast.Arithmetic) -> Vec:
    return vectors.arith(node.op, ev.vector(node.left), ev.vector(node.right))


def _blank_literal(node: ast.Node) -> bool:
    return isinstance(node, ast.String) and node.value in ("", "NaN")


def _comparison(ev: Evaluator, node: ast.Comparison) -> Vec:
    if node.op in ("=", "<>") and (_blank_literal(node.left) or _blank_literal(node.right)):
        other = ev.vector(node.right if _blank_literal(node.left) else node.left)
        blank = vectors.is_nan_null(other)
        return Vec("bool", blank if node.op == "=" else ~blank, other.error)
    left, right = ev.vector(node.left), ev.vector(node.right)
    error = left.error | right.error
    if ev.wrapped(node.left) and ev.wrapped(node.right) and left.kind == right.kind == "num":
        return Vec("bool", vectors.chk_null_compare(node.op, left.values, right.values), error)
    return Vec("bool", vectors.compare(node.op, left, right), error)


def _and(ev: Evaluator, node: ast.And) -> Vec:
    left, right = ev.vector(node.left), ev.vector(node.right)
    left_true, right_true = vectors.truthy(left), vectors.truthy(right)
    return Vec("bool", left_true & right_true, left.error | (left_true & right.error))


def _or(ev: Evaluator, node: ast.Or) -> Vec:
    left, right = ev.vector(node.left), ev.vector(node.right)
    left_true, right_true = vectors.truthy(left), vectors.truthy(right)
    return Vec("bool", left_true | right_true, left.error | (~left_true & right.error))


def _power(ev: Evaluator, node: ast.Power) -> Vec:
    base, exponent = ev.vector(node.base), ev.vector(node.exponent)
    result = vectors.elementwise(power, [base, exponent], ev.n)  # C pow(), as PHP
    return Vec(result.kind, result.values, result.error | base.error | exponent.error)


def _call(ev: Evaluator, node: ast.Call) -> Vec:
    if not arity_ok(node.name, len(node.args)):
        return Vec("str", np.full(ev.n, "", dtype=object), ev.all_error)
    if node.name == "datediff":
        node = dates.datediff_literals(node, ev.formats)
    raw = node.name in RAW_ARGUMENT_FUNCTIONS
    args = [ev.field(arg, raw=True) if raw and isinstance(arg, ast.FieldRef) else ev.vector(arg)
            for arg in node.args]
    result = FUNCTIONS[node.name](args, ev.context)
    if node.name != "if":
        for arg in args:
            result.error = result.error | arg.error
    return result


_HANDLERS: dict[type, Handler] = {
    ast.Empty: _empty, ast.Number: _number, ast.String: _string, ast.Boolean: _boolean,
    ast.SmartVariable: _smart, ast.FieldRef: _field, ast.Not: _not,
    ast.Arithmetic: _arithmetic, ast.Comparison: _comparison, ast.And: _and, ast.Or: _or,
    ast.Power: _power, ast.Call: _call,
}


def evaluate(expr: str | ast.Node, frame: pd.DataFrame, metadata: pd.DataFrame, *,
             missing_data_codes: str | Iterable[str] = "", today: date | None = None,
             **options: object) -> pd.Series:
    """REDCap's boolean result of `expr` on every row of a raw flat export.

    Only PHP `false` is false, and a runtime error (division by zero, arithmetic on text, an
    unknown field) makes the row false, as in REDCap's filters and data quality rules.

    Example:
        With `age` an integer-validated field, `evaluate("[age] < 18", frame, metadata)` on rows
        with age `"17"` and `""` gives `[True, False]`: a blank number is NaN, never < 18.
    """
    evaluator = Evaluator(frame, metadata, missing_data_codes=missing_data_codes, today=today,
                          **options)  # type: ignore[arg-type]
    return evaluator.truth(expr)


def evaluate_value(expr: str | ast.Node, frame: pd.DataFrame, metadata: pd.DataFrame, *,
                   missing_data_codes: str | Iterable[str] = "", today: date | None = None,
                   **options: object) -> pd.Series:
    """The value of `expr` per row as REDCap sees it (for calcs and piping-like uses).

    Values are `str`, `float` (NaN for REDCap's NAN) or `bool`; rows where PHP threw are None.
    """
    evaluator = Evaluator(frame, metadata, missing_data_codes=missing_data_codes, today=today,
                          **options)  # type: ignore[arg-type]
    return evaluator.value(expr)
