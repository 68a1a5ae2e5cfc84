"""Row-at-a-time interpreter of REDCap logic: the test oracle and the benchmark baseline.

Deliberately plain: one row, one node at a time, with the scalar PHP semantics of `php.py`
and `scalar.py`, and Python exceptions for PHP's runtime errors. It shares with the vectorised
evaluator only the field typing and the row lookup of `fields.py`.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timezone

import numpy as np
import pandas as pd

from sync.logic import ast, dates, php
from sync.logic.fields import (FrameLayout, checkbox_column, field_catalogue, missing_codes,
                               record_column, reference_problem)
from sync.logic.parser import parse
from sync.logic.scalar import (RAW_ARGUMENT_FUNCTIONS, SCALAR_FUNCTIONS, Env, arity_ok,
                               power)


class Interpreter:
    """Evaluates one expression row by row over a raw flat export."""

    def __init__(self, frame: pd.DataFrame, metadata: pd.DataFrame, *,
                 missing_data_codes: str | Iterable[str] = "", today: date | None = None,
                 now: datetime | None = None, events: list[str] | None = None,
                 project_id: str = "", user_name: str = "") -> None:
        self.index = frame.index
        self.codes = missing_codes(missing_data_codes)
        self.catalogue = field_catalogue(metadata, self.codes)
        self.layout = FrameLayout(frame, record_column(frame, metadata), events)
        clock = datetime.now(timezone.utc).replace(tzinfo=None)
        moment = now or (datetime.combine(today, time()) if today else clock)
        self.env = Env(today or moment.date(), moment, self.codes)
        self.formats = {name: info.date_format for name, info in self.catalogue.items()}
        self.smart_options = {"project_id": project_id, "user_name": user_name}
        self._columns: dict[tuple, np.ndarray] = {}

    def values(self, expr: str | ast.Node) -> list[php.Value | None]:
        """The PHP value per row; None where PHP threw or a reference is unusable."""
        node = parse(expr) if isinstance(expr, str) else expr
        if any(reference_problem(ref, self.catalogue, self.layout, self.codes)
               for ref in ast.referenced_fields(node)) or php.uncompilable_literal(node):
            return [None] * self.layout.n
        out: list[php.Value | None] = []
        for row in range(self.layout.n):
            try:
                out.append(self.value(node, row))
            except php.PhpError:
                out.append(None)
        return out

    def truths(self, expr: str | ast.Node) -> list[bool]:
        """REDCap's boolean outcome per row: only PHP false, or an error, is False."""
        return [value is not None and value is not False for value in self.values(expr)]

    def value(self, node: ast.Node, row: int) -> php.Value:
        """The PHP value of `node` on one row."""
        match node:
            case ast.Empty():
                return ""
            case ast.Number(text=text):
                return php.number_literal(text)
            case ast.String(value=value):
                return value
            case ast.Boolean(value=value):
                return value
            case ast.SmartVariable(name=name):
                return str(self.layout.smart(name, **self.smart_options)[row])
            case ast.FieldRef():
                return self.field(node, row)
            case ast.Not(operand=operand):
                return not php.truthy(self.value(operand, row))
            case ast.Arithmetic(op=op, left=left, right=right):
                return php.arith(op, self.value(left, row), self.value(right, row))
            case ast.Comparison():
                return self.comparison(node, row)
            case ast.And(left=left, right=right):
                return php.truthy(self.value(left, row)) and php.truthy(self.value(right, row))
            case ast.Or(left=left, right=right):
                return php.truthy(self.value(left, row)) or php.truthy(self.value(right, row))
            case ast.Power(base=base, exponent=exponent):
                return power(self.value(base, row), self.value(exponent, row))
            case ast.Call():
                return self.call(node, row)
        raise TypeError(f"not a logic node: {node!r}")

    def field(self, ref: ast.FieldRef, row: int, raw: bool = False) -> php.Value:
        """A field's stored text, or its `chkNull` number when REDCap wraps it."""
        info = self.catalogue[ref.field]
        key = (ref.event, ref.field, ref.code, ref.instance)
        if key not in self._columns:
            column = checkbox_column(info, ref.code) if ref.code is not None else info.name
            self._columns[key] = self.layout.raw(ref, info, column)
        text = str(self._columns[key][row])
        if ref.code is not None and text == "":
            text = "0"
        if raw or not (info.numeric or ref.code is not None):
            return text
        return php.chk_null(text, info.comma_decimal)

    def _wrapped(self, node: ast.Node) -> bool:
        return isinstance(node, ast.FieldRef) and (
            self.catalogue[node.field].numeric or node.code is not None)

    def comparison(self, node: ast.Comparison, row: int) -> bool:
        """`X = ''` as a blank test, two numeric fields via chkNullCompare, else PHP rules."""
        for blank, other in ((node.right, node.left), (node.left, node.right)):
            if (node.op in ("=", "<>") and isinstance(blank, ast.String)
                    and blank.value in ("", "NaN")):
                is_blank = php.is_nan_null(self.value(other, row))
                return is_blank if node.op == "=" else not is_blank
        left, right = self.value(node.left, row), self.value(node.right, row)
        if self._wrapped(node.left) and self._wrapped(node.right):
            return php.chk_null_compare(node.op, left, right)  # type: ignore[arg-type]
        return php.compare(node.op, left, right)

    def call(self, node: ast.Call, row: int) -> php.Value:
        """A function call; `if` evaluates only the branch it takes."""
        if not arity_ok(node.name, len(node.args)):
            raise php.PhpError(f"ArgumentCountError in {node.name}()")
        if node.name == "if":
            condition, then, otherwise = node.args
            return self.value(then if php.truthy(self.value(condition, row)) else otherwise, row)
        if node.name == "datediff":
            node = dates.datediff_literals(node, self.formats)
        raw = node.name in RAW_ARGUMENT_FUNCTIONS
        args = [self.field(arg, row, raw=True) if raw and isinstance(arg, ast.FieldRef)
                else self.value(arg, row) for arg in node.args]
        return SCALAR_FUNCTIONS[node.name](self.env, *args)


def evaluate_rows(expr: str | ast.Node, frame: pd.DataFrame, metadata: pd.DataFrame,
                  **options: object) -> pd.Series:
    """Row-by-row twin of `sync.logic.evaluate` (same arguments, same result)."""
    interpreter = Interpreter(frame, metadata, **options)  # type: ignore[arg-type]
    return pd.Series(interpreter.truths(expr), index=frame.index, dtype=bool)


def evaluate_value_rows(expr: str | ast.Node, frame: pd.DataFrame, metadata: pd.DataFrame,
                        **options: object) -> pd.Series:
    """Row-by-row twin of `sync.logic.evaluate_value`."""
    interpreter = Interpreter(frame, metadata, **options)  # type: ignore[arg-type]
    return pd.Series(interpreter.values(expr), index=frame.index, dtype=object)
