"""SDTM findings domains (VS LB MB QS FA TR EG PE RP DD, and TU): one row per result value.

A result field is annotated `XX.XXORRES WHERE XXTESTCD=CODE [AND XXTPT=...] [AND LBCAT=...]`
(or `XXSTRESN` for a derived score); its reference range, date, time, specimen, method and
evaluator come from fields of the same form annotated `XXORNRLO`, `XXORNRHI`, `XXDTC`, `XXSPEC`,
`XXMETHOD`, `XXEVAL` with the same test code or none. Test codes and names are CDISC's
(`findings_terms`), results are standardised to CDISC standard units, and rows that nothing else
separates get `--REPNUM`, so every row has its own natural key.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sync.export.annotations import Target, ascii_text, sdtm_array, short_test_name, targets
from sync.export.findings_terms import MB_DETAILS, TERMS, UNIT_CODES, ct_unit, standardise, term
from sync.export.meta import CutField, CutSchema
from sync.export.sdtm import STUDYID, SdtmSource, finish
from sync.export.tables import CutTable, filled_text, text_codes
from sync.logic import evaluate_value

FINDINGS_DOMAINS: tuple[str, ...] = ("VS", "LB", "MB", "QS", "FA", "TR", "EG", "PE", "RP", "DD")
QUALIFIERS: tuple[str, ...] = ("SPEC", "METHOD", "EVAL", "LOC", "POS", "STRESC")
"""Qualifier variables a field of the result's form may fill (`MB.MBSPEC`, `TR.TREVAL`)."""
KEY_QUALIFIERS: tuple[str, ...] = ("CAT", "SCAT", "OBJ", "TSTDTL", "SPEC", "METHOD", "LOC",
                                   "POS", "EVAL", "TPT")
"""Variables besides USUBJID, --TESTCD, VISITNUM, --DTC and --SPID that tell two results apart."""
NOT_DONE = frozenset({"NOT DONE", "NOT ASSESSED"})
QUALIFIER_TERMS: dict[str, dict[str, str]] = {
    "METHOD": {"NUCLEIC ACID (RT-PCR)": "REVERSE TRANSCRIPTASE PCR",
               "ANTIGEN TEST": "RAPID ANTIGEN TEST", "VIRAL CULTURE": "MICROBIAL CULTURE"},
    "EVAL": {"CENTRAL READER, BLINDED": "INDEPENDENT ASSESSOR",
             "SITE RADIOLOGIST": "HEALTH CARE PROFESSIONAL"},
}
"""CRF labels -> CDISC terms (METHOD C85492, EVAL C78735) where the two differ."""
TEST_UNITS: dict[str, str] = {"LESVOLPC": "%"}
"""Units of results whose field says it only in words (`% of total lung volume`)."""
COLUMNS: tuple[str, ...] = (
    "USUBJID", "TESTCD", "TEST", "TSTDTL", "CAT", "OBJ", "ORRES", "ORRESU", "ORNRLO",
    "ORNRHI", "STRESC", "STRESN", "STRESU", "STNRLO", "STNRHI", "NRIND", "STAT", "SPEC",
    "METHOD", "EVAL", "LNKID", "REPNUM", "TPT", "DTC", "SPID", "VISITNUM", "VISIT")


@dataclass(frozen=True)
class Result:
    """One result field with the fields that qualify it."""

    field: CutField
    target: Target
    low: str
    high: str
    date: str
    time: str
    qualifiers: dict[str, str] = field(default_factory=dict)
    """Qualifier variable (without prefix) -> the field that fills it."""
    timing: tuple[str, str] = ("", "")
    """A yes/no field of the form that says the sample is at a time point (`LB.LBTPT (PRE-DOSE)`),
    and that time point."""


def _matching(pairs: list[tuple[CutField, Target]], form: str, variable: str,
              where: dict[str, str], note: str = "") -> str:
    for cut_field, target in pairs:
        if cut_field.form == form and target.variable == variable and target.where == where \
                and (note in target.note if note else "time" not in target.note):
            return cut_field.name
    return ""


def _is_result(code: str, target: Target) -> bool:
    if "latest" in target.note:  # a restatement of an earlier result (clinical status)
        return False
    if target.variable in (f"{code}ORRES", f"{code}STRESN"):
        return f"{code}TESTCD" in target.where or (code == "MB" and not target.where)
    return False


def _unresulted_tests(pairs: list[tuple[CutField, Target]],
                      code: str) -> list[tuple[CutField, Target]]:
    """Tests with no result field on the form: `--DTC WHERE --TESTCD=X` (the date is the
    finding, `PREGST`) and `--STRESC WHERE --TESTCD=X` (a coded category whose verbatim a
    de-identified cut drops)."""
    resulted = {(f.form, t.where.get(f"{code}TESTCD")) for f, t in pairs if _is_result(code, t)}
    return [(f, t) for f, t in pairs if f"{code}TESTCD" in t.where
            and ((t.variable == f"{code}DTC" and f.kind == "date")
                 or t.variable == f"{code}STRESC")
            and (f.form, t.where[f"{code}TESTCD"]) not in resulted]


def results(source: SdtmSource, code: str) -> list[Result]:
    """The result fields of a findings domain with their range, date, time and qualifier fields."""
    pairs = [(f, t) for f, t in source.annotated if t.domain == code]
    found = []
    candidates = [p for p in pairs if _is_result(code, p[1])] + _unresulted_tests(pairs, code)
    for cut_field, target in candidates:
        form, where = cut_field.form, target.where
        testcd = where.get(f"{code}TESTCD", "")
        range_where = {k: v for k, v in where.items() if k != f"{code}TPT"}
        test_where = {f"{code}TESTCD": testcd} if testcd else {}
        own_date = _matching(pairs, form, f"{code}DTC", test_where) if testcd else ""
        own_is_earlier = any(f.name == own_date and "earlier" in t.note for f, t in pairs)
        date = (own_date if own_date and (own_is_earlier == ("earlier" in target.note)) else "") \
            or _matching(pairs, form, f"{code}DTC", {}) or _form_date(source, form) \
            or next((f.name for f, t in _unresulted_tests(pairs, code) if f.form == form
                     and t.variable == f"{code}DTC"), "")  # the report's date (PREGST)
        if target.variable == f"{code}DTC":
            date = cut_field.name
        tpt = {f"{code}TPT": where[f"{code}TPT"]} if f"{code}TPT" in where else {}
        qualifiers = {}
        for name in QUALIFIERS:
            qualifier = (_matching(pairs, form, f"{code}{name}", test_where) if testcd else "") \
                or _matching(pairs, form, f"{code}{name}", {})
            if qualifier:
                qualifiers[name] = qualifier
        found.append(Result(
            field=cut_field, target=target,
            low=_matching(pairs, form, f"{code}ORNRLO", range_where),
            high=_matching(pairs, form, f"{code}ORNRHI", range_where), date=date,
            time=_matching(pairs, form, f"{code}DTC", tpt, note="time") if tpt
            else _matching(pairs, form, f"{code}DTC", {}, note="time"), qualifiers=qualifiers,
            timing=next(((f.name, t.note) for f, t in pairs if f.form == form and not t.where
                         and t.variable == f"{code}TPT" and t.note), ("", ""))))
    return found


_ANNOTATED: dict[int, tuple[CutSchema, list[tuple[CutField, Target]]]] = {}


def annotated_pairs(schema: CutSchema) -> list[tuple[CutField, Target]]:
    """Every (field, target) pair of `schema`, parsed once for the last schema asked about."""
    held = _ANNOTATED.get(id(schema))
    if held is None or held[0] is not schema:
        _ANNOTATED.clear()
        held = _ANNOTATED[id(schema)] = (schema, [(f, t) for f in schema.fields
                                                  for t in targets(f)])
    return held[1]


def result_fields(schema: CutSchema, code: str, testcd: str) -> list[str]:
    """The CRF fields whose values are the results of `testcd` (define.xml's origins)."""
    found = []
    for cut_field, target in annotated_pairs(schema):
        annotated = target.where.get(f"{code}TESTCD", "")
        organism = code == "MB" and (annotated in MB_DETAILS or not annotated)
        if target.domain == code and _is_result(code, target) \
                and (organism or term(code, annotated, "")[0] == testcd):
            found.append(cut_field.name)
    return found


def _form_date(source: SdtmSource, form: str) -> str:
    """The form's date: a date field annotated as any domain's `--DTC` (VS date for a blood
    gas), else the date of the procedure that gave the finding (`PR.PRSTDTC`, imaging), else
    the date of death (DD)."""
    dated = [(f, t) for f, t in source.annotated if f.form == form and f.kind == "date"]
    return next((f.name for f, t in dated if t.domain != "DM" and not t.where
                 and t.variable in (f"{t.domain}DTC", f"{t.domain}STDTC")
                 and t.note in ("", "date part")), "") \
        or next((f.name for f, t in dated if t.variable == "PRSTDTC"), "") \
        or next((f.name for f, t in dated if t.variable == "DTHDTC"), "")


def _row_dates(source: SdtmSource, form: str) -> np.ndarray:
    """Per row of `form`'s rows, the first date of any form on it annotated
    `--STDTC (date part)` or `--DTC`; worked out once per form.

    Timed measurements on a form without a date (infusion monitoring) take the date of the
    visit row they sit on (the infusion date).
    """
    found = source.memo.get(("row dates", form))
    if found is None:
        every = source.rows(form)
        found = pd.Series("", index=every.index)
        for cut_field, target in source.annotated:
            if cut_field.kind == "date" and target.variable.endswith("DTC") \
                    and not target.where and target.note in ("", "date part"):
                found = found.where(found != "", source.column(every, cut_field.name))
        source.memo[("row dates", form)] = found
    return found.to_numpy(dtype=object)


def _numbers(values: np.ndarray) -> np.ndarray:
    """Text as numbers (NaN where blank or not a number), as `pd.to_numeric` reads them."""
    if pd.api.types.infer_dtype(values, skipna=False) != "string":
        return pd.to_numeric(np.where(values == "", None, values), errors="coerce")
    codes, distinct = text_codes(values)
    texts = np.array(distinct, dtype=object)  # each distinct text read once
    return pd.to_numeric(np.where(texts == "", None, texts), errors="coerce")[codes]


def _range_flag(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    number, lo, hi = (_numbers(a).astype(float) for a in (values, low, high))
    known = ~np.isnan(number) & (~np.isnan(lo) | ~np.isnan(hi))
    flag = np.select([known & ~np.isnan(hi) & (number > hi),
                      known & ~np.isnan(lo) & (number < lo), known], ["HIGH", "LOW", "NORMAL"], "")
    return flag.astype(object)


def _metadata(schema: CutSchema) -> pd.DataFrame:
    """The dictionary columns the logic engine reads, rebuilt from the cut's schema."""
    return pd.DataFrame([{
        "field_name": f.name, "form_name": f.form, "field_type": f.field_type,
        "select_choices_or_calculations": f.calculation or " | ".join(
            f"{c}, {label}" for c, label in f.choices) if f.field_type != "yesno" else "",
        "text_validation_type_or_show_slider_number": f.validation} for f in schema.fields])


def _values(source: SdtmSource, rows: pd.DataFrame, cut_field: CutField) -> np.ndarray:
    """The raw values of a field; a calc is computed from its inputs (calcs are not written)."""
    if cut_field.field_type != "calc" or rows.empty:
        return source.column(rows, cut_field.name).to_numpy(dtype=object)
    computed = evaluate_value(cut_field.calculation, source.every_column(rows),
                              _metadata(source.schema))
    return computed.map(lambda v: "" if v is None or v == "" or (isinstance(v, float) and v != v)
                        else f"{v:g}" if isinstance(v, float) else str(v)).to_numpy(dtype=object)


def _organisms(source: SdtmSource) -> dict[str, str]:
    """Per record, the MBTESTCD of the first virus found at screening (the virology visits
    retest it); VRIDENT where none was found."""
    subjects = source.subjects
    found = pd.Series("", index=subjects.index)
    for cut_field, target in source.annotated:
        organism = TERMS["MB"].get(target.where.get("MBTESTCD", ""))
        if target.domain == "MB" and target.variable == "MBORRES" and organism:
            positive = source.column(subjects, cut_field.name) == "1"
            found = found.where((found != "") | ~positive, organism[0])
    found = found.where(found != "", "VRIDENT")
    return dict(zip(subjects[source.schema.record_id], found))


def _standard(code: str, testcd: np.ndarray, orres: np.ndarray, unit: str,
              cut_field: CutField) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(--STRESC, --STRESN, --STRESU) of numeric or coded results."""
    blank = filled_text(len(orres), "")
    if cut_field.kind in ("number", "integer"):
        number = _numbers(orres).astype(float)
        texts, tests = text_codes(orres)[0], text_codes(testcd)[0]
        pairs, distinct = pd.factorize(texts * (int(tests.max(initial=0)) + 1) + tests)
        firsts = np.zeros(len(distinct), np.int64)
        firsts[pairs[::-1]] = np.arange(len(pairs) - 1, -1, -1)
        values = np.full(len(distinct), np.nan)
        units, shown = filled_text(len(distinct), ""), filled_text(len(distinct), "")
        for place, first in enumerate(firsts.tolist()):  # once per distinct (result, test)
            n = number[first]
            if n == n:
                value, units[place] = standardise(float(n), unit, testcd[first])
                values[place] = value
                shown[place] = f"{value:.10g}" if value == value else ""
        stresc = orres.copy()
        standard = shown[pairs]
        stresc[standard != ""] = standard[standard != ""]
        return stresc, values[pairs], units[pairs]
    if code == "QS" and cut_field.kind == "code":
        number = _numbers(orres)
        return np.array(["" if v != v else f"{v:g}" for v in number.astype(float).tolist()],
                        dtype=object), number, blank
    stresc = orres
    if code in ("PE", "EG"):
        stresc = np.array(["ABNORMAL" if v.startswith("ABNORMAL") else v for v in orres],
                          dtype=object)
    return stresc, np.full(len(orres), np.nan), blank


def _result_rows(source: SdtmSource, code: str, result: Result) -> dict[str, np.ndarray]:
    """One result field's rows as columns (plain arrays: a pandas frame per result costs more
    than the work)."""
    rows = source.rows(result.field.form)
    raw = _values(source, rows, result.field)
    standard_only = source.column(rows, result.qualifiers.get("STRESC", "-")).to_numpy() != ""
    at = np.flatnonzero((raw != "") | standard_only)  # a category without its verbatim
    raw, size = raw[at], len(at)

    def column(name: str) -> np.ndarray:
        return source.column(rows, name).to_numpy(dtype=object)[at]

    def constant(value: str) -> np.ndarray:
        return filled_text(size, value)

    where, record_id = result.target.where, source.schema.record_id
    records = column(record_id)
    annotated = where.get(f"{code}TESTCD", "")
    testcd, test, implied = term(code, annotated, short_test_name(result.field))
    testcds, tests = constant(testcd), constant(test)
    detail = ""
    if code == "MB" and (annotated in MB_DETAILS or not annotated):
        organisms = _organisms(source)
        names = {code: name for code, name, _ in TERMS["MB"].values()}
        testcds = np.array([organisms.get(r, "VRIDENT") for r in records], dtype=object)
        tests = np.array([names.get(t, "") for t in testcds], dtype=object)
        detail = MB_DETAILS[annotated]
    elif code == "MB":
        detail = MB_DETAILS[""]
    if result.target.variable == f"{code}DTC":
        orres = constant("Y")
    else:
        orres = sdtm_array(raw, result.field, f"{code}ORRES")
        orres = np.array([{"YES": "Y", "NO": "N"}.get(v, v) for v in orres], dtype=object)
    done = np.array([v not in NOT_DONE for v in orres], dtype=bool)
    status = constant("")
    status[~done] = "NOT DONE"
    orres = np.where(done, orres, "").astype(object)
    unit = ct_unit(ascii_text(result.field.unit) or TEST_UNITS.get(testcd, ""))
    unit = unit if unit in UNIT_CODES else ""
    coded_score = code == "QS" and result.field.kind == "code"
    stresc, stresn, stresu = _standard(code, testcds, raw if coded_score else orres, unit,
                                       result.field)
    if coded_score:
        stresc = np.where(done, stresc, "").astype(object)
    units = constant("")
    if result.field.kind in ("number", "integer"):
        units[orres != ""] = unit
    subjects = {r: f"{STUDYID}-{r}" for r in dict.fromkeys(records)}
    part = {
        "USUBJID": np.array([subjects[r] for r in records], dtype=object),
        "TESTCD": testcds, "TEST": tests, "TSTDTL": constant(detail),
        "CAT": constant(where.get(f"{code}CAT", "")), "ORRES": orres,
        "ORRESU": units,
        "STRESC": stresc, "STRESN": stresn, "STRESU": stresu, "STAT": status,
        "TPT": constant(where.get(f"{code}TPT", ""))}
    if result.timing[0] and size:
        part["TPT"][(column(result.timing[0]) == "1") & (part["TPT"] == "")] = result.timing[1]
    for name, value in implied.items():
        part[name.removeprefix(code)] = constant(value)
    for name, field_name in result.qualifiers.items():
        terms = QUALIFIER_TERMS.get(name, {})
        values = sdtm_array(column(field_name), source.schema.field(field_name), f"{code}{name}")
        values = np.array([terms.get(v, v) for v in values], dtype=object)
        if name == "STRESC":
            part["STRESC"] = np.where(values != "", values, part["STRESC"]).astype(object)
            part["ORRES"] = np.where((raw != "") | (status != ""), part["ORRES"],
                                     values).astype(object)
        else:
            part[name] = values
    if code == "LB":
        low, high = (column(name or "-") for name in (result.low, result.high))
        part["ORNRLO"], part["ORNRHI"] = low, high
        part["STNRLO"], part["STNRHI"] = (_standard(code, testcds, limit, unit, result.field)[1]
                                          for limit in (low, high))
        part["NRIND"] = _range_flag(orres, low, high)
    dates = column(result.date or "-")
    if not result.date and result.time:
        dates = _row_dates(source, result.field.form)[at]
    times = column(result.time or "-")
    joined = (dates != "") & (times != "")
    part["DTC"] = dates.copy()
    part["DTC"][joined] = [d[:10] + "T" + t for d, t in zip(dates[joined], times[joined])]
    if result.field.form in source.repeating:
        part["SPID"] = column("redcap_repeat_instance")
    else:
        events = column("redcap_event_name")
        place = {e: source.visits.get(e) for e in dict.fromkeys(events)}
        part["VISITNUM"] = np.array([float(place[e][0]) if place[e] else np.nan
                                     for e in events], dtype=float)
        part["VISIT"] = np.array([source.visit_names.get(e, "") for e in events], dtype=object)
    return part


def _repeats(frame: pd.DataFrame) -> pd.Series:
    """--REPNUM: 1, 2, ... over results that nothing else tells apart (two SpO2 at one visit,
    one from the vital signs form and one from the respiratory form); blank elsewhere."""
    key = [c for c in ("USUBJID", "TESTCD", *KEY_QUALIFIERS, "VISITNUM", "DTC", "SPID")
           if c in frame]
    filled = frame[key].astype(str)
    groups = filled.groupby(key, sort=False)
    number = groups.cumcount().astype(float) + 1
    size = groups["USUBJID"].transform("size")
    return number.where(size > 1)


def natural_key(code: str, frame: pd.DataFrame) -> list[str]:
    """The variables of a findings domain that identify a record (SDTMIG 3.4 §4.1.9), those
    present in `frame`."""
    names = ["USUBJID", f"{code}TESTCD", *(f"{code}{q}" for q in KEY_QUALIFIERS),
             "VISITNUM", f"{code}TPTNUM", f"{code}DTC", f"{code}SPID", f"{code}LNKID",
             f"{code}REPNUM"]
    return [n for n in names if n in frame]


SOURCES: dict[str, str] = {
    "TESTCD": "Assigned: CDISC test code of the annotated test",
    "TEST": "Assigned: CDISC test name of --TESTCD",
    "TSTDTL": "Assigned: what the virology result measures (MB)",
    "OBJ": "Assigned: the object of the finding (FA)",
    "CAT": "CRF annotation: --CAT", "ORRES": "CRF: the annotated result field",
    "ORRESU": "Assigned: unit from the annotation or label, in CDISC spelling",
    "STRESC": "Derived: --ORRES in the standard unit",
    "STRESN": "Derived: numeric --ORRES in the standard unit",
    "STRESU": "Derived: CDISC standard unit of the test",
    "STNRLO": "Derived: --ORNRLO in the standard unit",
    "STNRHI": "Derived: --ORNRHI in the standard unit",
    "STAT": "Derived: NOT DONE when the result reads not done",
    "REPNUM": "Derived: order among results nothing else tells apart",
    "DTC": "CRF: the form's date (and time) field", "SPID": "Derived: REDCap repeat instance",
    "LNKID": "Assigned: the lesion (TU.TULNKID)"}


def _columns(source: SdtmSource, code: str, found: list[Result]) -> list[str]:
    """The domain's variables, from the annotations alone: every batch of subjects gives the
    same columns, so a streaming cut can append batches."""
    names = {"USUBJID", "TESTCD", "TEST", "ORRES", "STRESC", "STRESN", "DTC", "REPNUM"}
    for result in found:
        where, annotated = result.target.where, result.target.where.get(f"{code}TESTCD", "")
        implied = term(code, annotated, "")[2]
        names |= {name.removeprefix(code) for name in implied}
        names |= {name for name in result.qualifiers if name != "STRESC"}
        names |= {"CAT"} if f"{code}CAT" in where else set()
        names |= {"TPT"} if f"{code}TPT" in where or result.timing[0] else set()
        if ct_unit(ascii_text(result.field.unit) or TEST_UNITS.get(term(code, annotated, "")[0],
                                                                    "")) in UNIT_CODES:
            names |= {"ORRESU", "STRESU"}
        if any(label.upper() in NOT_DONE for _, label in result.field.choices):
            names.add("STAT")
        names |= {"SPID"} if result.field.form in source.repeating else {"VISITNUM", "VISIT"}
    names |= {"TSTDTL"} if code == "MB" else set()
    names |= {"ORNRLO", "ORNRHI", "STNRLO", "STNRHI", "NRIND"} if code == "LB" else set()
    names |= {"LNKID"} if code == "TR" else set()
    return [c for c in COLUMNS if c in names] + sorted(names - set(COLUMNS))


def _joined(parts: list[dict[str, np.ndarray]], column: str, numeric: bool) -> np.ndarray:
    """One column of every result's rows; text blank where missing (filled on the array: a
    frame's `fillna` costs more than the work)."""
    joined = np.concatenate([
        p[column] if column in p else np.full(len(p["USUBJID"]), np.nan) if numeric
        else filled_text(len(p["USUBJID"]), "") for p in parts])
    if not numeric and joined.dtype == object:
        missing = pd.isna(joined)
        if missing.any():
            joined[missing] = ""
    return joined


def findings_domain(source: SdtmSource, code: str) -> CutTable:
    """A findings domain: the results of every annotated result field, one row per value."""
    found = results(source, code)
    parts = [p for p in (_result_rows(source, code, r) for r in found) if len(p["USUBJID"])]
    columns = _columns(source, code, found)
    numeric = ("STRESN", "STNRLO", "STNRHI", "VISITNUM", "REPNUM")
    frame = pd.DataFrame({c: _joined(parts, c, c in numeric) for c in columns}) if parts \
        else pd.DataFrame(columns=columns)
    unfilled = {c: "" for c in columns if c not in numeric and frame[c].dtype != object}
    if unfilled:
        frame = frame.fillna(unfilled)
    if "LNKID" in frame:
        frame["LNKID"] = frame["LNKID"].where(frame["USUBJID"] == "", "LUNG")
    frame["REPNUM"] = _repeats(frame)
    for column in [c for c in numeric if c in frame]:  # `astype` of the frame copies it all
        frame[column] = frame[column].astype("Float64")
    renamed = {c: f"{code}{c}" for c in frame.columns
               if c not in ("USUBJID", "VISITNUM", "VISIT")}
    frame = frame.rename(columns=renamed)
    table = finish(code, frame, {renamed[c]: s for c, s in SOURCES.items() if c in renamed})
    for name in (f"{code}REPNUM", f"{code}STNRLO", f"{code}STNRHI", "VISITNUM"):
        if name in table.frame:
            table.kinds[name] = "number"
    return table


def tumor_identification(lesions: CutTable) -> CutTable:
    """TU: the lesion TR measures, one record per subject (the whole-lung lesion on CT)."""
    tr = lesions.frame
    columns = ["USUBJID", "TULNKID", "TUTESTCD", "TUTEST", "TUORRES", "TUSTRESC", "TULOC",
               "TUMETHOD", "TUDTC", "VISITNUM", "VISIT"]
    if tr.empty or "TRLNKID" not in tr:
        return finish("TU", pd.DataFrame(columns=columns), {})
    first = tr.sort_values(["USUBJID", "VISITNUM", "TRDTC"] if "TRDTC" in tr
                           else ["USUBJID", "VISITNUM"]).groupby("USUBJID", sort=False).head(1)
    frame = pd.DataFrame({
        "USUBJID": first["USUBJID"], "TULNKID": first["TRLNKID"], "TUTESTCD": "LESIDENT",
        "TUTEST": "Lesion Identification", "TUORRES": "WHOLE LUNG LESIONS",
        "TUSTRESC": "WHOLE LUNG LESIONS", "TULOC": "LUNG", "TUMETHOD": "CT SCAN",
        "TUDTC": first.get("TRDTC", ""), "VISITNUM": first["VISITNUM"],
        "VISIT": first["VISIT"]})[columns]
    sources = {"TULNKID": "Assigned: the lesion TR links to", "TUTESTCD": "Assigned",
               "TUTEST": "Assigned", "TUORRES": "Assigned: whole-lung lesion volume on CT",
               "TUSTRESC": "Derived: TUORRES", "TULOC": "Assigned", "TUMETHOD": "Assigned",
               "TUDTC": "Derived: date of the first lesion measurement (TRDTC)"}
    table = finish("TU", frame, sources)
    table.kinds["VISITNUM"] = "number"
    return table


def _before_exposure(when: str, dose: str, tpt: str, epoch: str) -> bool:
    """A result taken before the first dose: an earlier day, an earlier time on the day, or
    marked PRE-DOSE on the day; an undated result only in the screening epoch."""
    if not dose:
        return False
    if len(when) < 10:
        return epoch == "SCREENING"
    if when[:10] != dose[:10]:
        return when[:10] < dose[:10]
    if len(when) > 10 and len(dose) > 10:
        return when < dose
    return tpt == "PRE-DOSE"


def baseline_flags(domains: dict[str, CutTable]) -> None:
    """--LOBXFL (SDTMIG 3.4): Y on each subject's last non-missing result of a test before the
    first dose (DM.RFXSTDTC), per test and the qualifiers that make it another measurement."""
    dm = domains["DM"].frame
    first = dict(zip(dm["USUBJID"], dm.get("RFXSTDTC", pd.Series("", index=dm.index))))
    for code in FINDINGS_DOMAINS:
        table = domains.get(code)
        if table is None or table.frame.empty:
            continue
        frame = table.frame
        blank = pd.Series("", index=frame.index)
        columns = [frame["USUBJID"], frame.get(f"{code}DTC", blank),
                   frame.get(f"{code}TPT", blank), frame.get("EPOCH", blank)]
        rows = np.zeros(len(frame), np.int64)
        for codes, _ in map(text_codes, columns):  # worked out once per distinct row
            rows, _ = pd.factorize(rows * (int(codes.max(initial=0)) + 1) + codes)
        firsts = np.zeros(int(rows.max(initial=-1)) + 1, np.int64)
        firsts[rows[::-1]] = np.arange(len(rows) - 1, -1, -1)
        s, w, t, e = (c.to_numpy(dtype=object)[firsts] for c in columns)
        before = pd.Series(np.array([_before_exposure(*row) for row in zip(
            w, [first.get(subject, "") for subject in s], t, e)], dtype=bool)[rows],
            index=frame.index, dtype=bool)
        resulted = frame[f"{code}ORRES"] != ""
        group = [c for c in natural_key(code, frame)
                 if c not in ("VISITNUM", f"{code}TPTNUM", f"{code}DTC", f"{code}SPID",
                              f"{code}REPNUM", f"{code}TPT")]
        order = [c for c in (f"{code}DTC", "VISITNUM", f"{code}TPTNUM", f"{code}REPNUM")
                 if c in frame]
        candidates = frame[before & resulted].sort_values(order, kind="stable")
        last = candidates.groupby(group, sort=False).tail(1).index
        flag = pd.Series("", index=frame.index)
        flag[last] = "Y"
        frame.insert(len(frame.columns), f"{code}LOBXFL", flag)
        table.kinds[f"{code}LOBXFL"] = "string"
        table.sources[f"{code}LOBXFL"] = ("Derived: last non-missing result of the test before "
                                          "DM.RFXSTDTC (PRE-DOSE on the dosing day)")


def unplanned_visits(domains: dict[str, CutTable], planned: set[float]) -> None:
    """Records on a form of a log event (death details, the hospital course) sit at no planned
    visit: VISITNUM and VISIT stay blank there, so SV and TV hold only the trial's visits."""
    for table in domains.values():
        frame = table.frame
        if "VISITNUM" in frame:
            off = frame["VISITNUM"].notna() & ~frame["VISITNUM"].isin(planned)
            frame.loc[off, "VISITNUM"] = float("nan")
            frame.loc[off, "VISIT"] = ""
