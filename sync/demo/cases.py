"""The demo trial's cases: what each synthetic subject shows and what the sync must conclude.

`CATALOGUE` lists the cases; subject k (0-based) of `sync.demo.data.demo_records` plays
`CATALOGUE[k % len(CATALOGUE)]`, and `DEMO_CASES` maps each record id of the default
40-subject trial to its case (the table is in `sync.demo.data`'s docstring).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

__all__ = ["ALL", "CATALOGUE", "DEMO_CASES", "Age", "DemoCase", "Rel", "Spec", "case_of",
           "record_id_of"]

ALL = 99
"""`DemoCase.visits` / `infused` value meaning every visit / every dosing visit."""
SUBJECTS_PER_SITE = 500


@dataclass(frozen=True)
class Rel:
    """A date `days` after the subject's consent date, optionally with a time of day."""

    days: int
    time: str = ""


@dataclass(frozen=True)
class Age:
    """A birth date giving the subject's `years`-th birthday `days` after consent."""

    years: int
    days: int = 0


Spec = str | Rel | Age


@dataclass(frozen=True)
class DemoCase:
    """What one demo subject is meant to show, and what the sync should conclude for it.

    `elig_calc`, `elig_fail`, `elig_missing` are the values the sync must write; `rules` the
    contract rules that must fire on the record, `checks` the other catalogue rules it shows.
    `screening` overrides the eligible defaults; `visits` is how many visit events after
    Screening the subject attends (in event order) and `infused` at how many of its dosing
    visits the product is given; `logs` adds instances. `visit` overrides values of one visit
    event (a `Rel` there counts from Day 0, not consent); `end` overrides the Logs event's
    non-repeating forms (hospital course, disposition, death; `Rel` from consent); `late`
    changes Screening values after the load, as a site's later edit that leaves a calc stale;
    `unvalidated` holds Screening values entered while their field had no validation, which its
    type cannot read (REDCap's Data Quality rule F finds such values; the sync's INVALID_VALUE).
    """

    name: str
    elig_calc: str
    elig_fail: str = ""
    elig_missing: str = ""
    rules: tuple[str, ...] = ()
    screening: Mapping[str, Spec] = field(default_factory=dict)
    ie_yn: str | None = None
    visits: int = 0
    infused: int = 0
    logs: tuple[tuple[str, Mapping[str, Spec]], ...] = ()
    checks: tuple[str, ...] = ()
    visit: Mapping[str, Mapping[str, Spec]] = field(default_factory=dict)
    end: Mapping[str, Spec] = field(default_factory=dict)
    late: Mapping[str, str] = field(default_factory=dict)
    unvalidated: Mapping[str, str] = field(default_factory=dict)

    @property
    def investigator_answer(self) -> str:
        """`ie_yn` as the site entered it: agrees with the data unless the case says otherwise."""
        return self.ie_yn if self.ie_yn is not None else self.elig_calc


def _only_virus(code: str, specimen: Spec) -> dict[str, Spec]:
    """Etiology with one virus positive (specimen date `specimen`) and the others negative."""
    values: dict[str, Spec] = {}
    for virus in ("sarscov2", "adeno", "flu", "othvir"):
        values[f"{virus}_res"] = "1" if virus == code else "0"
        values[f"{virus}_dat"] = specimen if virus == code else ""
        values[f"{virus}_spc"] = "1" if virus == code else ""
        values[f"{virus}_mth"] = "1" if virus == code else ""
    values["othvir_spec"] = "Respiratory syncytial virus" if code == "othvir" else ""
    return values


def _eligible(name: str, rules: tuple[str, ...] = (), logs: tuple = (),
              checks: tuple[str, ...] = (), visit: Mapping[str, Mapping[str, Spec]] | None = None,
              end: Mapping[str, Spec] | None = None, **screening: Spec) -> DemoCase:
    return DemoCase(name, "1", rules=rules, screening=screening, visits=ALL, infused=ALL,
                    logs=logs, checks=checks, visit=visit or {}, end=end or {})


def _failing(name: str, fail: str, **screening: Spec) -> DemoCase:
    return DemoCase(name, "0", elig_fail=fail, screening=screening)


def _undetermined(name: str, missing: str, **screening: Spec) -> DemoCase:
    return DemoCase(name, "", elig_missing=missing, rules=("ELIG_MISSING",), screening=screening)


_SERIOUS = {"ae_ser": "1", "ae_sdth": "0", "ae_slife": "0", "ae_shosp": "1", "ae_sdisab": "0",
            "ae_scong": "0", "ae_smie": "0", "ae_ctcae_ver": "5.0", "ae_infrel": "0"}
_NOT_RESPIRATORY = {"rr": "22", "spo2": "95", "spo2_ra": "1"}
_AE = {"ae_ongo": "0", "ae_grade": "2", "ae_ctcae_ver": "5.0", "ae_infrel": "0", "ae_aesi": "0",
       "ae_ser": "0", "ae_rel": "4", "ae_acn": "1", "ae_out": "1"}
_SAE = {**_AE, **_SERIOUS, "ae_grade": "3", "ae_expect": "0", "ae_narr": "See SAE report"}
_PREGNANT = {"sex": "2", "rp_childpot": "1", "preg_perf": "1", "preg_type": "1",
             "preg_dat": Rel(0), "preg_res": "1", "rp_contra": "1", "rp_contra_meth": "1",
             "rp_lact": "0"}

CATALOGUE: tuple[DemoCase, ...] = (
    _eligible("eligible", checks=("UNIT_LB_CREA", "UNIT_LB_HGB", "LAB_CTCAE_G3"), visit={
        "day_14_arm_1": {"lb_crea": "1.0", "lb_crea_uln": "1.1"},
        "day_28_arm_1": {"lb_plt": "40"}, "day_90_arm_1": {"lb_hgb": "11.5"}}),
    _eligible("eligible_age_18_today", brthdat=Age(18, 0),
              checks=("UNIT_LB_TBIL", "LAB_ULN_MISSING"), visit={
                  "day_14_arm_1": {"lb_tbil": "0.6", "lb_tbil_uln": "1.0"},
                  "day_28_arm_1": {"lb_alt_uln": ""}}),
    _eligible("eligible_by_spo2", rr="24", spo2="92", spo2_ra="1", pao2="105", fio2="30",
              checks=("INF_WINDOW", "INF_ORDER"), visit={
                  "day_3_arm_1": {"inf_dat": Rel(5)}, "day_6_arm_1": {"inf_dat": Rel(4)}}),
    _eligible("eligible_by_pf", **_NOT_RESPIRATORY, pao2="75", fio2="30",
              checks=("INF_TIME",), visit={
                  "day_0_arm_1": {"inf_start": "10:00", "inf_end": "09:30"}}),
    _eligible("eligible_pf_exactly_300", **_NOT_RESPIRATORY, pao2="90", fio2="30",
              checks=("VISIT_WINDOW",), visit={"day_14_arm_1": {"vsdat": Rel(20)}}),
    _eligible("eligible_adeno_14_days_before", **_only_virus("adeno", Rel(-14)),
              checks=("INF_DAT_MISSING",), visit={"day_6_arm_1": {"inf_dat": ""}}),
    replace(_eligible("eligible_flu_3_days_after", **_only_virus("flu", Rel(3)),
                      checks=("UNIT_CREA", "UNIT_TBIL", "INVALID_VALUE"), crea="6.8",
                      tbil="0.9", tbil_uln="1.2"),
            unvalidated={"paco2": "４２"}),  # full-width digits typed through an IME
    _eligible("eligible_cv_event_184_days", cv_event_dat=Rel(-184),
              checks=("AE_END_BEFORE_START", "CM_END_BEFORE_START"), logs=(
                  ("adverse_event", {**_AE, "ae_term": "Cough", "ae_stdat": Rel(8),
                                     "ae_endat": Rel(6), "ae_aware_dtc": Rel(8, "11:00")}),
                  ("conmed", {"cm_trt": "Paracetamol", "cm_class": "9", "cm_immuno": "0",
                              "cm_stdat": Rel(5), "cm_endat": Rel(2)}))),
    _eligible("eligible_sae_24h_old_immuno", logs=(
        ("adverse_event", {"ae_term": "Pneumothorax", "ae_stdat": Rel(6), "ae_ongo": "0",
                           "ae_endat": Rel(12), "ae_grade": "3", **_SERIOUS, "ae_rel": "4",
                           "ae_acn": "4", "ae_out": "1", "ae_aware_dtc": Rel(6, "10:00"),
                           "ae_rpt_dtc": Rel(7, "10:00")}),
        ("conmed", {"cm_trt": "Thymosin alfa 1", "cm_indc": "Immune support", "cm_class": "5",
                    "cm_immuno": "1", "cm_dose": "1.6 mg", "cm_route": "3",
                    "cm_stdat": Rel(-30), "cm_endat": Rel(-1)})),
        checks=("SCREEN_WINDOW",), visit={"day_0_arm_1": {"rand_dat": Rel(4)}}),
    _eligible("eligible_rises_below_or_left_out", crea="130", crea_prev="86",
              crea_prev_dat=Rel(-1), tbil="30", tbil_prev="10", tbil_prev_dat=Rel(0),
              checks=("DATE_FUTURE", "SUPPORT_END_BEFORE_START"), logs=(
                  ("medical_history", {"mh_cat": "1", "mh_term": "Hypertension",
                                       "mh_stdat": "2099-05-01", "mh_ongo": "1"}),
                  ("support_log", {"sl_type": "2", "sl_stdat": Rel(6), "sl_ongo": "0",
                                   "sl_endat": Rel(3)}))),
    _failing("fail_i1_age_17", "I1", brthdat=Age(18, 1)),
    _failing("fail_i2_no_agreement", "I2", ic_noother="0"),
    _failing("fail_i3_virus_15_days", "I3", **_only_virus("sarscov2", Rel(-15))),
    _failing("fail_i3_imaging", "I3", img_viral="0"),
    _failing("fail_i3_pf_exactly_200", "I3", **_NOT_RESPIRATORY, pao2="114", fio2="57"),
    _failing("fail_i4_ventilated", "I4", imv="1"),
    _failing("fail_e1_hiv", "E1", hiv_pos="1"),
    _failing("fail_e2_tumour", "E2", solid_tumor="1"),
    _failing("fail_e3_crp", "E3", crp="21", crp_uln="10"),
    _failing("fail_e4_cv_event_183_days", "E4", cv_event_dat=Rel(-183)),
    _failing("fail_e4_crea_rise_exactly_44_2", "E4", crea="180", crea_prev="135.8",
             crea_prev_dat=Rel(-1)),
    DemoCase("fail_e4_inr", "0", "E4", screening={"inr": "1.5", "hgb": "28"},
             checks=("UNIT_HGB",)),
    _failing("fail_e5_no_consent", "I2,E5", ic_yn="0", ic_signer="", ic_ver=""),
    _failing("fail_e6_drugs", "E6", drug_abuse="1"),
    _failing("fail_e7_other_trial", "E7", other_trial="1"),
    _failing("fail_e8_noncompliance", "E8", noncompliance="1"),
    _failing("fail_e9_other_serious", "E9", other_serious="1"),
    _undetermined("missing_brthdat", "I1", brthdat=""),
    _undetermined("missing_virus_date", "I3", **_only_virus("sarscov2", "")),
    _undetermined("missing_wbc", "E3", wbc=""),
    DemoCase("fail_i1_missing_e1", "0", "I1", "E1", ("ELIG_MISSING",),
             {"brthdat": Age(18, 1), "hbv_act": ""}),
    _undetermined("missing_crea", "E4", crea=""),
    DemoCase("mismatch_eligible_ie_no", "1", rules=("IE_MISMATCH",), ie_yn="0"),
    DemoCase("mismatch_dosed_ineligible", "0", "E7", rules=("IE_MISMATCH", "DOSE_INELIGIBLE"),
             screening={"other_trial": "1"}, ie_yn="1", visits=2, infused=1,
             logs=(("protocol_deviation", {
                 "dv_dat": Rel(4), "dv_cat": "1", "dv_major": "1",
                 "dv_term": "Randomised and dosed while enrolled in another clinical trial",
                 "dv_action": "Dosing stopped; site retrained on eligibility"}),)),
    DemoCase("dosed_undetermined", "", elig_missing="E3",
             rules=("ELIG_MISSING", "DOSE_INELIGIBLE"), screening={"pct": ""}, ie_yn="1",
             visits=ALL, infused=ALL),
    _eligible("sae_late", rules=("SAE_LATE",), logs=(
        ("adverse_event", {"ae_term": "Respiratory failure", "ae_stdat": Rel(8), "ae_ongo": "0",
                           "ae_endat": Rel(15), "ae_grade": "4", **_SERIOUS, "ae_rel": "3",
                           "ae_acn": "4", "ae_out": "1", "ae_aware_dtc": Rel(8, "09:00"),
                           "ae_rpt_dtc": Rel(9, "15:30")}),
        ("adverse_event", {**_SAE, "ae_term": "Atrial fibrillation", "ae_stdat": Rel(10),
                           "ae_endat": Rel(11), "ae_shosp": "0", "ae_ser_dtc": Rel(10, "08:00"),
                           "ae_aware_dtc": Rel(10, "09:00"), "ae_rpt_dtc": Rel(10, "16:00")})),
        checks=("SAE_NO_CRITERION",)),
    _eligible("ae_fatal_grade", rules=("AE_FATAL_GRADE",), logs=(
        ("adverse_event", {"ae_term": "Pulmonary embolism", "ae_stdat": Rel(9), "ae_ongo": "1",
                           "ae_endat": "", "ae_grade": "5", **_SERIOUS, "ae_sdth": "1",
                           "ae_rel": "3", "ae_acn": "4", "ae_out": "3",
                           "ae_aware_dtc": Rel(9, "14:00"), "ae_rpt_dtc": Rel(9, "18:00")}),)),
    _eligible("cm_immuno", rules=("CM_IMMUNO",), logs=(
        ("conmed", {"cm_trt": "Tocilizumab", "cm_indc": "Cytokine storm", "cm_class": "4",
                    "cm_immuno": "1", "cm_dose": "8 mg/kg", "cm_route": "2",
                    "cm_stdat": Rel(2), "cm_endat": ""}),
        ("conmed", {"cm_trt": "Baricitinib", "cm_indc": "Inflammation", "cm_class": "4",
                    "cm_immuno": "1", "cm_dose": "4 mg", "cm_route": "1",
                    "cm_stdat": Rel(-10), "cm_endat": Rel(0)}),
        ("conmed", {"cm_trt": "Dexamethasone", "cm_indc": "Viral pneumonia", "cm_class": "3",
                    "cm_immuno": "0", "cm_dose": "20 mg daily", "cm_dosnum": "20", "cm_dosu": "1",
                    "cm_dosfrq": "1", "cm_steroid": "3", "cm_route": "2", "cm_stdat": Rel(4),
                    "cm_endat": Rel(8)})),
        checks=("STEROID_DOSE",)),
    _eligible("died_day_10_visits_after", checks=(
        "DEATH_DS_NO_AE", "AFTER_DEATH", "PROGRESSION_NO_SAE", "INF_VITALS_NO_REACTION"),
        visit={"day_0_arm_1": {"im_h1_temp": "38.6"}, "day_6_arm_1": {"rs_vaso": "1"}},
        end={"ds_decod": "2", "ds_stdat": Rel(10), "ds_lkadat": Rel(10), "ds_lastvis": "3",
             "dth_dat": Rel(10), "dth_cause_cat": "1", "dth_cause": "Respiratory failure",
             "dth_rel": "4", "dth_autop": "0", "dth_src": "1"}),
    DemoCase("safety_and_kit_checks", "1", visits=ALL, infused=ALL, checks=(
        "CALC_STALE", "AE_SDTH", "DEATH_AE_NO_DS", "SAE_AWARE_MISSING", "SAE_REPORT_MISSING",
        "AE_ONGOING_AT_END", "HOSP_DISCH_BEFORE_ADM", "RAND_BEFORE_CONSENT", "KIT_REUSED",
        "KIT_MISMATCH", "PREG_POS_DOSED"),
        visit={"day_0_arm_1": {"rand_dat": Rel(-5), "inf_kit": "K-DUP"},
               "day_3_arm_1": {"inf_kit": "K-DUP"}},
        end={"ho_admdat": Rel(2), "ho_dischdat": Rel(-1)},
        logs=(("adverse_event", {**_SAE, "ae_term": "Cardiac arrest", "ae_stdat": Rel(20),
                                 "ae_endat": Rel(20), "ae_grade": "5", "ae_out": "5",
                                 "ae_sdth": "0", "ae_slife": "1", "ae_shosp": "0",
                                 "ae_ser_dtc": Rel(20, "04:00"), "ae_aware_dtc": Rel(20, "06:00"),
                                 "ae_rpt_dtc": Rel(20, "12:00")}),
              ("adverse_event", {**_SAE, "ae_term": "Sepsis", "ae_stdat": Rel(12),
                                 "ae_endat": Rel(19), "ae_ser_dtc": Rel(12, "10:00"),
                                 "ae_hospstdat": Rel(12), "ae_hospendat": Rel(19),
                                 "ae_aware_dtc": "", "ae_rpt_dtc": Rel(12, "15:00")}),
              ("adverse_event", {**_SAE, "ae_term": "Deep vein thrombosis", "ae_aesi": "2",
                                 "ae_stdat": Rel(14), "ae_endat": Rel(18),
                                 "ae_ser_dtc": Rel(14, "10:00"), "ae_hospstdat": Rel(14),
                                 "ae_hospendat": Rel(18), "ae_aware_dtc": Rel(14, "11:00"),
                                 "ae_rpt_dtc": ""}),
              ("adverse_event", {**_AE, "ae_term": "Fatigue", "ae_stdat": Rel(30),
                                 "ae_ongo": "1", "ae_out": "6",
                                 "ae_aware_dtc": Rel(30, "10:00")})),
        screening=_PREGNANT, late={"weight_bl": "88.5"}),
)


def record_id_of(index: int) -> str:
    """Record id of the subject at 0-based `index`: site (2 digits), hyphen, subject (3)."""
    site, subject = divmod(index, SUBJECTS_PER_SITE)
    return f"{site + 1:02d}-{subject + 1:03d}"


def case_of(record_id: str) -> DemoCase:
    """The demo case a record of `demo_records` plays, for any number of subjects."""
    site, subject = (int(part) for part in record_id.split("-"))
    index = (site - 1) * SUBJECTS_PER_SITE + subject - 1
    return CATALOGUE[index % len(CATALOGUE)]


DEMO_CASES: dict[str, DemoCase] = {record_id_of(k): CATALOGUE[k] for k in range(len(CATALOGUE))}
"""Record id -> intended outcome, for the default 40-subject demo trial."""
