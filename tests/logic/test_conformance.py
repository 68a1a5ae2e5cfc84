"""REDCap's documented behaviour, one row of conformance.csv per case, for both evaluators.

Each row names its source: a section or table row of shared/reference/redcap-semantics.md
(REDCap 15.7.6, mostly executed under PHP 8.2, marked V-run there).
"""
from __future__ import annotations

import csv
import json
import math
from datetime import date
from pathlib import Path

import pytest

from sync.errors import LogicSyntaxError
from sync.logic import evaluate, evaluate_rows, evaluate_value, evaluate_value_rows, parse
from tests.logic.conftest import export_frame

TODAY = date(2024, 6, 15)
CASES = list(csv.DictReader((Path(__file__).parent / "conformance.csv").open(newline="")))


def _case_id(case: dict[str, str]) -> str:
    return f"{case['mode']}:{case['expression']}:{case['row']}"


def _same(actual: object, expected: object) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-12, abs_tol=1e-12)
    return type(actual) is type(expected) and actual == expected


def test_the_table_has_at_least_150_cases_with_sources():
    assert len(CASES) >= 150
    assert all(case["source"].startswith("§") for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_conformance(case: dict[str, str], typed_metadata):
    expression = case["expression"]
    if case["mode"] == "syntax_error":
        with pytest.raises(LogicSyntaxError):
            parse(expression)
        return
    frame = export_frame(typed_metadata, [json.loads(case["row"])])
    options = {"missing_data_codes": case["missing_data_codes"], "today": TODAY}
    if case["mode"] == "truth":
        expected = case["expected"] == "true"
        assert evaluate(expression, frame, typed_metadata, **options).tolist() == [expected]
        assert evaluate_rows(expression, frame, typed_metadata, **options).tolist() == [expected]
    else:
        expected = json.loads(case["expected"])
        expected = float(expected) if isinstance(expected, int) and not isinstance(expected, bool) else expected
        vectorised = evaluate_value(expression, frame, typed_metadata, **options).tolist()
        by_row = evaluate_value_rows(expression, frame, typed_metadata, **options).tolist()
        assert _same(vectorised[0], expected), vectorised
        assert _same(by_row[0], expected), by_row
