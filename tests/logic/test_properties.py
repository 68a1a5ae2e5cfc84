"""Properties over random logic: parsing never crashes, printing round-trips, both evaluators agree."""
from __future__ import annotations

import math
from datetime import date

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import pytest

from sync.errors import LogicSyntaxError
from sync.logic import ast, evaluate, evaluate_rows, evaluate_value, evaluate_value_rows, parse, unparse
from sync.logic.parser import ALLOWED_FUNCTIONS
from sync.logic.scalar import ARITY
from tests.logic.conftest import TYPED_FIELDS, export_frame, metadata_frame

METADATA = metadata_frame(TYPED_FIELDS)
PLAIN_FIELDS = [spec["field_name"] for spec in TYPED_FIELDS if spec["field_type"] != "checkbox"]
TODAY = date(2024, 6, 15)
CODES = "UNK, Unknown | NA, Not applicable"
STORED = ["", "0", "1", "-1", "2.5", " 5", "5 ", "1e3", "abc", "ABC", "NaN", "01", "007", "1,5",
          "2020-01-01", "2021-02-29", "2024-06-14 18:00", "10:30", "UNK", "é", "inf", "1_000",
          "-0", "0.0", "true", "a and b", "５", "\v5", "5e", "1e500"]

numbers = st.from_regex(r"[+-]?([0-9]{1,3}|[0-9]{0,2}\.[0-9]{1,2})", fullmatch=True).map(ast.Number)
strings = st.sampled_from(["", "0", "1", "a", "ABC", "it's", "2020-01-01", "today", "y", "d",
                           "M", "mdy", "NaN", "UNK", " 5"]).map(ast.String)
booleans = st.booleans().map(ast.Boolean)
field_refs = st.one_of(
    st.sampled_from(PLAIN_FIELDS).map(ast.FieldRef),
    st.sampled_from(["1", "2", "-1", "1.5"]).map(lambda code: ast.FieldRef("cb", code=code)),
    st.just(ast.FieldRef("nonexist")),
)
leaves = st.one_of(numbers, strings, booleans, field_refs,
                   st.just(ast.SmartVariable("record-name")))


def _composites(children: st.SearchStrategy[ast.Node]) -> st.SearchStrategy[ast.Node]:
    call_names = st.sampled_from(ALLOWED_FUNCTIONS)
    return st.one_of(
        children.map(ast.Not),
        st.builds(ast.Arithmetic, st.sampled_from("+-*/"), children, children),
        st.builds(ast.Comparison, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]),
                  children, children),
        st.builds(ast.And, children, children),
        st.builds(ast.Or, children, children),
        st.builds(ast.Power, children, children),
        call_names.flatmap(lambda name: st.lists(
            children, min_size=ARITY[name][0], max_size=ARITY[name][1] or 4).map(
                lambda args: ast.Call(name, tuple(args)))),
    )


expressions = st.recursive(leaves, _composites, max_leaves=8)
records = st.fixed_dictionaries({name: st.sampled_from(STORED) for name in PLAIN_FIELDS[1:]},
                                optional={"cb___1": st.sampled_from(["0", "1", ""])})


def _same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    return type(left) is type(right) and left == right


@given(expressions)
def test_unparse_then_parse_gives_the_same_tree(tree):
    assert parse(unparse(tree)) == tree


token_soup = st.lists(st.sampled_from(
    ["[num]", "[cb(1)]", "[e1][txt]", "[txt][2]", "[record-name]", "(", ")", ",", " and ",
     " or ", "&&", "=", "<>", "!=", "<", ">=", "==", "!", "+", "-", "*", "/", "^", "1", "-2",
     ".5", "'a'", '"b"', "true", "if(", "sum(", "datediff(", "IF(", " ", "\n", "//", "#", "e3",
     "[", "]"]), max_size=14).map("".join)


@given(token_soup)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_text_parses_or_raises_logic_syntax_error(text):
    try:
        tree = parse(text)
    except LogicSyntaxError as exc:
        assert exc.line >= 1 and exc.column >= 1
        assert "^" in str(exc)
    else:
        frame = export_frame(METADATA, [{}])
        assert evaluate(tree, frame, METADATA, today=TODAY).dtype == bool


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@given(expressions, st.lists(records, min_size=1, max_size=4), st.sampled_from(["", CODES]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_vectorised_evaluator_agrees_with_the_row_interpreter(tree, rows, codes):
    frame = export_frame(METADATA, rows)
    options = {"missing_data_codes": codes, "today": TODAY}
    vectorised = evaluate_value(tree, frame, METADATA, **options).tolist()
    by_row = evaluate_value_rows(tree, frame, METADATA, **options).tolist()
    assert len(vectorised) == len(by_row)
    assert all(_same(a, b) for a, b in zip(vectorised, by_row)), (unparse(tree), vectorised, by_row)
    truth = evaluate(tree, frame, METADATA, **options)
    assert truth.tolist() == evaluate_rows(tree, frame, METADATA, **options).tolist()
    assert truth.index.equals(frame.index)


@given(st.lists(records, min_size=2, max_size=6))
@settings(deadline=None)
def test_a_frame_evaluates_like_its_rows_one_at_a_time(rows):
    frame = export_frame(METADATA, rows)
    rule = "[num] >= 1 and datediff([dt], 'today', 'd') < 2000 or sum([int], [num2]) > 2"
    whole = evaluate(rule, frame, METADATA, today=TODAY).tolist()
    singly = [evaluate(rule, frame.iloc[[i]], METADATA, today=TODAY).iloc[0] for i in range(len(rows))]
    assert whole == singly


def test_the_property_frames_have_string_cells_only():
    frame = export_frame(METADATA, [{"num": "1"}])
    assert all(isinstance(v, str) for v in frame.iloc[0]) and isinstance(frame, pd.DataFrame)
