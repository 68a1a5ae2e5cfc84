"""What makes the SDTM domains conform (SDTMIG 3.4) once all are built: study days, epochs,
one test name per test code, planned time point numbers, and the variables that other
variables call for (ECPRESP beside ECOCCUR, AEENTPT beside AEENRTPT).

Study days count from DM.RFSTDTC with no day 0 (SDTMIG 3.4 §4.4.4); the epoch of a record
is SCREENING before the first dose, TREATMENT up to the last dose, FOLLOW-UP after it.
"""
from __future__ import annotations

from datetime import date

import pandas as pd

from sync.export.findings_terms import TEST_NAMES
from sync.export.tables import CutTable

TIMING_DOMAINS = frozenset({"IE", "EC", "AE", "CM", "VS", "LB", "DS", "MH", "PR", "QS", "HO",
                            "MB", "DV", "FA", "SU", "EX", "TR", "TU", "EG", "PE", "RP", "DD"})


def study_day(when: str, reference: str) -> float | None:
    """SDTM study day of `when` from `reference` (both ISO 8601): day 1 is the reference day,
    the day before it day -1; None unless both hold a full date."""
    try:
        day, ref = date.fromisoformat(when[:10]), date.fromisoformat(reference[:10])
    except ValueError:
        return None
    delta = (day - ref).days
    return float(delta + 1 if delta >= 0 else delta)


def _epoch(when: str, first: str, last: str) -> str:
    if len(when) < 10:
        return ""
    if not first or when[:10] < first[:10]:
        return "SCREENING"
    return "TREATMENT" if not last or when[:10] <= last[:10] else "FOLLOW-UP"


def _per_distinct(derive, subjects: pd.Series, dates: pd.Series) -> list:
    """`derive(subject, date)` per record, worked out once per distinct pair (a subject's
    records share few dates)."""
    found: dict[tuple[str, str], object] = {}
    for pair in zip(subjects, dates):
        if pair not in found:
            found[pair] = derive(*pair)
    return [found[pair] for pair in zip(subjects, dates)]


def _undated_epochs(frame: pd.DataFrame, epochs: pd.Series) -> pd.Series:
    """An undated record takes the epoch of its subject's visit (the other records of it),
    else SCREENING at a screening visit and TREATMENT on a dosing record."""
    if "VISITNUM" not in frame:
        return epochs
    known = epochs.where(epochs != "")
    by_visit = known.groupby([frame["USUBJID"], frame["VISITNUM"]]).transform("first")
    filled = epochs.where(epochs != "", by_visit.fillna(""))
    screening = frame.get("VISIT", pd.Series("", index=frame.index)).str.startswith("SCREEN")
    filled = filled.where((filled != "") | ~screening, "SCREENING")
    if "ECOCCUR" in frame or "EXTRT" in frame:  # a dosing record
        filled = filled.where(filled != "", "TREATMENT")
    return filled


def _add(table: CutTable, name: str, values: pd.Series, kind: str, source: str,
         after: str | None = None) -> None:
    frame = table.frame
    if name in frame:
        frame[name] = values
    elif after in frame:
        frame.insert(frame.columns.get_loc(after) + 1, name, values)
    else:
        frame[name] = values
    table.kinds[name] = kind
    table.sources[name] = source


def conform(domains: dict[str, CutTable], tpt_order: list[str]) -> None:
    """Finish every domain in place, DM first (its reference dates feed the others)."""
    dm = domains["DM"].frame
    if "DS" in domains and "DSSTDTC" in domains["DS"].frame:
        ds = domains["DS"].frame
        ends = ds[ds["DSCAT"] == "DISPOSITION EVENT"].groupby("USUBJID")["DSSTDTC"].max()
        dm["RFENDTC"] = [max(filter(None, [a, ends.get(s, "")]), default="")
                         for s, a in zip(dm["USUBJID"], dm["RFENDTC"])]
    start = dict(zip(dm["USUBJID"], dm.get("RFSTDTC", "")))
    first = dict(zip(dm["USUBJID"], dm.get("RFXSTDTC", "")))
    last = dict(zip(dm["USUBJID"], dm.get("RFXENDTC", "")))
    for code, table in domains.items():
        if code not in TIMING_DOMAINS or table.frame.empty:
            continue
        frame = table.frame
        names = TEST_NAMES.get(code, {})
        if f"{code}TESTCD" in frame:
            seen = dict(zip(frame[f"{code}TESTCD"], frame[f"{code}TEST"]))
            frame[f"{code}TEST"] = frame[f"{code}TESTCD"].map(lambda c: names.get(c, seen[c]))
            table.sources[f"{code}TEST"] = "Assigned: CDISC test name of --TESTCD"
        if f"{code}TPT" in frame:
            numbers = {tpt: float(i + 1) for i, tpt in enumerate(tpt_order)}
            _add(table, f"{code}TPTNUM", frame[f"{code}TPT"].map(numbers), "number",
                 "Assigned: order of the planned time point on the CRF", after=f"{code}TPT")
        subjects = frame["USUBJID"]
        anchor = next((c for c in (f"{code}DTC", f"{code}STDTC") if c in frame), None)
        if anchor or "VISIT" in frame:  # undated records at a visit take its epoch
            when = frame[anchor] if anchor else pd.Series("", index=frame.index)
            if f"{code}STDTC" in frame and anchor != f"{code}STDTC":  # start first (SDTMIG 4.4.7)
                when = frame[f"{code}STDTC"].where(frame[f"{code}STDTC"] != "", when)
                anchor = f"{code}STDTC (else {anchor})"
            epochs = pd.Series(_per_distinct(
                lambda s, w: _epoch(w, first.get(s, ""), last.get(s, "")), subjects, when),
                index=frame.index)
            _add(table, "EPOCH", _undated_epochs(frame, epochs), "string",
                 f"Derived: {anchor or 'the visit'} against RFXSTDTC/RFXENDTC; undated records take the epoch "
                 "of their visit")
        for variable, day in ((f"{code}DTC", f"{code}DY"), (f"{code}STDTC", f"{code}STDY"),
                              (f"{code}ENDTC", f"{code}ENDY")):
            if variable in frame:
                _add(table, day, pd.Series(_per_distinct(
                    lambda s, w: study_day(w, start.get(s, "")), subjects, frame[variable]),
                    index=frame.index, dtype="Float64"),
                     "number", f"Derived: {variable} - DM.RFSTDTC (+1 on or after it)",
                     after=variable)
    if "EC" in domains and "ECOCCUR" in domains["EC"].frame:
        ec = domains["EC"]
        _add(ec, "ECPRESP", ec.frame["ECOCCUR"].map(lambda v: "Y" if v else ""), "string",
             "Assigned: Y (the dose was pre-specified)", after="ECTRT")
    for code in ("AE", "CM"):
        if code in domains and f"{code}ENRTPT" in domains[code].frame:
            table = domains[code]
            _add(table, f"{code}ENTPT", table.frame[f"{code}ENRTPT"].map(
                lambda v: "END OF STUDY" if v else ""), "string",
                f"Assigned: END OF STUDY when {code}ENRTPT is ONGOING", after=f"{code}ENRTPT")
