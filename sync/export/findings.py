"""SDTM-like findings domains (VS, LB): one row per result field with a value.

A result field is annotated `XX.XXORRES WHERE XXTESTCD=CODE [AND XXTPT=...] [AND LBCAT=...]`;
its reference range, date and time come from fields of the same form annotated `XXORNRLO`,
`XXORNRHI` and `XXDTC` with matching conditions.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sync.export.annotations import Target, ascii_text, short_test_name
from sync.export.meta import CutField
from sync.export.sdtm import SdtmSource, add_place, join_time, finish
from sync.export.tables import CutTable


@dataclass(frozen=True)
class Result:
    """One result field with the fields that qualify it."""

    field: CutField
    target: Target
    low: str
    high: str
    date: str
    time: str

    @property
    def earlier(self) -> bool:
        """An earlier sample (`(earlier sample)`), dated by its own date field."""
        return "earlier" in self.target.note


def _matching(pairs: list[tuple[CutField, Target]], form: str, variable: str,
              where: dict[str, str], note: str = "") -> str:
    for cut_field, target in pairs:
        if cut_field.form == form and target.variable == variable and target.where == where \
                and (note in target.note if note else "time" not in target.note):
            return cut_field.name
    return ""


def results(source: SdtmSource, code: str) -> list[Result]:
    """The result fields of a findings domain with their range, date and time fields."""
    pairs = [(f, t) for f, t in source.annotated if t.domain == code]
    found = []
    for cut_field, target in pairs:
        if target.variable != f"{code}ORRES" or f"{code}TESTCD" not in target.where:
            continue
        form, where = cut_field.form, target.where
        range_where = {k: v for k, v in where.items() if k != f"{code}TPT"}
        test_where = {f"{code}TESTCD": where[f"{code}TESTCD"]}
        date = ((_matching(pairs, form, f"{code}DTC", test_where) if "earlier" in target.note
                 else "") or _matching(pairs, form, f"{code}DTC", {})
                or _form_date(source, form))
        tpt = {f"{code}TPT": where[f"{code}TPT"]} if f"{code}TPT" in where else {}
        found.append(Result(
            field=cut_field, target=target,
            low=_matching(pairs, form, f"{code}ORNRLO", range_where),
            high=_matching(pairs, form, f"{code}ORNRHI", range_where), date=date,
            time=_matching(pairs, form, f"{code}DTC", tpt, note="time") if tpt else ""))
    return found


def _form_date(source: SdtmSource, form: str) -> str:
    """A date field of the form annotated as any domain's `--DTC` (VS date for a blood gas)."""
    return next((f.name for f, t in source.annotated if f.form == form and f.kind == "date"
                 and t.domain != "DM" and t.variable in (f"{t.domain}DTC", f"{t.domain}STDTC")
                 and not t.where and not t.note), "")


def _row_dates(source: SdtmSource, rows: pd.DataFrame) -> pd.Series:
    """Per row, the first date of any form on it annotated `--STDTC (date part)` or `--DTC`.

    Timed measurements on a form without a date (infusion monitoring) take the date of the
    visit row they sit on (the infusion date).
    """
    dates = pd.Series("", index=rows.index)
    for cut_field, target in source.annotated:
        if cut_field.kind == "date" and target.variable.endswith("DTC") and not target.where \
                and target.note in ("", "date part"):
            dates = dates.where(dates != "", source.column(rows, cut_field.name))
    return dates


def _range_flag(values: pd.Series, low: pd.Series, high: pd.Series) -> pd.Series:
    number, lo, hi = (pd.to_numeric(s.replace("", pd.NA), errors="coerce") for s in (values, low, high))
    flag = pd.Series("", index=values.index)
    known = number.notna() & (lo.notna() | hi.notna())
    flag[known] = "NORMAL"
    flag[known & lo.notna() & (number < lo)] = "LOW"
    flag[known & hi.notna() & (number > hi)] = "HIGH"
    return flag


def _result_rows(source: SdtmSource, code: str, result: Result) -> pd.DataFrame:
    rows = source.rows(result.field.form)
    rows = rows[source.column(rows, result.field.name) != ""]
    value = rows[result.field.name]
    where = result.target.where
    part = pd.DataFrame({
        "USUBJID": source.usubjid(rows[source.schema.record_id]),
        f"{code}TESTCD": where[f"{code}TESTCD"][:8],
        f"{code}TEST": short_test_name(result.field),
        f"{code}CAT": where.get(f"{code}CAT", ""),
        f"{code}ORRES": value,
        f"{code}ORRESU": ascii_text(result.field.unit),
        f"{code}STRESC": value,
        f"{code}STRESN": pd.to_numeric(value, errors="coerce"),
        f"{code}STRESU": ascii_text(result.field.unit),
        f"{code}TPT": where.get(f"{code}TPT", ""),
    }, index=rows.index)
    if code == "LB":
        low, high = (source.column(rows, name or "-") for name in (result.low, result.high))
        part["LBORNRLO"], part["LBORNRHI"] = low, high
        part["LBNRIND"] = _range_flag(value, low, high)
    dates = source.column(rows, result.date or "-")
    if not result.date and result.time:
        dates = _row_dates(source, rows)
    part[f"{code}DTC"] = join_time(dates, source.column(rows, result.time or "-"))
    return add_place(source, rows, result.field.form, part)


def findings_domain(source: SdtmSource, code: str) -> CutTable:
    """VS or LB: the results of every annotated result field, one row per value."""
    parts = [_result_rows(source, code, r) for r in results(source, code)]
    parts = [p for p in parts if not p.empty]
    frame = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame(columns=["USUBJID", f"{code}TESTCD", f"{code}ORRES"]))
    if f"{code}CAT" in frame and (frame[f"{code}CAT"] == "").all():
        frame = frame.drop(columns=[f"{code}CAT"])
    if f"{code}TPT" in frame and (frame[f"{code}TPT"] == "").all():
        frame = frame.drop(columns=[f"{code}TPT"])
    sources = {
        f"{code}TESTCD": "CRF annotation: --TESTCD", f"{code}TEST": "Assigned: field label",
        f"{code}ORRES": "CRF: the annotated result field",
        f"{code}ORRESU": "Assigned: unit from the annotation or label",
        f"{code}STRESC": "Derived: --ORRES", f"{code}STRESN": "Derived: numeric --ORRES",
        f"{code}DTC": "CRF: the form's date (and time) field"}
    return finish(code, frame.fillna({c: "" for c in frame.columns
                                      if not c.endswith(("STRESN", "VISITNUM"))}), sources)

