"""`sync.typed`: the raw flat export typed by the dictionary, bad values reported not fatal."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.crf.dictionary import Dictionary, load_dictionary
from sync.errors import DictionaryError
from sync.typed import (TypingProblem, parse_dates, parse_datetimes, type_frame,
                        type_frame_with_problems, typing_problems)

MINI = Path(__file__).parent / "data" / "mini"
DICTIONARY = load_dictionary(MINI / "data_dictionary.csv", MINI / "redcap")
COLUMNS = DICTIONARY.export_columns()


def raw(*rows: dict[str, str], dictionary: Dictionary = DICTIONARY) -> pd.DataFrame:
    """A flat export as PyCap returns it: every export column, strings, "" for blank."""
    columns = dictionary.export_columns()
    return pd.DataFrame([{c: row.get(c, "") for c in columns} for row in rows], columns=columns)


SCREENING = {"record_id": "01-007", "redcap_event_name": "screening_arm_1", "icdat": "2024-03-01",
             "age": "45", "sex": "2", "pregnant": "0", "enrolment_complete": "2", "rr": "31",
             "pao2": "114", "fio2": "57", "pf_ratio": "200", "symptoms___1": "1",
             "symptoms___2": "0", "symptoms____1": "0", "vitals_complete": "0", "comfort": "50",
             "oxygen": "3"}
AE = {"record_id": "01-007", "redcap_event_name": "logs_arm_1",
      "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": "2",
      "ae_term": "Headache", "ae_stdat": "2024-03-02", "ae_sttim": "9:05", "ae_grade": "5",
      "ae_ser": "1", "ae_aware_dtc": "2024-03-02 09:05", "adverse_event_complete": "1",
      "symptoms___1": "0", "vitals_complete": "0"}


def test_every_kind_of_column_gets_its_dtype() -> None:
    typed = type_frame(raw(SCREENING, AE), DICTIONARY)
    dtypes = {column: str(dtype) for column, dtype in typed.dtypes.items()}
    assert dtypes == {
        "record_id": "string", "redcap_event_name": "string",
        "redcap_repeat_instrument": "string", "redcap_repeat_instance": "Int64",
        "initials": "string", "icdat": "datetime64[ns]", "brthdat": "datetime64[ns]",
        "age": "Int64", "sex": "category", "pregnant": "category", "enrolment_complete": "Int8",
        "vdat": "datetime64[ns]", "rr": "Int64", "spo2": "Int64", "spo2_ra": "category",
        "pao2": "Float64", "fio2": "Int64", "pf_ratio": "Float64", "symptoms___1": "Int8",
        "symptoms___2": "Int8", "symptoms____1": "Int8", "cough_days": "Int64",
        "preg_check": "category", "oxygen": "category", "comfort": "Float64",
        "vit_note": "string", "vitals_complete": "Int8", "ae_term": "string",
        "ae_stdat": "datetime64[ns]", "ae_sttim": "string", "ae_grade": "category",
        "ae_ser": "category", "ae_aware_dtc": "datetime64[ns]", "adverse_event_complete": "Int8",
    }
    assert list(typed["sex"].cat.categories) == ["1", "2"]
    assert list(typed["pregnant"].cat.categories) == ["1", "0"]
    assert list(typed["oxygen"].cat.categories) == ["0", "1", "2", "3"]


def test_values_are_typed_and_blanks_are_missing() -> None:
    typed = type_frame(raw(SCREENING, AE), DICTIONARY)
    picked = typed[["record_id", "redcap_repeat_instrument", "redcap_repeat_instance", "icdat",
                    "age", "pf_ratio", "ae_aware_dtc", "ae_sttim", "initials"]]
    expected = pd.DataFrame({
        "record_id": pd.array(["01-007", "01-007"], dtype="string"),
        "redcap_repeat_instrument": pd.array(["", "adverse_event"], dtype="string"),
        "redcap_repeat_instance": pd.array([None, 2], dtype="Int64"),
        "icdat": pd.to_datetime(["2024-03-01", None]).astype("datetime64[ns]"),
        "age": pd.array([45, None], dtype="Int64"),
        "pf_ratio": pd.array([200.0, None], dtype="Float64"),
        "ae_aware_dtc": pd.to_datetime([None, "2024-03-02 09:05"]).astype("datetime64[ns]"),
        "ae_sttim": pd.array([None, "9:05"], dtype="string"),
        "initials": pd.array([None, None], dtype="string"),
    })
    pd.testing.assert_frame_equal(picked, expected)
    assert typed["sex"].tolist()[0] == "2" and pd.isna(typed["sex"].tolist()[1])


def test_checkboxes_and_status_are_missing_where_the_form_cannot_hold_data() -> None:
    # redcap-semantics.md §6.2: another form's checkbox on a repeating row, or a form not
    # designated for the row's event, has no value (REDCap exports it blank).
    day7_enrolment = {"record_id": "01-007", "redcap_event_name": "day_7_arm_1",
                      "enrolment_complete": "0", "symptoms___2": "1", "vitals_complete": "1"}
    typed = type_frame(raw(SCREENING, AE, day7_enrolment), DICTIONARY)
    assert typed["symptoms___1"].tolist() == [1, pd.NA, pd.NA]
    assert typed["symptoms___2"].tolist() == [0, pd.NA, 1]
    assert typed["vitals_complete"].tolist() == [0, pd.NA, 1]
    assert typed["enrolment_complete"].tolist() == [2, pd.NA, pd.NA]
    assert typed["adverse_event_complete"].tolist() == [pd.NA, 1, pd.NA]


def test_values_that_do_not_fit_are_reported_and_missing() -> None:
    bad = {**AE, "ae_stdat": "2024-02-30", "ae_sttim": "25:00", "ae_grade": "7",
           "redcap_repeat_instance": "0"}
    typed, problems = type_frame_with_problems(raw({**SCREENING, "age": "45.0"}, bad), DICTIONARY)
    place = ("01-007", "logs_arm_1", "adverse_event", "0")
    assert problems == [
        TypingProblem(*place, "redcap_repeat_instance", "0",
                      '"0" is not a repeat instance (1, 2, ...)'),
        TypingProblem("01-007", "screening_arm_1", "", "", "age", "45.0", '"45.0" is not an integer'),
        TypingProblem(*place, "ae_stdat", "2024-02-30", '"2024-02-30" is not a date (YYYY-MM-DD)'),
        TypingProblem(*place, "ae_sttim", "25:00", '"25:00" is not a time (HH:MM)'),
        TypingProblem(*place, "ae_grade", "7", '"7" is not one of the codes 1, 2, 3, 4, 5'),
    ]
    bad_columns = ["age", "ae_stdat", "ae_sttim", "ae_grade", "redcap_repeat_instance"]
    assert typed[bad_columns].isna().sum().tolist() == [2, 2, 2, 2, 2]


def test_a_date_redcap_stores_but_no_check_can_hold_names_the_years_not_the_format() -> None:
    # REDCap's date_ymd and datetime_ymd regexes take any four-digit year (`^(\d{4})...` in
    # install_data.sql, redcap-semantics §4.4) and its number type takes exponents (`1e5`
    # ok), so a mistyped year 3026 or `1e400` is stored. "Not a date (YYYY-MM-DD)" of
    # 3026-01-15 would send a site looking for a format error it has not made.
    bad = {**AE, "ae_stdat": "3026-01-15", "ae_aware_dtc": "1024-03-02 09:05"}
    _, problems = type_frame_with_problems(raw({**SCREENING, "pao2": "1e400"}, bad), DICTIONARY)
    messages = {p.field: p.message for p in problems}
    assert messages == {
        "pao2": '"1e400" is not a number between -1e308 and 1e308',
        "ae_stdat": '"3026-01-15" is not a date in the years 1678 to 2261',
        "ae_aware_dtc": '"1024-03-02 09:05" is not a date and time in the years 1678 to 2261'}
    frame = raw({**SCREENING, "pao2": "1e400"}, bad)
    assert typing_problems(frame, DICTIONARY) == problems


def test_record_ids_keep_leading_zeros_and_are_never_missing() -> None:
    typed = type_frame(raw({"record_id": "007"}, {"record_id": "0100"}), DICTIONARY)
    assert typed["record_id"].tolist() == ["007", "0100"]
    assert typed["record_id"].notna().all()


def test_missing_data_codes_are_missing_without_a_problem() -> None:
    coded = Dictionary(DICTIONARY.metadata, DICTIONARY.events, DICTIONARY.arms, DICTIONARY.mapping,
                       DICTIONARY.repeating, {"missing_data_codes": "UNK, Unknown | NASK, Not asked"})
    typed, problems = type_frame_with_problems(
        raw({**SCREENING, "age": "UNK", "icdat": "NASK", "sex": "UNK"}, dictionary=coded), coded)
    assert problems == []
    assert typed[["age", "icdat", "sex"]].isna().all(axis=None)


def test_a_column_the_dictionary_does_not_know_is_an_error() -> None:
    frame = raw(SCREENING).assign(weight="70")
    for typing in (type_frame, typing_problems):
        with pytest.raises(DictionaryError) as caught:
            typing(frame, DICTIONARY)
        assert str(caught.value) == ('export column "weight" is not in the data dictionary; '
                                     "the dictionary and the REDCap project differ")


def _one(field: str, value: str) -> tuple[pd.Series, list[TypingProblem]]:
    """Type one value in a frame of the key columns and its field (a narrow pull)."""
    frame = raw({**SCREENING, field: value})[[*DICTIONARY.key_columns, field]]
    typed, problems = type_frame_with_problems(frame, DICTIONARY)
    return typed[field], problems


@settings(max_examples=150, deadline=None)
@given(value=st.text(max_size=30), field=st.sampled_from(["age", "pao2", "icdat", "ae_aware_dtc",
                                                           "sex", "symptoms___1", "ae_sttim"]))
def test_any_text_in_any_typed_field_never_crashes(value: str, field: str) -> None:
    column, problems = _one(field, value)
    assert len(column) == 1
    if value == "" or pd.notna(column.iloc[0]):
        assert problems == []
    else:
        assert [(p.field, p.value) for p in problems] == [(field, value)]


@settings(deadline=None)
@given(st.integers(min_value=-10**17, max_value=10**17))
def test_integers_round_trip(number: int) -> None:
    column, problems = _one("age", str(number))
    assert (column.iloc[0], problems) == (number, [])


@settings(deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_numbers_round_trip(number: float) -> None:
    column, problems = _one("pao2", repr(number))
    assert (column.iloc[0], problems) == (number, [])


@settings(deadline=None)
@given(st.datetimes(min_value=dt.datetime(1700, 1, 1), max_value=dt.datetime(2200, 12, 31)))
def test_dates_and_datetimes_round_trip(moment: dt.datetime) -> None:
    date, problems = _one("icdat", moment.date().isoformat())
    assert (date.iloc[0], problems) == (pd.Timestamp(moment.date()), [])
    stamp, problems = _one("ae_aware_dtc", moment.strftime("%Y-%m-%d %H:%M"))
    assert (stamp.iloc[0], problems) == (pd.Timestamp(moment.replace(second=0, microsecond=0)), [])


def test_numbers_from_a_json_export_are_read_as_redcap_strings() -> None:
    # redcap-semantics.md §6.2: redcap_repeat_instance is a JSON number, "" on base rows; a frame
    # built from such rows holds 2.0 and NaN.
    frame = raw(SCREENING, AE)[["record_id", "redcap_event_name", "redcap_repeat_instrument",
                                "redcap_repeat_instance", "ae_grade"]]
    frame["redcap_repeat_instance"] = [float("nan"), 2.0]
    typed, problems = type_frame_with_problems(frame, DICTIONARY)
    assert problems == []
    assert typed["redcap_repeat_instance"].tolist() == [pd.NA, 2]


PLAUSIBLE = ["", "UNK", "NA", "0", "1", "2", "5", "-3", "12.5", "1,5", "1e999", "007", "٩٠",
             "2024-03-01", " 2024-03-01", "2024-02-30", "2024-03-02 09:05", "2024-03-02 9:05:07",
             "9:05", "x"]


def _same(left: object, right: object) -> bool:
    return bool(pd.isna(left) and pd.isna(right)) or (not pd.isna(left) and left == right)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=12)),
                       min_size=1, max_size=12),
       field=st.sampled_from(["age", "pao2", "icdat", "ae_aware_dtc", "sex", "symptoms___1",
                              "ae_sttim", "vitals_complete"]))
def test_a_column_is_typed_as_each_of_its_values_alone(values: list[str], field: str) -> None:
    # Typing reads each distinct text once and spreads the results back by position.
    frame = raw(*({**SCREENING, field: value} for value in values))[[*DICTIONARY.key_columns,
                                                                      field]]
    typed, problems = type_frame_with_problems(frame, DICTIONARY)
    alone = [_one(field, value) for value in values]
    assert typed[field].dtype == alone[0][0].dtype
    assert all(_same(typed[field].iloc[i], column.iloc[0]) for i, (column, _) in enumerate(alone))
    assert [(p.field, p.value) for p in problems] == [(p.field, p.value) for _, found in alone
                                                      for p in found]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=20)), max_size=12))
def test_dates_of_a_column_are_each_value_read_alone(values: list[str]) -> None:
    column = pd.Series(values, dtype=object)
    for parse in (parse_dates, parse_datetimes):
        whole = parse(column)
        assert all(_same(whole.iloc[i], parse(pd.Series([value], dtype=object)).iloc[0])
                   for i, value in enumerate(values))


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries(
    {}, optional={field: st.one_of(st.sampled_from(PLAUSIBLE), st.text(max_size=12))
                  for field in ("age", "pao2", "icdat", "ae_stdat", "ae_aware_dtc", "sex",
                                "ae_grade", "symptoms___1", "ae_sttim", "vitals_complete",
                                "redcap_repeat_instance", "ae_term")}),
    min_size=1, max_size=8), codes=st.sampled_from(["", "UNK, Unknown | NA, Not asked"]))
def test_problems_alone_are_the_problems_of_typing(rows: list[dict[str, str]], codes: str) -> None:
    # The sync and the cut list the problems without typing the frame; a text checked once
    # for one column is not checked again for the next column of its kind.
    dictionary = Dictionary(DICTIONARY.metadata, DICTIONARY.events, DICTIONARY.arms,
                            DICTIONARY.mapping, DICTIONARY.repeating, {"missing_data_codes": codes})
    frame = raw(*({**(SCREENING if n % 2 else AE), **row} for n, row in enumerate(rows)),
                dictionary=dictionary)
    assert typing_problems(frame, dictionary) == type_frame_with_problems(frame, dictionary)[1]
