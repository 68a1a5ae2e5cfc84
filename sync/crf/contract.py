"""The CRF contract (`shared/crf-contract.md`) as data: the names, forms, types and codes to keep.

Reports, the sponsor's programs and the acceptance tests rely on these exactly; `ecrf check`
compares the dictionary and `redcap/` against them, row by row.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTRACT_EVENTS", "CONTRACT_FIELDS", "CONTRACT_REPEATING", "Contract", "ContractEvent",
    "ContractField", "TRIAL_CONTRACT",
]

SCREENING = ("screening_arm_1",)
DOSING = ("day_0_arm_1", "day_3_arm_1", "day_6_arm_1")
LOGS = ("logs_arm_1",)


@dataclass(frozen=True)
class ContractEvent:
    """One event of the contract's single arm."""

    unique_event_name: str
    label: str


@dataclass(frozen=True)
class ContractField:
    """One contract row: where the field lives and what it holds.

    `field_types` lists the REDCap types the contract allows (one, except the sync-written
    criteria whose codes are fixed but whose widget is not); `choices` are (code, label) pairs,
    a label of None when the contract fixes only the code; `readonly` fields are written by the
    sync and must carry `@READONLY`.
    """

    variable: str
    form: str
    events: tuple[str, ...]
    field_types: tuple[str, ...]
    validation: str = ""
    choices: tuple[tuple[str, str | None], ...] = ()
    validation_min: str = ""
    validation_max: str = ""
    calculation: str = ""
    readonly: bool = False

    @property
    def field_type(self) -> str:
        """The contract's type ("radio|dropdown" when either is allowed)."""
        return "|".join(self.field_types)


@dataclass(frozen=True)
class Contract:
    """Fields, events and repeating instruments a dictionary must keep."""

    fields: tuple[ContractField, ...]
    events: tuple[ContractEvent, ...]
    repeating: tuple[tuple[str, str], ...]


def _f(variable: str, form: str, events: tuple[str, ...], kind: str, **extra: object) -> ContractField:
    """A contract row from the contract's own words: date, datetime, time, integer, number, ..."""
    field_type, validation = {
        "date": ("text", "date_ymd"), "datetime": ("text", "datetime_ymd"),
        "time": ("text", "time"), "integer": ("text", "integer"), "number": ("text", "number"),
    }.get(kind, (kind, ""))
    types = tuple(field_type.split("|"))
    return ContractField(variable, form, events, types, validation, **extra)  # type: ignore[arg-type]


def _many(variables: str, form: str, events: tuple[str, ...], kind: str,
          **extra: object) -> list[ContractField]:
    return [_f(v, form, events, kind, **extra) for v in variables.split()]


VIRUS_RESULT = (("1", "Positive"), ("0", "Negative"), ("9", "Not done"))
CRITERION_MET = (("1", "Met"), ("0", "Not met"))
CRITERION_PRESENT = (("1", "Present"), ("0", "Absent"))
SYNC_CODED = "radio|dropdown"

_SCREENING_INPUTS: list[ContractField] = [
    _f("record_id", "informed_consent", SCREENING, "text"),
    _f("icdat", "informed_consent", SCREENING, "date"),
    *_many("ic_yn ic_noother", "informed_consent", SCREENING, "yesno"),
    _f("brthdat", "demographics", SCREENING, "date"),
    _f("age", "demographics", SCREENING, "integer", readonly=True),
    _f("sex", "demographics", SCREENING, "radio", choices=(("1", "Male"), ("2", "Female"))),
    *_many("sarscov2_res adeno_res flu_res othvir_res", "etiology", SCREENING, "radio",
           choices=VIRUS_RESULT),
    *_many("sarscov2_dat adeno_dat flu_dat othvir_dat", "etiology", SCREENING, "date"),
    _f("othvir_spec", "etiology", SCREENING, "text"),
    _f("img_dat", "chest_imaging", SCREENING, "date"),
    _f("img_viral", "chest_imaging", SCREENING, "yesno"),
    *_many("rr spo2", "respiratory", SCREENING, "integer"),
    _f("spo2_ra", "respiratory", SCREENING, "yesno"),
    _f("pao2", "respiratory", SCREENING, "number"),
    _f("fio2", "respiratory", SCREENING, "integer", validation_min="21", validation_max="100"),
    _f("pf_ratio", "respiratory", SCREENING, "calc", calculation="[pao2] / ([fio2] / 100)"),
    *_many("imv vaso", "respiratory", SCREENING, "yesno"),
    _f("lbdat", "screening_labs", SCREENING, "date"),
    *_many("wbc crp crp_uln pct pct_uln alt alt_uln tbil tbil_uln tbil_prev",
           "screening_labs", SCREENING, "number"),
    _f("tbil_prev_dat", "screening_labs", SCREENING, "date"),
    *_many("crea crea_prev", "screening_labs", SCREENING, "number"),
    _f("crea_prev_dat", "screening_labs", SCREENING, "date"),
    *_many("pta inr hgb plt", "screening_labs", SCREENING, "number"),
    *_many("hbv_act hcv_act hiv_pos tb_act solid_tumor leukemia mental_dis nyha3 myocard "
           "mal_arrhythmia", "exclusion_history", SCREENING, "yesno"),
    _f("cv_event_dat", "exclusion_history", SCREENING, "date"),
    *_many("chronic_lung bleeding dic drug_abuse other_trial noncompliance other_serious",
           "exclusion_history", SCREENING, "yesno"),
    _f("ie_yn", "eligibility", SCREENING, "yesno"),
]

_SYNC_WRITTEN: list[ContractField] = [
    *_many("inc1 inc2 inc3 inc4", "eligibility", SCREENING, SYNC_CODED,
           choices=CRITERION_MET, readonly=True),
    *_many("exc1 exc2 exc3 exc4 exc5 exc6 exc7 exc8 exc9", "eligibility", SCREENING, SYNC_CODED,
           choices=CRITERION_PRESENT, readonly=True),
    _f("elig_calc", "eligibility", SCREENING, SYNC_CODED,
       choices=(("1", "Eligible"), ("0", "Not eligible")), readonly=True),
    *_many("elig_fail elig_missing", "eligibility", SCREENING, "text", readonly=True),
]

_VISITS_AND_LOGS: list[ContractField] = [
    _f("inf_given", "infusion", DOSING, "yesno"),
    _f("inf_dat", "infusion", DOSING, "date"),
    *_many("inf_start inf_end", "infusion", DOSING, "time"),
    _f("ae_term", "adverse_event", LOGS, "text"),
    _f("ae_stdat", "adverse_event", LOGS, "date"),
    _f("ae_grade", "adverse_event", LOGS, "radio",
       choices=tuple((str(grade), None) for grade in range(1, 6))),
    _f("ae_ser", "adverse_event", LOGS, "yesno"),
    *_many("ae_aware_dtc ae_rpt_dtc", "adverse_event", LOGS, "datetime"),
    _f("ae_out", "adverse_event", LOGS, "radio", choices=(
        ("1", "Recovered"), ("2", "Recovering"), ("3", "Not recovered"),
        ("4", "Recovered with sequelae"), ("5", "Fatal"), ("6", "Unknown"))),
    _f("cm_trt", "conmed", LOGS, "text"),
    _f("cm_immuno", "conmed", LOGS, "yesno"),
    *_many("cm_stdat cm_endat", "conmed", LOGS, "date"),
    *_many("dq_key dq_rule dq_event dq_instrument dq_instance dq_field", "dq_query", LOGS, "text"),
    _f("dq_text", "dq_query", LOGS, "notes"),
    _f("dq_status", "dq_query", LOGS, "radio", choices=(
        ("1", "Open"), ("2", "Answered"), ("3", "Closed"), ("4", "Resolved"))),
    _f("dq_response", "dq_query", LOGS, "notes"),
    *_many("dq_opened dq_resolved dq_updated", "dq_query", LOGS, "datetime"),
]

CONTRACT_FIELDS: tuple[ContractField, ...] = (
    *_SCREENING_INPUTS, *_SYNC_WRITTEN, *_VISITS_AND_LOGS)
"""Every field the contract names, in the contract's order."""

CONTRACT_EVENTS: tuple[ContractEvent, ...] = (
    ContractEvent("screening_arm_1", "Screening"), ContractEvent("day_0_arm_1", "Day 0"),
    ContractEvent("day_3_arm_1", "Day 3"), ContractEvent("day_6_arm_1", "Day 6"),
    ContractEvent("day_14_arm_1", "Day 14"), ContractEvent("day_28_arm_1", "Day 28"),
    ContractEvent("day_90_arm_1", "Day 90"), ContractEvent("logs_arm_1", "Logs"),
)
"""The contract's eight events of arm 1, in visit order."""

CONTRACT_REPEATING: tuple[tuple[str, str], ...] = (
    ("logs_arm_1", "adverse_event"), ("logs_arm_1", "conmed"), ("logs_arm_1", "dq_query"))
"""(event, instrument) pairs that must repeat."""

TRIAL_CONTRACT = Contract(CONTRACT_FIELDS, CONTRACT_EVENTS, CONTRACT_REPEATING)
