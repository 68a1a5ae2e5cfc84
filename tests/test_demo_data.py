"""The REDCap project definition (data_dictionary.csv, redcap/) and the synthetic demo trial.

The dictionary is parsed here with csv/pandas only, so these tests do not depend on the
dictionary checker; values are validated with REDCap's own regexes from `sync.crf.redcap_spec`.
"""
from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.demo.data import CATALOGUE, DEMO_CASES, case_of, demo_records, record_id_of
from sync.crf.redcap_spec import DD_HEADERS, VALIDATION_TYPES, YESNO_CHOICES, parse_choices

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ("screening_arm_1", "day_0_arm_1", "day_3_arm_1", "day_6_arm_1", "day_14_arm_1",
          "day_28_arm_1", "day_90_arm_1", "logs_arm_1")
REPEATING = ("adverse_event", "conmed", "support_log", "status_log", "medical_history",
             "pregnancy_report", "unblinding", "protocol_deviation", "dq_query")
LOGS_ANY_TIME = ("disposition", "death", "hospital_course")
"""Non-repeating forms of the Logs event: completed whenever the subject ends, dies or leaves hospital."""
SYNC_WRITTEN = (["age", "elig_calc", "elig_fail", "elig_missing"]
                + [f"inc{i}" for i in range(1, 5)] + [f"exc{i}" for i in range(1, 10)])
POSNEG = "1, Positive | 0, Negative | 9, Not done"
VIRUSES = ("sarscov2", "adeno", "flu", "othvir")
VALIDATION = "Text Validation Type OR Show Slider Number"
CHOICES = "Choices, Calculations, OR Slider Labels"

# field, form, field type, validation, choices: the contract's table (crf-contract.md).
CONTRACT: list[tuple[str, str, str, str, str]] = [
    ("record_id", "informed_consent", "text", "", ""),
    ("icdat", "informed_consent", "text", "date_ymd", ""),
    ("ic_yn", "informed_consent", "yesno", "", ""),
    ("ic_noother", "informed_consent", "yesno", "", ""),
    ("brthdat", "demographics", "text", "date_ymd", ""),
    ("age", "demographics", "text", "integer", ""),
    ("sex", "demographics", "radio", "", "1, Male | 2, Female"),
    *[(f"{v}_res", "etiology", "radio", "", POSNEG) for v in VIRUSES],
    *[(f"{v}_dat", "etiology", "text", "date_ymd", "") for v in VIRUSES],
    ("othvir_spec", "etiology", "text", "", ""),
    ("img_dat", "chest_imaging", "text", "date_ymd", ""),
    ("img_viral", "chest_imaging", "yesno", "", ""),
    ("rr", "respiratory", "text", "integer", ""),
    ("spo2", "respiratory", "text", "integer", ""),
    ("spo2_ra", "respiratory", "yesno", "", ""),
    ("pao2", "respiratory", "text", "number", ""),
    ("fio2", "respiratory", "text", "integer", ""),
    ("pf_ratio", "respiratory", "calc", "", "[pao2] / ([fio2] / 100)"),
    ("imv", "respiratory", "yesno", "", ""),
    ("vaso", "respiratory", "yesno", "", ""),
    ("lbdat", "screening_labs", "text", "date_ymd", ""),
    *[(name, "screening_labs", "text", "number", "") for name in (
        "wbc", "crp", "crp_uln", "pct", "pct_uln", "alt", "alt_uln", "tbil", "tbil_uln",
        "tbil_prev", "crea", "crea_prev", "pta", "inr", "hgb", "plt")],
    ("tbil_prev_dat", "screening_labs", "text", "date_ymd", ""),
    ("crea_prev_dat", "screening_labs", "text", "date_ymd", ""),
    *[(name, "exclusion_history", "yesno", "", "") for name in (
        "hbv_act", "hcv_act", "hiv_pos", "tb_act", "solid_tumor", "leukemia", "mental_dis",
        "nyha3", "myocard", "mal_arrhythmia", "chronic_lung", "bleeding", "dic", "drug_abuse",
        "other_trial", "noncompliance", "other_serious")],
    ("cv_event_dat", "exclusion_history", "text", "date_ymd", ""),
    ("ie_yn", "eligibility", "yesno", "", ""),
    *[(f"inc{i}", "eligibility", "radio", "", "1, Met | 0, Not met") for i in range(1, 5)],
    *[(f"exc{i}", "eligibility", "radio", "", "1, Present | 0, Absent") for i in range(1, 10)],
    ("elig_calc", "eligibility", "radio", "", "1, Eligible | 0, Not eligible"),
    ("elig_fail", "eligibility", "text", "", ""),
    ("elig_missing", "eligibility", "text", "", ""),
    ("inf_given", "infusion", "yesno", "", ""),
    ("inf_dat", "infusion", "text", "date_ymd", ""),
    ("inf_start", "infusion", "text", "time", ""),
    ("inf_end", "infusion", "text", "time", ""),
    ("ae_term", "adverse_event", "text", "", ""),
    ("ae_stdat", "adverse_event", "text", "date_ymd", ""),
    ("ae_grade", "adverse_event", "radio", "", ""),
    ("ae_ser", "adverse_event", "yesno", "", ""),
    ("ae_aware_dtc", "adverse_event", "text", "datetime_ymd", ""),
    ("ae_rpt_dtc", "adverse_event", "text", "datetime_ymd", ""),
    ("ae_out", "adverse_event", "radio", "", "1, Recovered | 2, Recovering | 3, Not recovered | "
     "4, Recovered with sequelae | 5, Fatal | 6, Unknown"),
    ("cm_trt", "conmed", "text", "", ""),
    ("cm_immuno", "conmed", "yesno", "", ""),
    ("cm_stdat", "conmed", "text", "date_ymd", ""),
    ("cm_endat", "conmed", "text", "date_ymd", ""),
    *[(name, "dq_query", "text", "", "") for name in (
        "dq_key", "dq_rule", "dq_event", "dq_instrument", "dq_instance", "dq_field")],
    ("dq_text", "dq_query", "notes", "", ""),
    ("dq_status", "dq_query", "radio", "", "1, Open | 2, Answered | 3, Closed | 4, Resolved"),
    ("dq_response", "dq_query", "notes", "", ""),
    ("dq_opened", "dq_query", "text", "datetime_ymd", ""),
    ("dq_resolved", "dq_query", "text", "datetime_ymd", ""),
    ("dq_updated", "dq_query", "text", "datetime_ymd", ""),
]


def _read(path: Path) -> pd.DataFrame:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return pd.DataFrame(rows[1:], columns=rows[0], dtype=object)


@pytest.fixture(scope="module")
def dictionary() -> pd.DataFrame:
    return _read(ROOT / "data_dictionary.csv").set_index("Variable / Field Name", drop=False)


@pytest.fixture(scope="module")
def mapping() -> dict[str, set[str]]:
    table = _read(ROOT / "redcap" / "instrument_event_mapping.csv")
    return {event: set(group["form"]) for event, group in table.groupby("unique_event_name")}


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return demo_records()


def test_dictionary_has_redcaps_18_headers_and_record_id_first(dictionary: pd.DataFrame) -> None:
    assert tuple(dictionary.columns) == DD_HEADERS
    assert dictionary.iloc[0][["Variable / Field Name", "Form Name", "Field Type"]].tolist() == [
        "record_id", "informed_consent", "text"]


@pytest.mark.parametrize("name, form, field_type, validation, choices", CONTRACT,
                         ids=[row[0] for row in CONTRACT])
def test_contract_field_exists_with_its_form_type_and_codes(
        dictionary: pd.DataFrame, name: str, form: str, field_type: str, validation: str,
        choices: str) -> None:
    row = dictionary.loc[name]
    found = (row["Form Name"], row["Field Type"], row[VALIDATION])
    assert found == (form, field_type, validation)
    text = row[CHOICES]
    if field_type == "calc":
        assert text == choices
    elif name == "ae_grade":
        assert [code for code, _ in parse_choices(text)] == ["1", "2", "3", "4", "5"]
    elif choices:
        assert parse_choices(text) == parse_choices(choices)


def test_fio2_range_and_sync_written_fields_are_read_only(dictionary: pd.DataFrame) -> None:
    assert dictionary.loc["fio2", ["Text Validation Min", "Text Validation Max"]].tolist() == [
        "21", "100"]
    annotations = dictionary.loc[SYNC_WRITTEN, "Field Annotation"]
    assert [n for n, a in annotations.items() if "@READONLY" not in a] == []


def test_events_have_the_contract_names_windows_and_one_arm() -> None:
    events = _read(ROOT / "redcap" / "events.csv")
    assert events["unique_event_name"].tolist() == list(EVENTS)
    derived = events["event_name"].str.lower().str.replace(" ", "_") + "_arm_" + events["arm_num"]
    assert derived.tolist() == list(EVENTS)
    windows = events.set_index("unique_event_name")[["day_offset", "offset_min", "offset_max"]]
    assert windows.loc["day_14_arm_1"].tolist() == ["14", "2", "2"]
    assert windows.loc["screening_arm_1"].astype(int).tolist() == [-3, 0, 3]
    assert _read(ROOT / "redcap" / "arms.csv").values.tolist() == [["1", "Arm 1"]]


def test_mapping_and_repeating_forms_exist_in_the_dictionary(
        dictionary: pd.DataFrame, mapping: dict[str, set[str]]) -> None:
    forms = set(dictionary["Form Name"])
    assert set(mapping) == set(EVENTS)
    assert set().union(*mapping.values()) == forms
    repeating = _read(ROOT / "redcap" / "repeating_instruments.csv")
    assert sorted(repeating["form_name"]) == sorted(REPEATING)
    assert set(repeating["event_name"]) == {"logs_arm_1"}
    assert mapping["logs_arm_1"] == set(REPEATING) | set(LOGS_ANY_TIME)
    project = _read(ROOT / "redcap" / "project.csv").iloc[0]
    assert project[["is_longitudinal", "has_repeating_instruments_or_events",
                    "record_autonumbering_enabled"]].tolist() == ["1", "1", "0"]


def _long(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per non-blank value, keyed by record, event and repeat columns."""
    keys = ["record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance"]
    long = frame.melt(id_vars=keys, var_name="field", value_name="value")
    return long[long["value"] != ""]


def _invalid_values(frame: pd.DataFrame, dictionary: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(record, field, value) for every value REDCap's import would reject or warn about."""
    bad = []
    for (field, value), group in _long(frame).groupby(["field", "value"]):
        row = dictionary.loc[field]
        field_type, validation = row["Field Type"], row[VALIDATION]
        if field_type in ("radio", "dropdown"):
            ok = value in [c for c, _ in parse_choices(row[CHOICES])]
        elif field_type == "yesno":
            ok = value in [c for c, _ in YESNO_CHOICES]
        elif field_type in ("text", "notes"):
            ok = not validation or (VALIDATION_TYPES[validation].matches(value)
                                    and _within_range(value, row, validation))
        else:
            ok = False
        if not ok:
            bad.append((group["record_id"].iloc[0], field, value))
    return bad


def _within_range(value: str, row: pd.Series, validation: str) -> bool:
    low, high = row["Text Validation Min"], row["Text Validation Max"]
    if VALIDATION_TYPES[validation].data_type in ("integer", "number"):
        return (not low or float(value) >= float(low)) and (not high or float(value) <= float(high))
    return (not low or value >= low) and (not high or value <= high)


def test_every_demo_value_passes_redcap_import_validation(
        demo: pd.DataFrame, dictionary: pd.DataFrame) -> None:
    assert list(demo.columns[4:]) == dictionary.index[1:].tolist()
    assert _invalid_values(demo, dictionary) == []


def test_demo_leaves_sync_written_and_calculated_fields_blank(
        demo: pd.DataFrame, dictionary: pd.DataFrame) -> None:
    calcs = dictionary.index[dictionary["Field Type"] == "calc"].tolist()
    filled = _long(demo[list(demo.columns[:4]) + SYNC_WRITTEN + calcs])
    assert filled.empty
    assert "dq_query" not in set(demo["redcap_repeat_instrument"])


def test_every_demo_value_is_on_a_form_of_its_rows_event(
        demo: pd.DataFrame, dictionary: pd.DataFrame, mapping: dict[str, set[str]]) -> None:
    long = _long(demo)
    long = long.assign(form=long["field"].map(dictionary["Form Name"]))
    misplaced = long[[form not in mapping[event]
                      for form, event in zip(long["form"], long["redcap_event_name"])]]
    repeating_form = long["form"].isin(REPEATING)
    wrong_row = long[repeating_form != (long["redcap_repeat_instrument"] != "")]
    wrong_instrument = long[repeating_form & (long["form"] != long["redcap_repeat_instrument"])]
    assert (misplaced.empty, wrong_row.empty, wrong_instrument.empty) == (True, True, True)


def test_demo_rows_are_unique_with_positive_instances_on_repeating_rows(demo: pd.DataFrame) -> None:
    keys = demo.iloc[:, :4]
    assert not keys.duplicated().any()
    repeating = keys[keys["redcap_repeat_instrument"] != ""]
    assert repeating["redcap_repeat_instance"].str.fullmatch(r"[1-9]\d*").all()
    assert (keys.loc[keys["redcap_repeat_instrument"] == "", "redcap_repeat_instance"] == "").all()
    assert keys["record_id"].str.fullmatch(r"\d{2}-\d{3}").all()


def test_demo_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    pd.testing.assert_frame_equal(demo_records(40, seed=3), demo_records(40, seed=3))
    assert not demo_records(40, seed=3).equals(demo_records(40, seed=4))


@settings(max_examples=12, deadline=None)
@given(n=st.integers(min_value=1, max_value=90), seed=st.integers(min_value=0, max_value=2**32))
def test_any_size_and_seed_gives_valid_values_and_the_cases_in_order(n: int, seed: int) -> None:
    frame = demo_records(n, seed=seed)
    dictionary = _read(ROOT / "data_dictionary.csv").set_index("Variable / Field Name", drop=False)
    assert _invalid_values(frame, dictionary) == []
    assert frame["record_id"].drop_duplicates().tolist() == [record_id_of(k) for k in range(n)]


def test_demo_cases_name_the_default_trials_records() -> None:
    assert list(DEMO_CASES) == [record_id_of(k) for k in range(40)]
    assert record_id_of(0) == "01-001" and record_id_of(500) == "02-001"
    assert case_of("02-001") is CATALOGUE[500 % len(CATALOGUE)]


# --- An independent, exact reading of the contract's decision table, to prove DEMO_CASES right.

Tri = bool | None


def _any(*parts: Tri) -> Tri:
    return True if True in parts else (False if all(p is False for p in parts) else None)


def _all(*parts: Tri) -> Tri:
    return False if False in parts else (True if all(p is True for p in parts) else None)


def _num(row: dict[str, str], name: str) -> Fraction | None:
    return Fraction(row[name]) if row[name] else None


def _day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def _is(row: dict[str, str], name: str, code: str) -> Tri:
    return None if row[name] == "" else row[name] == code


def _compare(value: Fraction | None, test) -> Tri:
    return None if value is None else bool(test(value))


def _age_ok(row: dict[str, str]) -> Tri:
    born, consent = _day(row["brthdat"]), _day(row["icdat"])
    if born is None or consent is None:
        return None
    years = consent.year - born.year - ((consent.month, consent.day) < (born.month, born.day))
    return years >= 18


def _virus(row: dict[str, str], virus: str) -> Tri:
    result, specimen, consent = row[f"{virus}_res"], _day(row[f"{virus}_dat"]), _day(row["icdat"])
    if result != "1":
        return None if result == "" else False
    if specimen is None or consent is None:
        return None
    return consent - timedelta(days=14) <= specimen <= consent + timedelta(days=3)


def _i3(row: dict[str, str]) -> Tri:
    pao2, fio2 = _num(row, "pao2"), _num(row, "fio2")
    pf = None if pao2 is None or fio2 is None else pao2 / (fio2 / 100)
    return _all(_any(*(_virus(row, v) for v in VIRUSES)),
                _is(row, "img_viral", "1"),
                _any(_compare(_num(row, "rr"), lambda v: v >= 30),
                     _all(_compare(_num(row, "spo2"), lambda v: v <= 93), _is(row, "spo2_ra", "1")),
                     _compare(pf, lambda v: 200 < v <= 300)))


def _rise(row: dict[str, str], name: str, limit: str) -> list[Tri]:
    previous, when = _num(row, f"{name}_prev"), _day(row[f"{name}_prev_dat"])
    sampled = _day(row["lbdat"])
    if previous is None or when is None or sampled is None or (sampled - when).days < 1:
        return []
    days = (sampled - when).days
    return [_compare(_num(row, name), lambda v: (v - previous) / days >= Fraction(limit))]


def _e4(row: dict[str, str]) -> Tri:
    flags = [_is(row, n, "1") for n in ("nyha3", "myocard", "mal_arrhythmia", "chronic_lung",
                                         "bleeding", "dic")]
    event, consent = _day(row["cv_event_dat"]), _day(row["icdat"])
    recent = False if event is None else (None if consent is None
                                          else event >= consent - timedelta(days=183))
    uln = {n: _num(row, f"{n}_uln") for n in ("alt", "tbil")}
    labs = [_compare(_num(row, "crea"), lambda v: v >= 442),
            _compare(_num(row, "alt"), lambda v: uln["alt"] is not None and v >= 5 * uln["alt"]),
            _compare(_num(row, "tbil"),
                     lambda v: uln["tbil"] is not None and v >= 10 * uln["tbil"]),
            _compare(_num(row, "pta"), lambda v: v <= 40),
            _compare(_num(row, "inr"), lambda v: v >= Fraction("1.5")),
            _compare(_num(row, "hgb"), lambda v: v < 60),
            _compare(_num(row, "plt"), lambda v: v < 60)]
    return _any(*flags, recent, *labs, *_rise(row, "crea", "44.2"), *_rise(row, "tbil", "17.1"))


def _criteria(row: dict[str, str]) -> dict[str, Tri]:
    twice = {n: _num(row, f"{n}_uln") for n in ("crp", "pct")}
    return {
        "I1": _age_ok(row), "I2": _all(_is(row, "ic_yn", "1"), _is(row, "ic_noother", "1")),
        "I3": _i3(row), "I4": _all(_is(row, "imv", "0"), _is(row, "vaso", "0")),
        "E1": _any(*(_is(row, n, "1") for n in ("hbv_act", "hcv_act", "hiv_pos", "tb_act"))),
        "E2": _any(*(_is(row, n, "1") for n in ("solid_tumor", "leukemia", "mental_dis"))),
        "E3": _any(_compare(_num(row, "wbc"), lambda v: v > 12 or v < 4),
                   *(_compare(_num(row, n),
                              lambda v, n=n: twice[n] is not None and v > 2 * twice[n])
                     for n in ("crp", "pct"))),
        "E4": _e4(row), "E5": _is(row, "ic_yn", "0"), "E6": _is(row, "drug_abuse", "1"),
        "E7": _is(row, "other_trial", "1"), "E8": _is(row, "noncompliance", "1"),
        "E9": _is(row, "other_serious", "1")}


def _eligibility(row: dict[str, str]) -> tuple[str, str, str]:
    """(elig_calc, elig_fail, elig_missing) as the contract defines them."""
    criteria = _criteria(row)
    failing = [c for c, v in criteria.items() if v is (False if c[0] == "I" else True)]
    missing = [c for c, v in criteria.items() if v is None]
    calc = "0" if failing else ("" if missing else "1")
    return calc, ",".join(failing), ",".join(missing)


def _hours(start: str, end: str) -> float:
    parse = lambda text: datetime.strptime(text, "%Y-%m-%d %H:%M")  # noqa: E731
    return (parse(end) - parse(start)).total_seconds() / 3600


def _rules_fired(rows: pd.DataFrame, elig: str) -> set[str]:
    """Which contract rules (other than ELIG_MISSING) fire for one record's rows."""
    base = rows[rows["redcap_event_name"] == "screening_arm_1"].iloc[0]
    fired = set()
    if (base["ie_yn"], elig) in (("1", "0"), ("0", "1")):
        fired.add("IE_MISMATCH")
    dosing = rows[rows["redcap_event_name"].isin(EVENTS[1:4])]
    if elig != "1" and (dosing["inf_given"] == "1").any():
        fired.add("DOSE_INELIGIBLE")
    for _, ae in rows[rows["redcap_repeat_instrument"] == "adverse_event"].iterrows():
        if ae["ae_ser"] == "1" and "" not in (ae["ae_aware_dtc"], ae["ae_rpt_dtc"]) \
                and _hours(ae["ae_aware_dtc"], ae["ae_rpt_dtc"]) > 24:
            fired.add("SAE_LATE")
        if (ae["ae_grade"] == "5") != (ae["ae_out"] == "5"):
            fired.add("AE_FATAL_GRADE")
    for _, cm in rows[rows["redcap_repeat_instrument"] == "conmed"].iterrows():
        if cm["cm_immuno"] == "1" and (cm["cm_endat"] == "" or cm["cm_endat"] >= base["icdat"]):
            fired.add("CM_IMMUNO")
    return fired


def test_demo_cases_match_the_contracts_eligibility_and_rules() -> None:
    frame = demo_records(80, seed=11)
    found, intended = {}, {}
    for record, rows in frame.groupby("record_id", sort=False):
        screening = rows[rows["redcap_event_name"] == "screening_arm_1"].iloc[0].to_dict()
        calc, fail, missing = _eligibility(screening)
        rules = _rules_fired(rows, calc) | ({"ELIG_MISSING"} if missing else set())
        found[record] = (calc, fail, missing, sorted(rules))
        case = case_of(record)
        intended[record] = (case.elig_calc, case.elig_fail, case.elig_missing, sorted(case.rules))
    assert found == intended


def test_demo_covers_every_criterion_failing_and_every_rule() -> None:
    failing = {c for case in CATALOGUE for c in case.elig_fail.split(",") if c}
    rules = {rule for case in DEMO_CASES.values() for rule in case.rules}
    assert failing == {f"I{i}" for i in range(1, 5)} | {f"E{i}" for i in range(1, 10)}
    assert rules == {"ELIG_MISSING", "IE_MISMATCH", "DOSE_INELIGIBLE", "SAE_LATE",
                     "AE_FATAL_GRADE", "CM_IMMUNO"}
    assert {case.elig_calc for case in DEMO_CASES.values()} == {"1", "0", ""}


# --- Branching and calculations, read with the project's REDCap logic engine.

@pytest.fixture(scope="module")
def metadata() -> pd.DataFrame:
    from sync.crf.dictionary import load_dictionary
    return load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap").metadata


def test_every_demo_value_is_on_a_field_its_branching_logic_shows(
        demo: pd.DataFrame, metadata: pd.DataFrame) -> None:
    from sync.logic import evaluate
    hidden = {}
    for _, row in metadata[metadata["branching_logic"] != ""].iterrows():
        shown = evaluate(row["branching_logic"], demo, metadata)
        filled = demo[row["field_name"]] != ""
        if (filled & ~shown).any():
            hidden[row["field_name"]] = demo.loc[filled & ~shown, "record_id"].tolist()
    assert hidden == {}


# (dead, in hospital, oxygen device, PaO2, FiO2, vasopressor, dialysis, symptomatic,
#  assistance, virus detected) -> WHO Clinical Progression Scale (Marshall et al. 2020,
#  clinical-reference.md §5.1)
WHO_CPS_CASES = [
    (("1", "", "", "", "", "", "", "", "", ""), "10"),
    (("0", "1", "4", "60", "50", "1", "0", "", "", ""), "9"),
    (("0", "1", "4", "60", "50", "0", "0", "", "", ""), "8"),
    (("0", "1", "4", "90", "50", "1", "0", "", "", ""), "8"),
    (("0", "1", "4", "90", "50", "0", "0", "", "", ""), "7"),
    (("0", "1", "3", "", "", "0", "0", "", "", ""), "6"),
    (("0", "1", "1", "", "", "0", "0", "", "", ""), "5"),
    (("0", "1", "0", "", "", "0", "0", "", "", ""), "4"),
    (("0", "0", "0", "", "", "0", "0", "1", "1", "0"), "3"),
    (("0", "0", "0", "", "", "0", "0", "1", "0", "0"), "2"),
    (("0", "0", "0", "", "", "0", "0", "0", "", "1"), "1"),
    (("0", "0", "0", "", "", "0", "0", "0", "", "0"), "0"),
    (("", "", "1", "", "", "0", "0", "", "", ""), ""),
    (("0", "1", "", "", "", "0", "0", "", "", ""), ""),
    # blank while a component it needs is blank (#13.12): discharged, nothing else answered
    (("0", "0", "", "", "", "", "", "", "", ""), ""),
    (("0", "0", "", "", "", "", "", "1", "", ""), ""),
    (("0", "0", "", "", "", "", "", "0", "", ""), ""),
    (("0", "1", "4", "", "", "0", "0", "", "", ""), ""),
]


def test_who_cps_is_derived_from_its_components(metadata: pd.DataFrame) -> None:
    from sync.logic import compute_calcs
    columns = ["cs_dead", "cs_hosp", "rs_o2dev", "rs_pao2", "rs_fio2", "rs_vaso", "rs_rrt",
               "cs_symptom", "cs_assist", "cs_virus"]
    frame = pd.DataFrame([values for values, _ in WHO_CPS_CASES], columns=columns, dtype=object)
    frame.insert(0, "record_id", [str(k) for k in range(len(frame))])
    frame = frame.reindex(columns=list(metadata["field_name"]), fill_value="")
    scores = compute_calcs(frame, metadata)["who_cps"].tolist()
    assert scores == [score for _, score in WHO_CPS_CASES]


def test_each_demo_case_fires_exactly_the_catalogue_checks_it_names() -> None:
    from sync.crf.dictionary import load_dictionary
    from sync.eligibility import decide_eligibility
    from sync.rules import load_rules, run_rules
    dictionary = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")
    from sync.value_checks import recomputed_calcs
    from sync.demo.data import late_corrections, unvalidated_entries
    rules = load_rules(ROOT / "redcap" / "rules.csv", dictionary)
    frame = demo_records(40)
    stored = recomputed_calcs(frame, dictionary)  # REDCap computes every calc on the load
    frame[list(stored.columns)] = stored.fillna("").astype(object)
    # Later edits leave their calcs as they were; unvalidated values are held but unreadable.
    for edit in late_corrections(frame)[1:] + unvalidated_entries(frame):
        at = (frame["record_id"] == edit["record_id"]) & (
            frame["redcap_event_name"] == edit["redcap_event_name"])
        for name, value in edit.items():
            frame.loc[at, name] = value
    findings = run_rules(frame, dictionary, rules, decide_eligibility(frame))
    fired = findings.groupby("record_id")["rule_id"].agg(set).to_dict()
    got = {record: fired.get(record, set()) - set(case.rules) - {"ELIG_MISSING"}
           for record, case in DEMO_CASES.items()}
    assert got == {record: set(case.checks) for record, case in DEMO_CASES.items()}
    assert {r.rule_id for r in rules} <= set(findings["rule_id"])


NIAID_CASES = [
    # cs_dead, cs_hosp, rs_o2dev, rs_ecmo, cs_medcare, cs_limit, cs_homeo2 -> NIAID 1-8
    (("1", "", "", "", "", "", ""), "8"),
    (("0", "1", "4", "0", "", "", ""), "7"),
    (("0", "1", "1", "1", "", "", ""), "7"),
    (("0", "1", "3", "0", "", "", ""), "6"),
    (("0", "1", "1", "0", "", "", ""), "5"),
    (("0", "1", "0", "0", "1", "", ""), "4"),
    (("0", "1", "0", "0", "0", "", ""), "3"),
    (("0", "0", "", "", "", "1", "0"), "2"),
    (("0", "0", "", "", "", "0", "1"), "2"),
    (("0", "0", "", "", "", "0", "0"), "1"),
    (("0", "0", "", "", "", "0", ""), ""),
    (("0", "1", "0", "0", "", "", ""), ""),
    (("", "", "", "", "", "", ""), ""),
]


def test_niaid_scale_is_derived_and_blank_while_a_component_is_blank(
        metadata: pd.DataFrame) -> None:
    from sync.logic import compute_calcs
    columns = ["cs_dead", "cs_hosp", "rs_o2dev", "rs_ecmo", "cs_medcare", "cs_limit", "cs_homeo2"]
    frame = pd.DataFrame([values for values, _ in NIAID_CASES], columns=columns, dtype=object)
    frame.insert(0, "record_id", [str(k) for k in range(len(frame))])
    frame = frame.reindex(columns=list(metadata["field_name"]), fill_value="")
    assert compute_calcs(frame, metadata)["niaid_os"].tolist() == [s for _, s in NIAID_CASES]


def test_steroid_and_body_size_calcs(metadata: pd.DataFrame) -> None:
    from sync.logic import compute_calcs
    rows = [{"cm_class": "3", "cm_steroid": "3", "cm_dosnum": "6", "cm_dosu": "1",
             "cm_dosfrq": "1"},
            {"cm_class": "3", "cm_steroid": "2", "cm_dosnum": "40", "cm_dosu": "1",
             "cm_dosfrq": "2"},
            {"cm_class": "3", "cm_steroid": "2", "cm_dosnum": "1", "cm_dosu": "4",
             "cm_dosfrq": "1"},
            {"height": "170", "weight_bl": "72.3", "sympdat": "2025-03-01", "icdat": "2025-03-08"}]
    frame = pd.DataFrame(rows, dtype=object).fillna("")
    frame.insert(0, "record_id", [str(k) for k in range(len(frame))])
    frame = frame.reindex(columns=list(metadata["field_name"]), fill_value="")
    calcs = compute_calcs(frame, metadata)
    assert calcs["cm_pred_eq"].tolist() == ["40", "100", "", ""]
    assert calcs.loc[3, ["bmi", "onset_days"]].tolist() == ["25", "7"]
