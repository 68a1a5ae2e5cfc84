"""The coded rules: checks REDCap logic cannot express, registered under their catalogue ids.

Each function takes the pulled data (`RuleData`) and returns the rows where the rule fires:
the four REDCap key columns, optionally `field` (where the query attaches, when it varies),
and the values its message template in `redcap/rules.csv` names.
"""
from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

from sync.crf.dictionary import Dictionary
from sync.eligibility import SCREENING_EVENT, Eligibility, parse_number
from sync.logic.fields import FieldInfo, field_catalogue, missing_codes
from sync.typed import TypingProblem, parse_dates, parse_datetimes

KEY_COLUMNS: tuple[str, ...] = (
    "record_id", "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
REFERENCE_EVENT, REFERENCE_FIELD = "day_0_arm_1", "inf_dat"
VISIT_DATE_FIELDS: tuple[str, ...] = ("vsdat", "rs_dat", "lb_dat", "cs_dat", "fi_dat")
SAE_REPORT_HOURS = 24
AE_MATCH_DAYS = 2
CODED_RULES: dict[str, Callable[[RuleData], pd.DataFrame]] = {}
ACROSS_RECORDS: dict[str, tuple[str, tuple[str, ...]]] = {"KIT_REUSED": ("infusion",
                                                                        ("inf_given", "inf_kit"))}
"""Coded rules that compare records with each other: the instrument and fields each reads of
every record. Every other rule reads only the record it fires on, so a batch of whole records
is all it needs."""


def coded(rule_id: str) -> Callable[[Callable[[RuleData], pd.DataFrame]],
                                    Callable[[RuleData], pd.DataFrame]]:
    """Register a function as the coded rule `rule_id`."""
    def register(func: Callable[[RuleData], pd.DataFrame]) -> Callable[[RuleData], pd.DataFrame]:
        CODED_RULES[rule_id] = func
        return func
    return register


@dataclass(frozen=True)
class RuleData:
    """The RAW export (strings, "" blank), the project's dictionary and today's eligibility;
    the values typing could not read, when the caller already has them."""

    records: pd.DataFrame
    dictionary: Dictionary
    eligibility: Eligibility
    typing_problems: tuple[TypingProblem, ...] | None = None
    steroid_limit_mg: float = 80
    """Protocol limit of systemic corticosteroid, mg/day prednisolone-equivalent (setting
    `steroid_limit_mg_per_day`)."""
    across: pd.DataFrame | None = None
    """Rows of every record of the project with just the fields of `ACROSS_RECORDS`, when
    `records` is one batch of it (`sync.batches`); None when `records` is all there is."""

    @functools.cached_property
    def _masks_seen(self) -> dict[tuple[tuple[str, ...], str], np.ndarray]:
        return {}

    @functools.cached_property
    def logic_fields(self) -> dict[str, FieldInfo]:
        """How REDCap logic reads each field (`sync.logic.fields`), once for every logic rule."""
        codes = missing_codes(",".join(self.dictionary.missing_data_codes))
        return field_catalogue(self.dictionary.metadata, codes)

    @functools.cached_property
    def _form_columns(self) -> dict[str, list[str]]:
        return {}

    def rows(self, events: Iterable[str] = (), instrument: str = "",
             columns: list[str] | None = None) -> pd.DataFrame:
        """Rows of `events` (all when empty) holding `instrument` (its instances if it repeats):
        `columns` of them when given, else the instrument's own columns (the row keys and its
        fields; every column when no instrument is named). A check copies only what it reads.

        Only the row masks are cached: a cached copy of every selection would hold the whole
        export several times over on a registry-sized project.
        """
        mask = self.mask(events, instrument)
        if columns is None and instrument:
            columns = self._form_columns.get(instrument)
            if columns is None:
                columns = self._form_columns[instrument] = self._columns_of(instrument)
        if columns is None:
            return self.records[mask]
        return self.records.loc[mask, columns]

    def mask(self, events: Iterable[str] = (), instrument: str = "") -> np.ndarray:
        """Which rows of `records` `rows(events, instrument)` selects."""
        key = (tuple(events), instrument)
        if key not in self._masks_seen:
            self._masks_seen[key] = self._mask(*key)
        return self._masks_seen[key]

    def _columns_of(self, instrument: str) -> list[str]:
        """The columns of `records` that are the instrument's in REDCap's export, with the keys."""
        wanted = {*KEY_COLUMNS, "redcap_data_access_group",
                  *self.dictionary.export_columns([instrument])}
        return [column for column in self.records.columns if column in wanted]

    @functools.cached_property
    def _dates_seen(self) -> dict[object, pd.Series]:
        return {}

    def dates(self, rows: pd.DataFrame, field: str) -> pd.Series:
        """`field` of `rows` (rows of `records`) as dates; each field is parsed once."""
        if field not in self._dates_seen:
            self._dates_seen[field] = _dates(self.records[field])
        return self._dates_seen[field].reindex(rows.index)

    def record_dates(self, rows: pd.DataFrame, field: str, events: Iterable[str] = (),
                     instrument: str = "") -> pd.Series:
        """For each row, `field` of the same record in `rows(events, instrument)` as a date
        (`per_record`, parsed once per record)."""
        key = (field, tuple(events), instrument)
        if key not in self._dates_seen:
            source = self.rows(events, instrument, ["record_id", field])
            values = source.loc[source[field] != "", ["record_id", field]]
            lookup = values.drop_duplicates("record_id").set_index("record_id")[field]
            self._dates_seen[key] = _dates(lookup)
        return rows["record_id"].map(self._dates_seen[key]).rename("record_id")

    def _mask(self, events: tuple[str, ...], instrument: str) -> np.ndarray:
        rows = self.records
        mask = np.ones(len(rows), dtype=bool)
        if events:
            mask &= rows["redcap_event_name"].isin(events).to_numpy()
        if not instrument:
            return mask
        repeat = rows["redcap_repeat_instrument"].to_numpy()
        if instrument in set(self.dictionary.repeating["form_name"]):
            return mask & (repeat == instrument)
        mask &= repeat == ""
        if self.dictionary.is_longitudinal:
            mask &= rows["redcap_event_name"].isin(
                self.dictionary.events_of_form(instrument)).to_numpy()
        return mask

    def per_record(self, rows: pd.DataFrame, field: str, source: pd.DataFrame) -> pd.Series:
        """For each row, `field` of the same record in `source` (first non-blank value)."""
        values = source.loc[source[field] != "", ["record_id", field]]
        lookup = values.drop_duplicates("record_id").set_index("record_id")[field]
        return rows["record_id"].map(lookup).fillna("")

    def screening(self, rows: pd.DataFrame, field: str) -> pd.Series:
        """For each row, `field` of the record's screening row."""
        return self.per_record(rows, field,
                               self.rows([SCREENING_EVENT], "", ["record_id", field]))

    @functools.cached_property
    def _windows_seen(self) -> dict[str, tuple[float, float, float]]:
        return {}

    def window(self, event: str) -> tuple[float, float, float]:
        """`Dictionary.window` of `event`, read once per batch."""
        if event not in self._windows_seen:
            self._windows_seen[event] = self.dictionary.window(event)
        return self._windows_seen[event]

    @functools.cached_property
    def _event_labels(self) -> dict[str, str]:
        events = self.dictionary.events
        return dict(zip(events["unique_event_name"], events["event_name"]))

    def event_labels(self, events: pd.Series) -> pd.Series:
        """The event label of each unique event name (the name itself when unknown)."""
        return events.map(lambda e: self._event_labels.get(e, e))

    @functools.cached_property
    def field_labels(self) -> pd.Series:
        return self.dictionary.metadata.set_index("field_name")["field_label"]

    def choice_labels(self, field: str, codes: pd.Series) -> pd.Series:
        """`code (Label)` for each code, or "blank" when nothing is entered."""
        labels = dict(self.dictionary.choices(field))
        return codes.map(lambda c: "blank" if not c else
                         f"{c} ({labels[c]})" if c in labels else c)


def _dates(values: pd.Series) -> pd.Series:
    return parse_dates(values)


def _datetimes(values: pd.Series) -> pd.Series:
    """`datetime_ymd` values (seconds, if any, are kept); a zone suffix is not one (NaT)."""
    return parse_datetimes(values)


def _fired(rows: pd.DataFrame, mask: pd.Series, **values: pd.Series | str) -> pd.DataFrame:
    """The key columns of the rows where `mask` holds, with the message's values."""
    keep = mask.fillna(False).astype(bool).to_numpy()
    out: dict[str, object] = {column: rows[column].to_numpy()[keep] for column in KEY_COLUMNS}
    for name, value in values.items():
        out[name] = value[keep].to_numpy() if isinstance(value, pd.Series) else value
    return pd.DataFrame(out, index=rows.index[keep])


@coded("ELIG_MISSING")
def elig_missing(data: RuleData) -> pd.DataFrame:
    """One query per blank input that leaves eligibility criteria undetermined; criteria that
    blame the same input share its query, since the query's key is rule, place and field."""
    missing = data.eligibility.missing
    if missing.empty:
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    grouped = (missing.groupby(["record_id", "field"], sort=False)["criterion"]
               .agg(", ".join).reset_index())
    labels = data.field_labels
    entered = (data.rows([SCREENING_EVENT], "", ["record_id", *grouped["field"].unique()])
               .drop_duplicates("record_id").set_index("record_id"))
    said = [_undecided(entered.at[record, field] if record in entered.index else "",
                       data.dictionary.missing_data_labels)
            for record, field in zip(grouped["record_id"], grouped["field"])]
    return grouped.assign(redcap_event_name=SCREENING_EVENT, redcap_repeat_instrument="",
                          redcap_repeat_instance="", criteria=grouped["criterion"],
                          field_label=grouped["field"].map(labels).fillna(grouped["field"]),
                          state=[state for state, _ in said], how=[how for _, how in said])


def _undecided(value: str, missing: dict[str, str]) -> tuple[str, str]:
    """What ELIG_MISSING says of the input it asks about and how to settle it, naming what is
    entered, so the query's text (and `dq_updated`) changes when a site answers with a
    missing-data code."""
    value = str(value).strip()
    if not value:
        return ("is blank or not valid", ", or mark it with a missing-data code and explain why "
                "it is not available.")
    if value in missing:
        return (f"is marked {value} ({missing[value]})", " if it can be found; if not, answer "
                "this query saying why, for the monitor to close it.")
    return f"holds {value}, which the criteria cannot use", " in its place."


def _eligibility_text(data: RuleData, records: pd.Series) -> tuple[pd.Series, pd.Series]:
    values = data.eligibility.values.reindex(records.to_numpy()).fillna("")
    calc = pd.Series(values["elig_calc"].to_numpy(), index=records.index)
    text = [("eligible" if c == "1" else f"not eligible (failing {f})" if c == "0"
             else f"undetermined (missing {m})" if m else "not screened")
            for c, f, m in zip(calc, values["elig_fail"], values["elig_missing"])]
    return calc, pd.Series(text, index=records.index)


@coded("IE_MISMATCH")
def ie_mismatch(data: RuleData) -> pd.DataFrame:
    """The investigator's `ie_yn` contradicts the computed `elig_calc` (1 vs 0 either way)."""
    rows = data.rows([SCREENING_EVENT], "eligibility")
    calc, result = _eligibility_text(data, rows["record_id"])
    ie = rows["ie_yn"]
    mask = ((ie == "1") & (calc == "0")) | ((ie == "0") & (calc == "1"))
    return _fired(rows, mask, ie_yn=ie, answer=ie.map({"1": "Yes", "0": "No"}), result=result)


@coded("DOSE_INELIGIBLE")
def dose_ineligible(data: RuleData) -> pd.DataFrame:
    """Study product given (`inf_given` = 1) at a dosing event while `elig_calc` is not 1."""
    rows = data.rows((), "infusion")
    calc, result = _eligibility_text(data, rows["record_id"])
    return _fired(rows, (rows["inf_given"] == "1") & (calc != "1"),
                  event_label=data.event_labels(rows["redcap_event_name"]), result=result)


def _hours(minutes: float) -> str:
    return f"{minutes / 60:.2f}".rstrip("0").rstrip(".")


@coded("SAE_LATE")
def sae_late(data: RuleData) -> pd.DataFrame:
    """A serious AE reported to the sponsor more than 24 hours after the site became aware."""
    rows = data.rows((), "adverse_event")
    minutes = (_datetimes(rows["ae_rpt_dtc"]) - _datetimes(rows["ae_aware_dtc"])) \
        .dt.total_seconds() / 60
    mask = (rows["ae_ser"] == "1") & (minutes > SAE_REPORT_HOURS * 60)
    return _fired(rows, mask, hours=minutes.map(_hours), ae_aware_dtc=rows["ae_aware_dtc"],
                  ae_rpt_dtc=rows["ae_rpt_dtc"], ae_term=rows["ae_term"],
                  limit=str(SAE_REPORT_HOURS))


@coded("AE_FATAL_GRADE")
def ae_fatal_grade(data: RuleData) -> pd.DataFrame:
    """Grade 5 without outcome Fatal, or outcome Fatal without grade 5 (blank counts as not 5)."""
    rows = data.rows((), "adverse_event")
    grade, outcome = rows["ae_grade"], rows["ae_out"]
    mask = (grade == "5") != (outcome == "5")
    return _fired(rows, mask, ae_term=rows["ae_term"],
                  grade=data.choice_labels("ae_grade", grade),
                  outcome=data.choice_labels("ae_out", outcome))


@coded("CM_IMMUNO")
def cm_immuno(data: RuleData) -> pd.DataFrame:
    """Immunotherapy taken on or after consent: `cm_endat` blank or on or after `icdat`."""
    rows = data.rows((), "conmed")
    consent = data.screening(rows, "icdat")
    ended = rows["cm_endat"].str.strip()
    after = _dates(ended) >= _dates(consent)
    mask = (rows["cm_immuno"] == "1") & ((ended == "") | after)
    return _fired(rows, mask, cm_trt=rows["cm_trt"], icdat=consent.replace("", "(not entered)"),
                  taken=ended.map(lambda d: f"until {d}" if d else "ongoing"))


@dataclass(frozen=True)
class LabGrade:
    """CTCAE v5.0 grade 3 and 4 bounds of one follow-up lab (clinical-reference §4.1)."""

    field: str
    lab: str
    unit: str
    worse: Callable[[object, object], bool]
    grade3: str
    grade4: str | None = None
    times_uln: bool = False


LAB_GRADES: tuple[LabGrade, ...] = (
    LabGrade("lb_alt", "ALT", "U/L", operator.gt, "5", "20", times_uln=True),
    LabGrade("lb_tbil", "Total bilirubin", "umol/L", operator.gt, "3", "10", times_uln=True),
    LabGrade("lb_crea", "Creatinine", "umol/L", operator.gt, "3", "6", times_uln=True),
    LabGrade("lb_hgb", "Haemoglobin", "g/L", operator.lt, "80"),
    LabGrade("lb_plt", "Platelets", "10^9/L", operator.lt, "50", "25"),
    LabGrade("lb_wbc", "White blood cells", "10^9/L", operator.lt, "2", "1"),
    LabGrade("lb_neut", "Neutrophils", "10^9/L", operator.lt, "1", "0.5"),
)


@functools.lru_cache(maxsize=1 << 16)
def _grade(spec: LabGrade, value: str, uln: str) -> tuple[int, str]:
    """(grade 3 or 4, the bound it crossed as text), or (0, "") below grade 3 or undecidable."""
    number = parse_number(value)
    base = parse_number(uln) if spec.times_uln else Fraction(1)
    if number is None or base is None:
        return 0, ""
    sign = ">" if spec.worse is operator.gt else "<"
    for grade, bound in ((4, spec.grade4), (3, spec.grade3)):
        if bound is not None and spec.worse(number, Fraction(bound) * base):
            limit = f"{bound} x ULN {uln}" if spec.times_uln else f"{bound} {spec.unit}"
            return grade, f"{sign} {limit}"
    return 0, ""


def _ae_near(data: RuleData, rows: pd.DataFrame, dates: pd.Series) -> pd.Series:
    """True where the record has an AE starting within AE_MATCH_DAYS of `dates`."""
    aes = data.rows((), "adverse_event")
    starts = pd.DataFrame({"record_id": aes["record_id"].to_numpy(),
                           "start": data.dates(aes, "ae_stdat").to_numpy()}).dropna()
    samples = pd.DataFrame({"row": rows.index, "record_id": rows["record_id"].to_numpy(),
                            "date": dates.to_numpy()}).dropna()
    pairs = samples.merge(starts, on="record_id")
    close = (pairs["date"] - pairs["start"]).abs() <= pd.Timedelta(days=AE_MATCH_DAYS)
    return pd.Series(rows.index.isin(pairs.loc[close, "row"]), index=rows.index)


@coded("LAB_CTCAE_G3")
def lab_ctcae_g3(data: RuleData) -> pd.DataFrame:
    """A follow-up lab of CTCAE v5.0 grade >= 3 with no AE starting within 2 days of it.

    Grades use the lab's own ULN (ALT, bilirubin, creatinine) or the absolute cut-offs
    (haemoglobin, platelets, white cells, neutrophils); the baseline-relative arms of CTCAE
    need a baseline the CRF does not define, so they are not applied."""
    ulns = [f"{spec.field}_uln" for spec in LAB_GRADES]
    rows = data.rows((), "labs", [*KEY_COLUMNS, "lb_dat", *(spec.field for spec in LAB_GRADES),
                                  *(uln for uln in ulns if uln in data.records.columns)])
    dates = data.dates(rows, "lb_dat")
    gradable = (dates.notna() & ~_ae_near(data, rows, dates)).to_numpy()
    frames = []
    for spec, uln_field in zip(LAB_GRADES, ulns):
        uln = rows.get(uln_field, pd.Series("", index=rows.index))
        graded = [_grade(spec, v, u) for v, u in zip(rows[spec.field], uln)]
        hit = np.array([grade >= 3 for grade, _ in graded], dtype=bool) & gradable
        if not hit.any():
            continue
        found = rows[hit]
        graded = [g for g, h in zip(graded, hit) if h]
        frames.append(_fired(
            found, pd.Series(True, index=found.index), field=spec.field, lab=spec.lab,
            value=found[spec.field], unit=spec.unit, lb_dat=found["lb_dat"],
            event_label=data.event_labels(found["redcap_event_name"]),
            grade=pd.Series([str(g) for g, _ in graded], index=found.index),
            bound=pd.Series([b for _, b in graded], index=found.index), days=str(AE_MATCH_DAYS)))
    return pd.concat(frames, ignore_index=True) if frames else _no_findings()


def _window_days(data: RuleData, rows: pd.DataFrame, field: str) -> pd.DataFrame:
    """Day of `field` after the Day 0 infusion and the event's window (first, last day)."""
    day0 = data.record_dates(rows, REFERENCE_FIELD, [REFERENCE_EVENT])
    windows = {e: data.window(e) for e in rows["redcap_event_name"].unique()}
    events = rows["redcap_event_name"]
    return pd.DataFrame({"day": (data.dates(rows, field) - day0).dt.days, "day0": day0,
                         "low": events.map({e: int(w[0] - w[1]) for e, w in windows.items()}),
                         "high": events.map({e: int(w[0] + w[2]) for e, w in windows.items()})},
                        index=rows.index)


def _outside_window(data: RuleData, field: str, skip_reference: bool) -> pd.DataFrame:
    dated = data.mask((), data.dictionary.form_of(field)) & (data.records[field].to_numpy() != "")
    if skip_reference:
        dated &= data.records["redcap_event_name"].to_numpy() != REFERENCE_EVENT
    if not dated.any():
        return pd.DataFrame(columns=list(KEY_COLUMNS))
    rows = data.records.loc[dated, [*KEY_COLUMNS, field]]
    window = _window_days(data, rows, field)
    outside = window["day"].notna() & ((window["day"] < window["low"])
                                       | (window["day"] > window["high"]))
    rows, window = rows[outside], window[outside]
    return _fired(rows, pd.Series(True, index=rows.index), field=field, date=rows[field],
                  field_label=data.field_labels.get(field, field),
                  day=window["day"].astype(int).astype(str), low=window["low"].astype(str),
                  high=window["high"].astype(str), day0=window["day0"].dt.strftime("%Y-%m-%d"),
                  event_label=data.event_labels(rows["redcap_event_name"]))


@coded("INF_WINDOW")
def inf_window(data: RuleData) -> pd.DataFrame:
    """An infusion date outside its visit window (events.csv offsets from the Day 0 infusion)."""
    return _outside_window(data, REFERENCE_FIELD, skip_reference=True)


@coded("VISIT_WINDOW")
def visit_window(data: RuleData) -> pd.DataFrame:
    """A visit's assessment date (vitals, support, labs, status, imaging) outside its window."""
    frames = [_outside_window(data, field, skip_reference=False)
              for field in VISIT_DATE_FIELDS if field in data.records.columns]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@coded("INF_ORDER")
def inf_order(data: RuleData) -> pd.DataFrame:
    """An infusion dated on or before the record's previous infusion (in event order)."""
    rows = data.rows((), "infusion")
    order = {e: n for n, e in enumerate(data.dictionary.event_names)}
    rows = rows.assign(_order=rows["redcap_event_name"].map(order),
                       _date=data.dates(rows, REFERENCE_FIELD))
    rows = rows[rows["_date"].notna()].sort_values(["record_id", "_order"])
    previous = rows.groupby("record_id")["_date"].shift()
    before = rows.groupby("record_id")["redcap_event_name"].shift().fillna("")
    return _fired(rows, rows["_date"] <= previous, inf_dat=rows[REFERENCE_FIELD],
                  event_label=data.event_labels(rows["redcap_event_name"]),
                  previous=previous.dt.strftime("%Y-%m-%d").fillna(""),
                  previous_label=data.event_labels(before))


@coded("INF_TIME")
def inf_time(data: RuleData) -> pd.DataFrame:
    """An infusion whose end time is not after its start time."""
    rows = data.rows((), "infusion")
    start = pd.to_datetime(rows["inf_start"], format="%H:%M", errors="coerce")
    end = pd.to_datetime(rows["inf_end"], format="%H:%M", errors="coerce")
    return _fired(rows, end <= start, inf_start=rows["inf_start"], inf_end=rows["inf_end"],
                  event_label=data.event_labels(rows["redcap_event_name"]))


def _disposition(data: RuleData, rows: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    source = data.rows((), "disposition", ["record_id", "ds_decod", "dth_dat"])
    return data.per_record(rows, "ds_decod", source), data.per_record(rows, "dth_dat", source)


@coded("DEATH_AE_NO_DS")
def death_ae_no_ds(data: RuleData) -> pd.DataFrame:
    """An AE with outcome Fatal while the disposition form records no death with its date."""
    rows = data.rows((), "adverse_event")
    status, died = _disposition(data, rows)
    labels = data.choice_labels("ds_decod", status)
    text = [("does not record a death (not entered)" if not s else
             f"records {label}, not a death" if s != "2" else
             "records death without a date of death (dth_dat)")
            for s, label in zip(status, labels)]
    mask = (rows["ae_out"] == "5") & ((status != "2") | (died == ""))
    return _fired(rows, mask, ae_term=rows["ae_term"], disposition=pd.Series(text, rows.index))


@coded("DEATH_DS_NO_AE")
def death_ds_no_ae(data: RuleData) -> pd.DataFrame:
    """A death on the disposition form with no AE whose outcome is Fatal."""
    rows = data.rows((), "disposition", [*KEY_COLUMNS, "ds_decod", "dth_dat"])
    aes = data.rows((), "adverse_event")
    fatal = set(aes.loc[aes["ae_out"] == "5", "record_id"])
    mask = (rows["ds_decod"] == "2") & ~rows["record_id"].isin(fatal)
    return _fired(rows, mask, dth_dat=rows["dth_dat"].replace("", "(date not entered)"))


# -- go-live edit checks (#13.15) ---------------------------------------------------------------

FUTURE_ALLOWED: frozenset[str] = frozenset({"ph_expdat", "pr_edd"})
"""Date fields whose value may lie in the future (product expiry, estimated delivery)."""
STEROID_LIMIT_MG = 80
"""Default of the setting `steroid_limit_mg_per_day`. The protocol is not public; 80 mg/day
prednisolone-equivalent is twice RECOVERY's 6 mg dexamethasone, the ceiling MSC trials in viral
ARDS set."""
STEROID_POTENCY: dict[str, Fraction] = {"1": Fraction(1), "2": Fraction("1.25"),
                                        "3": Fraction(20, 3), "4": Fraction("0.25")}
"""`cm_steroid` code -> mg prednisolone per mg (prednisolone, methylprednisolone, dexamethasone,
hydrocortisone), as `cm_pred_eq` and the rule's REDCap logic compute it. Dexamethasone is
exactly 20/3 (0.75 mg for 5 mg prednisolone): 12 mg a day is the limit itself, not over it."""
STEROID_UNIT_MG: dict[str, Fraction] = {"1": Fraction(1), "2": Fraction(1000),
                                        "3": Fraction(1, 1000)}
"""`cm_dosu` code -> mg per unit (mg, g, ug): a 1 g methylprednisolone pulse is 1,000 mg. Per
kg, IU and mL give no daily dose."""
TIMES_A_DAY: dict[str, int] = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 1}
"""`cm_dosfrq` code -> doses a day; a single dose (5) is its day's dose."""
POST_DOSE_POINTS: tuple[tuple[str, str], ...] = (
    ("m15", "15 min after start"), ("eoi", "end of infusion"), ("h1", "1 h after the end"),
    ("h6", "6 h after the end"), ("h24", "24 h after the end"))
VITAL_LIMITS: tuple[tuple[str, str, Callable[[object, object], bool], str], ...] = (
    ("temp", "temperature", operator.ge, "38.0"), ("sysbp", "systolic blood pressure",
                                                   operator.lt, "90"),
    ("hr", "heart rate", operator.gt, "120"), ("oxysat", "SpO2", operator.lt, "90"),
    ("resp", "respiratory rate", operator.gt, "30"))
"""Post-infusion vital signs outside these limits suggest an infusion reaction (clinical
reference §4.3: fever, hypotension, tachycardia, hypoxaemia)."""
SIGNS: dict[Callable[[object, object], bool], str] = {operator.ge: ">=", operator.lt: "<",
                                                      operator.gt: ">"}
ASSESSMENT_DATE_FIELDS: tuple[str, ...] = (
    "visdat", "pd_dat", "inf_dat", "vsdat", "rs_dat", "lb_dat", "vir_dat", "cs_dat", "fi_dat")
ULN_GRADED: tuple[tuple[str, str, str], ...] = (
    ("lb_alt", "ALT", "U/L"), ("lb_tbil", "Total bilirubin", "umol/L"),
    ("lb_crea", "Creatinine", "umol/L"))
"""Follow-up labs CTCAE grades in multiples of the lab's upper limit of normal."""


def _no_findings() -> pd.DataFrame:
    return pd.DataFrame(columns=list(KEY_COLUMNS))


def _same_visit(data: RuleData, rows: pd.DataFrame, form: str, field: str) -> pd.Series:
    """For each row, `field` of non-repeating `form` on the same record and event."""
    source = data.rows((), form)
    keyed = dict(zip(zip(source["record_id"], source["redcap_event_name"]), source[field]))
    return pd.Series([keyed.get(key, "") for key in
                      zip(rows["record_id"], rows["redcap_event_name"])], index=rows.index,
                     dtype=object)


@coded("DATE_FUTURE")
def date_future(data: RuleData) -> pd.DataFrame:
    """A date or date-time entered by the site that lies after today (the day of the run)."""
    today = pd.Timestamp.today().normalize()
    after = today.strftime("%Y-%m-%d")
    written = set(data.dictionary.readonly_fields)
    frames = []
    for field in data.dictionary.fields:
        kind = data.dictionary.validation(field)
        form = data.dictionary.form_of(field)
        if (not kind.startswith(("date_", "datetime_")) or field in FUTURE_ALLOWED
                or field in written or form == "dq_query" or field not in data.records):
            continue
        maybe = _maybe_after(data.records[field], after)
        if maybe is None:
            continue
        rows = data.rows((), form, [*KEY_COLUMNS, field])
        rows = rows[maybe[data.mask((), form)]]
        when = (_datetimes(rows[field]) if kind.startswith("datetime_")
                else _dates(rows[field])).dt.normalize()
        hit = when > today
        if hit.any():
            frames.append(_fired(rows, hit, field=field, value=rows[field],
                                 field_label=data.field_labels.get(field, field),
                                 today=today.strftime("%Y-%m-%d"),
                                 event_label=data.event_labels(rows["redcap_event_name"])))
    return pd.concat(frames, ignore_index=True) if frames else _no_findings()


def _maybe_after(values: pd.Series, day: str) -> np.ndarray | None:
    """True where a value may be a date (or date-time) after `day` (YYYY-MM-DD): its first ten
    characters sort after `day`, as every such stored value's do (blanks never do). None when
    no value may be, told from the distinct values alone (the usual case)."""
    texts = values.to_numpy(dtype=object)
    later = {value for value in set(texts) if str(value).strip()[:10] > day}
    return np.array([value in later for value in texts], dtype=bool) if later else None


def _death_dates(data: RuleData, rows: pd.DataFrame) -> pd.Series:
    return data.record_dates(rows, "dth_dat", (), "death")


@coded("AFTER_DEATH")
def after_death(data: RuleData) -> pd.DataFrame:
    """A visit or assessment dated after the subject's date of death."""
    frames = []
    died_all = _death_dates(data, data.records)
    dead = died_all.notna().to_numpy()  # only rows of a record with a date of death can hit
    for field in ASSESSMENT_DATE_FIELDS:
        if field not in data.records:
            continue
        entered = data.mask((), data.dictionary.form_of(field)) & dead \
            & (data.records[field].to_numpy() != "")
        if not entered.any():
            continue
        rows = data.records.loc[entered, [*KEY_COLUMNS, field]]
        died = died_all[entered]
        hit = data.dates(rows, field) > died
        if not hit.any():
            continue
        frames.append(_fired(rows, hit, field=field, value=rows[field],
                             field_label=data.field_labels.get(field, field),
                             dth_dat=died.dt.strftime("%Y-%m-%d").fillna(""),
                             event_label=data.event_labels(rows["redcap_event_name"])))
    return pd.concat(frames, ignore_index=True) if frames else _no_findings()


@coded("INF_VITALS_NO_REACTION")
def inf_vitals_no_reaction(data: RuleData) -> pd.DataFrame:
    """Post-infusion vital signs outside range while no infusion reaction is recorded: one query
    per monitoring form, on the first value out of range in time-point order."""
    rows = data.rows((), "infusion_monitoring")
    reacted = (rows["ir_any"] == "1") | (_same_visit(data, rows, "infusion", "inf_react") == "1")
    first, what, value = (np.full(len(rows), "", dtype=object) for _ in range(3))
    for point, point_label in POST_DOSE_POINTS:
        for name, label, worse, limit in VITAL_LIMITS:
            field = f"im_{point}_{name}"
            texts = rows[field].to_numpy()
            bound = Fraction(limit)
            verdicts = {text: (number := parse_number(text)) is not None and worse(number, bound)
                        for text in set(texts)}
            out = np.array([verdicts[text] for text in texts], dtype=bool)
            take = out & (first == "")
            first[take], value[take] = field, texts[take]
            what[take] = f"{label} {SIGNS[worse]} {limit} at {point_label}"
    mask = (first != "") & ~reacted.to_numpy()
    return _fired(rows, pd.Series(mask, index=rows.index),
                  field=pd.Series(first, index=rows.index),
                  value=pd.Series(value, index=rows.index), what=pd.Series(what, index=rows.index),
                  event_label=data.event_labels(rows["redcap_event_name"]))


@coded("LAB_ULN_MISSING")
def lab_uln_missing(data: RuleData) -> pd.DataFrame:
    """A follow-up lab graded in multiples of ULN (ALT, bilirubin, creatinine) without its ULN:
    a result that is a number beside a ULN that is not (blank, or a missing-data code such as
    `ND`, which would keep a grade 3 from LAB_CTCAE_G3 unseen)."""
    rows = data.rows((), "labs")
    frames = []
    for field, lab, unit in ULN_GRADED:
        known, uln_known = (rows[name].map(lambda text: parse_number(text) is not None)
                            for name in (field, f"{field}_uln"))
        hit = known & ~uln_known
        frames.append(_fired(rows, hit, field=f"{field}_uln", lab=lab, value=rows[field],
                             unit=unit, lb_dat=rows["lb_dat"],
                             event_label=data.event_labels(rows["redcap_event_name"])))
    return pd.concat(frames, ignore_index=True)


def _has_sae(data: RuleData, rows: pd.DataFrame) -> pd.Series:
    aes = data.rows((), "adverse_event")
    serious = set(aes.loc[aes["ae_ser"] == "1", "record_id"])
    return rows["record_id"].isin(serious)


@coded("PROGRESSION_NO_SAE")
def progression_no_sae(data: RuleData) -> pd.DataFrame:
    """Invasive ventilation, ECMO or vasopressors after Day 0 (visit form or support log) while
    the subject has no serious adverse event."""
    visits = data.rows((), "resp_support")
    visits = visits[visits["redcap_event_name"] != REFERENCE_EVENT]
    log = data.rows((), "support_log")
    frames = []
    no_sae = ~_has_sae(data, visits)
    for field, code, what in (("rs_o2dev", "4", "invasive mechanical ventilation"),
                              ("rs_ecmo", "1", "ECMO"), ("rs_vaso", "1", "vasopressors")):
        hit = (visits[field] == code) & no_sae
        frames.append(_fired(visits, hit, field=field, what=what, when=visits["rs_dat"],
                             event_label=data.event_labels(visits["redcap_event_name"])))
    labels = dict(data.dictionary.choices("sl_type"))
    hit = log["sl_type"].isin(["5", "6", "7"]) & ~_has_sae(data, log)
    frames.append(_fired(log, hit, field="sl_type",
                         what=log["sl_type"].map(lambda c: labels.get(c, c).lower()),
                         when=log["sl_stdat"], event_label="the support log"))
    return pd.concat(frames, ignore_index=True)


@coded("KIT_REUSED")
def kit_reused(data: RuleData) -> pd.DataFrame:
    """A kit number infused more than once (any subject, any visit): every use after the first.

    The first use may be in a record of another batch: those come from `data.across`.
    """
    columns = [*KEY_COLUMNS, "inf_given", "inf_kit"]
    rows = data.rows((), "infusion", columns).assign(_here=True)
    if data.across is not None:  # just these columns: the batch's 900 would be copied per row
        others = _other_uses(data.across, rows, set(data.records["record_id"]))
        rows = pd.concat([rows, others[columns].astype(str).assign(_here=False)],
                         ignore_index=True)
    order = {e: n for n, e in enumerate(data.dictionary.event_names)}
    used = rows[(rows["inf_given"] == "1") & (rows["inf_kit"].str.strip() != "")]
    used = used.assign(_kit=used["inf_kit"].str.strip().str.upper(),
                       _order=used["redcap_event_name"].map(order))
    used = used.sort_values(["_kit", "record_id", "_order"], kind="stable")
    first = used.groupby("_kit")[["record_id", "redcap_event_name"]].transform("first")
    again = used["_kit"].duplicated() & used["_here"].astype(bool)
    labels = data.event_labels(first["redcap_event_name"])
    return _fired(used, again, inf_kit=used["inf_kit"],
                  event_label=data.event_labels(used["redcap_event_name"]),
                  other=first["record_id"] + " at " + labels)


def _other_uses(across: pd.DataFrame, rows: pd.DataFrame, here: set[str]) -> pd.DataFrame:
    """The rows of other records' infusions with a kit the batch `rows` infused.

    Only those can make a use in the batch a reuse. They are found on the across rows' category
    codes, each of the project's distinct kits normalised once per batch: copying every other
    record's rows to strings, then concatenating and sorting them, was the batch work that grew
    with the trial (30,000 subjects: about 37,000 infusion rows in every batch)."""
    given = rows["inf_given"] == "1"
    kits = set(rows.loc[given, "inf_kit"].str.strip().str.upper()) - {""}
    kit = across["inf_kit"].astype("category")
    wanted = np.flatnonzero(kit.cat.categories.astype(str).str.strip().str.upper().isin(kits))
    near = across[kit.cat.codes.isin(wanted).to_numpy()]
    return near[~near["record_id"].astype(str).isin(here).to_numpy()]


@coded("KIT_MISMATCH")
def kit_mismatch(data: RuleData) -> pd.DataFrame:
    """The kit infused differs from the kit the pharmacy dispensed at the same visit."""
    rows = data.rows((), "infusion")
    dispensed = _same_visit(data, rows, "pharmacy", "ph_kit")
    infused = rows["inf_kit"].str.strip()
    hit = (infused != "") & (dispensed.str.strip() != "") & \
        (infused.str.upper() != dispensed.str.strip().str.upper())
    return _fired(rows, hit, inf_kit=rows["inf_kit"], ph_kit=dispensed,
                  event_label=data.event_labels(rows["redcap_event_name"]))


@coded("SCREEN_WINDOW")
def screen_window(data: RuleData) -> pd.DataFrame:
    """Consent more days before randomisation than the screening window allows
    (`redcap/events.csv`: Screening's offset_min + offset_max days)."""
    rows = data.rows([SCREENING_EVENT], "informed_consent")
    rand = data.record_dates(rows, "rand_dat", (), "randomisation")
    _, before, after = data.window(SCREENING_EVENT)
    limit = int(before + after)
    days = (rand - data.dates(rows, "icdat")).dt.days
    return _fired(rows, days > limit, icdat=rows["icdat"],
                  rand_dat=rand.dt.strftime("%Y-%m-%d").fillna(""),
                  days=days.astype("Int64").astype(str), limit=str(limit))


def _prednisolone_mg(rows: pd.DataFrame) -> pd.Series:
    """mg/day prednisolone-equivalent of each conmed row (None when not computable)."""
    def one(dose: str, unit: str, freq: str, steroid: str) -> Fraction | None:
        number = parse_number(dose)
        if (number is None or unit not in STEROID_UNIT_MG or freq not in TIMES_A_DAY
                or steroid not in STEROID_POTENCY):
            return None
        return number * STEROID_UNIT_MG[unit] * TIMES_A_DAY[freq] * STEROID_POTENCY[steroid]
    return pd.Series([one(*v) for v in zip(rows["cm_dosnum"], rows["cm_dosu"], rows["cm_dosfrq"],
                                          rows["cm_steroid"])], index=rows.index, dtype=object)


@coded("STEROID_DOSE")
def steroid_dose(data: RuleData) -> pd.DataFrame:
    """A corticosteroid whose daily prednisolone-equivalent dose is above the protocol limit."""
    rows = data.rows((), "conmed")
    rows = rows[rows["cm_class"] == "3"]
    mg = _prednisolone_mg(rows)
    limit = Fraction(str(data.steroid_limit_mg))
    hit = mg.map(lambda v: v is not None and v > limit)
    return _fired(rows, hit, cm_trt=rows["cm_trt"],
                  mg=mg.map(lambda v: "" if v is None else f"{float(v):.0f}"),
                  limit=f"{float(limit):g}")


@coded("AE_ONGOING_AT_END")
def ae_ongoing_at_end(data: RuleData) -> pd.DataFrame:
    """An AE still ongoing when the subject's study ended, with no outcome or outcome Unknown.

    Ongoing at the end: marked ongoing, or neither marked nor ended, or ending after the end of
    the study. An AE marked not ongoing without its end date is a missing end date, not this."""
    rows = data.rows((), "adverse_event")
    disposition = data.rows((), "disposition")
    status = data.per_record(rows, "ds_decod", disposition)
    ended_on = data.per_record(rows, "ds_stdat", disposition)
    ongo, end = rows["ae_ongo"], rows["ae_endat"]
    after_end = (_dates(end) > _dates(ended_on)).to_numpy()  # NaT (blank, UNK) is never after
    ongoing = (ongo == "1") | ((ongo == "") & (end == "")) | after_end
    hit = ongoing & ((status != "") | (ended_on != "")) & rows["ae_out"].isin(["", "6"])
    return _fired(rows, hit, ae_term=rows["ae_term"],
                  outcome=data.choice_labels("ae_out", rows["ae_out"]), ds_stdat=ended_on)
