"""SDTM-like domains for the sponsor's programmers: DM, IE, EC, AE, CM, DS (findings in `findings`).

Each domain is built from the raw export and the dictionary's `SDTM:` annotations; columns are
character except `--SEQ`, `AGE`, `VISITNUM` and `--STRESN`. The result is a `CutTable` whose
`sources` say where each variable comes from (the define file's origin).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from sync.export.annotations import Target, ascii_text, sdtm_values, targets
from sync.export.meta import CutField, CutSchema
from sync.export.tables import (CutTable, form_columns, natural_key, natural_ranks, rows_of_form,
                                text_codes)

STUDYID = "NCT06416709"
COUNTRY = "CHN"
"""ISO 3166-1 alpha-3 of the trial's sites (the registry lists Chinese sites only)."""
ROW_NOTES: frozenset[str] = frozenset({"", "date part", "time part", "ONGOING"})
"""Annotation notes a row domain reads; others (`planned`, `reason`, ...) mark a second source."""
_CODE_MAP_NOTE = re.compile(r"^\w+=\w+(, \w+=\w+)*$")
DOMAIN_LABELS: dict[str, str] = {
    "DM": "Demographics", "IE": "Inclusion/Exclusion Criteria Not Met",
    "EC": "Exposure as Collected", "AE": "Adverse Events", "CM": "Concomitant Medications",
    "VS": "Vital Signs", "LB": "Laboratory Test Results", "DS": "Disposition",
    "SV": "Subject Visits", "TS": "Trial Summary", "TA": "Trial Arms", "TE": "Trial Elements",
    "TV": "Trial Visits", "TI": "Trial Inclusion/Exclusion Criteria",
    "EX": "Exposure", "MH": "Medical History", "SU": "Substance Use", "PR": "Procedures",
    "HO": "Healthcare Encounters", "DV": "Protocol Deviations",
    "MB": "Microbiology Specimen", "QS": "Questionnaires",
    "FA": "Findings About Events or Interventions",
    "TU": "Tumor/Lesion Identification", "TR": "Tumor/Lesion Results", "EG": "ECG Test Results",
    "PE": "Physical Examination", "RP": "Reproductive System Findings", "DD": "Death Details",
}


def dataset_label(name: str) -> str:
    """A dataset's SDTM label; `SUPP--` datasets are named after their parent."""
    if name.startswith("SUPP") and len(name) == 6:
        return f"Supplemental Qualifiers for {name[4:]}"
    return {"SE": "Subject Elements", "RELREC": "Related Records"}.get(
        name, DOMAIN_LABELS.get(name, name))


TOPICS: dict[str, str] = {"EC": "ECTRT", "AE": "AETERM", "CM": "CMTRT"}
"""The topic variable of each events/interventions domain: a record without it is no record."""
NUMERIC_VARIABLES: frozenset[str] = frozenset({"AGE", "VISITNUM"})


@dataclass
class SdtmSource:
    """The raw export and dictionary every domain builder reads."""

    raw: pd.DataFrame
    schema: CutSchema
    repeating: set[str]
    _rows: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)
    memo: dict[tuple[str, str], pd.Series] = field(default_factory=dict, repr=False)
    """What builders work out once per batch and form (`findings._row_dates`)."""

    @cached_property
    def annotated(self) -> list[tuple[CutField, Target]]:
        """Every (field, target) pair of the dictionary, in dictionary order."""
        return [(f, t) for f in self.schema.fields for t in targets(f)]

    @cached_property
    def subjects(self) -> pd.DataFrame:
        """One row per record: the first non-blank value of each field on non-repeating rows."""
        record_id = self.schema.record_id
        records, order = text_codes(self.raw[record_id])
        on_base = self.raw["redcap_repeat_instrument"].to_numpy() == ""
        record = records[on_base]
        columns = {record_id: np.array(order, dtype=object)}
        for name in self.raw.columns:
            if name == record_id:
                continue
            values = self.raw[name].to_numpy(dtype=object)[on_base]
            filled = np.flatnonzero(pd.notna(values) & (values != ""))
            found, first = np.unique(record[filled], return_index=True)
            column = np.empty(len(order), dtype=object)
            column.fill("")
            column[found] = [str(v) for v in values[filled[first]]]
            columns[name] = column
        return pd.DataFrame(columns)

    @cached_property
    def visits(self) -> dict[str, tuple[int, str]]:
        """Unique event name -> (VISITNUM, VISIT label)."""
        events = list(self.schema.event_labels) or list(dict.fromkeys(self.raw["redcap_event_name"]))
        return {e: (i + 1, self.schema.event_labels.get(e, e)) for i, e in enumerate(events)}

    @cached_property
    def visit_names(self) -> dict[str, str]:
        """Unique event name -> VISIT (the label in upper-case ASCII)."""
        return {e: ascii_text(label).upper() for e, (_, label) in self.visits.items()}

    def rows(self, form: str) -> pd.DataFrame:
        """The raw rows where `form` holds data, computed once per form. They carry only the
        form's own columns (`form_columns`): every form's rows with every column of the export
        were most of a batch's memory. `column` reads other forms' fields on those rows."""
        if form not in self._rows:
            self._rows[form] = rows_of_form(self.raw, self.schema, form, self.repeating,
                                            form_columns(self.raw, self.schema, form))
        return self._rows[form]

    def every_column(self, rows: pd.DataFrame) -> pd.DataFrame:
        """A form's `rows` with every column of the export (what a calc may read)."""
        return self.raw.iloc[self._positions(rows, "every column")]

    def usubjid(self, records: pd.Series) -> pd.Series:
        """STUDYID-record, the unique subject ID across studies."""
        return STUDYID + "-" + records.astype(str)

    def column(self, frame: pd.DataFrame, name: str) -> pd.Series:
        """A raw column of `frame`'s rows, or blanks when the export does not carry it; on a
        form's `rows`, another form's field (the visit date) is read from the export."""
        if name in frame:
            return frame[name]
        if name not in self.raw:
            return pd.Series("", index=frame.index)
        values = self.raw[name].to_numpy()[self._positions(frame, name)]
        return pd.Series(values, index=frame.index, name=name)

    def _positions(self, rows: pd.DataFrame, reading: str) -> np.ndarray:
        if not any(rows is held for held in self._rows.values()):
            raise AssertionError(f"{reading}: only a form's rows from SdtmSource.rows are read "
                                 "back from the raw export")
        return self.raw.index.get_indexer(rows.index)


def finish(code: str, frame: pd.DataFrame, sources: dict[str, str], seq: bool = True) -> CutTable:
    """Order rows by subject and visit, number `--SEQ`, and wrap as a domain table."""
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)
    visits = frame.get("VISITNUM", pd.Series(0, index=frame.index)).fillna(0)
    if pd.api.types.infer_dtype(visits, skipna=False) in ("floating", "integer",
                                                          "mixed-integer-float"):
        order = np.lexsort((visits.to_numpy(dtype=float), natural_ranks(frame["USUBJID"])))
    else:  # visits held as objects: compare them as Python does
        keys = list(zip(frame["USUBJID"].map(natural_key), visits, range(len(frame))))
        order = sorted(range(len(frame)), key=keys.__getitem__)
    frame = frame.take(order)  # a copy already: `reset_index` would copy it again
    frame.index = pd.RangeIndex(len(frame))
    head = {"STUDYID": STUDYID, "DOMAIN": code}
    for position, (name, value) in enumerate(head.items()):
        frame.insert(position, name, value)
    if seq:
        frame.insert(3, f"{code}SEQ", _sequence(frame["USUBJID"]))
    kinds = {c: "number" if c in NUMERIC_VARIABLES or c.endswith(("SEQ", "STRESN")) else "string"
             for c in frame.columns}
    sources = {"STUDYID": "Assigned", "DOMAIN": "Assigned", "USUBJID": "Derived: STUDYID-record",
               f"{code}SEQ": "Derived: sequence within subject"} | sources
    return CutTable(name=code, frame=frame, kinds=kinds, labels={}, sources=sources)


def _sequence(subjects: pd.Series) -> pd.Series:
    """1, 2, ... over each subject's rows in row order (`groupby(...).cumcount() + 1`)."""
    codes = pd.factorize(subjects.to_numpy(), use_na_sentinel=False)[0]
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=1) if len(codes) else np.zeros(0, np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    sequence = np.empty(len(codes), dtype=float)
    sequence[order] = np.arange(len(codes)) - starts + 1
    return pd.Series(sequence, index=subjects.index)


def _row_targets(source: SdtmSource, domain: str) -> list[tuple[CutField, Target]]:
    return [(f, t) for f, t in source.annotated
            if t.domain == domain and not t.where and not t.value
            and (t.note in ROW_NOTES or _CODE_MAP_NOTE.match(t.note))]


def join_time(dates: pd.Series, times: pd.Series) -> pd.Series:
    """ISO 8601 `date` + `T` + `time` where both are entered, else the date alone."""
    both = (dates != "") & (times != "")
    if not both.any() and dates.index.equals(times.index):  # no time to join
        return dates.copy()
    return dates.where(~both, dates.str[:10] + "T" + times)


def _form_part(source: SdtmSource, form: str, pairs: list[tuple[CutField, Target]],
               sources: dict[str, str]) -> pd.DataFrame:
    rows = source.rows(form)
    part = pd.DataFrame(index=rows.index)
    times: dict[str, pd.Series] = {}
    for cut_field, target in pairs:
        values = sdtm_values(source.column(rows, cut_field.name), cut_field, target.variable)
        if target.note == "ONGOING":
            values = values.map({"Y": "ONGOING"}).fillna("")
            sources[target.variable] = f"Derived: ONGOING when {cut_field.name} = 1"
        if target.note == "time part":
            times[target.variable] = values
        else:
            part[target.variable] = (part[target.variable].where(part[target.variable] != "", values)
                                     if target.variable in part else values)
        sources.setdefault(target.variable, f"CRF: {cut_field.name}")
        for name, constant in target.constants.items():
            earlier = part[name] if name in part else pd.Series("", index=rows.index)
            part[name] = earlier.where(earlier != "", values.map(lambda v: constant if v else ""))
            sources[name] = "Assigned"
    for variable, values in times.items():
        start = variable[:-5] + "STDTC" if variable.endswith("ENDTC") else variable
        dates = part.get(variable, part.get(start, pd.Series("", index=rows.index)))
        part[variable] = join_time(dates.str[:10], values)
    part.insert(0, "USUBJID", source.usubjid(rows[source.schema.record_id]))
    return add_place(source, rows, form, part)


def add_place(source: SdtmSource, rows: pd.DataFrame, form: str,
              part: pd.DataFrame) -> pd.DataFrame:
    """Where a row sits: `SPID` (repeat instance) on logs, `VISITNUM`/`VISIT` on visits."""
    if form in source.repeating:
        part["SPID"] = rows["redcap_repeat_instance"]
    else:
        events = rows["redcap_event_name"]
        codes, names = text_codes(events)
        distinct = pd.api.types.infer_dtype(events, skipna=False) == "string"
        if distinct:
            events = pd.Series(names, dtype=object)  # each event looked up once
        visits = events.map(source.visits)
        numbers = visits.map(lambda v: float(v[0]) if isinstance(v, tuple) else None)
        labels = events.map(source.visit_names).fillna("")
        if distinct:
            numbers, labels = (pd.Series(values.to_numpy()[codes], index=rows.index,
                                         dtype=values.dtype) for values in (numbers, labels))
        part["VISITNUM"] = numbers
        part["VISIT"] = labels
    return part


def event_domain(source: SdtmSource, code: str) -> CutTable:
    """An events or interventions domain (AE, CM, EC) from the fields annotated `CODE.VAR`."""
    pairs = _row_targets(source, code)
    sources: dict[str, str] = {}
    parts = [_form_part(source, form, [p for p in pairs if p[0].form == form], sources)
             for form in dict.fromkeys(f.form for f, _ in pairs)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["USUBJID"])
    frame = frame.rename(columns={"SPID": f"{code}SPID"})
    if f"{code}SPID" in frame:
        sources[f"{code}SPID"] = "Derived: REDCap repeat instance"
    frame = frame.fillna("")
    topic = TOPICS.get(code)
    if topic in frame:  # a form that only qualifies another's record (a kit number) makes none
        frame = frame[frame[topic] != ""]
    return finish(code, frame, sources)


def demographics(source: SdtmSource, exposure: CutTable) -> CutTable:
    """DM: one row per subject, with consent, first dose and death reference dates."""
    subjects = source.subjects
    frame = pd.DataFrame({"USUBJID": source.usubjid(subjects[source.schema.record_id])})
    sources: dict[str, str] = {}
    for cut_field, target in _row_targets(source, "DM"):
        values = sdtm_values(source.column(subjects, cut_field.name), cut_field, target.variable)
        if target.note == "time part":  # DTHDTC: the death date and, where entered, its time
            times = pd.Series(values.to_numpy(), index=frame.index)
            frame[target.variable] = join_time(frame.get(target.variable, times), times)
            sources[target.variable] += f" (and {cut_field.name})"
            continue
        frame[target.variable] = values
        sources[target.variable] = f"CRF: {cut_field.name}"
        for name, constant in target.constants.items():
            frame[name] = values.map(lambda v: constant if v else "")
            sources[name] = "Assigned"
    consent = _milestone_fields(source, "INFORMED CONSENT OBTAINED")
    if consent:
        times = source.column(subjects, _time_field(source, consent[0].form) or "-")
        frame["RFICDTC"] = join_time(source.column(subjects, consent[0].name), times)
        sources["RFICDTC"] = f"CRF: {consent[0].name} (and its time)"
    frame["SITEID"] = subjects[source.schema.record_id].str.extract(r"^(\d+)-")[0].fillna("")
    frame["COUNTRY"] = COUNTRY
    sources |= {"SITEID": "Derived: site prefix of the record ID", "COUNTRY": "Assigned"}
    first, last = _dose_range(exposure)
    frame["RFXSTDTC"] = frame["USUBJID"].map(first).fillna("")
    frame["RFXENDTC"] = frame["USUBJID"].map(last).fillna("")
    frame["RFSTDTC"], frame["RFENDTC"] = frame["RFXSTDTC"], frame["RFXENDTC"]
    sources |= {"RFXSTDTC": "Derived: earliest ECSTDTC with ECOCCUR = Y",
                "RFXENDTC": "Derived: latest ECENDTC (else ECSTDTC) with ECOCCUR = Y",
                "RFSTDTC": "Derived: RFXSTDTC (first dose)",
                "RFENDTC": "Derived: latest of RFXENDTC and the disposition date"}
    _add_arms(source, frame, sources)
    if "DTHDTC" in frame:
        frame["DTHFL"] = frame["DTHDTC"].map(lambda d: "Y" if d else "")
        sources["DTHFL"] = "Derived: Y when DTHDTC is present"
    if "AGE" in frame:
        frame["AGE"] = pd.to_numeric(frame["AGE"].replace("", pd.NA), errors="coerce")
    return finish("DM", frame, sources, seq=False)


BLINDED_ARMCD, BLINDED_ARM = "BLINDED", "BLINDED: MSC OR PLACEBO"
"""The one planned arm of a blinded transfer (TA holds it): the allocation is not in the cut."""


def _add_arms(source: SdtmSource, frame: pd.DataFrame, sources: dict[str, str]) -> None:
    """ARMCD/ARM/ACTARMCD/ACTARM, or ARMNRS where they are null (SDTMIG 3.4 DM assumption 4).

    A randomised subject is in the blinded arm (a field annotated `DM.ARMCD`, which only an
    unblinded cut keeps, gives the real one); treated when RFXSTDTC is known. Never from the
    REDCap arm. Not randomised: SCREEN FAILURE when not eligible, else NOT ASSIGNED.
    """
    subjects = source.subjects
    randomised = pd.Series(False, index=frame.index)
    for cut_field in _milestone_fields(source, "RANDOMIZED"):
        randomised |= (source.column(subjects, cut_field.name) != "").to_numpy()
    arm_code = pd.Series(BLINDED_ARMCD, index=frame.index)
    arm = pd.Series(BLINDED_ARM, index=frame.index)
    allocated = next(((f, t) for f, t in source.annotated
                      if t.domain == "DM" and t.variable == "ARMCD"), None)
    if allocated is not None:
        codes = source.column(subjects, allocated[0].name).to_numpy()
        arm_code = pd.Series(sdtm_values(pd.Series(codes), allocated[0], "ARMCD").to_numpy(),
                             index=frame.index)
        labels = dict(allocated[0].choices)
        arm = pd.Series([ascii_text(labels.get(c, "")).upper() for c in codes], index=frame.index)
    treated = randomised & (frame["RFXSTDTC"] != "")
    eligible = source.column(subjects, "elig_calc").to_numpy() != "0"
    frame["ARMCD"] = arm_code.where(randomised, "")
    frame["ARM"] = arm.where(randomised, "")
    frame["ACTARMCD"] = arm_code.where(treated, "")
    frame["ACTARM"] = arm.where(treated, "")
    frame["ARMNRS"] = ""
    frame.loc[randomised & ~treated, "ARMNRS"] = "ASSIGNED, NOT TREATED"
    frame.loc[~randomised, "ARMNRS"] = pd.Series(eligible, index=frame.index).map(
        {True: "NOT ASSIGNED", False: "SCREEN FAILURE"})
    sources |= {"ARMCD": f"Assigned: {BLINDED_ARMCD} for a randomised subject (blinded transfer)"
                if allocated is None else f"CRF: {allocated[0].name}",
                "ARM": "Assigned: the arm of ARMCD", "ACTARMCD": "Derived: ARMCD when treated",
                "ACTARM": "Derived: ARM when treated",
                "ARMNRS": "Derived: not randomised (eligibility) or randomised, not treated"}


def _dose_range(exposure: CutTable) -> tuple[dict[str, str], dict[str, str]]:
    """Per subject, the start of the first dose given and the end of the last."""
    frame = exposure.frame
    if "ECSTDTC" not in frame or "ECOCCUR" not in frame:
        return {}, {}
    given = frame[(frame["ECOCCUR"] == "Y") & (frame["ECSTDTC"] != "")]
    ends = given.get("ECENDTC", pd.Series("", index=given.index))
    ends = ends.where(ends != "", given["ECSTDTC"])
    return (given.groupby("USUBJID")["ECSTDTC"].min().to_dict(),
            ends.groupby(given["USUBJID"]).max().to_dict())


def _milestone_fields(source: SdtmSource, decod: str) -> list[CutField]:
    return [f for f, t in source.annotated
            if t.domain == "DS" and t.variable == "DSSTDTC" and t.where.get("DSDECOD") == decod]


_CRITERION = re.compile(r"^([IE])(\d+)$")


def _criterion_code(token: str) -> str:
    match = _CRITERION.match(token.strip().upper())
    return f"{match.group(1)}{int(match.group(2)):02d}" if match else ""


def _criteria(source: SdtmSource) -> list[tuple[CutField, str, str]]:
    """(field, IETESTCD, IECAT) of the per-criterion result fields (those with an IECAT)."""
    return [(f, t.where["IETESTCD"], t.constants["IECAT"]) for f, t in source.annotated
            if t.domain == "IE" and "IETESTCD" in t.where and "IECAT" in t.constants]


def criteria(source: SdtmSource) -> list[tuple[str, str, str]]:
    """(IETESTCD, IETEST, IECAT) of every eligibility criterion on the CRF (TI)."""
    return [(code, _criterion_test(cut_field), category)
            for cut_field, code, category in _criteria(source)]


def _criterion_test(cut_field: CutField) -> str:
    return ascii_text(re.sub(r"^[IE]\d+\.\s*", "", cut_field.label))[:200]


def eligibility_not_met(source: SdtmSource) -> CutTable:
    """IE: one row per criterion not met, from inc*/exc* and the sync's `elig_fail` list."""
    subjects = source.subjects
    record_id = source.schema.record_id
    date_field = next((f.name for f, t in source.annotated
                       if t.domain == "IE" and t.variable == "IEDTC"), "")
    rows: list[dict[str, str]] = []
    for _, subject in subjects.iterrows():
        failing = {_criterion_code(t) for t in subject.get("elig_fail", "").split(",") if t}
        for cut_field, code, category in _criteria(source):
            value = subject.get(cut_field.name, "")
            not_met = value == ("0" if category == "INCLUSION" else "1")
            if not (not_met or code in failing):
                continue
            rows.append({
                "USUBJID": f"{STUDYID}-{subject[record_id]}", "IETESTCD": code,
                "IETEST": _criterion_test(cut_field),
                "IECAT": category, "IEORRES": "N" if category == "INCLUSION" else "Y",
                "IESTRESC": "N" if category == "INCLUSION" else "Y",
                "IEDTC": subject.get(date_field, "") if date_field else ""})
    columns = ["USUBJID", "IETESTCD", "IETEST", "IECAT", "IEORRES", "IESTRESC", "IEDTC"]
    sources = {"IETESTCD": "Derived: inc1-inc4, exc1-exc9, elig_fail (sync: eligibility)",
               "IETEST": "Assigned: criterion field label", "IECAT": "Assigned",
               "IEORRES": "Derived: N for an inclusion not met, Y for an exclusion present",
               "IESTRESC": "Derived: IEORRES", "IEDTC": f"CRF: {date_field}"}
    return finish("IE", pd.DataFrame(rows, columns=columns), sources)


def _time_field(source: SdtmSource, form: str) -> str:
    return next((f.name for f, t in source.annotated if f.form == form and t.domain == "DS"
                 and t.variable == "DSSTDTC" and t.note == "time part"), "")


def _milestones(source: SdtmSource) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    subjects = source.subjects
    for cut_field, target in source.annotated:
        decod = target.where.get("DSDECOD", "")
        if target.domain != "DS" or target.variable != "DSSTDTC" or not decod:
            continue
        times = source.column(subjects, _time_field(source, cut_field.form) or "-")
        dates = join_time(source.column(subjects, cut_field.name), times)
        category = ("PROTOCOL MILESTONE" if decod in ("INFORMED CONSENT OBTAINED", "RANDOMIZED")
                    else "DISPOSITION EVENT" if decod == "DEATH" else "OTHER EVENT")
        for record, date in zip(subjects[source.schema.record_id], dates):
            if date:
                rows.append({"USUBJID": f"{STUDYID}-{record}", "DSTERM": decod, "DSDECOD": decod,
                             "DSCAT": category, "DSSCAT": "STUDY PARTICIPATION"
                             if category == "DISPOSITION EVENT" else "", "DSSTDTC": date})
    return rows


def _dispositions(source: SdtmSource) -> list[dict[str, str]]:
    decod_fields = [(f, t) for f, t in source.annotated if t.domain == "DS"
                    and t.variable == "DSDECOD" and not t.value and not t.note]
    rows: list[dict[str, str]] = []
    subjects = source.subjects
    for cut_field, target in decod_fields:
        same_form = {t.variable: f.name for f, t in source.annotated
                     if f.form == cut_field.form and t.domain == "DS" and not t.where}
        decods = sdtm_values(source.column(subjects, cut_field.name), cut_field, "DSDECOD")
        subcategory = target.where.get("DSSCAT", "STUDY PARTICIPATION")
        if cut_field.field_type in ("yesno", "truefalse"):  # "all given?": Y is COMPLETED
            decods = decods.map({"Y": "COMPLETED"}).fillna("")
        terms = source.column(subjects, same_form.get("DSTERM", "-"))
        dates = source.column(subjects, same_form.get("DSSTDTC", "-"))
        for record, decod, term, date in zip(subjects[source.schema.record_id], decods, terms,
                                             dates):
            if decod:
                rows.append({"USUBJID": f"{STUDYID}-{record}", "DSTERM": ascii_text(term).upper()
                             or decod, "DSDECOD": decod, "DSCAT": "DISPOSITION EVENT",
                             "DSSCAT": subcategory, "DSSTDTC": date})
    return rows


def disposition(source: SdtmSource) -> CutTable:
    """DS: consent and randomisation milestones, death, and the end-of-study disposition."""
    columns = ["USUBJID", "DSTERM", "DSDECOD", "DSCAT", "DSSCAT", "DSSTDTC"]
    frame = pd.DataFrame(_milestones(source) + _dispositions(source), columns=columns)
    frame = frame.drop_duplicates(["USUBJID", "DSDECOD", "DSCAT", "DSSCAT", "DSSTDTC"])
    sources = {"DSTERM": "CRF: verbatim term, else DSDECOD", "DSDECOD": "CRF / Assigned",
               "DSCAT": "Assigned", "DSSCAT": "Assigned: STUDY PARTICIPATION or TREATMENT",
               "DSSTDTC": "CRF: date (and time) of the event"}
    return finish("DS", frame, sources)
