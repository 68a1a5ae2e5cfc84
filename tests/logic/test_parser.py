"""Parser: trees for each construct, REDCap's rejected spellings, and the syntax-error message."""
from __future__ import annotations

import pytest

from sync.errors import LogicSyntaxError
from sync.logic import FUNCTIONS, ALLOWED_FUNCTIONS, parse, referenced_fields, unparse
from sync.logic.ast import (And, Arithmetic, Boolean, Call, Comparison, Empty, FieldRef, Not,
                            Number, Or, Power, SmartVariable, String)


@pytest.mark.parametrize(("text", "tree"), [
    ("[age] >= 18", Comparison(">=", FieldRef("age"), Number("18"))),
    ("[ic_yn] = '1'", Comparison("=", FieldRef("ic_yn"), String("1"))),
    ("[a] != 1", Comparison("<>", FieldRef("a"), Number("1"))),
    ("[a]-2", Arithmetic("-", FieldRef("a"), Number("2"))),
    ("[a] - -2", Arithmetic("-", FieldRef("a"), Number("-2"))),
    ("2 + 3 * 4", Arithmetic("+", Number("2"), Arithmetic("*", Number("3"), Number("4")))),
    ("10 - 2 - 3", Arithmetic("-", Arithmetic("-", Number("10"), Number("2")), Number("3"))),
    ("![x] = 3", Comparison("=", Not(FieldRef("x")), Number("3"))),
    ("[a] = 1 or [b] = 2 and [c] = 3",
     Or(Comparison("=", FieldRef("a"), Number("1")),
        And(Comparison("=", FieldRef("b"), Number("2")), Comparison("=", FieldRef("c"), Number("3"))))),
    ("[a] && [b] || [c]", Or(And(FieldRef("a"), FieldRef("b")), FieldRef("c"))),
    ("(2)^(3)", Power(Number("2"), Number("3"))),
    ("TRUE", Boolean(True)),
    ('"it\'s"', String("it's")),
    (".5", Number(".5")),
    ("[visit_1_arm_1][hb]", FieldRef("hb", event="visit_1_arm_1")),
    ("[cb(-1)]", FieldRef("cb", code="-1")),
    ("[cb(1):value]", FieldRef("cb", code="1")),
    ("[ae_term][2]", FieldRef("ae_term", instance="2")),
    ("[ev][cb(2)][previous-instance]", FieldRef("cb", event="ev", code="2", instance="previous-instance")),
    ("[event-name][x]", FieldRef("x", event="event-name")),
    ("[record-name]", SmartVariable("record-name")),
    ("sum()", Call("sum", ())),
    ("datediff([icdat], [brthdat], 'y')",
     Call("datediff", (FieldRef("icdat"), FieldRef("brthdat"), String("y")))),
    ("// screening only\n[a] = 1", Comparison("=", FieldRef("a"), Number("1"))),
    ("   ", Empty()),
])
def test_parse_builds_the_tree(text, tree):
    assert parse(text) == tree


def test_nodes_remember_line_and_column():
    tree = parse("[a] = 1\n  and [b] = 2")
    assert (tree.right.line, tree.right.column) == (2, 7)
    assert [(ref.field, ref.line, ref.column) for ref in referenced_fields(tree)] == [
        ("a", 1, 1), ("b", 2, 7)]


def test_referenced_fields_lists_event_code_and_position():
    refs = referenced_fields(parse("if([e1][cb(2)] = 1, [x], sum([y], [e2][z]))"))
    assert [(r.event, r.field, r.code, r.line, r.column) for r in refs] == [
        ("e1", "cb", "2", 1, 4), (None, "x", None, 1, 21), (None, "y", None, 1, 30),
        ("e2", "z", None, 1, 35)]


def test_syntax_error_shows_expression_caret_position_and_expectation():
    with pytest.raises(LogicSyntaxError) as caught:
        parse("[age] == 18")
    error = caught.value
    assert str(error) == (
        "logic syntax error at line 1, column 8: unexpected '='; expected '!', true/false, "
        "a field like [age], a function, '(', a number, a smart variable, a quoted string\n"
        "  [age] == 18\n"
        "         ^")
    assert (error.line, error.column, error.text) == (1, 8, "[age] == 18")
    assert "a field like [age]" in error.expected


def test_syntax_error_on_a_later_line_points_into_that_line():
    with pytest.raises(LogicSyntaxError) as caught:
        parse("[a] = 1\nAnd [b] = 2")
    assert str(caught.value).splitlines()[1:] == ["  And [b] = 2", "  ^"]
    assert (caught.value.line, caught.value.column) == (2, 1)


def test_illegal_function_names_the_function():
    with pytest.raises(LogicSyntaxError) as caught:
        parse("[a] = 1 and IF([b] = 1, 1, 0) = 1")
    assert str(caught.value) == (
        "logic syntax error at line 1, column 13: illegal function 'IF' "
        "(REDCap's functions are lower-case)\n"
        "  [a] = 1 and IF([b] = 1, 1, 0) = 1\n"
        "              ^")


def test_unknown_function_is_named_as_not_a_redcap_function():
    with pytest.raises(LogicSyntaxError, match="illegal function 'isblank' "
                                               r"\(not one of REDCap's functions\)"):
        parse("isblank([a])")


def test_every_allowed_function_has_a_primitive():
    assert sorted(FUNCTIONS) == sorted(ALLOWED_FUNCTIONS)


@pytest.mark.parametrize("text", [
    "[age] >= 18 and [ic_yn] = '1'", "datediff([icdat], [brthdat], 'y') >= 18",
    "if([x] = '', 0, [x]) + (2)^(0.5)", "!([a] <> 'b') or [e][c(1)][3] = 1",
])
def test_unparse_round_trips(text):
    assert parse(unparse(parse(text))) == parse(text)
