"""What the sponsor's endpoints and safety reporting need is in the CRF (#13): each point's
fields on its form, and each form on the events where a site must complete it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync.crf.dictionary import load_dictionary

ROOT = Path(__file__).resolve().parents[1]
DICTIONARY = load_dictionary(ROOT / "data_dictionary.csv", ROOT / "redcap")
DOSING = {"day_0_arm_1", "day_3_arm_1", "day_6_arm_1"}
VISITS = DOSING | {"day_14_arm_1", "day_28_arm_1", "day_90_arm_1"}

POINTS: dict[str, tuple[str, set[str], tuple[str, ...]]] = {
    # issue 13 point: (form, events it is on, fields it must hold)
    "1 baseline CT": ("chest_imaging", {"screening_arm_1"},
                      ("img_lesion_pct", "img_method", "img_reader", "img_dat")),
    "1 follow-up CT": ("imaging_followup", {"day_14_arm_1", "day_28_arm_1", "day_90_arm_1"},
                       ("fi_lesion_pct", "fi_method", "fi_reader", "fi_dat")),
    "2 hospital course": ("hospital_course", {"logs_arm_1"}, ("ho_admdat", "ho_dischdat")),
    "2 support log": ("support_log", {"logs_arm_1"}, ("sl_type", "sl_stdat", "sl_endat")),
    "2 status log": ("status_log", {"logs_arm_1"}, ("st_dat", "st_score")),
    "3 death": ("death", {"logs_arm_1"}, ("dth_dat", "dth_cause", "dth_rel", "dth_autop")),
    "3 end of study": ("disposition", {"logs_arm_1"}, ("ds_decod", "ds_stdat", "ds_lkadat")),
    "4 pregnancy at screening": ("pregnancy_screen", {"screening_arm_1"},
                                 ("rp_childpot", "preg_type", "preg_dat", "preg_res",
                                  "rp_contra", "rp_lact")),
    "4 pregnancy report": ("pregnancy_report", {"logs_arm_1"}, ("pr_dat", "pr_out")),
    "5 pharmacy": ("pharmacy", DOSING, ("ph_cellcnt", "ph_cells_kg", "ph_viab", "ph_lot",
                                        "ph_expdat")),
    "5 unblinding log": ("unblinding", {"logs_arm_1"}, ("ub_dtc", "ub_by", "ub_reason")),
    "6 adverse event": ("adverse_event", {"logs_arm_1"},
                        ("ae_sttim", "ae_aesi", "ae_expect", "ae_narr", "ae_hospstdat",
                         "ae_hospendat", "ae_rpt_dtc", "ae_fu_rpt_dat", "ae_ser_dtc")),
    "6, 13 visit status and gates": ("visit_status", VISITS,
                                     ("svoccur", "svcntmod", "svreasoc", "aeyn", "cmyn")),
    "7 randomisation": ("randomisation", {"day_0_arm_1"}, ("rand_no", "rand_dat", "rand_tim",
                                                           "rand_strat")),
    "7 pre-dose re-check": ("predose_check", DOSING, ("pd_imv", "pd_vaso", "pd_preg_res",
                                                      "pd_cont")),
    "8 baseline disease": ("baseline_disease", {"screening_arm_1"},
                           ("sympdat", "onset_days", "weight_bl", "bmi", "su_smoke", "vacc_yn")),
    "8 medical history": ("medical_history", {"logs_arm_1"}, ("mh_cat", "mh_term", "mh_ongo")),
    "9 infection treatments": ("conmed", {"logs_arm_1"}, ("cm_dosnum", "cm_dosu", "cm_dosfrq",
                                                          "cm_ongo", "cm_pred_eq")),
    "10 viral clearance": ("virology", {"day_3_arm_1", "day_6_arm_1", "day_14_arm_1",
                                        "day_28_arm_1"},
                           ("vir_dat", "vir_spec", "vir_meth", "vir_res", "vir_ct", "vir_load")),
    "10 screening specimen": ("etiology", {"screening_arm_1"}, ("sarscov2_spc", "sarscov2_mth")),
    "10 blood gas oxygen": ("respiratory", {"screening_arm_1"}, ("fio2_src", "abg_o2dev",
                                                                 "abg_o2flow")),
    "11 ECG": ("ecg", {"screening_arm_1", "day_0_arm_1"}, ("eg_dat", "eg_qtcf", "eg_interp")),
    "11 physical exam": ("physical_exam", {"screening_arm_1", "day_0_arm_1"},
                         ("pe_dat", "pe_resp", "pe_cv")),
    "11 infusion reactions": ("infusion_monitoring", DOSING, ("ir_any", "ir_tpt", "im_pre_done",
                                                             "im_h24_done")),
    "12 NIAID scale": ("clinical_status", VISITS, ("who_cps", "niaid_os", "cs_medcare")),
    "13 pre-dose samples": ("labs", VISITS, ("lb_tim", "lb_predose")),
}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_the_point_is_on_its_form_and_events(point: str) -> None:
    form, events, fields = POINTS[point]
    assert set(DICTIONARY.events_of_form(form)) == events
    assert [DICTIONARY.form_of(f) for f in fields] == [form] * len(fields)


def test_numeric_fields_carry_their_unit_in_the_field_note() -> None:
    metadata = DICTIONARY.metadata
    numeric = metadata[metadata["text_validation_type_or_show_slider_number"].isin(
        ["number", "integer", "number_1dp"]) & (metadata["form_name"] != "dq_query")]
    assert numeric[numeric["field_note"] == ""]["field_name"].tolist() == []


def test_every_field_has_an_sdtm_annotation() -> None:
    missing = [f for f in DICTIONARY.fields if f != "record_id"
               and not re.search(r"SDTM:\s*\S", DICTIONARY.annotation(f))]
    assert missing == []
