"""The rule catalogue, its validation, every coded rule's firing and silent cases, DQ export."""
from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.cli import cli
from sync.crf.dictionary import load_dictionary
from sync.eligibility import decide_eligibility
from sync.errors import DictionaryError
from sync.rule_checks import CODED_RULES, RuleData
from sync.rules import (FINDING_COLUMNS, RULE_COLUMNS, export_dq_csv, load_rules,
                        rule_summary, run_rules)
from sync.typed import parse_dates, parse_datetimes
from test_eligibility import ELIGIBLE

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "redcap" / "rules.csv"
ENTER = (": enter the value from the source document, or mark it with a missing-data code and "
         "explain why it is not available.")
CHECK_IE = (": check the screening source data and correct either the data or the "
            "investigator's answer.")
DOSE_ACTION = (": complete or correct the eligibility data; if the subject was not eligible, "
               "record a protocol deviation and inform the sponsor.")
WINDOW_ACTION = ": correct the date, or confirm it and record a protocol deviation (visit window)."
DEATH_ACTION = ": complete the disposition and death forms, or correct the AE outcome."
CONTRACT_RULES = {"ELIG_MISSING", "IE_MISMATCH", "DOSE_INELIGIBLE", "SAE_LATE",
                  "AE_FATAL_GRADE", "CM_IMMUNO"}


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")


@pytest.fixture(scope="module")
def catalogue(dictionary):
    return load_rules(RULES, dictionary)


def row(record: str, event: str, instrument: str = "", instance: str = "",
        **values: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": event,
            "redcap_repeat_instrument": instrument, "redcap_repeat_instance": instance,
            **values}


def screened(record: str = "01-001", **changes: str) -> dict[str, str]:
    """An eligible subject's screening row (consent 2025-03-10), changed by `changes`."""
    return row(record, "screening_arm_1", **(ELIGIBLE | changes))


def ae(instance: str, record: str = "01-001", **values: str) -> dict[str, str]:
    return row(record, "logs_arm_1", "adverse_event", instance,
               **({"ae_term": "Pneumonia"} | values))


@pytest.fixture
def run(dictionary, catalogue):
    """Run the named rules over rows built with `row`; the findings as a list of dicts."""
    columns = dictionary.export_columns()

    def run_named(rule_ids: set[str] | str, *rows: dict[str, str]) -> list[dict[str, str]]:
        ids = {rule_ids} if isinstance(rule_ids, str) else rule_ids
        frame = pd.DataFrame([{c: "" for c in columns} | r for r in rows], columns=columns)
        rules = [rule for rule in catalogue if rule.rule_id in ids]
        findings = run_rules(frame, dictionary, rules, decide_eligibility(frame))
        assert list(findings.columns) == list(FINDING_COLUMNS)
        assert all(str(t) == "string" for t in findings.dtypes)
        return findings.astype(object).to_dict("records")
    return run_named


def places(findings: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(f["record_id"], f["redcap_event_name"], f["redcap_repeat_instance"], f["field"])
            for f in findings]


# the catalogue

def test_catalogue_has_every_contract_rule_and_validates_against_the_dictionary(
        catalogue) -> None:
    ids = [rule.rule_id for rule in catalogue]
    assert CONTRACT_RULES <= set(ids)
    assert len(ids) == len(set(ids))


def test_every_coded_rule_is_documented_and_in_the_catalogue(catalogue) -> None:
    assert {rule.python for rule in catalogue if rule.python} == set(CODED_RULES)
    assert all(func.__doc__ for func in CODED_RULES.values())


def write_rules(tmp_path: Path, *rows: dict[str, str]) -> Path:
    path = tmp_path / "rules.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, RULE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for values in rows:
            writer.writerow({"category": "safety", "severity": "minor", "message": "m"} | values)
    return path


@pytest.mark.parametrize(("rows", "error"), [
    ([{"rule_id": "A", "logic": "[hgb] < 30"}, {"rule_id": "A", "logic": "[hgb] < 40"}],
     'line 3, column rule_id: "A" already defined on line 2'),
    ([{"rule_id": "A", "logic": "[hgb] < 30", "category": "style"}],
     "line 2, column category: Input should be 'eligibility', 'safety', 'consistency' or "
     "'missing_data'"),
    ([{"rule_id": "A", "logic": "[hgb] < 30", "severity": "urgent"}],
     "line 2, column severity: Input should be 'critical', 'major' or 'minor'"),
    ([{"rule_id": "A"}], "line 2, column row: Value error, a rule needs logic or python"),
    ([{"rule_id": "A", "python": "NOPE"}],
     'line 2, column python: Value error, no coded rule registered as "NOPE"'),
    ([{"rule_id": "A", "logic": "[hgbx] < 30"}],
     'line 2, column logic: no field named "hgbx" in the data dictionary (rule A)'),
    ([{"rule_id": "A", "logic": "[hgb] < 30", "message": "Hb {hb}"}],
     'line 2, column message: no field named "hb" in the data dictionary (rule A)'),
    ([{"rule_id": "A", "logic": "[hgb] < 30", "event": "day_99_arm_1"}],
     'line 2, column event: no event named "day_99_arm_1" (rule A)'),
    ([{"rule_id": "A", "logic": "[hgb] < 30", "instrument": "lab"}],
     'line 2, column instrument: no instrument named "lab" (rule A)'),
])
def test_catalogue_errors_name_file_line_and_column(tmp_path: Path, dictionary,
                                                    rows: list[dict[str, str]],
                                                    error: str) -> None:
    path = write_rules(tmp_path, *rows)
    with pytest.raises(DictionaryError) as caught:
        load_rules(path, dictionary)
    assert str(caught.value).replace(str(path), "rules.csv") == f"rules.csv, {error}"


def test_logic_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write_rules(tmp_path, {"rule_id": "A", "logic": "[hgb] == 30"})
    with pytest.raises(DictionaryError, match=r"rules.csv, line 2, column logic: .*"):
        load_rules(path)


def test_wrong_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "rules.csv"
    path.write_text("id,logic\nA,[hgb] < 30\n")
    with pytest.raises(DictionaryError, match=r"line 1: columns are id, logic; expected rule_id"):
        load_rules(path)


def test_no_findings_is_an_empty_frame_with_the_fixed_columns(run) -> None:
    assert run(CONTRACT_RULES, screened(ie_yn="1")) == []


# eligibility rules

def test_elig_missing_one_query_per_blank_input_naming_its_criteria(run, dictionary) -> None:
    label = dictionary.metadata.set_index("field_name")["field_label"]
    findings = run("ELIG_MISSING", screened(icdat="", wbc=""))
    assert [(f["field"], f["message"]) for f in findings] == [
        ("icdat", f"Eligibility (I1, I3) cannot be decided while {label['icdat']} (icdat) is "
                  "blank or not valid" + ENTER),
        ("wbc", f"Eligibility (E3) cannot be decided while {label['wbc']} (wbc) is blank or "
                "not valid" + ENTER)]
    assert places(findings)[0] == ("01-001", "screening_arm_1", "", "icdat")
    assert findings[0]["category"] == "missing_data"



def test_elig_missing_names_what_is_entered_so_a_missing_data_code_rewrites_it(
        run, dictionary) -> None:
    """dq_text names "the values that fired it" (crf-contract.md): a site that answers a blank
    with UNK, as the query asks, sees the text (and dq_updated) change."""
    label = dictionary.metadata.set_index("field_name")["field_label"]
    marked = run("ELIG_MISSING", screened(wbc="UNK"))
    assert [(f["field"], f["message"]) for f in marked] == [
        ("wbc", f"Eligibility (E3) cannot be decided while {label['wbc']} (wbc) is marked UNK "
                "(Unknown): enter the value from the source document if it can be found; if "
                "not, answer this query saying why, for the monitor to close it.")]
    zero = run("ELIG_MISSING", screened(rr="20", fio2="0"))
    assert [(f["field"], f["message"]) for f in zero] == [
        ("fio2", f"Eligibility (I3) cannot be decided while {label['fio2']} (fio2) holds 0, which "
                 "the criteria cannot use: enter the value from the source document in its "
                 "place.")]

@pytest.mark.parametrize(("changes", "result"), [
    ({"ie_yn": "1", "ic_yn": "0"}, "Yes (ie_yn = 1) to 'all eligibility criteria met', but the "
     "criteria computed from the data say not eligible (failing I2,E5)" + CHECK_IE),
    ({"ie_yn": "0"}, "No (ie_yn = 0) to 'all eligibility criteria met', but the criteria "
     "computed from the data say eligible" + CHECK_IE),
])
def test_ie_mismatch_fires_on_ie_yn(run, changes: dict[str, str], result: str) -> None:
    findings = run("IE_MISMATCH", screened(**changes))
    assert [(f["field"], f["message"]) for f in findings] == [
        ("ie_yn", f"The investigator answered {result}")]


@pytest.mark.parametrize("changes", [
    {"ie_yn": "1"}, {"ie_yn": "0", "ic_yn": "0"}, {"ie_yn": ""}, {"ie_yn": "1", "wbc": ""},
    {"ie_yn": "0", "wbc": ""}])
def test_ie_mismatch_silent_when_consistent_or_undetermined(run, changes) -> None:
    assert run("IE_MISMATCH", screened(**changes)) == []


def test_dose_ineligible_at_each_dosing_event_unless_eligible(run) -> None:
    rows = [screened("01-001", wbc=""), screened("01-002"), screened("01-003", ic_yn="0")]
    doses = [row(r["record_id"], event, inf_given=given)
             for r in rows for event, given in (("day_0_arm_1", "1"), ("day_3_arm_1", "0"),
                                               ("day_6_arm_1", "1"))]
    findings = run("DOSE_INELIGIBLE", *rows, *doses, row("01-004", "day_0_arm_1", inf_given="1"))
    assert [(f["record_id"], f["redcap_event_name"], f["field"]) for f in findings] == [
        ("01-001", "day_0_arm_1", "inf_given"), ("01-001", "day_6_arm_1", "inf_given"),
        ("01-003", "day_0_arm_1", "inf_given"), ("01-003", "day_6_arm_1", "inf_given"),
        ("01-004", "day_0_arm_1", "inf_given")]
    assert [f["message"] for f in findings[::2]] == [
        "Study product was given at Day 0 (inf_given = 1) but the subject is undetermined "
        "(missing E3)" + DOSE_ACTION,
        "Study product was given at Day 0 (inf_given = 1) but the subject is not eligible "
        "(failing I2,E5)" + DOSE_ACTION,
        "Study product was given at Day 0 (inf_given = 1) but the subject is not screened"
        + DOSE_ACTION]


# safety rules

@pytest.mark.parametrize(("aware", "reported", "serious", "hours"), [
    ("2025-03-12 08:00", "2025-03-13 08:00", "1", None),       # exactly 24 h
    ("2025-03-12 08:00", "2025-03-13 08:01", "1", "24.02"),
    ("2025-03-12 08:00", "2025-03-14 14:00", "1", "54"),
    ("2025-03-12 08:00", "2025-03-14 14:00", "0", None),
    ("", "2025-03-14 14:00", "1", None),
])
def test_sae_late(run, aware: str, reported: str, serious: str, hours: str | None) -> None:
    findings = run("SAE_LATE", ae("2", ae_ser=serious, ae_aware_dtc=aware,
                                  ae_rpt_dtc=reported))
    expected = [] if hours is None else [(
        ("01-001", "logs_arm_1", "2", "ae_rpt_dtc"),
        f"Serious AE Pneumonia reported {hours} h after awareness ({aware} -> {reported}); "
        "the limit is 24 h: confirm both times against the SAE form; if they are right, document "
        "the reason for the late report.")]
    assert [(p, f["message"]) for p, f in zip(places(findings), findings)] == expected


@pytest.mark.parametrize(("grade", "outcome", "fires"), [
    ("5", "5", False), ("5", "3", True), ("4", "5", True), ("5", "", True), ("", "", False),
    ("3", "1", False), ("", "5", True)])
def test_ae_fatal_grade(run, grade: str, outcome: str, fires: bool) -> None:
    findings = run("AE_FATAL_GRADE", ae("1", ae_grade=grade, ae_out=outcome))
    assert [f["field"] for f in findings] == (["ae_out"] if fires else [])


def test_ae_fatal_grade_message_names_grade_and_outcome(run) -> None:
    findings = run("AE_FATAL_GRADE", ae("1", ae_grade="5", ae_out="3"))
    assert findings[0]["message"] == ("AE Pneumonia has grade 5 (Grade 5 Death) and outcome "
                                      "3 (Not recovered); grade 5 (death) and outcome 5 "
                                      "(Fatal) must go together: correct the grade or the "
                                      "outcome.")


@pytest.mark.parametrize(("immuno", "end", "consent", "fires"), [
    ("1", "", "2025-03-10", True),
    ("1", "2025-03-10", "2025-03-10", True),
    ("1", "2025-03-09", "2025-03-10", False),
    ("0", "", "2025-03-10", False),
    ("1", "2025-03-20", "", False),
    ("1", "", "", True),
])
def test_cm_immuno(run, immuno: str, end: str, consent: str, fires: bool) -> None:
    conmed = row("01-001", "logs_arm_1", "conmed", "3", cm_trt="Tocilizumab",
                 cm_immuno=immuno, cm_stdat="2025-03-01", cm_endat=end)
    findings = run("CM_IMMUNO", screened(icdat=consent), conmed)
    assert places(findings) == ([("01-001", "logs_arm_1", "3", "cm_immuno")] if fires else [])


def test_cm_immuno_message(run) -> None:
    conmed = row("01-001", "logs_arm_1", "conmed", "1", cm_trt="Tocilizumab", cm_immuno="1")
    assert run("CM_IMMUNO", screened(), conmed)[0]["message"] == (
        "Tocilizumab is recorded as immunotherapy or an immunomodulator (cm_immuno = 1) and "
        "was taken on or after consent on 2025-03-10 (ongoing); inclusion 2 forbids other "
        "immunotherapy during the study: confirm the dates and the drug class; if it was "
        "taken, record a protocol deviation.")


def labs(event: str = "day_14_arm_1", **values: str) -> dict[str, str]:
    return row("01-001", event, lb_dat="2025-03-24", **values)


@pytest.mark.parametrize(("values", "grade"), [
    ({"lb_alt": "200.1", "lb_alt_uln": "40"}, "3"), ({"lb_alt": "200", "lb_alt_uln": "40"}, None),
    ({"lb_alt": "801", "lb_alt_uln": "40"}, "4"), ({"lb_alt": "801", "lb_alt_uln": ""}, None),
    ({"lb_tbil": "51.4", "lb_tbil_uln": "17.1"}, "3"),
    ({"lb_tbil": "51.3", "lb_tbil_uln": "17.1"}, None),
    ({"lb_crea": "319", "lb_crea_uln": "106"}, "3"),
    ({"lb_crea": "318", "lb_crea_uln": "106"}, None),
    ({"lb_crea": "637", "lb_crea_uln": "106"}, "4"),
    ({"lb_hgb": "79"}, "3"), ({"lb_hgb": "80"}, None),
    ({"lb_plt": "49"}, "3"), ({"lb_plt": "24"}, "4"), ({"lb_plt": "50"}, None),
    ({"lb_wbc": "1.9"}, "3"), ({"lb_wbc": "0.9"}, "4"), ({"lb_wbc": "2"}, None),
    ({"lb_neut": "0.99"}, "3"), ({"lb_neut": "0.49"}, "4"), ({"lb_neut": "1.0"}, None),
])
def test_lab_ctcae_grade_3_or_worse_without_an_ae(run, values: dict[str, str],
                                                 grade: str | None) -> None:
    findings = run("LAB_CTCAE_G3", labs(**values))
    assert [f["message"].split(" is CTCAE v5.0 grade ")[1][0] for f in findings] == \
        ([grade] if grade else [])
    assert [f["field"] for f in findings] == ([next(iter(values))] if grade else [])


def test_lab_ctcae_message(run) -> None:
    findings = run("LAB_CTCAE_G3", labs(lb_alt="250", lb_alt_uln="40"))
    assert findings[0]["message"] == (
        "ALT 250 U/L on 2025-03-24 (Day 14) is CTCAE v5.0 grade 3 (> 5 x ULN 40), but no "
        "adverse event starts within 2 days of the sample: record the adverse event, or confirm "
        "the value and explain why it is not one.")


@pytest.mark.parametrize(("onset", "fires"), [
    ("2025-03-22", False), ("2025-03-26", False), ("2025-03-21", True), ("2025-03-27", True)])
def test_lab_ctcae_silenced_by_an_ae_within_2_days(run, onset: str, fires: bool) -> None:
    findings = run("LAB_CTCAE_G3", labs(lb_hgb="70"), ae("1", ae_stdat=onset),
                   ae("1", record="02-001", ae_stdat="2025-03-24"))
    assert len(findings) == (1 if fires else 0)


# consistency rules

def infusions(*dates: str, record: str = "01-001") -> list[dict[str, str]]:
    events = ("day_0_arm_1", "day_3_arm_1", "day_6_arm_1")
    return [row(record, e, inf_given="1", inf_dat=d) for e, d in zip(events, dates) if d]


@pytest.mark.parametrize(("day3", "day6", "fired"), [
    ("2025-03-13", "2025-03-16", []),
    ("2025-03-12", "2025-03-17", []),                          # edges: day 2, day 7
    ("2025-03-11", "2025-03-18", ["day_3_arm_1", "day_6_arm_1"]),
    ("2025-03-15", "", ["day_3_arm_1"]),
])
def test_infusion_windows_from_events_csv(run, day3: str, day6: str,
                                          fired: list[str]) -> None:
    findings = run("INF_WINDOW", *infusions("2025-03-10", day3, day6))
    assert [f["redcap_event_name"] for f in findings] == fired


def test_infusion_window_message(run) -> None:
    findings = run("INF_WINDOW", *infusions("2025-03-10", "2025-03-15"))
    assert findings[0]["message"] == ("Infusion date 2025-03-15 is day 5 after the Day 0 "
                                      "infusion (2025-03-10); the Day 3 window is day 2 to "
                                      "day 4" + WINDOW_ACTION)


def test_infusion_window_needs_day_0(run) -> None:
    assert run("INF_WINDOW", *infusions("", "2025-03-25")) == []


def test_infusions_in_order(run) -> None:
    findings = run("INF_ORDER", *infusions("2025-03-10", "2025-03-10", "2025-03-09"))
    assert [(f["redcap_event_name"], f["message"]) for f in findings] == [
        ("day_3_arm_1", "Infusion date 2025-03-10 at Day 3 is not after the previous infusion "
                        "(2025-03-10 at Day 0): correct whichever date is wrong."),
        ("day_6_arm_1", "Infusion date 2025-03-09 at Day 6 is not after the previous infusion "
                        "(2025-03-10 at Day 3): correct whichever date is wrong.")]
    assert run("INF_ORDER", *infusions("2025-03-10", "2025-03-13", "2025-03-16")) == []


@pytest.mark.parametrize(("start", "end", "fires"), [
    ("09:00", "09:45", False), ("09:45", "09:45", True), ("10:00", "09:15", True),
    ("", "09:15", False)])
def test_infusion_start_before_end(run, start: str, end: str, fires: bool) -> None:
    findings = run("INF_TIME", row("01-001", "day_3_arm_1", inf_start=start, inf_end=end))
    assert places(findings) == ([("01-001", "day_3_arm_1", "", "inf_end")] if fires else [])


def test_visit_dates_in_windows(run) -> None:
    findings = run("VISIT_WINDOW", *infusions("2025-03-10"),
                   row("01-001", "day_14_arm_1", vsdat="2025-03-26", lb_dat="2025-03-27"),
                   row("01-001", "day_28_arm_1", cs_dat="2025-04-03"))
    assert [(f["redcap_event_name"], f["field"], f["message"]) for f in findings] == [
        ("day_14_arm_1", "lb_dat", "Sample date 2025-03-27 is day 17 after the Day 0 infusion "
                                   "(2025-03-10); the Day 14 window is day 12 to day 16"
                                   + WINDOW_ACTION),
        ("day_28_arm_1", "cs_dat", "Assessment date 2025-04-03 is day 24 after the Day 0 "
                                   "infusion (2025-03-10); the Day 28 window is day 25 to "
                                   "day 31" + WINDOW_ACTION)]


def test_fatal_ae_needs_a_death_on_the_disposition_form(run) -> None:
    fatal = ae("2", ae_out="5")
    died = row("01-001", "logs_arm_1", ds_decod="2", dth_dat="2025-03-30")
    assert run("DEATH_AE_NO_DS", fatal, died) == []
    assert [f["message"] for f in run("DEATH_AE_NO_DS", fatal)] == [
        "AE Pneumonia has outcome Fatal (ae_out = 5) but the disposition form does not record "
        "a death (not entered)" + DEATH_ACTION]
    completed = row("01-001", "logs_arm_1", ds_decod="1")
    assert [f["message"] for f in run("DEATH_AE_NO_DS", fatal, completed)] == [
        "AE Pneumonia has outcome Fatal (ae_out = 5) but the disposition form records "
        "1 (Completed), not a death" + DEATH_ACTION]


def test_death_on_disposition_needs_a_fatal_ae(run) -> None:
    died = row("01-001", "logs_arm_1", ds_decod="2", dth_dat="2025-03-30")
    assert places(run("DEATH_DS_NO_AE", died, ae("1", ae_out="3"))) == [
        ("01-001", "logs_arm_1", "", "ds_decod")]
    assert run("DEATH_DS_NO_AE", died, ae("1", ae_out="5")) == []



@pytest.mark.parametrize(("ongo", "end", "ended", "fires"), [
    ("1", "", "2025-06-10", True), ("", "", "2025-06-10", True),
    ("0", "2025-06-20", "2025-06-10", True),  # it ended after the study had ended
    ("0", "2025-06-10", "2025-06-10", False), ("0", "2025-05-01", "2025-06-10", False),
    ("0", "", "2025-06-10", False),  # a missing end date, not an AE still ongoing
    ("0", "UNK", "2025-06-10", False),  # an end date marked unknown is not one after the end
    ("1", "", "", False)])
def test_ae_ongoing_when_the_study_ended_needs_its_outcome(run, ongo: str, end: str,
                                                           ended: str, fires: bool) -> None:
    status = {"ds_decod": "1", "ds_stdat": ended} if ended else {}
    findings = run("AE_ONGOING_AT_END", ae("1", ae_ongo=ongo, ae_endat=end, ae_out=""),
                   row("01-001", "logs_arm_1", **status))
    assert places(findings) == ([("01-001", "logs_arm_1", "1", "ae_out")] if fires else [])
    if fires:
        assert findings[0]["message"].startswith(
            f"AE Pneumonia was still ongoing when the study ended ({ended}) and its outcome "
            "is blank")


def test_an_end_date_alone_ends_the_study_for_ae_outcomes(run) -> None:
    """A disposition date without its status (entered first) still ends the study."""
    findings = run("AE_ONGOING_AT_END", ae("1", ae_ongo="1", ae_out="6"),
                   row("01-001", "logs_arm_1", ds_stdat="2025-06-10"))
    assert places(findings) == [("01-001", "logs_arm_1", "1", "ae_out")]


# logic rules (evaluated by sync.logic)

def test_logic_rules_fire_on_their_rows(run) -> None:
    findings = run({"UNIT_CREA", "UNIT_LB_HGB", "AE_SDTH"}, screened(crea="1.2"),
                   row("01-001", "day_3_arm_1", lb_hgb="9.8"), row("01-001", "day_6_arm_1",
                                                                    lb_hgb="98"),
                   ae("1", ae_out="5", ae_sdth="0"))
    assert sorted((f["rule_id"], f["redcap_event_name"], f["message"]) for f in findings) == [
        ("AE_SDTH", "logs_arm_1", "AE Pneumonia has outcome Fatal but 'Results in death' "
                                  "(ae_sdth) is not Yes: set 'Results in death' to Yes, "
                                  "or correct the outcome."),
        ("UNIT_CREA", "screening_arm_1", "Creatinine 1.2 looks like mg/dL; the form asks for "
                                         "umol/L (mg/dL x 88.4): correct the value, or "
                                         "confirm it if it really is umol/L."),
        ("UNIT_LB_HGB", "day_3_arm_1", "Haemoglobin 9.8 looks like g/dL; the form asks for g/L "
                                       "(g/dL x 10): correct the value, or confirm it if it "
                                       "really is g/L.")]


# Data Quality export

def test_dq_export_writes_the_logic_rules(tmp_path: Path, catalogue) -> None:
    out = tmp_path / "dq.csv"
    count = export_dq_csv(catalogue, out)
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["rule_name", "rule_logic", "real_time_execution"]
    assert count == len(rows) - 1 == sum(1 for rule in catalogue if rule.logic)
    assert rows[4] == [
        "SAE_LATE: A serious adverse event reported to the sponsor more than 24 hours after "
        "the site became aware.",
        "[ae_ser] = '1' and datediff([ae_aware_dtc], [ae_rpt_dtc], 'h', true) > 24", "y"]


def test_rules_export_command(tmp_path: Path) -> None:
    out = tmp_path / "dq.csv"
    result = CliRunner().invoke(cli, ["rules", "export", "--rules", str(RULES), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == f"25 rules written to {out}\n"
    assert out.read_text().startswith("rule_name,rule_logic,real_time_execution\n")


def test_rules_export_command_reports_a_bad_catalogue(tmp_path: Path) -> None:
    bad = write_rules(tmp_path, {"rule_id": "A"})
    result = CliRunner().invoke(cli, ["rules", "export", "--rules", str(bad)])
    assert result.exit_code == 2
    assert result.output == (f"Error: {bad}, line 2, column row: Value error, a rule needs "
                             "logic or python\n")


def test_columns_missing_from_the_export_count_as_blank(dictionary, catalogue) -> None:
    frame = pd.DataFrame([ae("1", ae_grade="5", ae_out="3")])
    findings = run_rules(frame, dictionary, catalogue, decide_eligibility(
        pd.DataFrame(columns=dictionary.export_columns())))
    assert findings[["rule_id", "field"]].values.tolist() == [["AE_FATAL_GRADE", "ae_out"]]


def test_event_column_limits_a_coded_rule(tmp_path: Path, dictionary) -> None:
    path = write_rules(tmp_path, {"rule_id": "DOSE_DAY_3", "python": "DOSE_INELIGIBLE",
                                  "event": "day_3_arm_1", "field": "inf_given",
                                  "message": "Dosed at {event_label} while {result}."})
    frame = pd.DataFrame([screened(ic_yn="0"), row("01-001", "day_0_arm_1", inf_given="1"),
                          row("01-001", "day_3_arm_1", inf_given="1")])
    frame = frame.reindex(columns=dictionary.export_columns(), fill_value="").fillna("")
    findings = run_rules(frame, dictionary, load_rules(path, dictionary),
                         decide_eligibility(frame))
    assert findings[["rule_id", "redcap_event_name", "message"]].values.tolist() == [
        ["DOSE_DAY_3", "day_3_arm_1", "Dosed at Day 3 while not eligible (failing I2,E5)."]]


def test_exported_logic_agrees_with_the_coded_rules_on_the_demo_trial(dictionary,
                                                                      catalogue) -> None:
    """What REDCap's Data Quality module would flag is what the sync queries."""
    from sync.demo.data import demo_records
    extra = [ae("1", record="01-001", ae_ser="1", ae_aware_dtc="2024-05-01 08:00",
                ae_rpt_dtc="2024-05-02 08:00", ae_grade="5", ae_out=""),
             row("01-002", "logs_arm_1", "conmed", "9", cm_trt="X", cm_immuno="1",
                 cm_endat="2020-01-01"),
             row("01-003", "day_3_arm_1", inf_start="10:00", inf_end="10:00")]
    frame = pd.concat([demo_records(40), pd.DataFrame(extra)], ignore_index=True)
    frame = frame.reindex(columns=dictionary.export_columns(), fill_value="").fillna("")
    decision = decide_eligibility(frame)
    screening = frame["redcap_event_name"] == "screening_arm_1"
    for column in ("elig_calc", "elig_missing"):
        frame.loc[screening, column] = frame.loc[screening, "record_id"].map(
            decision.values[column]).to_numpy()
    for rule in (r for r in catalogue if r.logic and r.python):
        as_logic = rule.model_copy(update={"python": "", "message": "m"})
        found = [{tuple(f) for f in run_rules(frame, dictionary, [r], decision)[
            ["record_id", "redcap_event_name", "redcap_repeat_instance"]].values.tolist()}
            for r in (rule, as_logic)]
        assert found[0] == found[1], rule.rule_id
        assert found[0], f"{rule.rule_id} never fires on the demo trial"


def test_rule_summary_counts_findings_and_records_per_rule(dictionary, catalogue) -> None:
    frame = pd.DataFrame([ae("1", ae_grade="5"), ae("2", ae_grade="5"),
                          ae("1", record="02-001", ae_out="5", ae_grade="5")])
    rules = [r for r in catalogue if r.rule_id in {"AE_FATAL_GRADE", "SAE_LATE"}]
    findings = run_rules(frame, dictionary, rules, decide_eligibility(
        pd.DataFrame(columns=dictionary.export_columns())))
    assert rule_summary(rules, findings).values.tolist() == [
        ["SAE_LATE", "safety", "critical", 0, 0],
        ["AE_FATAL_GRADE", "consistency", "major", 2, 1]]


def test_criteria_blaming_the_same_input_share_one_query(run) -> None:
    findings = run("ELIG_MISSING", screened(ic_yn=""))
    assert [(f["field"], f["message"].split(")")[0]) for f in findings] == [
        ("ic_yn", "Eligibility (I2, E5")]


def test_rows_with_repeated_index_labels_are_each_checked(dictionary, catalogue) -> None:
    frame = pd.concat([pd.DataFrame([ae("1", ae_grade="5")]),
                       pd.DataFrame([ae("2", ae_grade="5")])])
    rules = [r for r in catalogue if r.rule_id == "AE_FATAL_GRADE"]
    findings = run_rules(frame, dictionary, rules, decide_eligibility(
        pd.DataFrame(columns=dictionary.export_columns())))
    assert findings["redcap_repeat_instance"].tolist() == ["1", "2"]


def _moment_texts(formats: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Stored texts of moments around today, some padded or malformed, and any text."""
    moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2200, 1, 1))
    shaped = st.tuples(moments, st.sampled_from(formats), st.sampled_from(["", " "])).map(
        lambda m: m[2] + m[0].strftime(m[1]) + m[2])
    return st.one_of(shaped, st.sampled_from(["", "2999-02-30", "2999-1-1", "2999-01-01T10:00",
                                              "2999-01-01 10:00+02:00"]), st.text(max_size=19))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_moment_texts(("%Y-%m-%d",)),
                          _moment_texts(("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"))),
                min_size=1, max_size=6))
def test_date_future_flags_exactly_the_values_read_as_after_today(dictionary, entries) -> None:
    records = pd.DataFrame(
        [ae(str(n), ae_stdat=day, ae_aware_dtc=moment) for n, (day, moment) in
         enumerate(entries, start=1)], columns=dictionary.export_columns()).fillna("")
    fired = CODED_RULES["DATE_FUTURE"](RuleData(records, dictionary, None))
    today = pd.Timestamp.today().normalize()
    expected = {(str(n), field) for n, (day, moment) in enumerate(entries, start=1)
                for field, text, parse in (("ae_stdat", day, parse_dates),
                                           ("ae_aware_dtc", moment, parse_datetimes))
                if parse(pd.Series([text])).dt.normalize().iloc[0] > today}
    assert set(zip(fired["redcap_repeat_instance"], fired.get("field", []))) == expected


_INFUSION_EVENTS = ("day_0_arm_1", "day_3_arm_1", "day_6_arm_1")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["01-001", "01-002", "02-003", "02-004"]),
                          st.sampled_from(_INFUSION_EVENTS), st.sampled_from(["1", "0", ""]),
                          st.sampled_from(["K-01", " k-01", "K-01 ", "k-02", "K-03", "", " "])),
                min_size=1, max_size=12, unique_by=lambda e: e[:2]),
       st.sets(st.sampled_from(["01-001", "01-002", "02-003", "02-004"]), min_size=1))
def test_kit_reused_in_a_batch_fires_as_on_the_whole_project(dictionary, entries, batch) -> None:
    """KIT_REUSED on one batch, reading the other records' kits from the across rows (codes of
    categories, as `sync.batches.across_records` holds them), fires on exactly the batch's rows
    it fires on when the whole project is one frame: kits match whatever their case or spaces."""
    columns = dictionary.export_columns()
    records = pd.DataFrame(
        [row(record, event, "", "", inf_given=given_, inf_kit=kit)
         for record, event, given_, kit in entries], columns=columns).fillna("")
    whole = CODED_RULES["KIT_REUSED"](RuleData(records, dictionary, None))
    across = records[["record_id", "redcap_event_name", "redcap_repeat_instrument",
                      "redcap_repeat_instance", "inf_given", "inf_kit"]].astype("category")
    mine = records[records["record_id"].isin(batch)].reset_index(drop=True)
    in_batch = CODED_RULES["KIT_REUSED"](RuleData(mine, dictionary, None, across=across))

    def fired(frame: pd.DataFrame) -> set[tuple[str, ...]]:
        if frame.empty:
            return set()
        return set(frame[["record_id", "redcap_event_name", "inf_kit", "other"]]
                   .itertuples(index=False, name=None))

    assert fired(in_batch) == {f for f in fired(whole) if f[0] in batch}
