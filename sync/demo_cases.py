"""The demo trial's cases: what each synthetic subject shows and what the sync must conclude.

`CATALOGUE` lists the cases; subject k (0-based) of `sync.demo_data.demo_records` plays
`CATALOGUE[k % len(CATALOGUE)]`, and `DEMO_CASES` maps each record id of the default
40-subject trial to its case (the table is in `sync.demo_data`'s docstring).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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
    contract rules that must fire on the record. `screening` overrides the eligible defaults;
    `visits` is how many visit events after Screening the subject attends (in event order) and
    `infused` at how many of its dosing visits the product is given; `logs` adds instances.
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
    values["othvir_spec"] = "Respiratory syncytial virus" if code == "othvir" else ""
    return values


def _eligible(name: str, rules: tuple[str, ...] = (), logs: tuple = (), **screening: Spec
              ) -> DemoCase:
    return DemoCase(name, "1", rules=rules, screening=screening, visits=ALL, infused=ALL,
                    logs=logs)


def _failing(name: str, fail: str, **screening: Spec) -> DemoCase:
    return DemoCase(name, "0", elig_fail=fail, screening=screening)


def _undetermined(name: str, missing: str, **screening: Spec) -> DemoCase:
    return DemoCase(name, "", elig_missing=missing, rules=("ELIG_MISSING",), screening=screening)


_SERIOUS = {"ae_ser": "1", "ae_sdth": "0", "ae_slife": "0", "ae_shosp": "1", "ae_sdisab": "0",
            "ae_scong": "0", "ae_smie": "0", "ae_ctcae_ver": "5.0", "ae_infrel": "0"}
_NOT_RESPIRATORY = {"rr": "22", "spo2": "95", "spo2_ra": "1"}

CATALOGUE: tuple[DemoCase, ...] = (
    _eligible("eligible"),
    _eligible("eligible_age_18_today", brthdat=Age(18, 0)),
    _eligible("eligible_by_spo2", rr="24", spo2="92", spo2_ra="1", pao2="105", fio2="30"),
    _eligible("eligible_by_pf", **_NOT_RESPIRATORY, pao2="75", fio2="30"),
    _eligible("eligible_pf_exactly_300", **_NOT_RESPIRATORY, pao2="90", fio2="30"),
    _eligible("eligible_adeno_14_days_before", **_only_virus("adeno", Rel(-14))),
    _eligible("eligible_flu_3_days_after", **_only_virus("flu", Rel(3))),
    _eligible("eligible_cv_event_184_days", cv_event_dat=Rel(-184)),
    _eligible("eligible_sae_24h_old_immuno", logs=(
        ("adverse_event", {"ae_term": "Pneumothorax", "ae_stdat": Rel(6), "ae_ongo": "0",
                           "ae_endat": Rel(12), "ae_grade": "3", **_SERIOUS, "ae_rel": "4",
                           "ae_acn": "4", "ae_out": "1", "ae_aware_dtc": Rel(6, "10:00"),
                           "ae_rpt_dtc": Rel(7, "10:00")}),
        ("conmed", {"cm_trt": "Thymosin alfa 1", "cm_indc": "Immune support", "cm_class": "5",
                    "cm_immuno": "1", "cm_dose": "1.6 mg", "cm_route": "3",
                    "cm_stdat": Rel(-30), "cm_endat": Rel(-1)}))),
    _eligible("eligible_rises_below_or_left_out", crea="130", crea_prev="86",
              crea_prev_dat=Rel(-1), tbil="30", tbil_prev="10", tbil_prev_dat=Rel(0)),
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
    _failing("fail_e4_inr", "E4", inr="1.5"),
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
                           "ae_rpt_dtc": Rel(9, "15:30")}),)),
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
                    "cm_stdat": Rel(-10), "cm_endat": Rel(0)}))),
    _eligible("eligible"),
    _eligible("eligible"),
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
