"""What makes the SDTM domains conform (SDTMIG 3.4) once all are built: study days, epochs,
one test name per test code, planned time point numbers, and the variables that other
variables call for (ECPRESP beside ECOCCUR, AEENTPT beside AEENRTPT).

Study days count from DM.RFSTDTC with no day 0 (SDTMIG 3.4 §4.4.4); the epoch of a record
is SCREENING before the first dose, TREATMENT up to the last dose, FOLLOW-UP after it.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from sync.export.findings_terms import TEST_NAMES
from sync.export.tables import CutTable, filled_text, text_codes

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
    subject, date_text = text_codes(subjects)[0], text_codes(dates)[0]
    pairs, distinct = pd.factorize(subject * (int(date_text.max(initial=0)) + 1) + date_text)
    firsts = _firsts(pairs, len(distinct))
    subjects, dates = subjects.to_numpy(dtype=object), dates.to_numpy(dtype=object)
    found = np.empty(len(distinct), dtype=object)
    found[:] = [derive(subjects[i], dates[i]) for i in firsts.tolist()]
    return found[pairs].tolist()


def _ordinals(texts: list[str]) -> np.ndarray:
    """Per ISO 8601 text, the day number of its date part (NaN unless a full date)."""
    days = np.full(len(texts), np.nan)
    for place, text in enumerate(texts):
        try:
            days[place] = date.fromisoformat(text[:10]).toordinal()
        except ValueError:
            continue
    return days


def _study_days(subjects: pd.Series, dates: pd.Series, start: dict[str, str]) -> np.ndarray:
    """`study_day` of each record (NaN where None), each date and reference read once."""
    subject, names = text_codes(subjects)
    when, texts = text_codes(dates)
    delta = _ordinals(texts)[when] - _ordinals([start.get(s, "") for s in names])[subject]
    return np.where(delta >= 0, delta + 1, delta)


def _firsts(codes: np.ndarray, count: int) -> np.ndarray:
    """Per code in `range(count)`, the position of its first row."""
    firsts = np.zeros(count, np.int64)
    firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return firsts


def _undated_epochs(frame: pd.DataFrame, epochs: pd.Series) -> pd.Series:
    """An undated record takes the epoch of its subject's visit (the other records of it),
    else SCREENING at a screening visit and TREATMENT on a dosing record."""
    if "VISITNUM" not in frame:
        return epochs
    subject = pd.factorize(frame["USUBJID"].to_numpy())[0]
    visit = pd.factorize(frame["VISITNUM"].to_numpy())[0]
    visits, _ = pd.factorize(subject * (int(visit.max(initial=0)) + 2) + visit)
    values = epochs.to_numpy(dtype=object)
    dated = np.flatnonzero((values != "") & (subject >= 0) & (visit >= 0))
    first = np.unique(visits[dated], return_index=True)
    by_visit = filled_text(int(visits.max(initial=-1)) + 1, "")
    by_visit[first[0]] = values[dated[first[1]]]
    filled = np.where(values != "", values, by_visit[visits]).astype(object)
    if "VISIT" in frame:
        codes, names = text_codes(frame["VISIT"])
        screening = np.array([n.startswith("SCREEN") for n in names] or [False])[codes]
        filled[(filled == "") & screening] = "SCREENING"
    if "ECOCCUR" in frame or "EXTRT" in frame:  # a dosing record
        filled[filled == ""] = "TREATMENT"
    return pd.Series(filled, index=epochs.index, name=epochs.name, dtype=object)


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
            codes, tests = text_codes(frame[f"{code}TESTCD"])
            named = [names.get(c, seen[c]) for c in tests]  # once per test code
            frame[f"{code}TEST"] = (
                pd.Series(np.array(named, dtype=object)[codes], index=frame.index, dtype=object)
                if all(isinstance(n, str) for n in named) and all(isinstance(c, str) for c in seen)
                else frame[f"{code}TESTCD"].map(lambda c: names.get(c, seen[c])))
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
                _add(table, day, pd.Series(_study_days(subjects, frame[variable], start),
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
