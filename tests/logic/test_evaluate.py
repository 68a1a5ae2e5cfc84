"""Vectorised evaluation on small frames: masks, events, instances, calcs, PHP number text."""
from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from sync.errors import LogicSyntaxError
from sync.logic import (Evaluator, compute_calcs, evaluate, evaluate_rows, evaluate_value)
from sync.logic.php import float_to_str
from tests.logic.conftest import metadata_frame

TODAY = date(2024, 6, 15)

SCREENING = metadata_frame([
    {"field_name": "record_id", "field_type": "text"},
    {"field_name": "brthdat", "field_type": "text", "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "icdat", "field_type": "text", "text_validation_type_or_show_slider_number": "date_ymd"},
    {"field_name": "age", "field_type": "text", "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "pao2", "field_type": "text", "text_validation_type_or_show_slider_number": "number"},
    {"field_name": "fio2", "field_type": "text", "text_validation_type_or_show_slider_number": "integer"},
    {"field_name": "pf_ratio", "field_type": "calc", "select_choices_or_calculations": "[pao2] / ([fio2] / 100)"},
    {"field_name": "pf_band", "field_type": "calc",
     "select_choices_or_calculations": "if([pf_ratio] = '', '', if([pf_ratio] <= 300, 1, 0))"},
    {"field_name": "pf_label", "field_type": "text", "field_annotation": "@CALCTEXT(if([pf_band] = 1, 'ARDS', 'no'))"},
    {"field_name": "day7", "field_type": "text", "text_validation_type_or_show_slider_number": "date_ymd",
     "field_annotation": "@READONLY @CALCDATE([icdat], 7, 'd')"},
], form="screening")

AE = metadata_frame([
    {"field_name": "ae_term", "field_type": "text"},
    {"field_name": "ae_sev", "field_type": "radio", "select_choices_or_calculations": "1, Mild | 2, Moderate | 3, Severe"},
], form="adverse_events")
PROJECT = pd.concat([SCREENING, AE], ignore_index=True)


def _frame(rows: list[dict[str, str]], index: list[int] | None = None) -> pd.DataFrame:
    columns = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
               "brthdat", "icdat", "age", "pao2", "fio2", "pf_ratio", "pf_band", "pf_label", "day7",
               "screening_complete", "ae_term", "ae_sev", "adverse_events_complete"]
    data = [{column: row.get(column, "") for column in columns} for row in rows]
    return pd.DataFrame(data, columns=columns, index=index, dtype=object)


LONGITUDINAL = _frame([
    {"record_id": "101", "redcap_event_name": "screening_arm_1", "age": "17", "icdat": "2024-06-01"},
    {"record_id": "101", "redcap_event_name": "day1_arm_1", "pao2": "80", "fio2": "21"},
    {"record_id": "101", "redcap_event_name": "day1_arm_1", "redcap_repeat_instrument": "adverse_events",
     "redcap_repeat_instance": "1", "ae_term": "rash", "ae_sev": "1"},
    {"record_id": "101", "redcap_event_name": "day1_arm_1", "redcap_repeat_instrument": "adverse_events",
     "redcap_repeat_instance": "2", "ae_term": "fever", "ae_sev": "3"},
    {"record_id": "102", "redcap_event_name": "day1_arm_1", "pao2": "60", "fio2": "40"},
], index=[10, 11, 12, 13, 14])


def test_result_is_aligned_to_the_frame_index():
    result = evaluate("[pao2] > 70", LONGITUDINAL, PROJECT, today=TODAY)
    assert result.equals(pd.Series([False, True, True, True, False], index=[10, 11, 12, 13, 14]))


def test_unprefixed_refs_read_the_rows_own_event():
    assert evaluate("[age] < 18", LONGITUDINAL, PROJECT).tolist() == [True, False, False, False, False]


def test_event_prefixed_ref_reads_the_same_records_other_event():
    result = evaluate("[screening_arm_1][age] < 18 and [pao2] > 70", LONGITUDINAL, PROJECT)
    assert result.tolist() == [False, True, True, True, False]


def test_event_prefixed_ref_to_an_absent_event_row_reads_blank():
    result = evaluate_value("[screening_arm_1][age]", LONGITUDINAL, PROJECT)
    values = result.tolist()
    assert values[:4] == [17.0, 17.0, 17.0, 17.0] and values[4] != values[4]


def test_unknown_event_makes_every_row_false():
    assert evaluate("[nosuch_arm_1][age] < 18 or 1 = 1", LONGITUDINAL, PROJECT).tolist() == [False] * 5


def test_repeating_instance_rows_read_their_own_instance_and_the_base_rows_other_forms():
    result = evaluate_value("concat([ae_term], '/', [pao2])", LONGITUDINAL, PROJECT)
    assert result.tolist() == ["/NAN", "rash/80", "rash/80", "fever/80", "/60"]


def test_previous_and_explicit_instances():
    previous = evaluate_value("[ae_sev][previous-instance]", LONGITUDINAL, PROJECT).tolist()
    assert previous[3] == 1.0 and previous[2] != previous[2]
    assert evaluate("[ae_sev][2] = 3", LONGITUDINAL, PROJECT).tolist() == [False, True, True, True, False]


def test_smart_variables_read_the_row():
    values = evaluate_value("concat([record-name], '@', [event-name], '#', [current-instance])",
                            LONGITUDINAL, PROJECT).tolist()
    assert values == ["101@screening_arm_1#1", "101@day1_arm_1#1", "101@day1_arm_1#1",
                      "101@day1_arm_1#2", "102@day1_arm_1#1"]


def test_evaluate_value_marks_runtime_errors_as_none():
    frame = _frame([{"record_id": "1", "pao2": "80", "fio2": "0"}, {"record_id": "2", "pao2": "80", "fio2": "40"}])
    assert evaluate_value("[pao2] / [fio2]", frame, PROJECT).tolist() == [None, 2.0]


def test_syntax_errors_propagate_from_evaluate():
    with pytest.raises(LogicSyntaxError):
        evaluate("[age] == 1", LONGITUDINAL, PROJECT)


def test_an_evaluator_serves_many_rules_over_one_frame():
    evaluator = Evaluator(LONGITUDINAL, PROJECT, today=TODAY)
    assert evaluator.truth("[age] >= 18").tolist() == [False] * 5
    assert evaluator.truth("datediff([icdat], 'today', 'd') = 14").tolist() == [True, False, False, False, False]


def test_reference_interpreter_agrees_on_events_and_instances():
    for rule in ["[screening_arm_1][age] < 18", "[ae_sev][previous-instance] = 1", "[ae_sev] = ''"]:
        assert evaluate(rule, LONGITUDINAL, PROJECT).tolist() == evaluate_rows(rule, LONGITUDINAL, PROJECT).tolist()


def test_compute_calcs_stores_what_redcap_would():
    frame = _frame([
        {"record_id": "1", "pao2": "80", "fio2": "21", "icdat": "2024-02-25"},
        {"record_id": "2", "pao2": "", "fio2": "40", "icdat": ""},
        {"record_id": "3", "pao2": "70", "fio2": "0", "icdat": "2024-12-30"},
        {"record_id": "4", "pao2": "150", "fio2": "50", "icdat": "2024-01-01"},
    ])
    calcs = compute_calcs(frame, PROJECT)
    assert calcs.to_dict("list") == {
        "pf_ratio": ["380.95238095238", "", "", "300"],
        "pf_band": ["0", "", "", "1"],
        "pf_label": ["no", "no", "no", "ARDS"],
        "day7": ["2024-03-03", "", "2025-01-06", "2024-01-08"],
    }
    assert calcs.index.equals(frame.index)


def test_compute_calcs_names_the_field_of_a_bad_equation():
    broken = metadata_frame([{"field_name": "record_id", "field_type": "text"},
                             {"field_name": "bad", "field_type": "calc",
                              "select_choices_or_calculations": "[a] == 1"}])
    with pytest.raises(LogicSyntaxError, match="^calculation of field 'bad': logic syntax error"):
        compute_calcs(pd.DataFrame({"record_id": ["1"]}), broken)


@pytest.mark.parametrize(("number", "text"), [
    (5.0, "5"), (0.1 + 0.2, "0.3"), (1 / 3, "0.33333333333333"), (1e15, "1.0E+15"),
    (1.5e15, "1.5E+15"), (1e14, "1.0E+14"), (123456789012.5, "123456789012.5"), (0.0001, "0.0001"),
    (0.00001, "1.0E-5"), (-2.5, "-2.5"), (float("nan"), "NAN"), (float("inf"), "INF"), (-0.0, "-0"),
])
def test_numbers_become_text_as_php_prints_them(number, text):
    assert float_to_str(number) == text


def test_reference_problems_lists_what_redcap_cannot_read():
    from sync.logic import parse, reference_problems
    tree = parse("[age] = 1 or [nope] = 2 or [ae_sev(9)] = 1 or [day9_arm_1][age] = 1 "
                 "or [screening_complete] = 2")
    problems = [(ref.field, ref.column, why) for ref, why in
                reference_problems(tree, PROJECT, events=["screening_arm_1", "day1_arm_1"])]
    assert problems == [("nope", 14, "unknown field [nope]"),
                        ("ae_sev", 28, "[ae_sev(9)] is not a choice of a checkbox"),
                        ("age", 47, "unknown event [day9_arm_1]")]
