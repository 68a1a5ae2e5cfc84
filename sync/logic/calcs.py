"""Recompute calculated fields the way REDCap stores them, and tell a stale saved value.

REDCap recomputes on API import only the calcs the payload's first row triggers
(redcap-behaviour.md §2), so a stored calc can lag its inputs; `calc_values_agree` judges a
saved value against its recomputed one as REDCap's rule H does.

A `calc` keeps its result only when it is a number and not NaN, else the field is blank (§3);
`@CALCTEXT(...)` keeps any value; `@CALCDATE(date, offset, unit)` stores a date formatted
for the target field. Calcs that read other calcs see the recomputed values.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import date

import pandas as pd

from sync.errors import LogicSyntaxError
from sync.logic import ast, dates, php
from sync.logic.evaluate import Evaluator
from sync.logic.parser import parse
from sync.crf.redcap_spec import METADATA_KEYS

_ACTION_TAG = re.compile(r"@(CALCTEXT|CALCDATE)\s*\(")


def calc_equations(metadata: pd.DataFrame) -> dict[str, tuple[str, ast.Node]]:
    """Field name -> (kind, parsed equation) for every calc, @CALCTEXT and @CALCDATE field.

    Raises:
        LogicSyntaxError: an equation does not parse; the message names the field.
    """
    found: dict[str, tuple[str, ast.Node]] = {}
    table = metadata.reindex(columns=list(METADATA_KEYS)).fillna("").astype(str)
    tagged = table["field_annotation"].str.contains("@CALC", regex=False)
    table = table[(table["field_type"] == "calc") | ((table["field_type"] == "text") & tagged)]
    for row in table.to_dict("records"):
        name, kind, text = row["field_name"], "", ""
        if row["field_type"] == "calc":
            kind, text = "calc", row["select_choices_or_calculations"]
        elif row["field_type"] == "text":
            kind, text = _action_tag(row["field_annotation"])
        if kind:
            try:
                found[name] = (kind, parse(text))
            except LogicSyntaxError as exc:
                raise LogicSyntaxError(f"calculation of field '{name}': {exc}", text=exc.text,
                                       line=exc.line, column=exc.column,
                                       expected=exc.expected) from None
    return found


def calc_values_agree(saved: str, calculated: str) -> bool:
    """True when a saved calc value stands for the recalculated one (`calculated`, PHP's
    14-digit text of the result) as REDCap's Data Quality rule H judges it
    (`Calculate::calculateMultipleFields`): the same text; numeric texts equal as numbers (PHP
    8's `==`); or numbers equal once both are rounded (PHP's `round`) to the fewer decimals of
    the two, a text without a point counting as one decimal. Rule H rounds the unrounded result;
    a saved number whose 14-digit text is `calculated` is that result written in full.

    A browser saves JavaScript's shortest text of the result (`380.95238095238096` where PHP
    writes `380.95238095238`): not stale to rule H, so not to the sync either, whose CALC_STALE
    query tells the data manager to run rule H."""
    if saved == calculated:
        return True
    if not (php.is_numeric(saved) and php.is_numeric(calculated)):
        return False
    first, second = php.numeric_value(saved), php.numeric_value(calculated)
    if first == second or php.float_to_str(first) == calculated:
        return True
    places = min(_decimals(saved), _decimals(calculated))
    return php.php_round(first, places) == php.php_round(second, places)


def _decimals(text: str) -> int:
    text = text.strip(php.WHITESPACE)
    point = text.find(".")
    return 1 if point < 0 else len(text) - point - 1


def _action_tag(annotation: str) -> tuple[str, str]:
    """('calctext'|'calcdate', equation) from a field annotation, or ('', '')."""
    match = _ACTION_TAG.search(annotation)
    if not match:
        return "", ""
    depth, start = 1, match.end()
    for i in range(start, len(annotation)):
        depth += {"(": 1, ")": -1}.get(annotation[i], 0)
        if depth == 0:
            inner = annotation[start:i]
            if match.group(1) == "CALCDATE":
                return "calcdate", f"calcdate({inner})"
            return "calctext", inner
    return "", ""


def _order(equations: dict[str, tuple[str, ast.Node]]) -> list[str]:
    """Calc fields with the calcs they read first (dictionary order where there is a cycle)."""
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in visiting:
            return
        visiting.add(name)
        for ref in ast.referenced_fields(equations[name][1]):
            if ref.field in equations and ref.event is None:
                visit(ref.field)
        visiting.discard(name)
        done.append(name)

    for name in equations:
        visit(name)
    return done


def stored_text(value: php.Value | None, kind: str, validation: str = "") -> str:
    """The text REDCap saves for a calculated value (blank when it would not save one)."""
    if value is None:
        return ""
    if kind == "calc":
        if isinstance(value, float):
            return php.float_to_str(value) if math.isfinite(value) else ""
        return value if isinstance(value, str) and php.is_numeric(value) else ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    text = php.to_str(value)
    if kind == "calcdate" and text:
        return _date_for(text, validation)
    return text


def _date_for(text: str, validation: str) -> str:
    found = dates.moment(text, date(1970, 1, 1), dates.EPOCH)
    if found is None:
        return ""
    stamp = dates.EPOCH + pd.Timedelta(seconds=found[0]).to_pytimedelta()
    if validation.startswith("datetime_seconds"):
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    if validation.startswith("datetime"):
        return stamp.strftime("%Y-%m-%d %H:%M")
    return stamp.strftime("%Y-%m-%d")


def compute_calcs(frame: pd.DataFrame, metadata: pd.DataFrame, *,
                  missing_data_codes: str | Iterable[str] = "", today: date | None = None,
                  **options: object) -> pd.DataFrame:
    """Every calculated field recomputed per row, as the strings REDCap would store.

    Returns a frame on `frame`'s index with one column per calc/@CALCTEXT/@CALCDATE field, in
    dictionary order. Rows whose event or instance does not hold the field still get a value;
    callers keep the rows that matter.

    Example:
        With `pf_ratio = [pao2] / ([fio2] / 100)`, rows with pao2/fio2 `80`/`21` and `""`/`40`
        give `"380.95238095238"` and `""` (a blank number makes the calc blank).
    """
    equations = calc_equations(metadata)
    working = frame.copy(deep=False)  # recomputed calcs replace columns, never write into them
    evaluator = Evaluator(working, metadata, missing_data_codes=missing_data_codes, today=today,
                          **options)  # type: ignore[arg-type]
    validations = {name: info.validation for name, info in evaluator.catalogue.items()}
    results: dict[str, list[str]] = {}
    for name in _order(equations):
        kind, node = equations[name]
        values = evaluator.value(node)
        texts = [stored_text(value, kind, validations.get(name, "")) for value in values]
        results[name] = texts
        working[name] = texts
        evaluator.forget_fields()
    return pd.DataFrame({name: results[name] for name in equations}, index=frame.index,
                        dtype=object)
