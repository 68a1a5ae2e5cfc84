"""SE (subject elements): each subject's path through the trial's elements (TE/TA).

Screening runs from informed consent to the first dose, treatment from the first dose to the day
after the last, follow-up from then to the end of study (DM's RFICDTC, RFXSTDTC, RFXENDTC and
RFENDTC of the same subject). The boundaries are those `conform` gives EPOCH by, so a record's
EPOCH is the epoch of the element its date falls in (one element's end is the next one's start,
SDTMIG 3.4 §5.2).
"""
from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from sync.export.conform import study_day
from sync.export.sdtm import finish
from sync.export.tables import CutTable
from sync.export.trial import ELEMENTS


def _day_after(when: str) -> str:
    try:
        return (date.fromisoformat(when[:10]) + timedelta(days=1)).isoformat()
    except ValueError:
        return ""


def _path(consent: str, first: str, last: str, end: str) -> list[tuple[int, str, str]]:
    """(element index, start, end) of one subject, in order."""
    if not consent:
        return []
    if not first:
        return [(0, consent, end if end[:10] >= consent[:10] else "")]
    treated_until = _day_after(last or first)
    if end and end[:10] < treated_until:
        return [(0, consent, first), (1, first, end if end[:10] >= first[:10] else first)]
    return [(0, consent, first), (1, first, treated_until), (2, treated_until, end)]


def subject_elements(dm: CutTable) -> CutTable:
    """SE from DM's reference dates: one record per element each subject entered."""
    rows = []
    frame = dm.frame
    dates = [[str(v or "") for v in frame[name].tolist()] if name in frame else [""] * len(frame)
             for name in ("RFICDTC", "RFXSTDTC", "RFXENDTC", "RFENDTC", "RFSTDTC")]
    for subject, *when, reference in zip(frame["USUBJID"].tolist(), *dates):
        for index, start, end in _path(*when):
            etcd, element, _, _, epoch = ELEMENTS[index]
            rows.append({"USUBJID": subject, "ETCD": etcd, "ELEMENT": element,
                         "TAETORD": float(index + 1), "EPOCH": epoch, "SESTDTC": start,
                         "SEENDTC": end, "SESTDY": study_day(start, reference),
                         "SEENDY": study_day(end, reference)})
    columns = ["USUBJID", "ETCD", "ELEMENT", "TAETORD", "EPOCH", "SESTDTC", "SEENDTC", "SESTDY",
               "SEENDY"]
    table = finish("SE", pd.DataFrame(rows, columns=columns), {
        "ETCD": "Assigned: element of TE", "ELEMENT": "Assigned: TE.ELEMENT",
        "TAETORD": "Assigned: TA.TAETORD", "EPOCH": "Assigned: TA.EPOCH",
        "SESTDTC": "Derived: DM.RFICDTC (screening), RFXSTDTC (treatment), the day after "
                   "RFXENDTC (follow-up)",
        "SEENDTC": "Derived: the next element's start; DM.RFENDTC for the last",
        "SESTDY": "Derived: SESTDTC - DM.RFSTDTC (+1 on or after it)",
        "SEENDY": "Derived: SEENDTC - DM.RFSTDTC (+1 on or after it)"})
    for name in ("TAETORD", "SESTDY", "SEENDY"):
        table.kinds[name] = "number"
    table.frame[["SESTDY", "SEENDY"]] = table.frame[["SESTDY", "SEENDY"]].astype("Float64")
    return table
