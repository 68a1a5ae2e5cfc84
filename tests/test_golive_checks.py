"""The go-live edit checks (#13.15) on the embedded server: each fires on a record made to trip
it and stays silent on the same record with the one value corrected; and every message tells the
site what to do (#15.7)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from redcap import Project

from sync.config import Settings
from sync.connection import connect
from sync.demo import load_records
from sync.crf.deploy import deploy
from sync.crf.dictionary import load_dictionary
from sync.job import run_sync
from sync.rules import load_rules
from test_eligibility import ELIGIBLE

ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")
LOGS = "logs_arm_1"


def _row(record: str, event: str, instrument: str = "", instance: str = "",
         **values: str) -> dict[str, str]:
    return {"record_id": record, "redcap_event_name": event,
            "redcap_repeat_instrument": instrument, "redcap_repeat_instance": instance, **values}


def _screening(record: str, **changes: str) -> dict[str, str]:
    return _row(record, "screening_arm_1", **(ELIGIBLE | {"ie_yn": "1"} | changes))


def _dosed(record: str, kit: str, **changes: str) -> list[dict[str, str]]:
    """Screening and a Day 0 infusion (consent 2025-03-10, Day 0 on 2025-03-12)."""
    day0 = {"inf_given": "1", "inf_dat": "2025-03-12", "inf_kit": kit, "inf_start": "10:00",
            "inf_end": "11:00", "rand_dat": "2025-03-12", "ph_kit": kit} | changes
    return [_screening(record), _row(record, "day_0_arm_1", **day0)]


def _ae(record: str, instance: str = "1", **values: str) -> dict[str, str]:
    base = {"ae_term": "Pneumonia", "ae_stdat": "2025-03-20", "ae_ongo": "0",
            "ae_endat": "2025-03-25", "ae_grade": "2", "ae_ser": "0", "ae_out": "1"}
    return _row(record, LOGS, "adverse_event", instance, **(base | values))


def _sae(record: str, instance: str = "1", **values: str) -> dict[str, str]:
    serious = {"ae_ser": "1", "ae_sdth": "0", "ae_slife": "0", "ae_shosp": "1", "ae_sdisab": "0",
               "ae_scong": "0", "ae_smie": "0", "ae_aware_dtc": "2025-03-20 10:00",
               "ae_rpt_dtc": "2025-03-20 18:00", "ae_grade": "3"}
    return _ae(record, instance, **(serious | values))


def _conmed(record: str, **values: str) -> dict[str, str]:
    base = {"cm_trt": "Paracetamol", "cm_class": "9", "cm_immuno": "0",
            "cm_stdat": "2025-03-12", "cm_endat": "2025-03-15"}
    return _row(record, LOGS, "conmed", "1", **(base | values))


DEX = {"cm_trt": "Dexamethasone", "cm_class": "3", "cm_steroid": "3", "cm_dosu": "1",
       "cm_dosfrq": "1"}

CASES: dict[str, tuple[list[dict[str, str]], list[dict[str, str]]]] = {
    # rule: (rows of a record that trips it, the same record corrected)
    "AE_END_BEFORE_START": ([_ae("A", ae_endat="2025-03-18")], [_ae("A")]),
    "CM_END_BEFORE_START": ([_conmed("A", cm_endat="2025-03-11")], [_conmed("A")]),
    "SUPPORT_END_BEFORE_START": (
        [_row("A", LOGS, "support_log", "1", sl_type="2", sl_stdat="2025-03-14", sl_ongo="0",
              sl_endat="2025-03-13")],
        [_row("A", LOGS, "support_log", "1", sl_type="2", sl_stdat="2025-03-14", sl_ongo="0",
              sl_endat="2025-03-16")]),
    "HOSP_DISCH_BEFORE_ADM": ([_row("A", LOGS, ho_admdat="2025-03-08", ho_dischdat="2025-03-07")],
                              [_row("A", LOGS, ho_admdat="2025-03-08", ho_dischdat="2025-03-27")]),
    "DATE_FUTURE": ([_ae("A", ae_stdat="2099-01-01", ae_ongo="1", ae_endat="")], [_ae("A")]),
    "RAND_BEFORE_CONSENT": (_dosed("A", "RB-1", rand_dat="2025-03-05"), _dosed("A", "RB-1")),
    "AFTER_DEATH": (
        _dosed("A", "AD-1") + [_row("A", LOGS, dth_dat="2025-03-11")],
        _dosed("A", "AD-1") + [_row("A", LOGS, dth_dat="2025-03-30")]),
    "INF_VITALS_NO_REACTION": (_dosed("A", "IV-1", im_eoi_temp="38.5", ir_any="0"),
                               _dosed("A", "IV-1", im_eoi_temp="38.5", ir_any="1")),
    "SAE_NO_CRITERION": ([_sae("A", ae_shosp="0")], [_sae("A")]),
    "LAB_ULN_MISSING": ([_row("A", "day_14_arm_1", lb_dat="2025-03-26", lb_alt="30")],
                        [_row("A", "day_14_arm_1", lb_dat="2025-03-26", lb_alt="30",
                              lb_alt_uln="40")]),
    "PROGRESSION_NO_SAE": (
        [_row("A", "day_6_arm_1", rs_dat="2025-03-18", rs_o2dev="1", rs_vaso="1")],
        [_row("A", "day_6_arm_1", rs_dat="2025-03-18", rs_o2dev="1", rs_vaso="1"),
         _sae("A", ae_stdat="2025-03-18", ae_term="Septic shock")]),
    "KIT_REUSED": (
        _dosed("A", "KR-1") + [_row("A", "day_3_arm_1", inf_given="1", inf_dat="2025-03-15",
                                    inf_kit="KR-1", ph_kit="KR-1")],
        _dosed("A", "KR-1") + [_row("A", "day_3_arm_1", inf_given="1", inf_dat="2025-03-15",
                                    inf_kit="KR-2", ph_kit="KR-2")]),
    "KIT_MISMATCH": (_dosed("A", "KM-1", ph_kit="KM-2"), _dosed("A", "KM-1")),
    "SCREEN_WINDOW": (_dosed("A", "SW-1", rand_dat="2025-03-15"), _dosed("A", "SW-1")),
    "PREG_POS_DOSED": (
        [_screening("A", sex="2", rp_childpot="1", preg_perf="1", preg_res="1"),
         _dosed("A", "PP-1")[1]],
        [_screening("A", sex="2", rp_childpot="1", preg_perf="1", preg_res="0"),
         _dosed("A", "PP-1")[1]]),
    "STEROID_DOSE": ([_conmed("A", **DEX, cm_dosnum="20")], [_conmed("A", **DEX, cm_dosnum="6")]),
    "AE_ONGOING_AT_END": (
        [_ae("A", ae_ongo="1", ae_endat="", ae_out="6"),
         _row("A", LOGS, ds_decod="1", ds_stdat="2025-06-10")],
        [_ae("A", ae_ongo="1", ae_endat="", ae_out="3"),
         _row("A", LOGS, ds_decod="1", ds_stdat="2025-06-10")]),
}


def _record(rule: str, which: str) -> str:
    return f"{sorted(CASES).index(rule) + 10:02d}-{which}"


@pytest.fixture(scope="module")
def queries(redcap_server, tmp_path_factory) -> pd.DataFrame:
    """One project holding every case (tripped and corrected), after one sync."""
    token = redcap_server.create_project()
    settings = Settings(REDCAP_API_URL=redcap_server.url, REDCAP_API_TOKEN=SecretStr(token),
                        state_path=tmp_path_factory.mktemp("golive") / "state.sqlite",
                        redcap_dir=ROOT / "redcap", dictionary_path=ROOT / "data_dictionary.csv")
    deploy(connect(settings), DICTIONARY)
    rows = []
    for rule, (tripped, corrected) in CASES.items():
        for which, case in (("001", tripped), ("002", corrected)):
            record = _record(rule, which)
            rows += [r | {"record_id": record} | {k: f"{r[k]}/{record}" for k in
                                                  ("inf_kit", "ph_kit") if k in r}
                     for r in case]
    frame = pd.DataFrame(rows).fillna("")
    load_records(settings, frame)
    run_sync(settings)
    exported = pd.DataFrame(Project(redcap_server.url, token).export_records(format_type="json"))
    exported = exported.astype(object).where(exported.notna(), "")
    return exported[exported["redcap_repeat_instrument"] == "dq_query"]


@pytest.mark.parametrize("rule", sorted(CASES))
def test_check_fires_on_the_tripped_record_and_not_on_the_corrected_one(queries, rule) -> None:
    mine = queries[queries["dq_rule"] == rule]
    assert set(mine["record_id"]) == {_record(rule, "001")}, mine[["record_id", "dq_text"]]
    assert (mine["dq_status"] == "1").all()


def test_a_tripped_check_names_the_values_and_what_to_do(queries) -> None:
    text = dict(zip(queries["dq_rule"], queries["dq_text"]))
    assert text["STEROID_DOSE"].startswith("Dexamethasone is 133 mg/day prednisolone-equivalent, "
                                           "above the protocol limit of 80 mg/day: confirm")
    assert f"Kit KM-1/{_record('KIT_MISMATCH', '001')} infused at Day 0 is not the kit the " \
        f"pharmacy dispensed (KM-2/{_record('KIT_MISMATCH', '001')})" in text["KIT_MISMATCH"]
    assert "end of infusion" in text["INF_VITALS_NO_REACTION"] and "38.5" in \
        text["INF_VITALS_NO_REACTION"]


ACTION = re.compile(r":\s[^:]*\b(correct|confirm|enter|record|document|explain|check|set|"
                    r"complete|report|run|fix)\b", re.IGNORECASE)


def test_every_rule_message_says_what_the_site_should_do() -> None:
    rules = load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)
    vague = [rule.rule_id for rule in rules if not ACTION.search(rule.message)]
    assert vague == []


def test_dexamethasone_at_the_limit_is_not_above_it() -> None:
    """80 mg/day prednisolone-equivalent is twice RECOVERY's 6 mg dexamethasone: 12 mg a day
    (0.75 mg for 5 mg prednisolone, a factor of exactly 20/3) is the limit, not over it, for the
    sync, for the rule's logic in REDCap's Data Quality module, and for `cm_pred_eq`."""
    from sync.eligibility import decide_eligibility
    from sync.logic import compute_calcs
    from sync.rules import run_rules
    rule = next(r for r in load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)
                if r.rule_id == "STEROID_DOSE")
    as_logic = rule.model_copy(update={"python": "", "message": "m"})
    for dose, frequency, fires in (("12", "1", False), ("6", "2", False), ("12.25", "1", True)):
        frame = pd.DataFrame([_conmed("01-001", **DEX | {"cm_dosfrq": frequency},
                                      cm_dosnum=dose)]).reindex(
            columns=DICTIONARY.export_columns(), fill_value="").fillna("")
        decision = decide_eligibility(frame)
        for checked in (rule, as_logic):
            assert len(run_rules(frame, DICTIONARY, [checked], decision)) == fires, (
                dose, frequency, checked.python or "logic")
    frame = pd.DataFrame([_conmed("01-001", **DEX, cm_dosnum="12")]).reindex(
        columns=DICTIONARY.export_columns(), fill_value="").fillna("")
    assert compute_calcs(frame, DICTIONARY.metadata)["cm_pred_eq"].tolist() == ["80"]


METHYLPRED = {"cm_trt": "Methylprednisolone", "cm_class": "3", "cm_steroid": "2"}


@pytest.mark.parametrize(("dose", "unit", "frequency", "daily", "fires"), [
    ("1", "2", "5", "1250", True),          # a 1 g pulse, entered in g, as a single dose
    ("500", "1", "5", "625", True),         # a 500 mg single dose
    ("64000", "3", "1", "80", False),       # in micrograms, at the limit
    ("40", "4", "1", "", False),            # mg/kg: no daily dose without the weight
    ("40", "1", "", "", False),             # no frequency: no daily dose
])
def test_a_steroid_dose_in_grams_micrograms_or_as_a_single_dose_counts(
        dose: str, unit: str, frequency: str, daily: str, fires: bool) -> None:
    """A methylprednisolone pulse (1 g, once) is the excess most likely in viral pneumonia; the
    sync, the rule's REDCap logic and `cm_pred_eq` all read the dose in mg per day."""
    from sync.eligibility import decide_eligibility
    from sync.logic import compute_calcs
    from sync.rules import run_rules
    rule = next(r for r in load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)
                if r.rule_id == "STEROID_DOSE")
    frame = pd.DataFrame([_conmed("01-001", **METHYLPRED, cm_dosnum=dose, cm_dosu=unit,
                                  cm_dosfrq=frequency)]).reindex(
        columns=DICTIONARY.export_columns(), fill_value="").fillna("")
    decision = decide_eligibility(frame)
    for checked in (rule, rule.model_copy(update={"python": "", "message": "m"})):
        assert len(run_rules(frame, DICTIONARY, [checked], decision)) == fires
    assert compute_calcs(frame, DICTIONARY.metadata)["cm_pred_eq"].tolist() == [daily]


def test_an_unknown_corticosteroid_gives_no_prednisolone_equivalent() -> None:
    frame = pd.DataFrame([_conmed("01-001", **DEX | {"cm_steroid": "UNK"}, cm_dosnum="8")]
                         ).reindex(columns=DICTIONARY.export_columns(), fill_value="").fillna("")
    from sync.logic import compute_calcs
    assert compute_calcs(frame, DICTIONARY.metadata)["cm_pred_eq"].tolist() == [""]


@pytest.mark.parametrize(("alt", "uln", "fires"), [
    ("201", "ND", True),     # a "not done" ULN would hide a grade-3 ALT from LAB_CTCAE_G3
    ("201", "", True), ("201", "40", False), ("ND", "", False), ("", "", False)])
def test_a_lab_without_a_numeric_uln_is_queried(alt: str, uln: str, fires: bool) -> None:
    from sync.eligibility import decide_eligibility
    from sync.rules import run_rules
    rule = next(r for r in load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)
                if r.rule_id == "LAB_ULN_MISSING")
    frame = pd.DataFrame([_row("01-001", "day_14_arm_1", lb_dat="2025-03-26", lb_alt=alt,
                               lb_alt_uln=uln)]).reindex(
        columns=DICTIONARY.export_columns(), fill_value="").fillna("")
    found = run_rules(frame, DICTIONARY, [rule], decide_eligibility(frame))
    assert len(found) == fires


def test_the_steroid_limit_is_a_setting() -> None:
    from sync.eligibility import decide_eligibility
    from sync.rules import run_rules
    rules = [r for r in load_rules(ROOT / "redcap" / "rules.csv", DICTIONARY)
             if r.rule_id == "STEROID_DOSE"]
    frame = pd.DataFrame([_conmed("01-001", **DEX, cm_dosnum="20")]).reindex(
        columns=DICTIONARY.export_columns(), fill_value="").fillna("")
    decision = decide_eligibility(frame)
    assert len(run_rules(frame, DICTIONARY, rules, decision)) == 1
    assert run_rules(frame, DICTIONARY, rules, decision, steroid_limit_mg=150).empty
    message = run_rules(frame, DICTIONARY, rules, decision, steroid_limit_mg=100)["message"][0]
    assert "above the protocol limit of 100 mg/day" in message
