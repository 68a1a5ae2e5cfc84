"""The contract's eligibility decision table, criterion by criterion, at and around thresholds."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.eligibility import (INPUT_FIELDS, OUTPUT_COLUMNS, all_of, any_of, completed_years,
                              decide_eligibility, Tri)
from sync.errors import DictionaryError

ELIGIBLE = dict(
    icdat="2025-03-10", ic_yn="1", ic_noother="1", brthdat="1970-05-01",
    sarscov2_res="1", sarscov2_dat="2025-03-08", adeno_res="0", flu_res="0", othvir_res="9",
    img_viral="1", rr="32", spo2="95", spo2_ra="1", pao2="80", fio2="21", imv="0", vaso="0",
    lbdat="2025-03-09", wbc="8", crp="15", crp_uln="10", pct="0.1", pct_uln="0.5", alt="40",
    alt_uln="40", tbil="12", tbil_uln="17.1", crea="80", pta="90", inr="1.0", hgb="130",
    plt="200", hbv_act="0", hcv_act="0", hiv_pos="0", tb_act="0", solid_tumor="0",
    leukemia="0", mental_dis="0", nyha3="0", myocard="0", mal_arrhythmia="0",
    chronic_lung="0", bleeding="0", dic="0", drug_abuse="0", other_trial="0",
    noncompliance="0", other_serious="0")
"""A subject who meets every inclusion and no exclusion (only RR qualifies for I3(3))."""


def screening(*subjects: dict[str, str]) -> pd.DataFrame:
    """RAW export rows: one screening row per subject, the eligible subject changed by each."""
    rows = []
    for n, changes in enumerate(subjects, start=1):
        values = {field: "" for field in INPUT_FIELDS} | ELIGIBLE | changes
        rows.append({"record_id": f"01-{n:03d}", "redcap_event_name": "screening_arm_1",
                     "redcap_repeat_instrument": "", "redcap_repeat_instance": "", **values})
    return pd.DataFrame(rows)


def decide(**changes: str) -> dict[str, str]:
    return decide_eligibility(screening(changes)).values.iloc[0].to_dict()


def missing(**changes: str) -> list[tuple[str, str]]:
    found = decide_eligibility(screening(changes)).missing
    return list(zip(found["criterion"], found["field"]))


def test_eligible_subject_gets_every_value_redcap_stores() -> None:
    assert decide() == {
        "age": "54", "inc1": "1", "inc2": "1", "inc3": "1", "inc4": "1",
        **{f"exc{n}": "0" for n in range(1, 10)},
        "elig_calc": "1", "elig_fail": "", "elig_missing": ""}


def test_result_is_indexed_by_record_with_the_output_columns() -> None:
    values = decide_eligibility(screening({}, {"ic_yn": "0"})).values
    assert list(values.columns) == list(OUTPUT_COLUMNS)
    assert list(values.index) == ["01-001", "01-002"]


# I1: age in completed years, birthday rule

@pytest.mark.parametrize(("birth", "consent", "age", "inc1"), [
    ("2007-03-10", "2025-03-10", "18", "1"),    # 18th birthday on the day of consent
    ("2007-03-11", "2025-03-10", "17", "0"),    # one day short
    ("2007-03-09", "2025-03-10", "18", "1"),
    ("2004-02-29", "2022-02-28", "17", "0"),    # 29 Feb birthday, non-leap year: not yet
    ("2004-02-29", "2022-03-01", "18", "1"),    # ... gains the year on 1 March
    ("2004-02-29", "2024-02-29", "20", "1"),    # leap year: on the day
    ("2004-02-29", "2024-02-28", "19", "1"),
    ("1950-12-31", "2025-01-01", "74", "1"),
])
def test_age_in_completed_years_with_birthday_rule(birth: str, consent: str, age: str,
                                                   inc1: str) -> None:
    values = decide(brthdat=birth, icdat=consent, sarscov2_dat=consent)
    assert (values["age"], values["inc1"]) == (age, inc1)


@pytest.mark.parametrize("blank", ["brthdat", "icdat"])
def test_blank_birth_or_consent_date_leaves_age_and_i1_blank(blank: str) -> None:
    values = decide(**{blank: ""})
    assert (values["age"], values["inc1"], values["elig_calc"]) == ("", "", "")
    assert ("I1", blank) in missing(**{blank: ""})


def test_completed_years_is_a_whole_number_of_birthdays() -> None:
    born = pd.to_datetime(pd.Series(["2000-02-29", "2000-02-29", "1999-12-31"]))
    on = pd.to_datetime(pd.Series(["2001-02-28", "2001-03-01", "2000-12-30"]))
    assert completed_years(born, on).tolist() == [0, 1, 0]


# I2, I4, E5..E9: yes/no answers

@pytest.mark.parametrize(("changes", "inc2", "exc5"), [
    ({}, "1", "0"),
    ({"ic_yn": "0"}, "0", "1"),
    ({"ic_noother": "0"}, "0", "0"),
    ({"ic_yn": ""}, "", ""),
    ({"ic_noother": ""}, "", "0"),
    ({"ic_yn": "0", "ic_noother": ""}, "0", "1"),
])
def test_consent_decides_i2_and_e5(changes: dict[str, str], inc2: str, exc5: str) -> None:
    values = decide(**changes)
    assert (values["inc2"], values["exc5"]) == (inc2, exc5)


@pytest.mark.parametrize(("imv", "vaso", "inc4"), [
    ("0", "0", "1"), ("1", "0", "0"), ("0", "1", "0"), ("", "0", ""), ("1", "", "0")])
def test_i4_needs_no_ventilation_and_no_vasopressors(imv: str, vaso: str, inc4: str) -> None:
    assert decide(imv=imv, vaso=vaso)["inc4"] == inc4


@pytest.mark.parametrize(("field", "column"), [
    ("drug_abuse", "exc6"), ("other_trial", "exc7"), ("noncompliance", "exc8"),
    ("other_serious", "exc9")])
def test_single_answer_exclusions(field: str, column: str) -> None:
    assert [decide(**{field: v})[column] for v in ("1", "0", "")] == ["1", "0", ""]


@pytest.mark.parametrize(("fields", "column"), [
    (("hbv_act", "hcv_act", "hiv_pos", "tb_act"), "exc1"),
    (("solid_tumor", "leukemia", "mental_dis"), "exc2"),
    (("nyha3", "myocard", "mal_arrhythmia", "chronic_lung", "bleeding", "dic"), "exc4")])
def test_any_yes_makes_the_exclusion_present(fields: tuple[str, ...], column: str) -> None:
    other = {field: fields[-1 if field == fields[0] else 0] for field in fields}
    subjects = [change for field in fields for change in (
        {field: "1"}, {field: ""}, {field: "", other[field]: "1"})]
    values = decide_eligibility(screening(*subjects)).values[column].tolist()
    assert values == ["1", "", "1"] * len(fields)


# I3: virus, imaging, respiratory

@pytest.mark.parametrize(("specimen", "inc3"), [
    ("2025-02-24", "1"),   # 14 days before consent
    ("2025-02-23", "0"),   # 15 days before
    ("2025-03-13", "1"),   # 3 days after
    ("2025-03-14", "0"),   # 4 days after
])
def test_virus_specimen_window_14_days_before_to_3_after(specimen: str, inc3: str) -> None:
    assert decide(sarscov2_dat=specimen)["inc3"] == inc3


@pytest.mark.parametrize(("changes", "inc3", "blamed"), [
    ({"sarscov2_res": "0"}, "0", None),
    ({"sarscov2_res": "9"}, "0", None),
    ({"sarscov2_res": "1", "sarscov2_dat": ""}, "", "sarscov2_dat"),
    ({"sarscov2_res": ""}, "", "sarscov2_res"),
    ({"sarscov2_res": "0", "flu_res": ""}, "", "flu_res"),
    ({"sarscov2_res": "0", "othvir_res": "1", "othvir_dat": "2025-03-01"}, "1", None),
    ({"sarscov2_res": "", "adeno_res": "1", "adeno_dat": "2025-03-09"}, "1", None),
    ({"icdat": "", "sarscov2_res": "0", "flu_res": "1", "flu_dat": "2025-03-09"}, "", "icdat"),
])
def test_virus_results(changes: dict[str, str], inc3: str, blamed: str | None) -> None:
    assert decide(**changes)["inc3"] == inc3
    i3_fields = [field for criterion, field in missing(**changes) if criterion == "I3"]
    assert i3_fields == ([blamed] if blamed else [])


def test_imaging_must_be_consistent_with_viral_pneumonia() -> None:
    assert [decide(img_viral=v)["inc3"] for v in ("1", "0", "")] == ["1", "0", ""]


NOT_SEVERE = {"rr": "20", "spo2": "95", "spo2_ra": "1", "pao2": "80", "fio2": "21"}


@pytest.mark.parametrize(("changes", "inc3"), [
    ({"rr": "30"}, "1"), ({"rr": "29"}, "0"),
    ({"spo2": "93"}, "1"), ({"spo2": "94"}, "0"),
    ({"spo2": "93", "spo2_ra": "0"}, "0"),       # on oxygen does not count
    ({"spo2": "93", "spo2_ra": ""}, ""),
    ({"spo2": "95", "spo2_ra": ""}, "0"),
    ({"pao2": "114", "fio2": "57"}, "0"),        # exactly 200: not > 200
    ({"pao2": "115", "fio2": "57"}, "1"),
    ({"pao2": "171", "fio2": "57"}, "1"),        # exactly 300: <= 300
    ({"pao2": "171.1", "fio2": "57"}, "0"),
    ({"pao2": "63", "fio2": "21"}, "1"),         # exactly 300 by 6300/21
    ({"pao2": "", "fio2": "40"}, ""),
    ({"rr": ""}, ""),
])
def test_respiratory_any_of_with_exact_pf_ratio(changes: dict[str, str], inc3: str) -> None:
    assert decide(**(NOT_SEVERE | changes))["inc3"] == inc3


def test_respiratory_all_of_reading_is_a_setting() -> None:
    both = NOT_SEVERE | {"rr": "31", "spo2": "90", "pao2": "120", "fio2": "50"}
    one = NOT_SEVERE | {"rr": "31"}
    frame = screening(both, one)
    assert decide_eligibility(frame, i3_respiratory_reading="all").values["inc3"].tolist() \
        == ["1", "0"]
    assert decide_eligibility(frame).values["inc3"].tolist() == ["1", "1"]


def test_respiratory_blame_follows_table_order() -> None:
    changes = NOT_SEVERE | {"rr": "", "spo2": "", "pao2": ""}
    assert missing(**changes) == [("I3", "rr")]
    assert missing(**(changes | {"rr": "12"})) == [("I3", "spo2")]
    assert missing(**(changes | {"rr": "12", "spo2": "99"})) == [("I3", "pao2")]
    assert missing(**(NOT_SEVERE | {"fio2": ""})) == [("I3", "fio2")]


# E3: infection markers

@pytest.mark.parametrize(("changes", "exc3"), [
    ({"wbc": "12"}, "0"), ({"wbc": "12.01"}, "1"), ({"wbc": "4"}, "0"), ({"wbc": "3.99"}, "1"),
    ({"crp": "20", "crp_uln": "10"}, "0"), ({"crp": "20.1", "crp_uln": "10"}, "1"),
    ({"pct": "1", "pct_uln": "0.5"}, "0"), ({"pct": "1.01", "pct_uln": "0.5"}, "1"),
    ({"crp_uln": ""}, ""), ({"wbc": ""}, ""), ({"wbc": "", "pct": "2"}, "1"),
])
def test_e3_infection_markers(changes: dict[str, str], exc3: str) -> None:
    assert decide(**changes)["exc3"] == exc3


def test_e3_blames_value_before_its_uln() -> None:
    assert missing(crp="", crp_uln="") == [("E3", "crp")]
    assert missing(crp_uln="") == [("E3", "crp_uln")]


# E4: organ dysfunction

@pytest.mark.parametrize(("changes", "exc4"), [
    ({"crea": "442"}, "1"), ({"crea": "441.9"}, "0"),
    ({"alt": "200", "alt_uln": "40"}, "1"), ({"alt": "199.9", "alt_uln": "40"}, "0"),
    ({"tbil": "171", "tbil_uln": "17.1"}, "1"), ({"tbil": "170.9", "tbil_uln": "17.1"}, "0"),
    ({"pta": "40"}, "1"), ({"pta": "40.1"}, "0"),
    ({"inr": "1.5"}, "1"), ({"inr": "1.49"}, "0"),
    ({"hgb": "59.9"}, "1"), ({"hgb": "60"}, "0"),
    ({"plt": "59"}, "1"), ({"plt": "60"}, "0"),
    ({"crea": ""}, ""), ({"inr": ""}, ""), ({"alt_uln": ""}, ""),
    ({"inr": "", "plt": "10"}, "1"),
])
def test_e4_lab_thresholds(changes: dict[str, str], exc4: str) -> None:
    assert decide(**changes)["exc4"] == exc4


@pytest.mark.parametrize(("changes", "exc4"), [
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-08", "crea": "124.2"}, "1"),   # 44.2/day
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-08", "crea": "124.1"}, "0"),
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-07", "crea": "168.4"}, "1"),   # 88.4 / 2 d
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-07", "crea": "168.3"}, "0"),
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-09", "crea": "300"}, "0"),     # same day
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-10", "crea": "300"}, "0"),     # after lbdat
    ({"crea_prev": "80", "crea_prev_dat": "", "crea": "300"}, "0"),
    ({"crea_prev": "80", "crea_prev_dat": "2025-03-08", "crea": "300", "lbdat": ""}, "0"),
    ({"tbil_prev": "10", "tbil_prev_dat": "2025-03-08", "tbil": "27.1"}, "1"),    # 17.1/day
    ({"tbil_prev": "10", "tbil_prev_dat": "2025-03-08", "tbil": "27.09"}, "0"),
    ({"tbil_prev": "10", "tbil_prev_dat": "2025-03-06", "tbil": "61.3"}, "1"),    # 51.3 / 3 d
])
def test_e4_daily_rises(changes: dict[str, str], exc4: str) -> None:
    assert decide(**changes)["exc4"] == exc4


def test_daily_rise_with_current_value_blank_is_unknown_and_blames_the_current_value() -> None:
    changes = {"crea_prev": "80", "crea_prev_dat": "2025-03-08", "crea": ""}
    assert decide(**changes)["exc4"] == ""
    assert missing(**changes) == [("E4", "crea")]


def test_blank_previous_lab_or_cv_event_never_makes_e4_unknown() -> None:
    assert decide(crea_prev="", tbil_prev="", cv_event_dat="")["exc4"] == "0"
    assert missing(crea_prev_dat="2025-03-01", tbil_prev_dat="2025-03-01") == []


@pytest.mark.parametrize(("event", "exc4"), [
    ("2024-09-08", "1"),   # 183 days before consent
    ("2024-09-07", "0"),   # 184 days before
    ("2025-03-10", "1"),
    ("", "0"),
])
def test_cardio_cerebrovascular_event_within_183_days(event: str, exc4: str) -> None:
    assert decide(cv_event_dat=event)["exc4"] == exc4


def test_cv_event_with_blank_consent_date_blames_icdat() -> None:
    assert ("E4", "icdat") in missing(cv_event_dat="2024-12-01", icdat="")


def test_e4_blame_is_the_first_blank_input_in_table_order() -> None:
    assert missing(myocard="", crea="", plt="") == [("E4", "myocard")]
    assert missing(crea="", plt="") == [("E4", "crea")]
    assert missing(tbil_uln="", plt="") == [("E4", "tbil_uln")]


# elig_calc, elig_fail, elig_missing

def test_fail_and_missing_list_criteria_in_table_order() -> None:
    values = decide(brthdat="2010-01-01", imv="1", hgb="50", hiv_pos="1", img_viral="",
                    drug_abuse="", wbc="")
    assert (values["elig_calc"], values["elig_fail"], values["elig_missing"]) == \
        ("0", "I1,I4,E1,E4", "I3,E3,E6")


def test_undetermined_criteria_are_listed_even_when_already_ineligible() -> None:
    assert missing(ic_yn="0", imv="", wbc="", other_trial="") == [
        ("I4", "imv"), ("E3", "wbc"), ("E7", "other_trial")]


def test_elig_calc_blank_when_undetermined_and_nothing_fails() -> None:
    values = decide(vaso="")
    assert (values["elig_calc"], values["elig_fail"], values["elig_missing"]) == ("", "", "I4")


def test_non_numeric_entry_is_undetermined_not_a_crash() -> None:
    values = decide(wbc="n/a", inr="UNK")
    assert (values["exc3"], values["exc4"]) == ("", "")
    assert missing(wbc="n/a") == [("E3", "wbc")]


def test_only_screening_base_rows_are_read() -> None:
    frame = screening({})
    other = frame.assign(redcap_event_name="logs_arm_1", redcap_repeat_instrument="conmed",
                         redcap_repeat_instance="1", ic_yn="0")
    values = decide_eligibility(pd.concat([other, frame])).values
    assert values["exc5"].tolist() == ["0"]


def test_missing_input_column_is_named() -> None:
    with pytest.raises(DictionaryError, match="lack fields .*: crea_prev_dat$"):
        decide_eligibility(screening({}).drop(columns=["crea_prev_dat"]))


def test_ten_thousand_subjects_decided_in_one_pass() -> None:
    frame = screening(*[{"wbc": str(n % 20)} for n in range(10_000)])
    frame["record_id"] = [f"{n:05d}" for n in range(10_000)]
    values = decide_eligibility(frame).values
    assert values["exc3"].value_counts().to_dict() == {"0": 4_500, "1": 5_500}


# three-valued laws

TRI = st.sampled_from([True, False, None])


def tri(values: list[bool | None]) -> Tri:
    series = pd.Series(pd.array(values, dtype="boolean"))
    return Tri.of(series, pd.Series(["x" if v is None else "" for v in values], dtype=object))


def expected_any(parts: list[bool | None]) -> bool | None:
    return True if True in parts else (False if all(p is False for p in parts) else None)


@given(st.lists(st.lists(TRI, min_size=1, max_size=5), min_size=1, max_size=4))
def test_any_of_and_all_of_follow_kleene_laws(columns: list[list[bool | None]]) -> None:
    width = min(len(c) for c in columns)
    columns = [c[:width] for c in columns]
    rows = list(zip(*columns))
    got_any = any_of(*(tri(c) for c in columns)).value.astype(object).tolist()
    got_all = all_of(*(tri(c) for c in columns)).value.astype(object).tolist()
    nullify = lambda v: None if v is pd.NA else v  # noqa: E731
    assert [nullify(v) for v in got_any] == [expected_any(list(r)) for r in rows]
    assert [nullify(v) for v in got_all] == [
        (lambda e: None if e is None else not e)(expected_any([None if p is None else not p
                                                              for p in r])) for r in rows]


@settings(max_examples=20, deadline=None)
@given(st.lists(st.dictionaries(
    st.sampled_from(INPUT_FIELDS),
    st.sampled_from(["", "0", "1", "9", "abc", "2025-03-01", "-3", "1e400", " 12 "]),
    max_size=20), min_size=1, max_size=25))
def test_random_entries_never_crash_and_stay_consistent(subjects: list[dict[str, str]]) -> None:
    result = decide_eligibility(screening(*subjects))
    assert all(result.missing["field"] != "")
    for record, values in result.values.iterrows():
        undetermined = values["elig_missing"].split(",") if values["elig_missing"] else []
        mine = result.missing[result.missing["record_id"] == record]
        assert mine["criterion"].tolist() == undetermined
        if values["elig_fail"]:
            assert values["elig_calc"] == "0"
        elif undetermined:
            assert values["elig_calc"] == ""
        else:
            assert values["elig_calc"] == "1"


# Inputs REDCap stores that plain values forget: missing-data codes (project.csv: UNK, NA, ND,
# NASK are accepted by import in every field type, redcap-semantics.md §1.5), FiO2 of 0 (its
# 21-100 range is a soft warning, no @FORCE-MINMAX), and dates in the wrong order.

@pytest.mark.parametrize("virus", ["sarscov2", "adeno", "othvir"])
@pytest.mark.parametrize("code", ["UNK", "ND"])
def test_a_virus_result_marked_with_a_missing_data_code_is_asked_about_not_its_date(
        virus: str, code: str) -> None:
    """The date is read only when the result is 1 (and its branching hides it otherwise), so
    the input that leaves I3 undetermined is the result."""
    changes = {"sarscov2_res": "0", "sarscov2_dat": "", f"{virus}_res": code,
               f"{virus}_dat": ""}
    assert decide(**changes)["inc3"] == ""
    assert missing(**changes) == [("I3", f"{virus}_res")]


def test_fio2_of_zero_is_asked_about_not_pao2() -> None:
    undecided = dict(rr="20", spo2="95", pao2="80", fio2="0")
    assert decide(**undecided)["inc3"] == ""
    assert missing(**undecided) == [("I3", "fio2")]
    assert missing(**(undecided | {"pao2": ""})) == [("I3", "pao2")]


@pytest.mark.parametrize(("entry", "exc4", "asked"), [
    ("", "0", []), ("NA", "0", []),
    ("UNK", "", [("E4", "cv_event_dat")]), ("ND", "", [("E4", "cv_event_dat")]),
    ("2025-01-10", "1", [])])
def test_a_cardiovascular_event_date_marked_unknown_leaves_e4_undetermined(
        entry: str, exc4: str, asked: list) -> None:
    """Only a blank date (or NA, not applicable) means no event; UNK or ND means the site does
    not know whether there was one in the 183 days, which E4 cannot decide without."""
    assert decide(cv_event_dat=entry)["exc4"] == exc4
    assert missing(cv_event_dat=entry) == asked


def test_a_birth_date_after_consent_gives_no_age_and_asks_about_it() -> None:
    """Completed years cannot be negative: one of the dates is wrong, so I1 is undetermined
    and the query asks about the birth date, instead of failing I1 with an age of -1."""
    values = decide(brthdat="2025-03-11", icdat="2025-03-10")
    assert (values["age"], values["inc1"], values["elig_calc"]) == ("", "", "")
    assert missing(brthdat="2025-03-11") == [("I1", "brthdat")]
    assert decide(brthdat="2025-03-10")["age"] == "0"
