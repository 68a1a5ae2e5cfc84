"""SDTM events and interventions beyond the logs: MH, SU, PR, HO, DV, the pre-specified CM
records of forms other than the medication log, and EX (the actual treatment, unblinded only).

Each builder is a pure function of an `SdtmSource` (a batch of whole subjects), read from the
dictionary's `SDTM:` annotations. Per form and domain the annotated fields make records:

- the fields without a WHERE make one record per row (a log entry, a visit's procedure); a
  `WHERE TOPIC=term` group joins it when its term names the class of the topic field's choices
  (`PRTRT WHERE PRTRT=CHEST IMAGING` beside a Chest CT / Chest X-ray field);
- each other WHERE group (`CMOCCUR WHERE CMCAT=VASOPRESSOR AND CMTPT=PRE-DOSE`) makes one record
  per row, its conditions its variables, its topic the WHERE's topic, else a term of `TERMS`,
  else its category;
- a form whose only unconditioned fields answer "did it occur?" (`MH.MHOCCUR` on the exclusion
  history) makes one pre-specified record per field, named by the field's label.

A pre-specified question gives --PRESP = Y and --OCCUR = Y/N (CDISC NY); an unknown answer
gives --STAT = NOT DONE (SDTMIG 3.4 §4.5.7). Forms at a visit carry VISITNUM/VISIT and their
date as --DTC; logs carry --SPID (the repeat instance).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sync.export.annotations import Target, ascii_text, sdtm_array, sdtm_values
from sync.export.blinding import UNBLINDED_TAG
from sync.export.meta import CutField
from sync.export.sdtm import STUDYID, SdtmSource, add_place, event_domain, finish
from sync.export.tables import CutTable, filled_text

TOPICS: dict[str, str] = {"MH": "MHTERM", "SU": "SUTRT", "PR": "PRTRT", "HO": "HOTERM",
                          "DV": "DVTERM", "CM": "CMTRT"}
TERMS: dict[tuple[str, str], str] = {
    ("MH", "PRIMARY DIAGNOSIS"): "VIRAL PNEUMONIA",
    ("MH", "CARDIO-CEREBROVASCULAR EVENT"): "MYOCARDIAL INFARCTION OR STROKE",
    ("CM", "VACCINE"): "VACCINE AGAINST THE INFECTING VIRUS",
    ("HO", ""): "HOSPITAL",
}
"""Topic of a pre-specified record whose annotation names only a category (or nothing)."""
EVENT_DATE_TYPES: dict[tuple[str, str], str] = {("MH", "PRIMARY DIAGNOSIS"): "SYMPTOMS"}
"""MHEVDTYP (CDISC C124301): what the start date of the record dates (symptom onset)."""
SHARED_TOPICS: dict[str, dict[str, str]] = {"HO": {"ICU STAY": "INTENSIVE CARE UNIT"}}
"""Choices of a topic field annotated for two domains (`PR.PRTRT; HO.HOTERM for ICU stays`) that
this domain takes, with the term it gives them; the other domain leaves them out."""
END_REFERENCE: dict[str, str] = {"MH": "SCREENING", "SU": "SCREENING", "PR": "END OF STUDY",
                                 "HO": "END OF STUDY"}
"""--ENTPT: the time point "ongoing" refers to (the CRF asks "ongoing at screening?" for MH)."""
OCCURRENCE: dict[str, str] = {"YES": "Y", "NO": "N", "NEVER": "N", "FORMER": "Y", "CURRENT": "Y",
                              "PRESENT": "Y", "ABSENT": "N", "NO VACCINE EXISTS": "N"}
"""A coded answer to "did it occur?" as CDISC NY; other answers (Unknown) are NOT DONE."""
STILL_GOING: dict[str, str] = {"FORMER": "BEFORE", "CURRENT": "ONGOING"}
"""--ENRTPT of a substance-use answer (SDTMIG 3.4 SU: former vs current use)."""
UNITS: dict[str, str] = {"cmH2O": "cm H2O", "PACK-YEARS": "Pack Year"}
"""CDISC UNIT terms (C71620) for units the CRF spells otherwise."""
ACTIVE_TREATMENT, PLACEBO = "MESENCHYMAL STEM CELLS", "PLACEBO"
"""EXTRT of a dose with cells and of one without (the registry names no cell source)."""
EX_NOTE = ("EX (exposure with the actual treatment) is written only in an unblinded cut "
           "(--unblinded); a blinded cut holds the masked exposure in EC")
ROUTE, DOSE_FORM = "INTRAVENOUS", "SUSPENSION"
"""The study product is a cell suspension infused intravenously (README: the CRF)."""


class _Origins(dict):
    """Variable -> every origin its records came from; a variable several fields fill names
    them all (so no one field's choices are taken for its codelist)."""

    def __setitem__(self, key: str, value: str) -> None:
        known = self.get(key, [])
        if value not in known:
            super().__setitem__(key, known + [value])

    def setdefault(self, key: str, value: str) -> None:  # type: ignore[override]
        self[key] = value

    def flat(self) -> dict[str, str]:
        return {key: _combined(origins) for key, origins in self.items()}


def _combined(origins: list[str]) -> str:
    if len(origins) == 1:
        return origins[0]
    fields = [o.removeprefix("CRF: ") for o in origins if o.startswith("CRF: ")]
    if not fields:
        return "; ".join(origins)
    return "CRF: " + " / ".join(fields) + (" and pre-printed terms" if len(fields) < len(origins)
                                          else "")


@dataclass
class _Group:
    """Annotated fields of one form that fill one record per row."""

    form: str
    where: dict[str, str]
    pairs: list[tuple[CutField, Target]] = field(default_factory=list)
    merged_topic: str = ""
    """The WHERE topic of a group joined into this one: the topic when the field is blank."""


def _variables(group: _Group) -> set[str]:
    return {t.variable for _, t in group.pairs}


def _names_class(term: str, topic_field: CutField) -> bool:
    """True when every choice of the topic field shares a word with `term` (CHEST IMAGING vs
    Chest CT, Chest X-ray): the WHERE group describes the same record."""
    words = set(term.upper().split())
    labels = [set(ascii_text(label).upper().replace("-", " ").split())
              for _, label in topic_field.choices]
    return bool(labels) and all(words & label for label in labels)


def _groups(source: SdtmSource, code: str, form: str) -> list[_Group]:
    """The records one form makes for a domain (the rules of the module docstring)."""
    topic = TOPICS.get(code, "")
    pairs = [(f, t) for f, t in source.annotated
             if t.domain == code and f.form == form and not t.value]
    plain = [(f, t) for f, t in pairs if not t.where]
    conditioned: dict[tuple[tuple[str, str], ...], _Group] = {}
    for cut_field, target in pairs:
        if target.where:
            key = tuple(sorted(target.where.items()))
            conditioned.setdefault(key, _Group(form, dict(target.where))).pairs.append(
                (cut_field, target))
    groups = list(conditioned.values())
    plain += _borrowed(source, code, form, plain)
    if plain and all(t.variable == f"{code}OCCUR" for _, t in plain):
        return [_Group(form, {}, [pair]) for pair in plain] + groups
    if not plain:
        return groups
    main = _Group(form, {}, plain)
    topic_field = next((f for f, t in plain if t.variable == topic), None)
    for group in list(groups):
        if (topic_field is not None and set(group.where) == {topic}
                and not _variables(group) & _variables(main)
                and _names_class(group.where[topic], topic_field)):
            main.pairs += group.pairs
            main.merged_topic = group.where[topic]
            groups.remove(group)
    return [main] + groups


def _shares_topic(source: SdtmSource, cut_field: CutField) -> bool:
    """True when the field is the topic of two domains (`PR.PRTRT; HO.HOTERM for ICU stays`):
    each domain takes its own choices (`SHARED_TOPICS`)."""
    return len({t.domain for f, t in source.annotated
                if f is cut_field and t.variable == TOPICS.get(t.domain)}) > 1


def _borrowed(source: SdtmSource, code: str, form: str,
              plain: list[tuple[CutField, Target]]) -> list[tuple[CutField, Target]]:
    """The dates of a record whose topic field another domain shares (an ICU stay on the
    support log is an HO record dated by the log's PR.PRSTDTC, PRENDTC, PRENRTPT)."""
    topic = TOPICS.get(code, "")
    shared = [f for f, t in plain if t.variable == topic and code in SHARED_TOPICS]
    if not shared:
        return []
    others = {t.domain for f, t in source.annotated if f is shared[0] and t.domain != code}
    return [(f, Target(domain=code, variable=code + t.variable[2:], note=t.note))
            for f, t in source.annotated
            if f.form == form and t.domain in others and not t.where and not t.value
            and t.variable[2:] in ("STDTC", "ENDTC", "ENRTPT")]


def _each(raw: np.ndarray, convert: Callable[[object], str]) -> np.ndarray:
    """`convert` of every raw value, worked out once per distinct value."""
    values = raw.tolist()
    found = {value: convert(value) for value in dict.fromkeys(values)}
    return np.array([found[value] for value in values], dtype=object)


def _when(mask: np.ndarray, value: str) -> np.ndarray:
    """`value` where `mask` holds, else blank (text, one object per value)."""
    picked = filled_text(len(mask), "")
    picked[mask] = value
    return picked


def _occurrence(values: np.ndarray, cut_field: CutField) -> np.ndarray:
    """--OCCUR (CDISC NY) of a "did it occur?" field; blank for an unknown answer."""
    if cut_field.field_type in ("yesno", "truefalse"):
        return _each(values, lambda v: {"1": "Y", "0": "N"}.get(v, ""))
    labels = {code: ascii_text(label).upper() for code, label in cut_field.choices}
    return _each(values, lambda v: OCCURRENCE.get(labels.get(v, ""), ""))


def _unit(cut_field: CutField, target: Target, code: str) -> str:
    unit = target.constants.get(f"{code}DOSU") or cut_field.unit
    return UNITS.get(unit, unit)


def _form_date(source: SdtmSource, form: str, group: _Group) -> str:
    """The form's own date (annotated as any domain's --DTC or --STDTC without a WHERE)."""
    own = {f.name for f, _ in group.pairs}
    return next((f.name for f, t in source.annotated
                 if f.form == form and f.kind == "date" and f.name not in own and not t.where
                 and t.variable.endswith("DTC") and t.domain not in ("DM", "DS")), "")


def _label_term(cut_field: CutField) -> str:
    label = re.sub(r"\s+at screening\s*\??$", "", cut_field.label, flags=re.IGNORECASE)
    return ascii_text(label.rstrip("?").strip()).upper()[:200]


def _field_values(source: SdtmSource, code: str, cut_field: CutField, target: Target,
                  raw: np.ndarray, part: dict[str, np.ndarray],
                  sources: _Origins) -> tuple[np.ndarray, np.ndarray]:
    """(values, rows kept) of one field as its SDTM variable holds them; the timing a
    substance-use answer carries (former: BEFORE, current: ONGOING) goes into `part`."""
    variable, topic = target.variable, TOPICS.get(code, "")
    keep = np.ones(len(raw), dtype=bool)
    labels = {c: ascii_text(label).upper() for c, label in cut_field.choices}
    if variable == f"{code}OCCUR":
        values = _occurrence(raw, cut_field)
        sources[variable] = (f"CRF: {cut_field.name}" if cut_field.field_type == "yesno" else
                             f"Derived: CDISC NY of {cut_field.name} (an unknown answer is "
                             f"{code}STAT = NOT DONE)")
        if code == "SU":
            timing = _each(raw, lambda v: STILL_GOING.get(labels.get(v, ""), ""))
            part[f"{code}ENRTPT"] = timing
            part[f"{code}STRTPT"] = _when(timing != "", "BEFORE")
            part[f"{code}STTPT"] = _when(timing != "", END_REFERENCE[code])
            sources[f"{code}ENRTPT"] = "Derived: BEFORE for former, ONGOING for current use"
            sources[f"{code}STRTPT"] = "Derived: BEFORE for former or current use"
            sources[f"{code}STTPT"] = f"Assigned: {END_REFERENCE[code]}"
    elif target.note == "ONGOING":
        ongoing = {"1": "ONGOING", "0": "BEFORE" if code == "MH" else ""}
        values = _each(raw, lambda v: ongoing.get(v, ""))
        sources[variable] = f"Derived: ONGOING when {cut_field.name} = 1"
    elif variable == topic and cut_field.kind == "code":
        shared = _shares_topic(source, cut_field)
        if code in SHARED_TOPICS and shared:
            values = _each(raw, lambda v: SHARED_TOPICS[code].get(labels.get(v, ""), ""))
            keep = values != ""
        else:
            values = sdtm_array(raw, cut_field, variable)
            claimed = ({term for terms in SHARED_TOPICS.values() for term in terms}
                       if shared else set())
            keep = ~_each(raw, lambda v: labels.get(v, "") in claimed
                          or labels.get(v, "").startswith("NONE")).astype(bool)
        sources[variable] = f"CRF: {cut_field.name}"
    else:
        values = sdtm_array(raw, cut_field, variable)
        sources.setdefault(variable, f"CRF: {cut_field.name}")
    return values, keep


def _group_rows(source: SdtmSource, code: str, group: _Group,
                sources: _Origins) -> dict[str, np.ndarray]:
    """One record per row of the form where any field of the group holds a value, as
    columns (plain arrays: a pandas frame per group costs more than the work)."""
    rows = source.rows(group.form)
    size = len(rows)
    topic, category = TOPICS.get(code, ""), f"{code}CAT"
    part: dict[str, np.ndarray] = {}
    answered = np.zeros(size, dtype=bool)
    unknown = np.zeros(size, dtype=bool)
    keep = np.ones(size, dtype=bool)
    filled = np.zeros(size, dtype=bool)
    for cut_field, target in group.pairs:
        raw = source.column(rows, cut_field.name).to_numpy(dtype=object)
        filled |= raw != ""
        variable = target.variable
        values, kept = _field_values(source, code, cut_field, target, raw, part, sources)
        keep &= kept
        if variable == f"{code}OCCUR":
            answered |= raw != ""
            unknown |= (raw != "") & (values == "")
        if variable in part:
            earlier = part[variable]
            part[variable] = np.where(earlier != "", earlier, values).astype(object)
        else:
            part[variable] = values
        if variable.endswith("DOSE"):
            unit = _unit(cut_field, target, code)
            if unit:
                part[f"{code}DOSU"] = _when(values != "", unit)
                sources[f"{code}DOSU"] = "Assigned: unit of the dose field"
        else:
            for name, constant in target.constants.items():
                part[name] = _when(values != "", constant)
                sources[name] = "Assigned"
    for name, value in group.where.items():
        part[name] = filled_text(size, value)
        sources.setdefault(name, "Assigned: CRF annotation")
    alone = not group.where and len(group.pairs) == 1 and f"{code}OCCUR" in part
    if topic and (group.merged_topic or group.where or alone):
        fallback = (group.merged_topic or group.where.get(topic)
                    or TERMS.get((code, group.where.get(category, "")))
                    or group.where.get(category) or _label_term(group.pairs[0][0]))
        current = part.get(topic, filled_text(size, ""))
        part[topic] = np.where(current != "", current, fallback).astype(object)
        sources.setdefault(topic, "Assigned: pre-specified term on the CRF")
    if f"{code}OCCUR" in part:
        part[f"{code}PRESP"] = _when(answered, "Y")
        part[f"{code}STAT"] = _when(unknown, "NOT DONE")
        sources[f"{code}PRESP"] = "Assigned: Y (the question is pre-specified on the CRF)"
        sources[f"{code}STAT"] = "Derived: NOT DONE when the answer is unknown"
    event_type = EVENT_DATE_TYPES.get((code, group.where.get(category, "")))
    if event_type:
        part[f"{code}EVDTYP"] = filled_text(size, event_type)
        sources[f"{code}EVDTYP"] = "Assigned: what the start date dates"
    if f"{code}ENRTPT" in part:
        part[f"{code}ENTPT"] = _when(part[f"{code}ENRTPT"] != "", END_REFERENCE.get(code, ""))
        sources[f"{code}ENTPT"] = f"Assigned: {END_REFERENCE.get(code, '')} (the CRF's question)"
    if group.form not in source.repeating:
        date_field = _form_date(source, group.form, group)
        if date_field and f"{code}DTC" not in part:
            part[f"{code}DTC"] = source.column(rows, date_field).to_numpy(dtype=object)
            sources[f"{code}DTC"] = f"CRF: {date_field}"
    at = np.flatnonzero(filled & keep)
    records = rows[source.schema.record_id].to_numpy(dtype=object)[at]
    subjects = {r: f"{STUDYID}-{r}" for r in dict.fromkeys(records.tolist())}
    columns = {"USUBJID": np.array([subjects[r] for r in records.tolist()], dtype=object)}
    columns |= {name: values[at] for name, values in part.items()}
    if group.form in source.repeating:
        columns["SPID"] = _each(rows["redcap_repeat_instance"].to_numpy(dtype=object)[at],
                                lambda v: "" if pd.isna(v) or v == "" else str(v))
    else:
        events = rows["redcap_event_name"].to_numpy(dtype=object)[at].tolist()
        visits = {e: source.visits.get(e) for e in dict.fromkeys(events)}
        columns["VISITNUM"] = np.array([float(visits[e][0]) if visits[e] else np.nan
                                        for e in events], dtype=float)
        columns["VISIT"] = np.array([source.visit_names.get(e, "") for e in events],
                                    dtype=object)
    return columns


def _numeric(table: CutTable) -> CutTable:
    """--DOSE (and VISITNUM) as numbers, as SDTMIG types them."""
    for column in table.frame.columns:
        if column.endswith("DOSE") or column == "VISITNUM":
            table.frame[column] = pd.to_numeric(table.frame[column].replace("", pd.NA),
                                                errors="coerce")
            table.kinds[column] = "number"
    return table


def _frame(source: SdtmSource, code: str, forms: list[str] | None = None
           ) -> tuple[pd.DataFrame, dict[str, str]]:
    sources = _Origins()
    chosen = forms if forms is not None else list(dict.fromkeys(
        f.form for f, t in source.annotated if t.domain == code))
    parts = [_group_rows(source, code, group, sources)
             for form in chosen for group in _groups(source, code, form)]
    parts = [p for p in parts if len(p["USUBJID"])]
    if not parts:
        return _ordered(pd.DataFrame(columns=["USUBJID"]), code), sources.flat()
    names = list(dict.fromkeys(name for p in parts for name in p))
    columns = {(f"{code}SPID" if name == "SPID" else name): np.concatenate([
        p[name] if name in p else np.full(len(p["USUBJID"]), np.nan) if name == "VISITNUM"
        else filled_text(len(p["USUBJID"]), "") for p in parts]) for name in names}
    for name, values in columns.items():
        if name != "VISITNUM":
            values[pd.isna(values)] = ""
    if f"{code}SPID" in columns:
        sources[f"{code}SPID"] = "Derived: REDCap repeat instance"
    return (pd.DataFrame({name: columns[name] for name in _order(list(columns), code)}),
            sources.flat())


def _order(names: list[str], code: str) -> list[str]:
    """Columns in SDTMIG order: identifiers, topic and qualifiers, then timing."""
    timing = ["VISITNUM", "VISIT", f"{code}DTC", f"{code}STDTC", f"{code}ENDTC",
              f"{code}STRTPT", f"{code}STTPT", f"{code}ENRTPT", f"{code}ENTPT", f"{code}TPT"]
    fixed = ["USUBJID", f"{code}SPID", TOPICS.get(code, ""), f"{code}DECOD", f"{code}EVDTYP",
             f"{code}CAT", f"{code}SCAT", f"{code}PRESP", f"{code}OCCUR", f"{code}STAT"]
    first = [c for c in fixed if c in names]
    last = [c for c in timing if c in names]
    return first + [c for c in names if c not in first and c not in last] + last


def _ordered(frame: pd.DataFrame, code: str) -> pd.DataFrame:
    """Columns in SDTMIG order, blanks for missing text."""
    frame = frame[_order(list(frame.columns), code)]
    strings = [c for c in frame.columns if c != "VISITNUM"]
    return frame.fillna({c: "" for c in strings})


def _build(source: SdtmSource, code: str) -> CutTable:
    frame, sources = _frame(source, code)
    if f"{code}STAT" in frame and (frame[f"{code}STAT"] == "").all():
        frame = frame.drop(columns=[f"{code}STAT"])
    return _numeric(finish(code, frame, sources))


def medical_history(source: SdtmSource) -> CutTable:
    """MH: the medical history log, the pre-specified exclusion conditions, the primary
    diagnosis (onset of symptoms) and the latest cardio-cerebrovascular event."""
    return _build(source, "MH")


def substance_use(source: SdtmSource) -> CutTable:
    """SU: tobacco (never, former, current) and pack-years."""
    return _build(source, "SU")


def procedures(source: SdtmSource) -> CutTable:
    """PR: chest imaging, ventilation, oxygen, ECMO and renal replacement, the support log."""
    return _build(source, "PR")


def healthcare_encounters(source: SdtmSource) -> CutTable:
    """HO: the hospital stay, ICU stays, hospitalisations of adverse events, in hospital at a
    visit."""
    return _build(source, "HO")


def deviations(source: SdtmSource) -> CutTable:
    """DV: the protocol deviation log."""
    return _build(source, "DV")


def concomitant_medications(source: SdtmSource) -> CutTable:
    """CM: the medication log and the pre-specified medications other forms ask about
    (vaccination, vasopressors at screening, before each dose and at each visit)."""
    logged = event_domain(source, "CM")
    log_forms = {f.form for f, t in source.annotated if t.domain == "CM" and not t.where}
    other = [form for form in dict.fromkeys(f.form for f, t in source.annotated
                                            if t.domain == "CM") if form not in log_forms]
    asked, sources = _frame(source, "CM", other)
    if asked.empty:
        return _numeric(logged)
    log = logged.frame.drop(columns=["STUDYID", "DOMAIN", "CMSEQ"], errors="ignore")
    combined = pd.concat([log, asked], ignore_index=True)
    combined = _ordered(combined, "CM")
    if "CMSTAT" in combined and (combined["CMSTAT"] == "").all():
        combined = combined.drop(columns=["CMSTAT"])
    merged = {key: _combined(list(dict.fromkeys([logged.sources[key], origin])))
              if key in logged.sources else origin for key, origin in sources.items()}
    return _numeric(finish("CM", combined, logged.sources | merged))


def _dose_field(source: SdtmSource) -> tuple[CutField, Target] | None:
    """The allocation-revealing dose actually given (`EC.ECDOSE`, not the planned one)."""
    return next(((f, t) for f, t in source.annotated
                 if UNBLINDED_TAG in f.annotation.upper() and t.domain == "EC"
                 and t.variable == "ECDOSE" and "planned" not in t.note), None)


def exposure(source: SdtmSource, collected: CutTable) -> CutTable | None:
    """EX: the doses given (EC with ECOCCUR = Y) with the actual treatment, or None in a blinded
    cut (SDTMIG 3.4 §6.1.2: EC holds the masked exposure until the blind is broken).

    The treatment is the field annotated `EX.EXTRT` where there is one, else read from the
    unblinded dose prepared: cells given are the active product, none is placebo.
    """
    dose = _dose_field(source)
    if dose is None or "ECOCCUR" not in collected.frame:
        return None
    dose_field, dose_target = dose
    ec = collected.frame
    if "VISITNUM" not in ec or "ECSTDTC" not in ec:
        return None
    given = ec[ec["ECOCCUR"] == "Y"]
    rows = source.rows(dose_field.form)
    pharmacy = add_place(source, rows, dose_field.form, pd.DataFrame({
        "USUBJID": source.usubjid(rows[source.schema.record_id]),
        "DOSE": pd.to_numeric(source.column(rows, dose_field.name).replace("", pd.NA),
                              errors="coerce")}, index=rows.index))
    named = next((f for f, t in source.annotated if t.domain == "EX" and t.variable == "EXTRT"),
                 None)
    pharmacy["TRT"] = (sdtm_values(source.column(rows, named.name), named, "EXTRT")
                       if named is not None else
                       pharmacy["DOSE"].map(lambda d: "" if pd.isna(d)
                                            else ACTIVE_TREATMENT if d > 0 else PLACEBO))
    merged = given.merge(pharmacy[["USUBJID", "VISITNUM", "DOSE", "TRT"]],
                         on=["USUBJID", "VISITNUM"], how="inner")
    merged = merged[merged["TRT"] != ""]
    ends = merged.get("ECENDTC", pd.Series("", index=merged.index))
    unit = dose_target.constants.get("ECDOSU", "")
    frame = pd.DataFrame({
        "USUBJID": merged["USUBJID"], "EXTRT": merged["TRT"], "EXDOSE": merged["DOSE"],
        "EXDOSU": unit, "EXDOSFRM": DOSE_FORM, "EXROUTE": ROUTE,
        "VISITNUM": merged["VISITNUM"], "VISIT": merged["VISIT"],
        "EXSTDTC": merged["ECSTDTC"], "EXENDTC": ends.where(ends != "", merged["ECSTDTC"])})
    sources = {
        "EXTRT": (f"CRF: {named.name}" if named is not None else
                  f"Derived: {ACTIVE_TREATMENT} when {dose_field.name} > 0, else {PLACEBO}"),
        "EXDOSE": f"CRF: {dose_field.name}", "EXDOSU": "Assigned: unit of the dose field",
        "EXDOSFRM": "Assigned: cell suspension", "EXROUTE": "Assigned: intravenous infusion",
        "EXSTDTC": "Derived: ECSTDTC of the dose given",
        "EXENDTC": "Derived: ECENDTC of the dose given (else ECSTDTC)"}
    return _numeric(finish("EX", frame, sources))


EVENT_BUILDERS = {"CM": concomitant_medications, "MH": medical_history, "SU": substance_use,
                  "PR": procedures, "HO": healthcare_encounters, "DV": deviations}
"""Builders of this module that need only the source (EX needs EC too)."""
