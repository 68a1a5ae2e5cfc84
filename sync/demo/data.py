"""The synthetic demo trial: a raw flat REDCap import frame that exercises every contract rule.

`demo_records(n_subjects, seed)` returns what a site would have entered: strings, "" for blank,
one row per record x event (x repeating instrument instance), only fields of the forms designated
to that row's event, and nothing the sync writes (inc1-inc4, exc1-exc9, elig_calc, elig_fail,
elig_missing, age, calculated fields, dq_query instances). Subject k (0-based) plays
`CATALOGUE[k % len(CATALOGUE)]`; `DEMO_CASES` names the case of each record of the default
40-subject trial, so tests of the sync can compare its output with the intended outcome.

| record | case | elig_calc | elig_fail | elig_missing | contract rules expected to fire |
|---|---|---|---|---|---|
| 01-001 | eligible | 1 | | | |
| 01-002 | eligible_age_18_today | 1 | | | |
| 01-003 | eligible_by_spo2 | 1 | | | |
| 01-004 | eligible_by_pf | 1 | | | |
| 01-005 | eligible_pf_exactly_300 | 1 | | | |
| 01-006 | eligible_adeno_14_days_before | 1 | | | |
| 01-007 | eligible_flu_3_days_after | 1 | | | |
| 01-008 | eligible_cv_event_184_days | 1 | | | |
| 01-009 | eligible_sae_24h_old_immuno | 1 | | | |
| 01-010 | eligible_rises_below_or_left_out | 1 | | | |
| 01-011 | fail_i1_age_17 | 0 | I1 | | |
| 01-012 | fail_i2_no_agreement | 0 | I2 | | |
| 01-013 | fail_i3_virus_15_days | 0 | I3 | | |
| 01-014 | fail_i3_imaging | 0 | I3 | | |
| 01-015 | fail_i3_pf_exactly_200 | 0 | I3 | | |
| 01-016 | fail_i4_ventilated | 0 | I4 | | |
| 01-017 .. 01-027 | fail_e1 .. fail_e9 (E4 three ways) | 0 | E1 .. E9 (E5 with I2) | | |
| 01-028 | missing_brthdat | | | I1 | ELIG_MISSING |
| 01-029 | missing_virus_date | | | I3 | ELIG_MISSING |
| 01-030 | missing_wbc | | | E3 | ELIG_MISSING |
| 01-031 | fail_i1_missing_e1 | 0 | I1 | E1 | ELIG_MISSING |
| 01-032 | missing_crea | | | E4 | ELIG_MISSING |
| 01-033 | mismatch_eligible_ie_no | 1 | | | IE_MISMATCH |
| 01-034 | mismatch_dosed_ineligible | 0 | E7 | | IE_MISMATCH, DOSE_INELIGIBLE (day 0) |
| 01-035 | dosed_undetermined | | | E3 | ELIG_MISSING, DOSE_INELIGIBLE (days 0, 3, 6) |
| 01-036 | sae_late | 1 | | | SAE_LATE |
| 01-037 | ae_fatal_grade | 1 | | | AE_FATAL_GRADE |
| 01-038 | cm_immuno | 1 | | | CM_IMMUNO (two instances) |
| 01-039 | died_day_10_visits_after | 1 | | | |
| 01-040 | safety_and_kit_checks | 1 | | | |

Besides the contract rules, every other rule of the catalogue fires on some subject: each case
names them in `DemoCase.checks` (e.g. 01-001 a follow-up lab of CTCAE grade 3 with no AE and
values in the wrong unit, 01-003 infusions out of window and order, 01-039 a death followed by
visits, vasopressors without an SAE and a post-infusion fever without a reaction, 01-040 the
SAE-reporting, kit, pregnancy and end-of-study checks).

Events, the forms of each event and the visit windows are read from `redcap/` (nothing about
the schedule is hard-coded here). Day 0 is 1-3 days after consent (`icdat`), inside the
screening window; every other visit falls inside its window. The encoding of
`redcap/events.csv`: `day_offset` is the target day relative to Day 0, and the window runs from
`day_offset - offset_min` to `day_offset + offset_max` days (Screening: day_offset -3, 0 before,
3 after, i.e. D-3..D0; a negative offset keeps Screening first, since REDCap orders events by
day_offset). Logs has no window: its day_offset of 999 only orders it last. Dosing visits are
the events that hold the `infusion` form.
"""
from __future__ import annotations

import csv
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from sync.demo.cases import (
    CATALOGUE, DEMO_CASES, SUBJECTS_PER_SITE, DemoCase, Rel, Spec, case_of, record_id_of,
)
from sync.errors import ConfigError

__all__ = ["CATALOGUE", "DEMO_CASES", "DemoCase", "case_of", "demo_records", "late_corrections",
           "record_id_of", "unvalidated_entries"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEY_COLUMNS = ("record_id", "redcap_event_name", "redcap_repeat_instrument",
               "redcap_repeat_instance")
SCREENING, LOGS = "screening_arm_1", "logs_arm_1"
MAX_SUBJECTS = 99 * SUBJECTS_PER_SITE
FIRST_CONSENT = date(2024, 3, 4)
EPOCH = date(1970, 1, 1)


def _dates(days: np.ndarray) -> np.ndarray:
    """ISO dates (`date_ymd`) of day numbers counted from 1970-01-01."""
    return (np.datetime64("1970-01-01") + days.astype("timedelta64[D]")).astype(str).astype(object)


_CLOCK = np.array([f"{m // 60:02d}:{m % 60:02d}" for m in range(1440)], dtype=object)


def _times(minutes: np.ndarray) -> np.ndarray:
    """`HH:MM` of minutes after midnight (wrapping at 24 h)."""
    return _CLOCK[np.asarray(minutes, dtype=np.int64) % 1440]


def _datetimes(days: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """`datetime_ymd` values (YYYY-MM-DD HH:MM)."""
    return _dates(days) + " " + _times(minutes)


def _text(values: np.ndarray) -> np.ndarray:
    return values.astype(str).astype(object)


class _Draw:
    """Value columns for `m` subjects from one seeded generator, already as REDCap strings."""

    def __init__(self, rng: np.random.Generator, m: int) -> None:
        self.rng, self.m = rng, m

    def ints(self, low: int, high: int) -> np.ndarray:
        return self.rng.integers(low, high + 1, self.m)

    def int_text(self, low: int, high: int) -> np.ndarray:
        return self.ints(low, high).astype(str).astype(object)

    def decimal(self, low: float, high: float, places: int = 1) -> np.ndarray:
        form = f"{{:.{places}f}}".format
        return np.array([form(v) for v in self.rng.uniform(low, high, self.m).tolist()],
                        dtype=object)

    def choice(self, options: tuple[str, ...]) -> np.ndarray:
        return np.asarray(options, dtype=object)[self.rng.integers(0, len(options), self.m)]

    def const(self, value: str) -> np.ndarray:
        return np.full(self.m, value, dtype=object)


def _consent_and_history(draw: _Draw, icdat: np.ndarray, more: _Draw) -> dict[str, np.ndarray]:
    """informed_consent, demographics and exclusion_history of subjects meant to be eligible."""
    letters = np.asarray(list("ABCDEFGHJKLMNPQRSTWXYZ"), dtype=object)
    cols = {"icdat": _dates(icdat), "ictim": _times(draw.ints(8 * 60, 17 * 60)),
            "ic_yn": draw.const("1"), "ic_signer": draw.choice(("1", "1", "1", "2")),
            "ic_ver": draw.const("v1.1 2024-02-20"), "ic_noother": draw.const("1"),
            "initials": letters[draw.ints(0, 21)] + letters[draw.ints(0, 21)],
            "brthdat": _dates(icdat - draw.ints(25 * 366, 82 * 365)),
            "sex": draw.choice(("1", "2")), "height": draw.int_text(150, 188),
            "sympdat": _dates(icdat - more.ints(4, 10)), "weight_bl": more.decimal(48, 95),
            "su_smoke": more.choice(("1", "1", "2", "3")), "vacc_yn": more.choice(("1", "0", "2"))}
    cols["rp_childpot"] = np.where(cols["sex"] == "2", "0", "")
    cols["rp_lact"] = np.where(cols["sex"] == "2", "0", "")
    cols["su_packyr"] = np.where(cols["su_smoke"] == "1", "", more.int_text(5, 40))
    for name in ("hbv_act", "hcv_act", "hiv_pos", "tb_act", "solid_tumor", "leukemia",
                 "mental_dis", "nyha3", "myocard", "mal_arrhythmia", "chronic_lung",
                 "bleeding", "dic", "drug_abuse", "other_trial", "noncompliance",
                 "other_serious"):
        cols[name] = draw.const("0")
    cols["cv_event_dat"] = draw.const("")
    return cols


def _etiology_and_respiratory(draw: _Draw, icdat: np.ndarray, more: _Draw
                              ) -> dict[str, np.ndarray]:
    """etiology, chest_imaging and respiratory values that meet inclusion 3 (RR >= 30)."""
    positive = draw.ints(0, 3)
    cols: dict[str, np.ndarray] = {}
    for k, virus in enumerate(("sarscov2", "adeno", "flu", "othvir")):
        is_positive = positive == k
        cols[f"{virus}_res"] = np.where(is_positive, "1", draw.choice(("0", "0", "9")))
        cols[f"{virus}_dat"] = np.where(is_positive, _dates(icdat - draw.ints(1, 10)), "")
        cols[f"{virus}_spc"] = np.where(is_positive, more.choice(("1", "1", "3")), "")
        cols[f"{virus}_mth"] = np.where(is_positive, "1", "")
    cols["othvir_spec"] = np.where(positive == 3, draw.choice(
        ("Respiratory syncytial virus", "Human metapneumovirus", "Parainfluenza virus")), "")
    cols.update({
        "img_dat": _dates(icdat - draw.ints(0, 1)), "img_mod": draw.choice(("1", "1", "2")),
        "img_viral": draw.const("1"), "img_method": draw.const("1"), "img_reader": draw.const("1"),
        "img_lesion_pct": more.decimal(10, 45), "img_lesion_ml": more.decimal(300, 1800),
        "fio2_src": draw.const("2"), "abg_o2dev": draw.const("1"), "abg_o2flow": draw.const("3"),
        "resp_dat": _dates(icdat), "rr": draw.int_text(30, 38),
        "spo2": draw.int_text(86, 95), "spo2_ra": draw.choice(("0", "1")),
        "pao2": draw.decimal(55, 95), "fio2": draw.choice(("30", "35", "40", "45", "50")),
        "paco2": draw.decimal(30, 45), "ph": draw.decimal(7.35, 7.48, 2),
        "imv": draw.const("0"), "vaso": draw.const("0")})
    for name in ("img_method", "img_reader", "img_lesion_pct", "img_lesion_ml"):
        cols[name] = np.where(cols["img_mod"] == "1", cols[name], "")
    return {name: np.asarray(values, dtype=object) for name, values in cols.items()}


def _screening_labs(draw: _Draw, icdat: np.ndarray) -> dict[str, np.ndarray]:
    """screening_labs inside every exclusion threshold; earlier values rise far below the limits."""
    tbil = np.round(draw.rng.uniform(5, 30, draw.m), 1)
    crea = draw.ints(50, 120)
    return {
        "lbdat": _dates(icdat), "wbc": draw.decimal(4.5, 11.0), "wbc_lln": draw.const("4.0"),
        "wbc_uln": draw.const("10.0"), "hgb": draw.int_text(100, 150),
        "hgb_lln": draw.const("115"), "plt": draw.int_text(110, 350),
        "plt_lln": draw.const("125"), "crp": draw.decimal(3, 19), "crp_uln": draw.const("10"),
        "pct": draw.decimal(0.02, 0.9, 2), "pct_uln": draw.const("0.5"),
        "alt": draw.int_text(10, 150), "alt_uln": draw.const("40"),
        "tbil": _text(tbil), "tbil_uln": draw.const("17.1"),
        "tbil_prev": _text(np.round(np.maximum(tbil - draw.ints(-5, 5), 3.0), 1)),
        "tbil_prev_dat": _dates(icdat - draw.ints(1, 3)),
        "crea": crea.astype(str).astype(object), "crea_uln": draw.const("104"),
        "crea_prev": (crea - draw.ints(-15, 15)).astype(str).astype(object),
        "crea_prev_dat": _dates(icdat - draw.ints(1, 3)),
        "pta": draw.int_text(70, 110), "inr": draw.decimal(0.9, 1.3, 2)}


def _resolve(spec: Spec, icdat: np.ndarray) -> np.ndarray:
    """Values of one override for subjects consenting on `icdat` (day numbers)."""
    if isinstance(spec, str):
        return np.full(len(icdat), spec, dtype=object)
    if isinstance(spec, Rel):
        days = icdat + spec.days
        if not spec.time:
            return _dates(days)
        hours, minutes = (int(part) for part in spec.time.split(":"))
        return _datetimes(days, np.full(len(icdat), hours * 60 + minutes))
    births = []
    for day in icdat:
        consent = EPOCH + timedelta(days=int(day) + spec.days)
        try:
            births.append(consent.replace(year=consent.year - spec.years).isoformat())
        except ValueError:
            births.append(date(consent.year - spec.years, 3, 1).isoformat())
    return np.asarray(births, dtype=object)


FOLLOW_UP_LABS: dict[str, tuple[float, float, int, str, str]] = {
    "wbc": (4.0, 10.0, 1, "3.5", "9.5"), "neut": (2.0, 7.0, 1, "1.8", "6.3"),
    "lymph": (0.8, 3.0, 1, "1.1", "3.2"), "hgb": (105, 150, 0, "115", "150"),
    "plt": (130, 350, 0, "125", "350"), "alt": (10, 60, 0, "9", "50"),
    "ast": (12, 50, 0, "15", "40"), "tbil": (5.0, 20.0, 1, "3.4", "17.1"),
    "crea": (50, 110, 0, "57", "97"), "urea": (3.0, 8.0, 1, "2.6", "8.0"),
    "alb": (30.0, 45.0, 1, "40", "55"), "ldh": (150, 350, 0, "120", "250"),
    "pt": (11.0, 14.0, 1, "11.0", "14.0"), "inr": (0.9, 1.2, 2, "0.8", "1.2"),
    "pta": (75, 110, 0, "70", "120"), "aptt": (25.0, 38.0, 1, "25", "35"),
    "fib": (2.0, 4.5, 2, "2.0", "4.0"), "ddimer": (0.1, 2.0, 2, "0", "0.55"),
    "crp": (1.0, 40.0, 1, "0", "10"), "pct": (0.02, 0.4, 2, "0", "0.05"),
    "il6": (1.0, 40.0, 1, "0", "7"), "ferritin": (50, 900, 0, "30", "400"),
}
"""Follow-up analyte -> (low, high, decimals, LLN, ULN) of the demo's values and reference range."""

TIME_POINTS = ("pre", "m15", "eoi", "h1", "h6", "h24")


def _infusion(draw: _Draw, day: np.ndarray, given: np.ndarray, kit: np.ndarray
              ) -> dict[str, np.ndarray]:
    """infusion: given (with kit, dose, times) or not given with a reason."""
    start = draw.ints(9 * 60, 11 * 60)
    end = start + draw.ints(40, 90)
    cols = {"inf_dat": _dates(day), "inf_kit": kit, "inf_weight": draw.decimal(48, 95),
            "inf_start": _times(start), "inf_end": _times(end), "inf_vol": draw.const("100"),
            "inf_interrupt": draw.const("0"), "inf_react": draw.const("0")}
    cols = {name: np.where(given, values, "") for name, values in cols.items()}
    cols["inf_given"] = np.where(given, "1", "0")
    cols["inf_reasnd"] = np.where(given, "", "3")
    cols.update(_monitoring(draw, start, end, given))
    return cols


def _monitoring(draw: _Draw, start: np.ndarray, end: np.ndarray, given: np.ndarray
                ) -> dict[str, np.ndarray]:
    """infusion_monitoring: vitals at the six time points around an infusion that was given."""
    offsets = {"pre": start - 30, "m15": start + 15, "eoi": end, "h1": end + 60,
               "h6": end + 360, "h24": end + 1440}
    cols: dict[str, np.ndarray] = {}
    for point in TIME_POINTS:
        flow = draw.ints(2, 5)
        values = {"done": draw.const("1"), "tim": _times(offsets[point]),
                  "temp": draw.decimal(36.2, 37.6),
                  "hr": draw.int_text(68, 104), "resp": draw.int_text(18, 28),
                  "sysbp": draw.int_text(105, 140), "diabp": draw.int_text(60, 90),
                  "oxysat": draw.int_text(91, 98), "o2dev": draw.const("1"),
                  "o2flow": flow.astype(str).astype(object)}
        for name, column in values.items():
            cols[f"im_{point}_{name}"] = np.where(given, column, "")
    cols["ir_any"] = np.where(given, "0", "")
    return cols


def _vital_signs(draw: _Draw, day: np.ndarray) -> dict[str, np.ndarray]:
    return {"vsdat": _dates(day), "temp": draw.decimal(36.0, 37.5), "hr": draw.int_text(60, 100),
            "resp": draw.int_text(14, 26), "sysbp": draw.int_text(105, 140),
            "diabp": draw.int_text(60, 90), "oxysat": draw.int_text(92, 99),
            "oxysat_ra": draw.choice(("0", "1")), "weight": draw.decimal(48, 95)}


def _resp_support(draw: _Draw, day: np.ndarray, study_day: int) -> dict[str, np.ndarray]:
    """resp_support: nasal oxygen in the first two weeks, weaning to room air by day 28."""
    device = (draw.const("1") if study_day < 14 else
              draw.choice(("0", "1")) if study_day < 28 else draw.const("0"))
    flow = draw.ints(2, 5)
    on_oxygen = device == "1"
    return {"rs_dat": _dates(day), "rs_o2dev": device,
            "rs_o2flow": np.where(on_oxygen, flow.astype(str), ""),
            "rs_vaso": draw.const("0"), "rs_rrt": draw.const("0"), "rs_ecmo": draw.const("0"),
            "rs_spo2": draw.int_text(92, 99), "rs_pao2": draw.decimal(65, 100),
            "rs_fio2": np.where(on_oxygen, (21 + 4 * flow).astype(str), "21"),
            "rs_paco2": draw.decimal(32, 45), "rs_ph": draw.decimal(7.36, 7.45, 2),
            "rs_lactate": draw.decimal(0.8, 2.0)}


def _labs(draw: _Draw, day: np.ndarray, more: _Draw) -> dict[str, np.ndarray]:
    cols = {"lb_dat": _dates(day), "lb_tim": _times(more.ints(6 * 60, 8 * 60))}
    for code, (low, high, places, lln, uln) in FOLLOW_UP_LABS.items():
        cols[f"lb_{code}"] = draw.decimal(low, high, places)
        cols[f"lb_{code}_lln"] = draw.const(lln)
        cols[f"lb_{code}_uln"] = draw.const(uln)
    return cols


def _clinical_status(draw: _Draw, day: np.ndarray, study_day: int) -> dict[str, np.ndarray]:
    """clinical_status components: in hospital for two weeks, home by day 28."""
    hospital = (draw.const("1") if study_day < 14 else
                draw.choice(("0", "1")) if study_day < 28 else draw.const("0"))
    at_home = hospital == "0"
    symptom = draw.choice(("0", "1"))
    return {"cs_dat": _dates(day), "cs_dead": draw.const("0"), "cs_hosp": hospital,
            "cs_virus": np.where(at_home, "0", ""), "cs_symptom": np.where(at_home, symptom, ""),
            "cs_assist": np.where(at_home & (symptom == "1"), "0", ""),
            "cs_medcare": np.where(at_home, "", "1"), "cs_limit": np.where(at_home, symptom, ""),
            "cs_homeo2": np.where(at_home, "0", "")}


def _imaging(draw: _Draw, day: np.ndarray, more: _Draw) -> dict[str, np.ndarray]:
    """imaging_followup: quantitative CT read centrally, lesions shrinking."""
    return {"fi_perf": draw.const("1"), "fi_dat": _dates(day), "fi_mod": draw.const("1"),
            "fi_lesion_pct": draw.decimal(0, 25), "fi_lesion_ml": more.decimal(50, 900),
            "fi_method": draw.const("1"), "fi_reader": draw.const("1"),
            "fi_change": draw.choice(("1", "1", "2"))}


def _visit_status(draw: _Draw, day: np.ndarray, study_day: int) -> dict[str, np.ndarray]:
    """visit_status: done, in hospital for two weeks and by clinic visit or telephone after."""
    mode = draw.const("1") if study_day < 14 else draw.choice(("2", "2", "3"))
    return {"svoccur": draw.const("1"), "visdat": _dates(day), "svcntmod": mode,
            "aeyn": draw.const("0"), "cmyn": draw.const("0")}


def _virology(draw: _Draw, day: np.ndarray, study_day: int) -> dict[str, np.ndarray]:
    """virology: repeat RT-PCR, positive early and clearing by day 14."""
    positive = draw.choice(("1", "0")) if study_day < 14 else draw.const("0")
    return {"vir_perf": draw.const("1"), "vir_dat": _dates(day), "vir_spec": draw.const("1"),
            "vir_meth": draw.const("1"), "vir_res": positive,
            "vir_ct": np.where(positive == "1", draw.decimal(24, 36), ""),
            "vir_load": np.where(positive == "1", draw.decimal(2, 6), "")}


def _predose_and_pharmacy(draw: _Draw, day: np.ndarray, dose: int, given: np.ndarray,
                          kit: np.ndarray) -> dict[str, np.ndarray]:
    """predose_check (criteria met, no test needed) and the pharmacy form where dosed."""
    pharmacy = {"ph_dat": _dates(day), "ph_tim": _times(draw.ints(7 * 60, 8 * 60)),
                "ph_kit": kit, "ph_lot": np.char.add("L24", draw.int_text(100, 999).astype(str)
                                                     ).astype(object),
                "ph_expdat": _dates(day + 180), "inf_dose_plan": draw.const("40"),
                "inf_dose_given": draw.const("40"), "ph_cellcnt": draw.decimal(38, 44),
                "ph_viab": draw.int_text(80, 97), "ph_release": draw.const("1"),
                "ph_by": draw.const("Unblinded pharmacist")}
    cols = {name: np.where(given, values, "") for name, values in pharmacy.items()}
    cols.update({"pd_dat": _dates(day), "pd_imv": draw.const("0"), "pd_vaso": draw.const("0"),
                 "pd_preg_perf": draw.const("2"), "pd_cont": draw.const("2" if dose == 1 else "1")})
    return cols


@dataclass(frozen=True)
class _Project:
    """What the demo reads from data_dictionary.csv and redcap/: fields, events, windows."""

    fields: tuple[str, ...]
    form_of: Mapping[str, str]
    events: tuple[str, ...]
    forms: Mapping[str, frozenset[str]]
    window: Mapping[str, tuple[int, int, int]]

    @property
    def visits(self) -> tuple[str, ...]:
        """Visit events after Screening, in event order (Logs excluded)."""
        return tuple(e for e in self.events if e not in (SCREENING, LOGS))

    @property
    def dosing(self) -> tuple[str, ...]:
        return tuple(e for e in self.visits if "infusion" in self.forms[e])


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


@functools.lru_cache(maxsize=4)
def _load_project(root: Path) -> _Project:
    dictionary = _read_rows(root / "data_dictionary.csv")
    events = _read_rows(root / "redcap" / "events.csv")
    forms: dict[str, set[str]] = {}
    for row in _read_rows(root / "redcap" / "instrument_event_mapping.csv"):
        forms.setdefault(row["unique_event_name"], set()).add(row["form"])
    return _Project(
        fields=tuple(row["Variable / Field Name"] for row in dictionary),
        form_of={row["Variable / Field Name"]: row["Form Name"] for row in dictionary},
        events=tuple(row["unique_event_name"] for row in events),
        forms={event: frozenset(names) for event, names in forms.items()},
        window={row["unique_event_name"]: (int(row["day_offset"]), int(row["offset_min"]),
                                           int(row["offset_max"])) for row in events})


_CONMEDS = (("Oseltamivir", "Influenza", "1", "75 mg twice daily", "1"),
            ("Nirmatrelvir/ritonavir", "COVID-19", "1", "300/100 mg twice daily", "1"),
            ("Ceftriaxone", "Suspected bacterial co-infection", "2", "2 g daily", "2"),
            ("Enoxaparin", "Thromboprophylaxis", "6", "40 mg daily", "3"))
_AE_TERMS = ("Headache", "Nausea", "Insomnia", "Diarrhoea", "Fatigue")


@dataclass
class _Trial:
    """The subjects of one demo trial: who plays which case, and their key dates."""

    project: _Project
    rng: np.random.Generator
    extra: np.random.Generator
    """Draws of the fields added after the first demo (go-live CRF), so the original fields
    keep the values tests were written against."""
    case: np.ndarray
    record: np.ndarray
    icdat: np.ndarray
    day0: np.ndarray

    def attends(self, event: str) -> np.ndarray:
        """Per subject: does its case attend visit `event`?"""
        position = self.project.visits.index(event)
        return np.array([position < c.visits for c in CATALOGUE])[self.case]

    def infused(self, event: str) -> np.ndarray:
        """Per subject: is the product given at dosing visit `event`?"""
        position = self.project.dosing.index(event)
        return np.array([position < c.infused for c in CATALOGUE])[self.case]

    def frame(self, idx: np.ndarray, event: str, cols: Mapping[str, np.ndarray],
              instrument: str = "") -> _Rows:
        """Rows for subjects `idx` at `event`, keeping only fields of forms the event holds."""
        forms = {instrument} if instrument else self.project.forms[event]
        body = {name: np.asarray(values, dtype=object) for name, values in cols.items()
                if self.project.form_of.get(name) in forms}
        return _Rows(idx, event, instrument, body)


@dataclass(frozen=True)
class _Rows:
    """A block of rows of one event (and repeating instrument) for subjects `subject`."""

    subject: np.ndarray
    event: str
    instrument: str
    values: Mapping[str, np.ndarray]

    def column(self, name: str) -> np.ndarray:
        found = self.values.get(name)
        return np.full(len(self.subject), "", dtype=object) if found is None else found


def _screening_frame(trial: _Trial) -> _Rows:
    """The Screening row of every subject: eligible values, then each case's overrides."""
    n = len(trial.case)
    draw = _Draw(trial.rng, n)
    more = _Draw(trial.extra, n)
    cols = {**_consent_and_history(draw, trial.icdat, more),
            **_etiology_and_respiratory(draw, trial.icdat, more),
            **_screening_labs(draw, trial.icdat)}
    cols = {name: np.asarray(values, dtype=object).copy() for name, values in cols.items()}
    answers = np.array([c.investigator_answer for c in CATALOGUE], dtype=object)
    cols["ie_yn"] = answers[trial.case]
    cols["ie_dat"] = np.where(cols["ie_yn"] == "", "", _dates(trial.icdat))
    for k, case in enumerate(CATALOGUE):
        idx = np.flatnonzero(trial.case == k)
        for name, spec in case.screening.items() if len(idx) else ():
            cols.setdefault(name, np.full(n, "", dtype=object))[idx] = _resolve(
                spec, trial.icdat[idx])
    return trial.frame(np.arange(n), SCREENING, cols)


def _visit_frame(trial: _Trial, event: str) -> _Rows:
    """One visit's row for every subject whose case attends it, dated inside its window."""
    idx = np.flatnonzero(trial.attends(event))
    draw = _Draw(trial.rng, len(idx))
    study_day, before, after = trial.project.window[event]
    day = trial.day0[idx] + study_day + draw.ints(-before, after)
    kit = np.char.add("K", (10000 + idx).astype(str))
    more = _Draw(trial.extra, len(idx))
    cols = {**_vital_signs(draw, day), **_resp_support(draw, day, study_day),
            **_labs(draw, day, more), **_clinical_status(draw, day, study_day),
            **_imaging(draw, day, more), **_visit_status(more, day, study_day),
            **_virology(more, day, study_day),
            "rand_dat": _dates(day), "rand_tim": _times(draw.ints(7 * 60, 8 * 60)),
            "rand_kit": kit.astype(object), "rand_no": np.char.add("R", (1000 + idx).astype(str)
                                                                    ).astype(object),
            "rand_strat": more.choice(("1", "1", "2"))}
    if event in trial.project.dosing:
        dose = trial.project.dosing.index(event) + 1
        given = trial.infused(event)[idx]
        dose_kit = np.char.add(kit, f"-{dose}").astype(object)
        cols.update(_infusion(draw, day, given, dose_kit))
        cols.update(_predose_and_pharmacy(more, day, dose, given, dose_kit))
    _override(trial, idx, cols, {k: c.visit.get(event, {}) for k, c in enumerate(CATALOGUE)},
              trial.day0)
    return trial.frame(idx, event, cols)


def _override(trial: _Trial, idx: np.ndarray, cols: dict[str, np.ndarray],
              specs: Mapping[int, Mapping[str, Spec]], origin: np.ndarray) -> None:
    """Put each case's `specs` into `cols` for its subjects among `idx` (`Rel` from `origin`)."""
    for k, values in specs.items():
        where = np.flatnonzero(trial.case[idx] == k)
        for name, spec in values.items() if len(where) else ():
            column = np.asarray(cols.get(name, np.full(len(idx), "", dtype=object)),
                                dtype=object).copy()
            column[where] = _resolve(spec, origin[idx[where]])
            cols[name] = column


def _end_of_study(trial: _Trial) -> list[_Rows]:
    """Logs' non-repeating forms: hospital course for every dosed subject, disposition
    (completed) for those who attend the last visit."""
    dosed = np.flatnonzero(trial.infused(trial.project.dosing[0]))
    draw = _Draw(trial.extra, len(dosed))
    day0 = trial.day0[dosed]
    completed = trial.attends(trial.project.visits[-1])[dosed]
    last = day0 + trial.project.window[trial.project.visits[-1]][0]
    cols = {"ho_admdat": _dates(trial.icdat[dosed] - draw.ints(0, 3)),
            "ho_dischdat": _dates(day0 + draw.ints(15, 24)), "ho_dischto": draw.const("1"),
            "ho_icu": draw.const("0")}
    end = {"ds_decod": draw.const("1"), "ds_stdat": _dates(last), "ds_lkadat": _dates(last),
           "ds_lastvis": draw.const("6"), "ds_trt_compl": draw.const("1")}
    cols.update({name: np.where(completed, values, "") for name, values in end.items()})
    _override(trial, dosed, cols, {k: c.end for k, c in enumerate(CATALOGUE)}, trial.icdat)
    return [trial.frame(dosed, LOGS, cols)]


def _routine_logs(trial: _Trial) -> list[_Rows]:
    """A routine conmed for every dosed subject and a mild AE for about half of them."""
    dosed = np.flatnonzero(trial.infused(trial.project.dosing[0]))
    draw = _Draw(trial.rng, len(dosed))
    table = np.asarray(_CONMEDS, dtype=object)[draw.ints(0, len(_CONMEDS) - 1)]
    icdat = trial.icdat[dosed]
    conmed = {"cm_trt": table[:, 0], "cm_indc": table[:, 1], "cm_class": table[:, 2],
              "cm_immuno": draw.const("0"), "cm_dose": table[:, 3], "cm_route": table[:, 4],
              "cm_stdat": _dates(icdat - draw.ints(0, 3)),
              "cm_endat": _dates(icdat + draw.ints(6, 14))}
    frames = [trial.frame(dosed, LOGS, conmed, "conmed")]
    with_ae = dosed[draw.rng.random(len(dosed)) < 0.5]
    draw = _Draw(trial.rng, len(with_ae))
    onset = trial.icdat[with_ae] + draw.ints(2, 12)
    adverse = {"ae_term": draw.choice(_AE_TERMS), "ae_stdat": _dates(onset),
               "ae_ongo": draw.const("0"), "ae_endat": _dates(onset + draw.ints(1, 5)),
               "ae_grade": draw.choice(("1", "1", "2")), "ae_ctcae_ver": draw.const("5.0"),
               "ae_infrel": draw.const("0"), "ae_ser": draw.const("0"),
               "ae_rel": draw.choice(("3", "4")), "ae_acn": draw.const("1"),
               "ae_out": draw.const("1"),
               "ae_aware_dtc": _datetimes(onset, draw.ints(8 * 60, 18 * 60))}
    frames.append(trial.frame(with_ae, LOGS, adverse, "adverse_event"))
    return frames


def _case_logs(trial: _Trial) -> list[_Rows]:
    """The log instances each case names (late SAE, fatal grade, immunotherapy, deviation)."""
    frames = []
    for k, case in enumerate(CATALOGUE):
        idx = np.flatnonzero(trial.case == k)
        for form, specs in case.logs if len(idx) else ():
            cols = {name: _resolve(spec, trial.icdat[idx]) for name, spec in specs.items()}
            frames.append(trial.frame(idx, LOGS, cols, form))
    return frames


def late_corrections(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The Screening edits the cases make after the load (`DemoCase.late`), led by a row that
    triggers no calc: REDCap recomputes only the calcs the first row's fields trigger
    (redcap-behaviour.md §2), so the calc behind each edit stays stale (rule CALC_STALE)."""
    rows = []
    for record in frame.loc[frame["redcap_event_name"] == SCREENING, "record_id"]:
        late = case_of(record).late
        if late:
            rows.append({"record_id": record, "redcap_event_name": SCREENING, **late})
    if not rows:
        return []
    lead = frame.loc[frame["redcap_event_name"] == SCREENING].iloc[0]
    return [{"record_id": lead["record_id"], "redcap_event_name": SCREENING,
             "ic_ver": lead["ic_ver"]}] + rows


def unvalidated_entries(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The Screening values the cases enter while their field has no validation
    (`DemoCase.unvalidated`): REDCap refuses them on import, so the loader drops the fields'
    validation around this one import, as a project whose validation was added after entry."""
    rows = []
    for record in frame.loc[frame["redcap_event_name"] == SCREENING, "record_id"]:
        values = case_of(record).unvalidated
        if values:
            rows.append({"record_id": record, "redcap_event_name": SCREENING, **values})
    return rows


def demo_records(n_subjects: int = 40, seed: int = 7) -> pd.DataFrame:
    """The synthetic demo trial as a raw flat REDCap import frame (see the module docstring).

    Columns: record_id, redcap_event_name, redcap_repeat_instrument, redcap_repeat_instance,
    then every dictionary field in dictionary order; every value a string, "" for blank. Events,
    visit windows and the forms of each event come from `redcap/`; rows follow REDCap's export
    order. The same `seed` gives the same frame.

    Examples:
        >>> frame = demo_records(40)
        >>> frame.loc[0, ["record_id", "redcap_event_name"]].tolist()
        ['01-001', 'screening_arm_1']
    """
    if not 1 <= n_subjects <= MAX_SUBJECTS:
        raise ConfigError(f"demo_records: n_subjects must be 1 to {MAX_SUBJECTS}, "
                          f"got {n_subjects}")
    project = _load_project(PROJECT_ROOT)
    rng = np.random.default_rng(seed)
    index = np.arange(n_subjects)
    icdat = (FIRST_CONSENT - EPOCH).days + (index * 7) % 540
    trial = _Trial(project, rng, np.random.default_rng([seed, 1]), index % len(CATALOGUE),
                   np.array([record_id_of(k) for k in index], dtype=object),
                   icdat, icdat + rng.integers(1, 4, n_subjects))
    frames = ([_screening_frame(trial)] + [_visit_frame(trial, e) for e in project.visits]
              + _end_of_study(trial) + _routine_logs(trial) + _case_logs(trial))
    return _in_export_order(frames, trial)


def _in_export_order(blocks: list[_Rows], trial: _Trial) -> pd.DataFrame:
    """Rows in REDCap's order with instances numbered per record and form; all columns strings."""
    project = trial.project
    form_order = {form: k for k, form in enumerate(dict.fromkeys(project.form_of.values()))}
    sizes = [len(b.subject) for b in blocks]
    subject = np.concatenate([b.subject for b in blocks])
    event = np.repeat([b.event for b in blocks], sizes).astype(object)
    instrument = np.repeat([b.instrument for b in blocks], sizes).astype(object)
    ranks = np.repeat([(project.events.index(b.event), form_order.get(b.instrument, -1))
                       for b in blocks], sizes, axis=0).reshape(-1, 2)
    order = np.lexsort((ranks[:, 1], ranks[:, 0], subject))
    keys = pd.DataFrame({"subject": subject[order], "instrument": instrument[order]})
    instance = (keys.groupby(["subject", "instrument"]).cumcount() + 1).astype(str).to_numpy()
    columns = {"record_id": trial.record[subject[order]],
               "redcap_event_name": event[order], "redcap_repeat_instrument": instrument[order],
               "redcap_repeat_instance": np.where(keys["instrument"] != "", instance, ""
                                                  ).astype(object)}
    for name in project.fields[1:]:
        columns[name] = np.concatenate([b.column(name) for b in blocks])[order]
    return pd.DataFrame(columns)
